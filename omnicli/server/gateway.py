"""The server's SIP gateway driver: one Janus SIP plugin handle per SIP call.

The switchboard decides; this module carries its `dial` and `hangup` orders (`Send`s
to `sip.GATEWAY`) to Janus and turns what Janus reports back into `GatewayEvent`s,
which the signaling driver feeds to the switchboard. Janus stays private: clients
only ever talk to the omni server, and their media goes to the address in the SDP
answer Janus writes.

One Janus session serves every call; it is opened on the first call and again after
the gateway went away. A gateway that cannot be reached, or that goes away, ends the
calls it carried at once (`FAILED`): nothing is left busy.

Inbound: for each user registered for SIP calls the gateway keeps one SIP plugin
handle REGISTERed at the registrar as ``sip:USER@DOMAIN``; a call arriving on it is
reported as `INCOMING` with a call id made here, and answered (`accept`) or refused
(`hangup` with a decline code) as the switchboard orders. The handle stays for the
next call. After the gateway comes back the registrations are made again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from omnicli.server.janus import JanusError, JanusEvent, JanusSession
from omnicli.server.sip import GatewayEvent, GatewayEventKind
from omnicli.wire.protocol import check_sip_uri

log = logging.getLogger("omnicli.server.gateway")

PLUGIN = "janus.plugin.sip"
DTMF_MS = 160  # duration of one touch tone, as told in the SIP INFO
REREGISTER = 2.0  # s between attempts to register users again after the gateway went away
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
    inbound: bool = False  # on a registration's handle, which outlives the call
    accepted: bool = False  # answered (else a hang-up of an inbound call declines it)
    code: int = 603  # the decline code of a hang-up order
    dtmf_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class _Registration:
    """A user's SIP address kept registered at the registrar, and its one call."""

    service_id: str
    user_id: str
    handle: int | None = None
    session: JanusSession | None = None
    call: _Leg | None = None


