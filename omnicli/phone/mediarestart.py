"""Media reconnection: a call whose media path died gets a new peer connection.

aiortc cannot restart ICE, so when the media path dies (no packet in for `grace`
seconds, the connection `failed`, or one of this machine's addresses went away, as
when a laptop changes network) both phones build a **new** RTCPeerConnection and
negotiate it through the signaling server, on the same call (protocol: `media_restart`
and the `MEDIA_RESTART` event, docs/protocol.md §3.12):

- only the caller offers and only the callee answers, so both never offer at once;
  a callee that notices first sends a `request`, and a caller that gets one drops
  the attempt it had going and offers afresh;
- the local sources move to the new connection (nothing reopens, a camera stays
  open), with the call's mutes; the recorder and the speaker follow the new remote
  tracks, so a recording goes on in the same file;
- before negotiating, the phone makes sure its own signaling still works: if the
  address its websocket used is gone, or a `ping` gets no answer within
  `PING_TIMEOUT`, it drops the socket at once and the session resume takes over
  (instead of waiting ~8 s for websocket keepalives to give up);
- both sides emit `MEDIA_RECONNECTING` and then `MEDIA_RECONNECTED` with the gap in
  ms (from the last packet received to media flowing again); if nothing works within
  `limit` seconds (default 15) the phone reports `media_state failed` and the server
  ends the call with `media_failed` for both.

`LinkWatch` (when is the path dead) is pure; `MediaRestart` is the driver, one per
connected call, which the `Phone` starts and feeds `MEDIA_RESTART` events; it reaches
the phone only through `RestartHooks` (its tasks are the call's tasks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from omnicli.errors import MediaFailed, OmniError
from omnicli.phone import events as ev
from omnicli.phone.callstate import Call, CallState
from omnicli.wire import messages as m
from omnicli.wire.protocol import EndReason, RestartKind, Role, Track

if TYPE_CHECKING:
    from omnicli.media.peer import PeerLink
    from omnicli.phone.callmedia import CallMedia

log = logging.getLogger("omnicli.phone.mediarestart")

GRACE = 2.5  # s without any packet in (RTCP alone comes every 0.5-1.5 s, even when muted)
POLL = 0.25  # s between looks at the link
ADDRESS_EVERY = 2  # polls between looks at the machine's addresses
LOOP_STALL = 0.5  # s a poll may come late before the silence is blamed on our own loop
PING_TIMEOUT = 1.0  # s for the signaling server to answer a ping before we reconnect
ATTEMPT_TIMEOUT = 5.0  # s for one offer/answer/connect round
LIMIT = 15.0  # s to get media back before the call ends with media_failed


class LinkWatch:
    """Decides when a media path is dead, from packet counts and times; pure."""

    def __init__(self, grace: float = GRACE) -> None:
        self.grace = grace
        self.count: int | None = None
        self.last_packet_at: float | None = None

    def reset(self, now: float) -> None:
        self.count, self.last_packet_at = None, now

    def update(self, packets: int, now: float) -> bool:
        """True when no packet came in for `grace` seconds."""
        if packets != self.count or self.last_packet_at is None:
            self.count, self.last_packet_at = packets, now
            return False
        return now - self.last_packet_at >= self.grace


def host_addresses() -> set[str]:
    """This machine's addresses (what ICE would gather now)."""
    from aioice.ice import get_host_addresses

    return set(get_host_addresses(use_ipv4=True, use_ipv6=True)) | {"127.0.0.1", "::1"}


@dataclass(frozen=True)
class RestartHooks:
    """What a media restart may do to its phone."""

    request: Callable[..., Awaitable[dict[str, Any]]]  # a signaling request: op, **fields
    emit: Callable[[ev.CallEvent], None]
    spawn: Callable[[Coroutine[Any, Any, Any]], None]  # a task of the call
    signaling_up: Callable[[], bool]  # connected, and no resume under way
    local_address: Callable[[], str | None]  # the signaling socket's local address
    drop_signaling: Callable[[], None]  # abort the socket: the session resume follows
    ice_servers: Callable[[], list[dict[str, Any]]]
    relay_only: bool
    end_call: Callable[[EndReason], Coroutine[Any, Any, None]]  # when the server cannot be told


