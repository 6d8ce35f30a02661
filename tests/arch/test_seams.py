"""Modules meet through interfaces: no import circles at run time, no reaching into
another module's private names."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "omnicli"

# Private names of other code that a module may use, and why.
ALLOWED_PRIVATES = {
    ("media/recovery.py", "_send_rtcp_nack"),  # aiortc's receiver: checked on install
    ("media/recovery.py", "_data"),  # aiortc's jitter buffer packets: checked on install
    ("media/sendhooks.py", "_ssrc"),  # aiortc's sender: which RTCP reports are its own
    ("media/sendhooks.py", "_RTCRtpSender__encoder"),  # aiortc's sender: checked on install
    ("media/sendhooks.py", "_RTCRtpSender__rtp_history"),  # likewise, for the RTX budget
    ("ui/flows.py", "_exit"),  # os._exit: a second Ctrl-C exits at once
    ("ui/repl.py", "_exit"),  # os._exit, likewise
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Line numbers of imports under `if TYPE_CHECKING:` (types only, never run)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            for inner in node.body:
                for sub in ast.walk(inner):
                    lines.add(getattr(sub, "lineno", -1))
    return lines


def runtime_imports(path: Path) -> set[str]:
    """The omnicli modules `path` imports when it runs (lazy imports included)."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_only(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("omnicli"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in MODULES else str(node.module))
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("omnicli")}
    return {m for m in found if m in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while (w := stack.pop()) != v:
                group.append(w)
            group.append(v)
            if len(group) > 1:
                found.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circles_at_run_time():
    """No two omnicli modules import each other, directly or round a loop."""
    graph = {name: runtime_imports(path) - {name} for name, path in MODULES.items()}
    assert cycles(graph) == []


def test_the_circle_check_finds_a_circle():
    """The check itself can fail: a loop of three is reported."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def private_uses(path: Path) -> list[tuple[int, str]]:
    """`x._name` where `x` is not self/cls and `_name` is not defined in this module."""
    tree = ast.parse(path.read_text())
    own = {
        n.name
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }
    own |= {
        n.attr
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store)
    }
    uses = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or name.startswith("__") or name in own:
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        uses.append((node.lineno, name))
    return uses


def test_no_module_reaches_into_anothers_privates():
    """Private names are used only where they are defined (a few documented exceptions)."""
    bad = [
        f"{path.relative_to(PACKAGE)}:{line} uses {name}"
        for path in MODULES.values()
        for line, name in private_uses(path)
        if (str(path.relative_to(PACKAGE)), name) not in ALLOWED_PRIVATES
    ]
    assert bad == []


def test_the_private_check_finds_a_reach_in(tmp_path):
    """The check itself can fail: `phone._call` from another module is reported."""
    bad = tmp_path / "resume.py"
    bad.write_text("def f(phone):\n    return phone._call.state\n")
    assert private_uses(bad) == [(2, "_call")]
