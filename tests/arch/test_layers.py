"""The package tree is the layer diagram: no module imports a layer above its own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "omnicli"

# What each layer may import from omnicli (besides itself). `errors` is the base of all.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "wire": {"errors"},
    "server": {"errors", "wire"},
    "media": {"errors", "wire"},
    "phone": {"errors", "wire", "media"},
    "ui": {"errors", "wire", "media", "phone", "server"},
    "__main__": {"ui"},
    "__init__": set(),
}


def layer_of(path: Path, root: Path = PACKAGE) -> str:
    return path.relative_to(root).parts[0].removesuffix(".py")


def omnicli_imports(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """Every omnicli module a file imports, anywhere in it (lazy imports included)."""
    tree = ast.parse(path.read_text(), str(path))
    here = path.relative_to(root.parent).with_suffix("").parts
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("omnicli")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this file's package
                base = ".".join(here[: len(here) - node.level])
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            if name.startswith("omnicli"):
                found.append((node.lineno, name))
    return found


def violations(path: Path, root: Path = PACKAGE) -> list[str]:
    mine = layer_of(path, root)
    bad = []
    for line, name in omnicli_imports(path, root):
        parts = name.split(".")
        target = parts[1] if len(parts) > 1 else "__init__"
        if target != mine and target not in ALLOWED[mine]:
            bad.append(f"{path.relative_to(root.parent)}:{line} ({mine}) imports {name}")
    return bad


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_imports_only_its_own_or_lower_layers(path: Path) -> None:
    assert layer_of(path) in ALLOWED, f"{path} is in no known layer: add it to ALLOWED"
    assert violations(path) == []


def test_the_checker_catches_an_upward_import(tmp_path: Path) -> None:
    """A media module importing the phone, or the wire importing the server, is reported."""
    fake = tmp_path / "omnicli"
    (fake / "media").mkdir(parents=True)
    (fake / "wire").mkdir()
    (fake / "media" / "bad.py").write_text("def f():\n    from omnicli.phone.core import Phone\n")
    (fake / "wire" / "worse.py").write_text("from ..server import driver\n")
    assert violations(fake / "media" / "bad.py", fake) == [
        "omnicli/media/bad.py:2 (media) imports omnicli.phone.core"
    ]
    assert violations(fake / "wire" / "worse.py", fake) == [
        "omnicli/wire/worse.py:1 (wire) imports omnicli.server"
    ]
