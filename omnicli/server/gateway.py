"""The server's SIP gateway driver: one Janus SIP plugin handle per SIP call.

The switchboard decides; this module carries its `dial` and `hangup` orders (`Send`s
to `sip.GATEWAY`) to Janus and turns what Janus reports back into `GatewayEvent`s,
which the signaling driver feeds to the switchboard. Janus stays private: clients
only ever talk to the omni server, and their media goes to the address in the SDP
answer Janus writes.

One Janus session serves every call; it is opened on the first call and again after
the gateway went away. A gateway that cannot be reached, or that goes away, ends the
calls it carried at once (`FAILED`): nothing is left busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from omnicli.server.janus import JanusError, JanusEvent, JanusSession
from omnicli.server.sip import GatewayEvent, GatewayEventKind

log = logging.getLogger("omnicli.server.gateway")

PLUGIN = "janus.plugin.sip"
HANGUP_WAIT = 2.0  # s to let the plugin send its BYE or CANCEL before the handle goes
RINGING = ("ringing", "progress")


@dataclass
class _Leg:
    """One SIP call through the gateway."""

    call_id: str
    handle: int | None = None
    session: JanusSession | None = None
    done: bool = False  # ended or hung up: report nothing more
    closed: asyncio.Event = field(default_factory=asyncio.Event)  # Janus said "hangup"


class SipGateway:
    """Drives a Janus SIP plugin at `url` for the switchboard."""

    def __init__(
        self,
        url: str,
        report: Callable[[GatewayEvent], None],
        *,
        domain: str | None = None,
        keepalive: float = 25.0,
    ) -> None:
        self.url = url
        self.report = report
        self.domain = domain or urlsplit(url).hostname or "omni.invalid"
        self.keepalive = keepalive
        self._session: JanusSession | None = None
        self._opening: asyncio.Task[JanusSession] | None = None
        self._legs: dict[str, _Leg] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def calls(self) -> int:
        return len(self._legs)

    def submit(self, order: dict[str, Any]) -> None:
        """Carry out one order from the switchboard (`sip.dial()` or `sip.hangup()`)."""
        call_id = str(order["call_id"])
        if order["op"] == "dial":
            leg = _Leg(call_id)
            self._legs[call_id] = leg
            self._spawn(self._dial(leg, order["caller"], order["uri"], order["sdp"]))
        elif order["op"] == "hangup" and (gone := self._legs.pop(call_id, None)) is not None:
            gone.done = True
            self._spawn(self._hangup(gone))

    async def close(self) -> None:
        for leg in list(self._legs.values()):
            leg.done = True
            await self._hangup(leg)
        self._legs.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the Janus session ----------------------------------------------------------------

    async def _janus(self) -> JanusSession:
        """The open Janus session, opening one if needed (one attempt at a time)."""
        if self._session is not None and not self._session.closed.is_set():
            return self._session
        if self._opening is None or self._opening.done():
            self._opening = asyncio.create_task(self._open())
        return await asyncio.shield(self._opening)

    async def _open(self) -> JanusSession:
        session = JanusSession(self.url, keepalive=self.keepalive)
        await session.open()
        session.on_close = lambda: self._lost(session)
        self._session = session
        log.info("SIP gateway %s: session %s", self.url, session.session_id)
        return session

    def _lost(self, session: JanusSession) -> None:
        """The gateway went away: every call it carried ends now."""
        if self._session is session:
            self._session = None
        log.warning("SIP gateway %s: connection lost", self.url)
        for leg in [leg for leg in self._legs.values() if leg.session is session]:
            self._finish(
                leg, GatewayEvent(leg.call_id, GatewayEventKind.FAILED, why="gateway lost")
            )
        self._spawn(session.close())

    # -- one call ---------------------------------------------------------------------------

    async def _dial(self, leg: _Leg, caller: str, uri: str, sdp: str) -> None:
        try:
            session = await self._janus()
            leg.session = session
            if leg.done:
                return
            leg.handle = await session.attach(PLUGIN, lambda event: self._on_event(leg, event))
            if leg.done:
                await self._hangup(leg)
                return
            identity = {
                "request": "register",
                "type": "guest",
                "username": f"sip:{caller}@{self.domain}",
            }
            await session.message(leg.handle, identity)
            call = {"request": "call", "uri": uri, "autoaccept_reinvites": False}
            await session.message(leg.handle, call, {"type": "offer", "sdp": sdp})
            log.info("%s: dialing %s through %s", leg.call_id, uri, self.url)
        except JanusError as exc:
            log.warning("%s: %s", leg.call_id, exc)
            self._finish(leg, GatewayEvent(leg.call_id, GatewayEventKind.FAILED, why=str(exc)))
            await self._hangup(leg)

    def _on_event(self, leg: _Leg, event: JanusEvent) -> None:
        name = event.sip_event
        if name == "hangup" or event.kind == "detached" or (leg.done and event.error):
            leg.closed.set()  # nothing left to hang up
        if leg.done:
            return
        call_id = leg.call_id
        if event.error is not None:
            code, why = event.error
            log.info("%s: gateway error %s %s", call_id, code, why)
            self._finish(leg, GatewayEvent(call_id, GatewayEventKind.FAILED, why=why))
            self._spawn(self._hangup(leg))
        elif name in RINGING:
            self.report(GatewayEvent(call_id, GatewayEventKind.RINGING))
        elif name == "accepted" and event.jsep and event.jsep.get("type") == "answer":
            sdp = str(event.jsep.get("sdp", ""))
            self.report(GatewayEvent(call_id, GatewayEventKind.ANSWERED, sdp=sdp))
        elif event.kind == "webrtcup":
            self.report(GatewayEvent(call_id, GatewayEventKind.MEDIA_UP))
        elif name == "hangup":
            code = int(event.result.get("code") or 0)
            why = str(event.result.get("reason") or "")
            log.info("%s: SIP side ended: %s %s", call_id, code, why)
            self._finish(leg, GatewayEvent(call_id, GatewayEventKind.ENDED, code=code, why=why))
            self._spawn(self._hangup(leg))
        elif event.kind == "detached":
            self._finish(leg, GatewayEvent(call_id, GatewayEventKind.FAILED, why="detached"))

    def _finish(self, leg: _Leg, event: GatewayEvent) -> None:
        if leg.done:
            return
        leg.done = True
        self._legs.pop(leg.call_id, None)
        self.report(event)

    async def _hangup(self, leg: _Leg) -> None:
        """Hang up and drop the handle (a no-op for what is gone already)."""
        session, handle = leg.session, leg.handle
        leg.handle = None
        if session is None or handle is None or session.closed.is_set():
            return
        if not leg.closed.is_set():
            with contextlib.suppress(JanusError, TimeoutError):
                await session.message(handle, {"request": "hangup"})
                async with asyncio.timeout(HANGUP_WAIT):
                    await leg.closed.wait()
        session.forget(handle)
        await session.detach(handle)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
