"""Getting a Phone's session back after its signaling connection dropped.

The call-core starts `reconnect()` when the websocket to the server goes away while it
holds a session (see `Phone._on_server_closed`). Media is peer to peer, so a call in
progress keeps flowing meanwhile. `reconnect()` emits `RECONNECTING`, retries with
backoff and jitter until the server's resume grace runs out, and sends `hello` +
`resume` with the resume token the server gave at `create_session`. Then it puts the
phone's view of its call in line with the server's (`plan()`, pure) and emits
`RECONNECTED`; or, when the grace passes or the server refuses the resume, goes
through `lost()`: the call ends as `connection_lost`, ringing calls are dropped, the
phone is offline (no session) and `SERVER_LOST` says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from omnicli.errors import OmniError, ServerRefused
from omnicli.phone import events as ev
from omnicli.phone.backoff import Backoff
from omnicli.wire import protocol as p

if TYPE_CHECKING:
    from omnicli.phone.core import Phone

log = logging.getLogger("omnicli.phone.resume")

KICKED_OUT = p.CLOSE_KICKED_OUT  # the session was resumed on another connection
MAX_GRACE = 60.0


@dataclass(frozen=True)
class LocalCall:
    """What the phone knows about its call when the server comes back."""

    call_id: str | None
    state: str  # calling, connecting, connected
    peer: str
    role: str
    call_type: str
    record: bool
    media_up: bool = False  # our side's media connection is up now


@dataclass(frozen=True)
class Plan:
    """What to do after a resume: end our call (with why), leave the server's, or go on."""

    end_reason: str | None = None  # end the local call with this reason
    end_by: str | None = None
    leave_call_id: str | None = None  # a call the server still has and we do not
    report_media: bool = False  # the server waits for our media_state connected
    continues: str | None = None  # the call id that goes on


def declaration(call: LocalCall | None) -> dict[str, Any]:
    """The call fields of `resume`: only a call whose SDP exchange is done is described."""
    if call is None or call.call_id is None or call.state not in ("connecting", "connected"):
        return {}
    return {
        "call_id": call.call_id,
        "peer": call.peer,
        "role": call.role,
        "call_type": call.call_type,
        "record": call.record,
    }


def plan(local: LocalCall | None, result: dict[str, Any]) -> Plan:
    """Reconcile the phone's call with the `resume` result (pure)."""
    server = result.get("call") or None
    ended = result.get("ended") or None
    # a call the server has for us that we do not know: leave it, unless it is ringing
    # here (the server rings us again with its offer right after the resume response)
    stray = None
    if server is not None and (local is None or server["call_id"] != local.call_id):
        ringing_here = server["state"] in ("calling", "ringing") and server["role"] == "callee"
        stray = None if ringing_here else server["call_id"]
    if local is None:
        return Plan(leave_call_id=stray)
    if server is None or server["call_id"] != local.call_id:
        reason, by = "connection_lost", None
        if ended is not None and ended.get("call_id") == local.call_id:
            reason, by = str(ended.get("reason") or reason), ended.get("by")
        return Plan(end_reason=reason, end_by=by, leave_call_id=stray)
    # a media_state sent while we were away was lost: report it again, but only if our
    # media really is up (otherwise the running media watch reports it when it is)
    report = server["state"] == "answered" and local.media_up
    return Plan(report_media=report, continues=local.call_id)


def can_resume(phone: Phone) -> bool:
    return (
        phone.session is not None
        and bool(phone.resume_token)
        and phone.resume_grace > 0
        and phone._client.close_code != KICKED_OUT
    )


def take_over(phone: Phone, reason: str) -> bool:
    """Called when the phone's socket closed: True if resuming handles it (or already does)."""
    if phone._resuming:
        return True  # a failed attempt's socket closing: the running reconnect goes on
    if not can_resume(phone):
        return False
    phone._resuming = True
    phone._spawn(reconnect(phone, reason))
    return True


async def reconnect(phone: Phone, reason: str) -> None:
    """Resume the phone's session within the grace period, or end its call."""
    try:
        try:
            why = await _reconnect(phone, reason)
        except Exception as exc:  # a bug must not leave the phone silently half-connected
            log.exception("resuming failed")
            why = f"{reason}; resuming failed: {exc}"
        if why is not None:
            with contextlib.suppress(Exception):
                await phone._client.close()  # its close is ours: still `_resuming`
            lost(phone, why)
    finally:
        phone._resuming = False


