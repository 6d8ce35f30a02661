"""A phone's calls from start to end: placing one, answering one, leaving, the ending.

`Dialer` is the part of `Phone` (`phone.core`) that opens a call's media, asks the
server (`offer_call`, `answer_call`, `leave`) and, when the call ends by any road,
retires its media and emits LEAVE with the call's summary. A call that cannot begin
gives its media back and tells the server, best effort, that it is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from omnicli.errors import CallRejected, MediaFailed, OmniError, ServerRefused, UsageError
from omnicli.phone import events as ev
from omnicli.phone.callmedia import offers_media
from omnicli.phone.callrun import CallRun
from omnicli.phone.callstate import Action, Call, CallInfo, CallMachine, Offer
from omnicli.phone.config import PhoneConfig
from omnicli.phone.signaling import SignalingClient
from omnicli.wire import messages as m
from omnicli.wire.protocol import (
    CallType,
    EndReason,
    ErrorCode,
    check_sip_uri,
    check_user_id,
    is_sip_uri,
)

if TYPE_CHECKING:
    from omnicli.phone.callmedia import CallMedia

log = logging.getLogger("omnicli.phone.core")

LEAVE_TIMEOUT = 3.0  # a best-effort leave after a failed offer or answer


class Dialer:
    """Placing, answering and ending calls: a part of `Phone`, on its state."""

    config: PhoneConfig
    machine: CallMachine
    signaling: SignalingClient
    _run: CallRun | None
    _ring_changed: asyncio.Event

    if TYPE_CHECKING:

        def _act(self, actions: list[Action]) -> None: ...
        async def _act_inline(self, actions: list[Action]) -> None: ...
        def _emit(self, event: ev.CallEvent) -> None: ...
        def _spawn(self, coro: Coroutine[Any, Any, Any], run: CallRun | None = None) -> None: ...
        async def _stop_recording(self, run: CallRun) -> str: ...
        async def _open_media(self, call_type: CallType) -> tuple[CallMedia, list[str]]: ...

    async def offer_call(
        self, call_type: str | CallType, callee: str, record: bool = False
    ) -> CallInfo:
        """Call `callee`; returns once the server accepted the offer (RINGBACK)."""
        kind = _call_type(call_type)
        if is_sip_uri(callee):  # a SIP phone, through the server's gateway: audio only
            if why := check_sip_uri(callee):
                raise UsageError(f"bad callee '{callee[:80]}': {why}")
            kind = CallType.SIP
        elif kind is CallType.SIP:
            raise UsageError(f"a sipcall goes to a sip: address, not '{callee[:80]}'")
        elif why := check_user_id(callee):
            raise UsageError(f"bad callee '{callee[:80]}': {why}")
        self.machine.need_free_line()
        media, notes = await self._open_media(kind)
        try:  # refused if another call began (or the session went) while the sources opened
            call = self.machine.place(callee, kind, record, time.monotonic())
        except BaseException:
            await self._discard(media)
            raise
        run = self._start_run(call, media)
        sent = False
        try:
            await media.attach(notes)
            sdp = await media.link.create_offer(kind.value)
            sent = True
            result = await self.signaling.ask(
                m.OfferResult.parse,
                "offer_call",
                call_type=kind.value,
                callee=callee,
                record=record,
                sdp=sdp,
            )
        except BaseException as exc:
            await self._drop(run)
            if isinstance(exc, ServerRefused):
                if exc.code == ErrorCode.BUSY:
                    raise CallRejected(EndReason.BUSY, f"{callee} is busy") from None
                raise
            if sent:  # cancelled or cut off mid-request: the server may have the call
                await self._leave_quietly(call.call_id)
            if (err := _media_error(exc, f"cannot call {callee}")) is not exc:
                raise err from None
            raise
        self.machine.offer_accepted(call, result)
        assert call.call_id is not None
        return CallInfo(call.call_id, callee, kind, call.role)

    async def answer_call(
        self,
        call_type: str | CallType | None = None,
        caller: str | None = None,
        *,
        wait: float | None = 0.0,
    ) -> CallInfo:
        """Answer the call ringing from `caller` (any, if None).

        As in the seed, a callee that registered after the offer may name the call
        type and caller it was told; the server rings it on registration. `wait`
        is how long to wait for that call to ring (None: for ever).
        """
        kind = _call_type(call_type) if call_type else None
        offer = await self._wait_ringing(caller, wait)
        if kind is not None and kind != offer.call_type:
            raise UsageError(f"the call from {offer.caller} is a {offer.call_type}, not a {kind}")
        self.machine.need_idle()
        media, notes = await self._open_media(offer.call_type)
        try:  # refused if another call began (or the session went) while the sources opened
            call = self.machine.take(offer, time.monotonic())
        except BaseException:
            await self._discard(media)
            raise
        run = self._start_run(call, media)
        try:
            await media.attach(notes)
            sdp = await media.link.accept_offer(offer.sdp)
            await self.signaling.request(
                "answer_call", sdp=sdp, caller=offer.caller, call_type=offer.call_type.value
            )
        except BaseException as exc:
            await self._drop(run)
            if isinstance(exc, ServerRefused) and exc.code in (404, 412):
                raise CallRejected(
                    EndReason.CANCELLED, f"the call from {offer.caller} is gone"
                ) from None
            # the offer is taken here but the server still rings it: decline it there
            await self._leave_quietly(offer.call_id)
            if (err := _media_error(exc, f"cannot answer the call from {offer.caller}")) is not exc:
                raise err from None
            raise
        self._act(self.machine.answer_sent(call, time.monotonic()))
        if offers_media(offer.sdp):
            self._spawn(run.watch_media(self.config.media.connect_timeout), run)
        else:  # nothing can ever connect: end it now, not at the media timeout
            run.emit(ev.Notice(f"the offer from {offer.caller} has no media: media failed"))
            self._spawn(run.report_media("failed"), run)
        return CallInfo(offer.call_id, offer.caller, offer.call_type, call.role)

    async def leave(self) -> EndReason | None:
        """Decline while ringing, cancel while calling, hang up when connected."""
        if self.machine.call is None and not self.machine.ringing:
            return None
        reason = EndReason.HANGUP
        try:
            result = await self.signaling.ask(m.LeaveResult.parse, "leave")
            reason = result.reason or reason
        except ServerRefused:
            pass  # the call ended on the server already
        except OmniError:
            reason = EndReason.CONNECTION_LOST
        await self._act_inline(self.machine.left(reason))
        return reason

    async def _wait_ringing(self, caller: str | None, wait: float | None) -> Offer:
        loop = asyncio.get_running_loop()
        deadline = None if wait is None else loop.time() + wait
        while True:
            offer = self.machine.find_offer(caller)
            if offer is not None:
                return offer
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                who = f" from {caller}" if caller else ""
                raise CallRejected("no_call", f"no call{who} is ringing")
            self._ring_changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._ring_changed.wait()

    @staticmethod
    async def _discard(media: CallMedia) -> None:
        """Media opened for a call that could not begin."""
        media.retire()
        await media.close()

    def _start_run(self, call: Call, media: CallMedia) -> CallRun:
        self._run = CallRun(call, media, self.signaling.request, self._emit)
        return self._run

    async def _finish(self, call: Call, reason: EndReason, by: str | None) -> None:
        """The call is over: stop its media, then emit LEAVE with its summary."""
        run = self._run
        if not self.machine.drop(call) or run is None or run.call is not call:
            return
        run.media.retire()
        ended = time.monotonic()
        received: dict[str, Any] = {}
        try:
            if run.media.recorder is not None:
                try:
                    await self._stop_recording(run)
                except Exception as exc:  # disk full, encoder error: the call still ends
                    log.debug("finishing the recording failed", exc_info=True)
                    self._emit(ev.Notice(f"the recording could not be finished: {exc}"))
            received = run.received()
        finally:
            try:
                await self._drop(run)
            finally:
                summary = run.summary(reason, ended, received)
                self._emit(ev.Leave(call.call_id or "", reason, by, summary))

    async def _drop(self, run: CallRun) -> None:
        self.machine.drop(run.call)
        if self._run is run:
            self._run = None
        await run.close()

    async def _leave_quietly(self, call_id: str | None) -> None:
        """Best effort: tell the server a call we gave up on is over (it may still ring)."""
        with contextlib.suppress(OmniError, TimeoutError):
            async with asyncio.timeout(LEAVE_TIMEOUT):
                await self.signaling.request("leave", call_id=call_id)


def _media_error(exc: BaseException, what: str) -> BaseException:
    """`exc` itself if deliberate (OmniError) or not an error; else MediaFailed in one line."""
    if isinstance(exc, OmniError) or not isinstance(exc, Exception):
        return exc
    log.debug("%s", what, exc_info=exc)
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return MediaFailed(f"{what}: {detail[:200]}")


def _call_type(value: str | CallType) -> CallType:
    try:
        return CallType(value)
    except ValueError:
        raise UsageError(
            f"call type must be videocall, audiocall or sipcall, not '{value}'"
        ) from None
