"""Typed fields out of a decoded JSON object, for both directions of the protocol.

The server reads requests with these (`wire.requests`), the client reads the server's
events and results (`wire.messages`): a field that is missing, of the wrong type, too
long or not one of its enum's values raises the one `ProtocolError`, whose message
names the field. Pure: stdlib only.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any, TypeVar

from omnicli.wire.protocol import ProtocolError

E = TypeVar("E", bound=Enum)
ENUM_LIMIT = 32  # no enum value of the protocol is longer


def need(obj: Mapping[str, Any], name: str) -> Any:
    if name not in obj:
        raise ProtocolError(f"missing field '{name}'")
    return obj[name]


def opt_text(
    obj: Mapping[str, Any], name: str, *, limit: int | None = None, required: bool = False
) -> str | None:
    """The string `name`; None when absent or null, unless `required`."""
    value = obj.get(name)
    if value is None:
        if required:
            raise ProtocolError(f"missing field '{name}'")
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"field '{name}' must be a string{'' if required else ' or null'}")
    if limit is not None and len(value) > limit:
        raise ProtocolError(f"field '{name}' is longer than {limit} characters")
    return value


def text(obj: Mapping[str, Any], name: str, *, limit: int | None = None) -> str:
    """The string `name`, which must be there."""
    return opt_text(obj, name, limit=limit, required=True) or ""


def flag(
    obj: Mapping[str, Any], name: str, default: bool = False, *, required: bool = False
) -> bool:
    if required and name not in obj:
        raise ProtocolError(f"missing field '{name}'")
    value = obj.get(name, default)
    if not isinstance(value, bool):
        raise ProtocolError(f"field '{name}' must be true or false")
    return value


def number(obj: Mapping[str, Any], name: str, default: float = 0.0) -> float:
    """The number `name`; `default` when absent or null."""
    value = obj.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"field '{name}' must be a number")
    return float(value)


def opt_member(
    obj: Mapping[str, Any], name: str, enum: type[E], *, required: bool = False
) -> E | None:
    """The member of `enum` named by the string `name`; None when absent or null."""
    raw = opt_text(obj, name, limit=ENUM_LIMIT, required=required)
    if raw is None:
        return None
    try:
        return enum(raw)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in enum)
        raise ProtocolError(f"field '{name}' must be one of: {allowed}") from None


def member(obj: Mapping[str, Any], name: str, enum: type[E]) -> E:
    """The member of `enum` named by the string `name`, which must be there."""
    value = opt_member(obj, name, enum, required=True)
    assert value is not None
    return value


def as_object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ProtocolError(f"{what} must be a JSON object")
    return value