async def _reconnect(phone: Phone, reason: str) -> str | None:
    """None once resumed; otherwise why the session is lost."""
    loop = asyncio.get_running_loop()
    grace = min(phone.resume_grace, MAX_GRACE)
    started = loop.time()
    phone._emit(ev.Reconnecting(reason, grace))
    backoff = Backoff()
    attempts = 0
    while (left := started + grace - loop.time()) > 0:
        await asyncio.sleep(min(backoff.next(), left))
        left = started + grace - loop.time()
        if left <= 0:
            break
        attempts += 1
        try:
            async with asyncio.timeout(left):  # an attempt never runs past the grace
                result = await _attempt(phone)
        except ServerRefused as exc:
            log.info("the server refused to resume the session: %s", exc)
            phone._emit(ev.Notice(f"the server could not resume the session: {exc}"))
            return f"{reason}; the server refused to resume the session ({exc})"
        except (OmniError, TimeoutError) as exc:
            log.debug("resume attempt %d failed: %s", attempts, exc)
            continue
        downtime = (loop.time() - started) * 1000
        await _apply(phone, result, round(downtime, 1), attempts)
        return None
    return f"{reason}; not resumed within {grace:.0f} s"


def lost(phone: Phone, reason: str) -> None:
    """The session is gone: drop ringing calls, go offline, end the call, SERVER_LOST."""
    for offer in list(phone._ringing.values()):
        phone._ringing.pop(offer.caller, None)
        phone._emit(ev.Cancel(offer.call_id, "connection_lost", None))
    phone._ring_changed.set()
    phone.session = None
    phone.resume_token = None
    call = phone._call

    async def end() -> None:
        if call is not None:
            await phone._finish(call, "connection_lost", None)
        phone._emit(ev.ServerLost(reason))

    phone._spawn(end())


async def _attempt(phone: Phone) -> dict[str, Any]:
    """One try: a new socket and hello if needed, then `resume`. Any failure closes the
    socket so that the next try starts afresh."""
    client = phone._client
    try:
        if not client.connected:
            await phone.connect()  # a new websocket and hello
        return await client.request(
            "resume", resume_token=phone.resume_token, **declaration(_local(phone))
        )
    except BaseException:
        with contextlib.suppress(Exception):
            await client.close()  # the next attempt starts from a new socket
        raise


def _local(phone: Phone) -> LocalCall | None:
    c = phone._call
    if c is None:
        return None
    media_up = getattr(c.link, "state", None) == "connected"
    return LocalCall(c.call_id, c.state, c.peer, c.role, c.call_type, c.record, media_up)


async def _apply(phone: Phone, result: dict[str, Any], downtime_ms: float, attempts: int) -> None:
    from omnicli.phone.core import SessionInfo

    phone.resume_token = result.get("resume_token") or phone.resume_token
    phone.resume_grace = float(result.get("resume_grace") or phone.resume_grace)
    phone.session = SessionInfo(result["session"], result["user_id"])
    todo = plan(_local(phone), result)
    phone._emit(ev.Reconnected(result["user_id"], downtime_ms, attempts, todo.continues))
    server = result.get("call") or {}
    for offer in list(phone._ringing.values()):
        if offer.call_id != server.get("call_id"):
            phone._ringing.pop(offer.caller, None)
            phone._emit(ev.Cancel(offer.call_id, "connection_lost", None))
    if todo.end_reason is not None and phone._call is not None:
        await phone._finish(phone._call, todo.end_reason, todo.end_by)
    call = phone._call
    if (
        todo.continues is not None
        and call is not None
        and call.state != "connected"
        and server.get("state") == "connected"
    ):
        # CONNECTED was sent while we were away: act on it as if it had just arrived
        phone._on_server_event(
            {
                "event": "CONNECTED",
                "call_id": call.call_id,
                "peer": call.peer,
                "call_type": call.call_type,
                "record": server.get("record", call.record),
            }
        )
    with contextlib.suppress(OmniError):
        if todo.leave_call_id is not None:
            await phone._client.request("leave", call_id=todo.leave_call_id)
        if todo.report_media:
            await phone._client.request("media_state", state="connected")
