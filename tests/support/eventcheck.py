"""Every `--json` event the test suite sees is checked against the shipped JSON Schema.

`omnicli/phone/events.schema.json` is the machine form of `docs/events.md`. The tests'
conftest checks each event a `Phone` emits in process; the process helpers (`procs.py`)
check each JSON line an `omni` process prints. `SEEN` counts what was checked, by name.
"""

from __future__ import annotations

import json
from collections import Counter
from functools import cache
from importlib.resources import files
from typing import Any

from jsonschema import Draft202012Validator

SEEN: Counter[str] = Counter()


@cache
def schema() -> dict[str, Any]:
    return dict(json.loads(files("omnicli.phone").joinpath("events.schema.json").read_text()))


@cache
def _validator(name: str | None) -> Draft202012Validator:
    whole = schema()
    if name is None or name not in whole["$defs"]:
        return Draft202012Validator(whole)
    return Draft202012Validator({"$ref": f"#/$defs/{name}", "$defs": whole["$defs"]})


def problems(obj: dict[str, Any]) -> list[str]:
    """Why `obj` (one decoded --json line) is not a documented event; [] if it is."""
    name = obj.get("event")
    found = [
        f"{'/'.join(map(str, e.absolute_path)) or 'event'}: {e.message}"
        for e in _validator(name if isinstance(name, str) else None).iter_errors(obj)
    ]
    if not found and isinstance(name, str):
        SEEN[name] += 1
    return found


def check(obj: dict[str, Any]) -> None:
    """Raise AssertionError if `obj` has an `event` and does not follow the schema."""
    if "event" not in obj:
        return
    if found := problems(obj):
        raise AssertionError(f"--json event off docs/events.md: {found[:3]} in {obj}")


def check_lines(text: str) -> None:
    """Check every JSON event line of an omni process's stdout."""
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                check(obj)


def as_json(event: Any) -> dict[str, Any]:
    """An event object as `omni --json` prints it."""
    return dict(json.loads(json.dumps(event.as_dict(), default=str)))
