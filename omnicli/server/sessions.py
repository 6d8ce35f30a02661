"""Sessions: this node's connections and the presence records of their users.

A connection (`Conn`) is local to the server process: its number, the service its hello
chose, the user it registered as. Presence (`records.Presence`) is what every node may
see, kept in the store: a user id has at most one session, online or away. `tell`
addresses a message to a user, or keeps how a call ended for a user who is away.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omnicli.server.auth import Service
from omnicli.server.records import Delivery, Presence, Refusal, Send, ToConn, ToUser, UserKey
from omnicli.server.store import Store
from omnicli.wire.protocol import ErrorCode, Event


@dataclass
class Conn:
    conn: int
    service_id: str | None = None
    user_id: str | None = None
    session: str | None = None
    allowed_user: str | None = None  # set when a token pins the user id


class Sessions:
    def __init__(
        self,
        store: Store,
        services: dict[str, Service],
        node: str,
        new_id: Callable[[str], str],
    ) -> None:
        self.store = store
        self.services = services
        self.node = node
        self._new_id = new_id
        self.conns: dict[int, Conn] = {}
        self.local: dict[UserKey, int] = {}  # users whose connection is on this node

    # -- connections ---------------------------------------------------------------------

    def connect(self, conn: int) -> None:
        self.conns[conn] = Conn(conn)

    def attach(self, c: Conn, user_id: str, session: str) -> None:
        """Give the connection a session; the user id must be free."""
        assert c.service_id is not None
        if not self.store.add_presence(Presence(c.service_id, user_id, session, self.node)):
            raise Refusal(ErrorCode.USER_ID_TAKEN, f"user id '{user_id}' is online already")
        c.user_id, c.session = user_id, session
        self.local[(c.service_id, user_id)] = c.conn

    def detach(self, c: Conn) -> Presence | None:
        """Forget the connection's user here; its presence, if it was still this one's."""
        if c.service_id is None or c.user_id is None:
            return None
        key = (c.service_id, c.user_id)
        if self.local.get(key) != c.conn:
            return None
        del self.local[key]
        session, c.user_id, c.session = c.session, None, None
        presence = self.store.presence(*key)
        # the session must still be this connection's: a resume on another connection of
        # this node may have taken it while the read above waited for Redis
        mine = presence is not None and presence.node == self.node and presence.session == session
        return presence if mine else None

    def end(self, presence: Presence) -> bool:
        return self.store.swap_presence(presence, None)

    def go_away(self, presence: Presence, until: float) -> bool:
        return self.store.swap_presence(presence, dataclasses.replace(presence, away_until=until))

    def conn_of(self, service_id: str, user_id: str) -> Conn | None:
        conn = self.local.get((service_id, user_id))
        return self.conns.get(conn) if conn is not None else None

    def route(self, sends: list[Send]) -> list[Delivery]:
        """The sends that reach a connection of this node, in order."""
        out = []
        for send in sends:
            if isinstance(send.to, ToConn):
                conn: int | None = send.to.conn
            elif isinstance(send.to, ToUser):
                conn = self.local.get((send.to.service_id, send.to.user_id))
            else:
                continue  # an order for the SIP gateway: see Switchboard.gateway_orders
            if conn is not None:
                out.append(Delivery(conn, send.message, send.close))
        return out

    # -- presence ------------------------------------------------------------------------

    def taken(self, service_id: str, user_id: str) -> bool:
        return self.store.presence(service_id, user_id) is not None

    def online(self, service_id: str, user_id: str) -> bool:
        presence = self.store.presence(service_id, user_id)
        return presence is not None and not presence.away

    def check_room(self, service_id: str) -> None:
        service = self.services[service_id]
        if self.store.count(service_id) >= service.max_sessions:
            raise Refusal(ErrorCode.SERVER_FULL, "this service holds its maximum of sessions")

    def new_user_id(self, service_id: str) -> str:
        while True:
            candidate = self._new_id("user-")
            if not self.taken(service_id, candidate):
                return candidate

    def tell(
        self,
        service_id: str,
        user_id: str,
        message: dict[str, Any],
        out: list[Send],
        known: Presence | None = None,
    ) -> None:
        """Send to the user if online; an away user keeps how its call ended instead.
        A user connected to this node is online (no read); `known` is the presence when
        the caller has just read it."""
        if (service_id, user_id) in self.local:
            out.append(Send(ToUser(service_id, user_id, self.node), message))
            return
        presence = known if known is not None else self.store.presence(service_id, user_id)
        if presence is None:
            return
        if not presence.away:
            out.append(Send(ToUser(service_id, user_id, presence.node), message))
        elif message.get("event") in (Event.LEAVE, Event.CANCEL):  # told on resume instead
            missed = {k: message[k] for k in ("call_id", "reason", "by")}
            self.store.swap_presence(presence, dataclasses.replace(presence, missed=missed))