class MediaRestart:
    """Keeps one connected call's media alive across a dead path (see the module doc)."""

    def __init__(
        self,
        call: Call,
        media: CallMedia,
        hooks: RestartHooks,
        *,
        grace: float = GRACE,
        limit: float = LIMIT,
        attempt_timeout: float = ATTEMPT_TIMEOUT,
    ) -> None:
        self.call = call
        self.media = media
        self.hooks = hooks
        self.limit = limit
        self.attempt_timeout = attempt_timeout
        self.watch = LinkWatch(grace)
        self.addresses = host_addresses()
        self.recovering = False
        self.restarts = 0
        self._offer: asyncio.Queue[str] = asyncio.Queue()  # callee: offers from the caller
        self._answer: asyncio.Future[str] | None = None  # caller: the answer awaited
        self._kick = asyncio.Event()  # caller: the callee asked for a fresh offer
        self._newer = asyncio.Event()  # callee: an offer newer than the one answered came
        self._sources: dict[str, Any] | None = None  # taken from the dead link

    # -- entry points ----------------------------------------------------------------

    def start(self) -> None:
        self.watch.reset(time.monotonic())
        self.hooks.spawn(self._watch_loop())

    @property
    def caller(self) -> bool:
        return self.call.role is Role.CALLER

    def on_event(self, event: m.MediaRestartEvent) -> None:
        """A MEDIA_RESTART event for this call."""
        if event.kind is RestartKind.OFFER and not self.caller and event.sdp:
            self._offer.put_nowait(event.sdp)
            self._newer.set()
            self._begin("the caller restarted the media")
        elif event.kind is RestartKind.ANSWER and self.caller and event.sdp:
            if self._answer is not None and not self._answer.done():
                self._answer.set_result(event.sdp)
        elif event.kind is RestartKind.REQUEST and self.caller:
            self._kick.set()
            self._begin("the callee asked to restart the media")

    # -- watching --------------------------------------------------------------------

    async def _watch_loop(self) -> None:
        polls = 0
        tick = time.monotonic()
        while True:
            await asyncio.sleep(POLL)
            polls += 1
            now, late = time.monotonic(), time.monotonic() - tick - POLL
            tick = now
            if late > LOOP_STALL:  # our own event loop stood still (a device opening, a
                self.watch.reset(now)  # starved process): the packets wait unread in the
                continue  # socket, so their silence says nothing about the network
            if self.recovering:
                continue
            reason = self._dead_because()
            if reason is None and polls % ADDRESS_EVERY == 0:
                # listing the interfaces takes a few ms: off the event loop
                gone = self.addresses - await asyncio.to_thread(host_addresses)
                if gone and not self.recovering:
                    reason = f"address {', '.join(sorted(gone))} went away"
            if reason is not None:
                self._begin(reason)

    def _dead_because(self) -> str | None:
        link = self.media.link
        if link.state in ("failed", "closed"):
            return f"media connection {link.state}"
        if self.watch.update(link.packets_received(), time.monotonic()):
            return f"no media for {self.watch.grace:g} s"
        return None

    def _begin(self, reason: str) -> None:
        if self.recovering or self.call.state is not CallState.CONNECTED:
            return
        self.recovering = True
        self.hooks.spawn(self._recover(reason))

    # -- recovering ------------------------------------------------------------------

    async def _recover(self, reason: str) -> None:
        call, hooks = self.call, self.hooks
        started = time.monotonic()
        since = self.watch.last_packet_at or started
        log.info("%s: media lost: %s", call.role.value, reason)
        hooks.emit(ev.MediaReconnecting(call.call_id or "", reason, self.limit))
        self._take_sources()
        attempts = 0
        try:
            await self._check_signaling()
            while (left := started + self.limit - time.monotonic()) > 0:
                attempts += 1
                link = await self._attempt(min(left, self.attempt_timeout))
                if link is not None:
                    self._swap(link)
                    gap = round((time.monotonic() - since) * 1000, 1)
                    self.restarts += 1
                    self.addresses = host_addresses()
                    self.watch.reset(time.monotonic())
                    self.recovering = False
                    hooks.emit(ev.MediaReconnected(call.call_id or "", gap, attempts))
                    with contextlib.suppress(OmniError):
                        await hooks.request("media_state", state="connected", call_id=call.call_id)
                    return
            hooks.emit(ev.Notice(f"media did not come back within {self.limit:g} s"))
            await self._fail()
        except asyncio.CancelledError:  # the call ended meanwhile: stop what we hold
            for source in (self._sources or {}).values():
                if source is not None:
                    source.stop()
            self._sources = None
            raise
        finally:
            self.recovering = False
            self.addresses = host_addresses()
            self.watch.reset(time.monotonic())

    async def _fail(self) -> None:
        """Out of time: the server ends the call media_failed (or, unreachable, we do)."""
        try:
            await self.hooks.request("media_state", state="failed", call_id=self.call.call_id)
        except OmniError:
            self.hooks.spawn(self.hooks.end_call(EndReason.MEDIA_FAILED))

    async def _attempt(self, timeout: float) -> PeerLink | None:
        """One negotiation on a new link; the link once connected, or None."""
        link = self._new_link()
        try:
            async with asyncio.timeout(timeout):
                await self._signaling_ready()
                if self.caller:
                    await self._as_caller(link)
                    stale, why = self._kick, "the callee asked for a new offer"
                else:
                    await self._as_callee(link)
                    stale, why = self._newer, "the caller sent a newer offer"
                await _unless(link.wait_connected(timeout), stale, why)
            return link
        except (TimeoutError, OmniError, MediaFailed, _Superseded) as exc:
            log.info("media restart attempt failed: %s", exc or type(exc).__name__)
        except asyncio.CancelledError:
            await link.close()  # the call ended: its sources go with it
            raise
        except Exception:  # a bad SDP from the peer: try again
            log.exception("media restart attempt failed")
        self._release(link)
        await link.close()
        return None

    async def _as_caller(self, link: PeerLink) -> None:
        request = self.hooks.request
        self._kick.clear()
        sdp = await link.create_offer(self.call.call_type)
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._answer = answer
        await request("media_restart", kind="offer", sdp=sdp, call_id=self.call.call_id)
        sdp = await _unless(answer, self._kick, "the callee asked for a new offer")
        await link.accept_answer(sdp)

    async def _as_callee(self, link: PeerLink) -> None:
        request = self.hooks.request
        if self._offer.empty():
            await request("media_restart", kind="request", call_id=self.call.call_id)
        offer = await self._offer.get()
        while not self._offer.empty():  # the caller gave up older offers: take the newest
            offer = self._offer.get_nowait()
        self._newer.clear()
        answer = await link.accept_offer(offer)
        await request("media_restart", kind="answer", sdp=answer, call_id=self.call.call_id)

    # -- signaling -------------------------------------------------------------------

    async def _check_signaling(self) -> None:
        """Drop our websocket now if its path is gone too, so the resume starts at once."""
        hooks = self.hooks
        if not hooks.signaling_up():
            return
        local = hooks.local_address()
        if local is not None and local not in host_addresses():
            log.info("signaling used %s, which is gone: reconnecting", local)
        else:
            try:
                async with asyncio.timeout(PING_TIMEOUT):
                    await hooks.request("ping")
                return
            except (TimeoutError, OmniError):
                log.info("signaling did not answer a ping in %g s: reconnecting", PING_TIMEOUT)
        hooks.drop_signaling()
        with contextlib.suppress(TimeoutError):  # until the phone has noticed (and resumes)
            async with asyncio.timeout(1.0):
                while hooks.signaling_up():
                    await asyncio.sleep(0.01)

    async def _signaling_ready(self) -> None:
        """Wait until the phone has a working session on the server again."""
        while not self.hooks.signaling_up():
            await asyncio.sleep(0.05)

    # -- links -----------------------------------------------------------------------

    def _take_sources(self) -> None:
        """Move the local sources off the dead link (it no longer sends them)."""
        if self._sources is not None:
            return
        link = self.media.link
        self._sources = {}
        for kind, out in (("video", link.video_out), ("audio", link.audio_out)):
            self._sources[kind] = out.source
            out.set_source(None, stop_old=False)

    def _new_link(self) -> PeerLink:
        from omnicli.media.peer import PeerLink

        sources = self._sources or {}
        link = PeerLink(
            self.hooks.ice_servers(),
            video=sources.get("video"),
            audio=sources.get("audio"),
            relay_only=self.hooks.relay_only,
        )
        link.video_out.set_muted(Track.VIDEO in self.call.muted)
        link.audio_out.set_muted(Track.AUDIO in self.call.muted)
        return link

    @staticmethod
    def _release(link: PeerLink) -> None:
        """Take the sources back out of a link about to close (they live on)."""
        link.video_out.set_source(None, stop_old=False)
        link.audio_out.set_source(None, stop_old=False)

    def _swap(self, link: PeerLink) -> None:
        """The call's media is `link` from now on; the dead one closes."""
        old, self.media.link = self.media.link, link
        self._sources = None
        self.media.route()  # speaker and recorder follow the new remote tracks
        self.hooks.spawn(old.close())


class _Superseded(Exception):
    """This attempt's offer is stale (the callee asked for a new one, or the caller sent one)."""


async def _unless(awaitable: Any, stale: asyncio.Event, why: str) -> Any:
    """The result of `awaitable`, or _Superseded(why) if `stale` is set first."""
    job = asyncio.ensure_future(awaitable)
    flag = asyncio.ensure_future(stale.wait())
    try:
        await asyncio.wait([job, flag], return_when=asyncio.FIRST_COMPLETED)
    finally:
        flag.cancel()
        if not job.done():
            job.cancel()
    if not job.done() or job.cancelled():
        raise _Superseded(why)
    return job.result()


__all__ = ["GRACE", "LIMIT", "LinkWatch", "MediaRestart", "RestartHooks", "host_addresses"]
