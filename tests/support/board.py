"""The switchboard test driver: a Switchboard fed plain requests with numbered connections,
request ids and a settable clock (`now`), no event loop and no sockets.

tests/server/test_switchboard.py, tests/server/test_hardening.py and
tests/phone/test_reconnect.py subclass it for their services and scenes.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from omnicli.server.switchboard import Delivery, Service, Switchboard
from omnicli.wire import protocol as p
from omnicli.wire import requests as rq


class Board:
    """A Switchboard with numbered connections, request ids and a settable clock."""

    def __init__(self, services: Sequence[Service], *, now: float = 0.0, **kwargs: Any) -> None:
        self.sb = Switchboard(list(services), **kwargs)
        self._conns = itertools.count(1)
        self._rids = itertools.count(1)
        self.now = now

    def connect(self) -> int:
        """A new connection, not yet through hello."""
        conn = next(self._conns)
        self.sb.connect(conn)
        return conn

    def send(self, conn: int, op: str, **fields: Any) -> list[Delivery]:
        """Handle one request at `now`; check the response comes first, to the sender, with
        its id."""
        rid = next(self._rids)
        out = self.sb.route(
            self.sb.handle(conn, rq.parse_request({"op": op, "id": rid, **fields}), self.now)
        )
        assert out[0].conn == conn and out[0].message["id"] == rid
        return out

    def disconnect(self, conn: int, now: float, *, lost: bool = False) -> list[Delivery]:
        return self.sb.route(self.sb.disconnect(conn, now, lost=lost))

    def expire(self, now: float) -> list[Delivery]:
        return self.sb.route(self.sb.expire(now))

    def ok(self, conn: int, op: str, **fields: Any) -> tuple[dict[str, Any], list[Delivery]]:
        """The result of a request that must succeed, and the events it caused."""
        resp, *events = self.send(conn, op, **fields)
        assert resp.message["ok"] is True, resp.message
        return resp.message["result"], events

    def result(self, conn: int, op: str, **fields: Any) -> dict[str, Any]:
        """The result of a request that must succeed."""
        return dict(self.ok(conn, op, **fields)[0])

    def code(self, conn: int, op: str, **fields: Any) -> int:
        """The error code of a request that must fail; a refusal causes no events."""
        out = self.send(conn, op, **fields)
        assert len(out) == 1 and out[0].message["ok"] is False, out
        return int(out[0].message["error"]["code"])

    def hello(self, service: str = "dev", **hello: Any) -> int:
        """A new connection through hello on `service`."""
        conn = self.connect()
        self.ok(conn, "hello", version=p.VERSION, service_id=service, **hello)
        return conn

    def user(self, user_id: str, service: str = "dev", **hello: Any) -> int:
        """A new connection with a session as `user_id`."""
        conn = self.hello(service, **hello)
        self.ok(conn, "create_session", user_id=user_id)
        return conn


def events_of(out: list[Delivery], conn: int) -> list[dict[str, Any]]:
    """The event messages among `out` that go to `conn`."""
    return [s.message for s in out if s.conn == conn and "event" in s.message]