class SipGateway:
    """Drives a Janus SIP plugin at `url` for the switchboard."""

    def __init__(
        self,
        url: str,
        report: Callable[[GatewayEvent], None],
        *,
        domain: str | None = None,
        registrar: str | None = None,
        secret: str = "",
        keepalive: float = 25.0,
    ) -> None:
        self.url = url
        self.report = report
        self.domain = domain or urlsplit(url).hostname or "omni.invalid"
        self.registrar = registrar
        self.secret = secret or "-"  # Janus needs one; a registrar without auth ignores it
        self.keepalive = keepalive
        self._regs: dict[tuple[str, str], _Registration] = {}
        self._ids = itertools.count(1)
        self._session: JanusSession | None = None
        self._opening: asyncio.Task[JanusSession] | None = None
        self._legs: dict[str, _Leg] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def calls(self) -> int:
        return len(self._legs)

    def submit(self, order: dict[str, Any]) -> None:
        """Carry out one order from the switchboard (`sip.dial()`, `sip.hangup()`...)."""
        op = order["op"]
        if op in ("register", "unregister"):
            key = (str(order["service_id"]), str(order["user_id"]))
            if op == "register" and key not in self._regs:
                self._regs[key] = _Registration(*key)
                self._spawn(self._keep_registered(self._regs[key]))
            elif op == "unregister" and key in self._regs:
                self._spawn(self._unregister(self._regs.pop(key)))
            return
        call_id = str(order["call_id"])
        if op == "dial":
            self._legs[call_id] = _Leg(call_id)
            self._spawn(
                self._dial(self._legs[call_id], order["caller"], order["uri"], order["sdp"])
            )
        elif op == "hangup" and call_id in self._legs:
            leg = self._legs.pop(call_id)
            leg.done = True
            leg.code = int(order.get("code") or 603)
            self._spawn(self._hangup(leg))
        elif op == "dtmf" and call_id in self._legs:
            self._spawn(self._dtmf(self._legs[call_id], str(order["digits"])))
        elif op == "accept" and call_id in self._legs:
            self._legs[call_id].accepted = True
            self._spawn(self._accept(self._legs[call_id], order["sdp"]))

    async def close(self) -> None:
        self._closing = True
        for leg in list(self._legs.values()):
            leg.done = True
            await self._hangup(leg)
        self._legs.clear()
        for reg in list(self._regs.values()):
            await self._unregister(reg)
        self._regs.clear()
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
        if self._closing:
            return
        log.warning("SIP gateway %s: connection lost", self.url)
        for leg in [leg for leg in self._legs.values() if leg.session is session]:
            self._finish(
                leg, GatewayEvent(leg.call_id, GatewayEventKind.FAILED, why="gateway lost")
            )
        self._spawn(session.close())
        for reg in [reg for reg in self._regs.values() if reg.session is session]:
            reg.session = reg.handle = reg.call = None
            self._spawn(self._keep_registered(reg))

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
            if leg.inbound and not leg.accepted:
                order = {"request": "decline", "code": leg.code}
            else:
                order = {"request": "hangup"}
            with contextlib.suppress(JanusError, TimeoutError):
                await session.message(handle, order)
                async with asyncio.timeout(HANGUP_WAIT):
                    await leg.closed.wait()
        if leg.inbound:  # the handle is the user's registration: it stays
            return
        session.forget(handle)
        await session.detach(handle)

    async def _dtmf(self, leg: _Leg, digits: str) -> None:
        """One SIP INFO per digit, in order (one order at a time per call)."""
        async with leg.dtmf_lock:
            for digit in digits:
                if leg.done or leg.session is None or leg.handle is None:
                    return
                order = {"request": "dtmf_info", "digit": digit, "duration": DTMF_MS}
                try:
                    await leg.session.message(leg.handle, order)
                except JanusError as exc:
                    log.info("%s: DTMF not sent: %s", leg.call_id, exc)
                    return

    # -- inbound ----------------------------------------------------------------------------

    async def _keep_registered(self, reg: _Registration) -> None:
        """Register, and try again every REREGISTER s while the gateway is unreachable."""
        while self._regs.get((reg.service_id, reg.user_id)) is reg and reg.handle is None:
            if await self._register(reg):
                return
            await asyncio.sleep(REREGISTER)

    async def _register(self, reg: _Registration) -> bool:
        address = f"sip:{reg.user_id}@{self.domain}"
        try:
            session = await self._janus()
            handle = await session.attach(PLUGIN, lambda event: self._on_reg_event(reg, event))
            reg.session, reg.handle = session, handle
            order = {
                "request": "register",
                "username": address,
                "secret": self.secret,
                "proxy": self.registrar,
            }
            await session.message(handle, order)
        except JanusError as exc:
            log.warning("cannot register %s: %s", address, exc)
            reg.handle = None
            return False
        if self._regs.get((reg.service_id, reg.user_id)) is not reg:  # gone meanwhile
            await self._unregister(reg)
        return True

    async def _unregister(self, reg: _Registration) -> None:
        session, handle = reg.session, reg.handle
        reg.session = reg.handle = None
        if reg.call is not None and not reg.call.done:
            reg.call.done = True
            self._legs.pop(reg.call.call_id, None)
        if session is None or handle is None or session.closed.is_set():
            return
        with contextlib.suppress(JanusError):
            await session.message(handle, {"request": "unregister"})
        session.forget(handle)
        await session.detach(handle)

    def _on_reg_event(self, reg: _Registration, event: JanusEvent) -> None:
        name = event.sip_event
        if name == "registered":
            log.info("sip:%s@%s registered at %s", reg.user_id, self.domain, self.registrar)
        elif name == "registration_failed" or (event.error and reg.call is None):
            why = event.error or event.result
            log.warning("sip:%s@%s not registered: %s", reg.user_id, self.domain, why)
        elif name == "incomingcall" and event.jsep is not None:
            peer = _caller(event.result.get("username"))
            call_id = f"c-sip{secrets.token_hex(5)}{next(self._ids)}"
            leg = _Leg(call_id, reg.handle, reg.session, inbound=True)
            self._legs[call_id] = leg
            reg.call = leg
            log.info("%s: SIP call from %s for %s", call_id, peer, reg.user_id)
            self.report(
                GatewayEvent(
                    call_id,
                    GatewayEventKind.INCOMING,
                    sdp=str(event.jsep.get("sdp", "")),
                    service_id=reg.service_id,
                    user=reg.user_id,
                    peer=peer,
                )
            )
        elif reg.call is not None:
            leg = reg.call
            if name == "hangup" or event.kind == "detached":
                reg.call = None
            self._on_event(leg, event)

    async def _accept(self, leg: _Leg, sdp: str) -> None:
        if leg.session is None or leg.handle is None:
            return
        try:
            await leg.session.message(
                leg.handle, {"request": "accept"}, {"type": "answer", "sdp": sdp}
            )
        except JanusError as exc:
            self._finish(leg, GatewayEvent(leg.call_id, GatewayEventKind.FAILED, why=str(exc)))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _caller(raw: object) -> str:
    """The caller's address as a plain sip:user@host[:port] (parameters dropped)."""
    text = str(raw or "").strip().strip("<>").split(";", 1)[0]
    return text if check_sip_uri(text) is None else "sip:anonymous@anonymous.invalid"
