"""Keeping the server's log honest and bounded under abuse.

- `clean()` escapes text that came from a client before it is put in a log line: control
  characters (newline, carriage return, NUL, escape...) and other unprintable code
  points become backslash escapes, and the text is cut to a length, so a client
  cannot forge a log line or write terminal escapes into an operator's console.
- `log_outcome()` is what a request leaves in the log: a refusal, a new session, and the
  call events it caused, one line each, client text escaped.
- `ServerLogFilter`, on the log handlers of `omni server`, applies the same escaping to
  every finished message (whatever logged it) and lets one kind of message (same
  logger, same format string) through at most `per_second` times a second; what it
  held back is counted and reported on the next line of that kind that passes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from omnicli.server.records import Send, ToConn, ToGateway

MAX_LOGGED = 80  # characters of one client-supplied string in a log line


def clean(text: object, limit: int = MAX_LOGGED) -> str:
    """`text` made safe for one log line: printable, escaped, at most about `limit` chars."""
    s = text if isinstance(text, str) else str(text)
    cut = len(s) > limit
    if cut:
        s = s[:limit]
    if not s.isprintable():
        s = "".join(ch if ch.isprintable() else _escape(ch) for ch in s)
    return s + "…" if cut else s


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch in "\n\r\t":
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch]
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def log_outcome(
    logger: logging.Logger,
    user: str,
    op: str,
    sends: list[Send],
    user_of: Callable[[int], str | None],
) -> None:
    """Log what `user`'s request `op` did: refused, a session, RINGING/CONNECTED/LEAVE/CANCEL."""
    response = sends[0].message
    if not response["ok"]:
        err = response["error"]
        logger.info("%s %s refused: %s %s", user, op, err["code"], clean(err["message"]))
    elif op == "create_session":
        logger.info("%s online (session %s)", user, response["result"]["session"])
    for send in sends[1:]:
        name = send.message.get("event")
        if name in ("RINGING", "CONNECTED", "LEAVE", "CANCEL"):
            to = send.to
            if isinstance(to, ToGateway):
                continue
            target = user_of(to.conn) if isinstance(to, ToConn) else to.user_id
            extra = send.message.get("reason") or send.message.get("caller") or ""
            call_id = send.message.get("call_id")
            logger.info("%s -> %s %s %s", call_id, target, name, clean(extra))


class ServerLogFilter(logging.Filter):
    """Escapes every message and holds back a kind of message logged too often."""

    def __init__(
        self, per_second: int = 5, clock: Callable[[], float] = time.monotonic, keys: int = 1000
    ) -> None:
        super().__init__()
        self.per_second = per_second
        self.clock = clock
        self.keys = keys  # kinds of message tracked at once (bounded)
        self._window: dict[tuple[str, str], tuple[float, int, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = self.clock()
        start, count, held = self._window.get(key, (now, 0, 0))
        if now - start >= 1.0:
            start, count = now, 0
        if count >= self.per_second:
            self._window[key] = (start, count, held + 1)
            return False
        if len(self._window) >= self.keys and key not in self._window:
            self._window.clear()
        self._window[key] = (start, count + 1, 0)
        message = clean(record.getMessage(), limit=2000)
        if held:
            message += f" ({held} more like this not logged)"
        record.msg, record.args = message, None
        return True


def guard(logger: logging.Logger | None = None, per_second: int = 5) -> None:
    """Put a ServerLogFilter on every handler of `logger` (the root logger by default)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, ServerLogFilter) for f in handler.filters):
            handler.addFilter(ServerLogFilter(per_second))
