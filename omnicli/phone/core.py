"""The call-core: an SDK-like phone that the CLI and the REPL both drive.

`Phone` mirrors the Omnitalk SDK: `create_session`, `session_list`, `offer_call`,
`answer_call`, `leave`, `set_mute`/`set_unmute`, and a stream of typed events
(`omnicli.phone.events`). It ties the signaling client to the media layer; it never
prints, and it imports aiortc only when a call needs media.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from omnicli.errors import (
    CallRejected,
    MediaFailed,
    OmniError,
    ServerRefused,
    ServerUnreachable,
    UsageError,
)
from omnicli.phone import events as ev
from omnicli.phone.signaling import SignalingClient
from omnicli.phone.summary import RunningStats, summarize
from omnicli.wire.protocol import VERSION, CallType, ErrorCode, Track, check_user_id

if TYPE_CHECKING:
    from omnicli.media.peer import PeerLink
    from omnicli.phone.callmedia import CallMedia
    from omnicli.phone.mediarestart import MediaRestart

log = logging.getLogger("omnicli.phone.core")

STATS_INTERVAL = 1.0
LEAVE_TIMEOUT = 3.0  # a best-effort leave after a failed offer or answer


@dataclass(frozen=True)
class MediaOptions:
    """Where outgoing media comes from (see `omnicli.media.sources.open_source`)."""

    video_source: str = "test"
    audio_source: str = "tone"
    width: int = 640
    height: int = 480
    fps: int = 30
    connect_timeout: float = 15.0
    speaker: str = "none"  # none, auto, default or an output device id (omnicli.media.devices)
    require_devices: bool = False  # a missing real device is DeviceMissing, not a fallback
    record: bool = False  # record every call (the caller's `record` flag records too)
    record_file: str | None = None  # default: omni-ME-PEER-TIME.mp4 in the current directory
    ice_relay_only: bool = False  # gather TURN relay candidates only (needs a TURN server)
    media_recovery: float = 15.0  # s to re-establish dead media before media_failed (0: off)


@dataclass(frozen=True)
class PhoneConfig:
    server_url: str = "ws://127.0.0.1:8765"
    service_id: str = "dev"
    service_key: str | None = None
    token: str | None = None
    ca_file: str | None = None
    media: MediaOptions = field(default_factory=MediaOptions)


@dataclass(frozen=True)
class SessionInfo:
    session: str
    user_id: str


@dataclass(frozen=True)
class Peer:
    user_id: str
    state: str  # "idle" | "busy"
    call_type: str | None


@dataclass(frozen=True)
class CallInfo:
    call_id: str
    peer: str
    call_type: str
    role: str  # "caller" | "callee"


@dataclass
class _Offer:
    """A call ringing here, as RINGING described it."""

    call_id: str
    caller: str
    call_type: str
    record: bool
    sdp: str


@dataclass
class _Call:
    peer: str
    role: str
    call_type: str
    record: bool
    link: PeerLink
    call_id: str | None = None
    state: str = "calling"
    started: float = field(default_factory=time.monotonic)
    connected_at: float | None = None
    answered: bool = False  # the server has it answered: mute/unmute may be sent
    muted: set[str] = field(default_factory=set)
    stats: RunningStats = field(default_factory=RunningStats)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    media: CallMedia | None = None  # owns the link, sources, speaker and recorder
    restart: MediaRestart | None = None  # re-establishes dead media (mediarestart.py)


class Phone:
    """One user's phone on one signaling server."""

    def __init__(
        self,
        config: PhoneConfig,
        *,
        video_sink: Callable[[Any], None] | None = None,
        preview_sink: Callable[[Any], None] | None = None,
    ) -> None:
        self.config = config
        self.video_sink = video_sink  # remote video, BGR images (read at each call's start)
        self.preview_sink = preview_sink  # local video, BGR images, at most PREVIEW_FPS
        self._preview_at = 0.0
        self.events: asyncio.Queue[ev.CallEvent] = asyncio.Queue()
        self.session: SessionInfo | None = None
        self.ice_servers: list[dict[str, Any]] = []
        self._client = SignalingClient(
            config.server_url,
            on_event=self._on_server_event,
            on_close=self._on_server_closed,
            ca_file=config.ca_file,
        )
        self._call: _Call | None = None
        self._ringing: dict[str, _Offer] = {}
        self._ring_changed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self.resume_token: str | None = None  # from create_session; see omnicli.phone.resume
        self.resume_grace = 0.0
        self._resuming = False

    # -- state, for front ends ---------------------------------------------------------

    @property
    def call_state(self) -> str:
        """idle, ringing, calling, connecting, connected (or offline before a session)."""
        if self.session is None:
            return "offline"
        if self._call is not None:
            if self._call.restart is not None and self._call.restart.recovering:
                return "reconnecting media"
            return self._call.state
        return "ringing" if self._ringing else "idle"

    @property
    def call(self) -> CallInfo | None:
        c = self._call
        if c is None or c.call_id is None:
            return None
        return CallInfo(c.call_id, c.peer, c.call_type, c.role)

    @property
    def muted(self) -> frozenset[str]:
        return frozenset(self._call.muted) if self._call else frozenset()

    @property
    def ringing_from(self) -> list[str]:
        return list(self._ringing)

    # -- the SDK surface ---------------------------------------------------------------

    async def connect(self) -> None:
        """Open the signaling connection and authenticate (the SDK's init).

        Single-flight (see SignalingClient.connect): overlapping calls share one socket.
        """
        await self._client.connect(self._hello)

    async def _hello(self) -> None:
        await self._client.request(
            "hello",
            version=VERSION,
            service_id=self.config.service_id,
            service_key=self.config.service_key,
            token=self.config.token,
            client="omnicli",
        )

    async def create_session(self, user_id: str | None = None) -> SessionInfo:
        if user_id is not None and (why := check_user_id(user_id)):
            raise UsageError(f"bad user id '{user_id[:80]}': {why}")
        await self._ensure_connected()
        result = await self._client.request("create_session", user_id=user_id)
        self.session = SessionInfo(result["session"], result["user_id"])
        self.ice_servers = list(result.get("ice_servers") or [])
        self.resume_token = result.get("resume_token")
        self.resume_grace = float(result.get("resume_grace") or 0.0)
        self._emit(ev.SessionCreated(self.session.session, self.session.user_id))
        return self.session

    async def session_list(self) -> list[Peer]:
        await self._ensure_connected()
        result = await self._client.request("session_list")
        return [Peer(s["user_id"], s["state"], s.get("call_type")) for s in result["sessions"]]

    async def offer_call(
        self, call_type: str | CallType, callee: str, record: bool = False
    ) -> CallInfo:
        """Call `callee`; returns once the server accepted the offer (RINGBACK)."""
        kind = _call_type(call_type)
        if why := check_user_id(callee):
            raise UsageError(f"bad callee '{callee[:80]}': {why}")
        self._need_idle()
        if self._ringing:
            who = next(iter(self._ringing))
            raise UsageError(f"a call from {who} is ringing: answer or reject it first")
        media, notes = await self._open_media(kind)
        if self._call is not None:  # another call began while the sources opened
            await media.link.close()
            self._need_idle()
        call = _Call(
            peer=callee,
            role="caller",
            call_type=kind,
            record=record,
            link=media.link,
            muted=media.muted,
            media=media,
        )
        self._call = call
        sent = False
        try:
            await media.attach(notes)
            sdp = await call.link.create_offer(kind)
            sent = True
            result = await self._client.request(
                "offer_call", call_type=kind, callee=callee, record=record, sdp=sdp
            )
        except BaseException as exc:
            await self._drop(call)
            if isinstance(exc, ServerRefused):
                if exc.code == ErrorCode.BUSY:
                    raise CallRejected("busy", f"{callee} is busy") from None
                raise
            if sent:  # cancelled or cut off mid-request: the server may have the call
                await self._leave_quietly(call.call_id)
            if (err := _media_error(exc, f"cannot call {callee}")) is not exc:
                raise err from None
            raise
        call.call_id = call.call_id or result["call_id"]
        return CallInfo(call.call_id, callee, kind, "caller")

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
        self._need_idle()
        media, notes = await self._open_media(offer.call_type)
        call = _Call(
            peer=offer.caller,
            role="callee",
            call_type=offer.call_type,
            record=offer.record,
            link=media.link,
            call_id=offer.call_id,
            state="connecting",
            muted=media.muted,
            media=media,
        )
        if self._call is not None:  # another call began while the sources opened
            await media.link.close()
            self._need_idle()
        self._call = call
        self._ringing.pop(offer.caller, None)
        try:
            await media.attach(notes)
            sdp = await call.link.accept_offer(offer.sdp)
            await self._client.request(
                "answer_call", sdp=sdp, caller=offer.caller, call_type=offer.call_type
            )
        except BaseException as exc:
            if self._call is call:
                await self._drop(call)
            if isinstance(exc, ServerRefused) and exc.code in (404, 412):
                raise CallRejected("cancelled", f"the call from {offer.caller} is gone") from None
            # the offer is taken here but the server still rings it: decline it there
            await self._leave_quietly(offer.call_id)
            if (err := _media_error(exc, f"cannot answer the call from {offer.caller}")) is not exc:
                raise err from None
            raise
        call.started = time.monotonic()
        self._mark_answered(call)
        self._spawn(self._watch_media(call), call)
        return CallInfo(offer.call_id, offer.caller, offer.call_type, "callee")

    async def leave(self) -> str | None:
        """Decline while ringing, cancel while calling, hang up when connected."""
        call = self._call
        if call is None and not self._ringing:
            return None
        reason = "hangup"
        try:
            result = await self._client.request("leave")
            reason = result.get("reason", reason)
        except ServerRefused:
            pass  # the call ended on the server already
        except OmniError:
            reason = "connection_lost"
        me = self.session.user_id if self.session else None
        if call is not None and self._call is call:
            await self._finish(call, reason, me)
        else:
            for offer in list(self._ringing.values()):
                self._ringing.pop(offer.caller, None)
                self._emit(ev.Leave(offer.call_id, reason, me))
        return reason

    async def set_mute(self, track: str | Track) -> None:
        await self._set_muted(Track(track), True)

    async def set_unmute(self, track: str | Track) -> None:
        await self._set_muted(Track(track), False)

    async def set_video_device(self, device_id: str) -> None:
        """Switch the camera (or any video source spec) mid-call, without renegotiating."""
        await self._switch_source(Track.VIDEO, device_id)

    async def set_audio_device(self, device_id: str) -> None:
        """Switch the microphone (or any audio source spec) mid-call."""
        await self._switch_source(Track.AUDIO, device_id)

    async def set_speaker_device(self, device_id: str) -> None:
        """Play remote audio on another output (``none``: not at all), mid-call too."""
        self.config = replace(self.config, media=replace(self.config.media, speaker=device_id))
        call = self._call
        if call is None or call.media is None:
            return
        note = await call.media.switch_speaker()
        if note:
            self._emit(ev.Notice(note))

    def get_device_list(self) -> dict[str, list[dict[str, Any]]]:
        """Audio inputs, audio outputs and video inputs, each with id and name."""
        from omnicli.media.devices import list_devices

        return list_devices()

    async def recording_start(self, path: str | None = None) -> str:
        """Record the call here (remote video, both parties' audio) and tell the peer.

        Returns the file's path: `path`, else the configured `record_file`, else
        ``omni-ME-PEER-TIME.mp4``. Needs a connected call.
        """
        from omnicli.media.recorder import default_path

        call = self._need_call()
        if call.state != "connected":
            raise UsageError("recording starts once the call is connected")
        media = self._media(call)
        if media.recorder is not None:
            return str(media.recorder.path)
        me = self.session.user_id if self.session else "me"
        target = path or self.config.media.record_file or default_path(me, call.peer)
        if not await media.start_recording(
            target, video=call.call_type == CallType.VIDEO.value, me=me
        ):  # raced with another start: that one records
            return str(media.recorder.path) if media.recorder is not None else target
        with contextlib.suppress(OmniError):
            await self._client.request("recording", on=True)
        return target

    async def recording_stop(self) -> str | None:
        """Finish the recording file and tell the peer; its path (None if none ran)."""
        call = self._call
        if call is None or call.media is None or call.media.recorder is None:
            return None
        path = await self._stop_recording(call)
        with contextlib.suppress(OmniError):
            await self._client.request("recording", on=False)
        return path

    async def _stop_recording(self, call: _Call) -> str:
        me = self.session.user_id if self.session else "me"
        return await self._media(call).stop_recording(me)

    async def stats(self) -> dict[str, Any] | None:
        call = self._call
        if call is None or call.connected_at is None:
            return None
        return dict(await call.link.stats())

    async def next_event(self, timeout: float | None = None) -> ev.CallEvent:
        async with asyncio.timeout(timeout):
            return await self.events.get()

    async def close(self) -> None:
        """Hang up if needed, then close the session and every task."""
        if self._closing:
            return
        with contextlib.suppress(OmniError):
            if self._call is not None or self._ringing:
                await self.leave()
        self._closing = True
        if self._call is not None:
            await self._drop(self._call)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._client.close()

    # -- internals: media and call state ---------------------------------------------

    async def _open_media(self, call_type: str) -> tuple[CallMedia, list[str]]:
        """A call's media with its sources open, and notes on devices that fell back."""
        from omnicli.phone.callmedia import CallMedia

        return await CallMedia.open(self, call_type)

    @staticmethod
    def _media(call: _Call) -> CallMedia:
        assert call.media is not None, "a call made by the phone has its media"
        return call.media

    def _device_lost(self, kind: str, reason: str, device: Any) -> None:
        """A device stopped: the current call's media handles it (see CallMedia)."""
        if self._call is not None and self._call.media is not None:
            self._call.media.device_lost(kind, reason, device)
        else:
            log.debug("ignored a lost %s outside a call: %s", kind, reason)

    async def _watch_media(self, call: _Call) -> None:
        """Report our side's media state to the server, which announces CONNECTED."""
        try:
            await call.link.wait_connected(self.config.media.connect_timeout)
        except MediaFailed as exc:
            self._emit(ev.Notice(f"media failed: {exc}"))
            await self._report_media(call, "failed")
            return
        await self._report_media(call, "connected")

    async def _report_media(self, call: _Call, state: str) -> None:
        """Tell the server our side's media is `connected` or `failed` (best effort)."""
        with contextlib.suppress(OmniError):
            await self._client.request("media_state", state=state, call_id=call.call_id)

    async def _stats_loop(self, call: _Call) -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            figures = dict(await call.link.stats())
            call.stats.add(figures)
            self._emit(ev.Stats(figures))

    async def _switch_source(self, track: Track, spec: str) -> None:
        """Later calls use `spec` too; a call in progress switches now."""
        m = self.config.media
        call = self._call
        if call is not None and not call.link.sends(track.value):
            raise UsageError(f"this call sends no {track.value}")
        source = None if call is None else await self._media(call).open_source(track.value, spec)
        key = "video_source" if track is Track.VIDEO else "audio_source"
        self.config = replace(self.config, media=replace(m, **{key: spec}))  # type: ignore[arg-type]  # key names a str field
        if call is not None:
            self._media(call).use_source(track.value, source)  # stops it if the call ended

    async def _set_muted(self, track: Track, muted: bool) -> None:
        call = self._need_call()
        if not call.link.sends(track.value):
            raise UsageError(f"this call sends no {track.value}")
        out = call.link.video_out if track is Track.VIDEO else call.link.audio_out
        out.set_muted(muted)
        (call.muted.add if muted else call.muted.discard)(track.value)
        if not call.answered:  # the server refuses mute before the answer: sent once answered
            return
        await self._client.request(
            "mute" if muted else "unmute", track=track.value, call_id=call.call_id
        )

    def _mark_answered(self, call: _Call) -> None:
        """The server has the call answered: tell the peer of mutes made before."""
        call.answered = True
        if call.muted:
            self._spawn(self._send_mutes(call), call)

    async def _send_mutes(self, call: _Call) -> None:
        for track in sorted(call.muted):
            with contextlib.suppress(OmniError):
                await self._client.request("mute", track=track, call_id=call.call_id)

    # -- internals: events from the server ---------------------------------------------

    def _on_server_event(self, msg: dict[str, Any]) -> None:
        name = msg.get("event")
        call = self._call
        ours = call is not None and msg.get("call_id") in (call.call_id, None)
        if name == "RINGBACK" and call is not None and call.role == "caller":
            call.call_id = call.call_id or msg["call_id"]
            self._emit(
                ev.Ringback(
                    msg["call_id"],
                    msg["callee"],
                    msg["call_type"],
                    bool(msg.get("record")),
                    bool(msg.get("callee_online")),
                )
            )
        elif name == "RINGING":
            offer = _Offer(
                msg["call_id"], msg["caller"], msg["call_type"], bool(msg.get("record")), msg["sdp"]
            )
            known = self._ringing.get(offer.caller)
            self._ringing[offer.caller] = offer
            self._ring_changed.set()
            if known is None or known.call_id != offer.call_id:  # rung again after a resume
                self._emit(ev.Ringing(offer.call_id, offer.caller, offer.call_type, offer.record))
        elif name == "ANSWERED" and ours and call is not None:
            call.state = "connecting"
            call.started = time.monotonic()  # setup is timed from the answer, not the ring
            self._mark_answered(call)
            self._emit(ev.Answered(msg["call_id"], call.peer))
            self._spawn(self._on_answered(call, msg["sdp"]), call)
        elif name == "CONNECTED" and ours and call is not None:
            call.state = "connected"
            call.connected_at = time.monotonic()
            setup = (call.connected_at - call.started) * 1000
            self._emit(
                ev.Connected(
                    msg["call_id"],
                    call.peer,
                    call.call_type,
                    bool(msg.get("record")),
                    round(setup, 1),
                )
            )
            self._spawn(self._stats_loop(call), call)
            if call.restart is None and self.config.media.media_recovery > 0:
                from omnicli.phone.mediarestart import MediaRestart

                call.restart = MediaRestart(self, call, limit=self.config.media.media_recovery)
                call.restart.start()
            if (call.record and call.role == "caller") or self.config.media.record:
                self._spawn(self._auto_record(call), call)
        elif name in ("LEAVE", "CANCEL") and ours and call is not None:
            self._spawn(self._finish(call, msg.get("reason", "hangup"), msg.get("by")))
        elif name == "CANCEL":
            for caller, offer in list(self._ringing.items()):
                if offer.call_id == msg.get("call_id"):
                    del self._ringing[caller]
                    self._emit(
                        ev.Cancel(offer.call_id, msg.get("reason", "cancelled"), msg.get("by"))
                    )
        elif name in ("MUTE", "UNMUTE") and ours:
            cls = ev.Mute if name == "MUTE" else ev.Unmute
            self._emit(cls(msg["user_id"], msg["track"]))
        elif name == "RECORDING" and ours:
            self._emit(ev.Recording(msg["user_id"], bool(msg.get("on"))))
        elif name == "MEDIA_RESTART" and ours and call is not None and call.restart is not None:
            call.restart.on_event(msg)
        else:
            log.debug("event %s not for the current call: %s", name, msg.get("call_id"))

    async def _auto_record(self, call: _Call) -> None:
        try:
            await self.recording_start()
        except OmniError as exc:
            self._emit(ev.Notice(f"cannot record: {exc}"))

    async def _on_answered(self, call: _Call, sdp: str) -> None:
        try:
            await call.link.accept_answer(sdp)
        except Exception as exc:  # a broken answer SDP ends the call as a media failure
            log.debug("bad answer SDP", exc_info=True)
            self._emit(ev.Notice(f"cannot use the callee's answer: {exc}"))
            await self._report_media(call, "failed")
            return
        await self._watch_media(call)

    async def _ensure_connected(self) -> None:
        """Connect if the socket is down; never beside a resume, which owns reconnecting."""
        if self._client.connected:
            return
        if self._resuming:
            raise ServerUnreachable("reconnecting to the server; try again in a moment")
        await self.connect()

    def _on_server_closed(self, reason: str) -> None:
        if self._closing:
            return
        from omnicli.phone import resume

        if resume.take_over(self, reason):  # media goes on; session back or call ended
            return
        resume.lost(self, reason)  # call ended, ringing dropped, offline, SERVER_LOST

    # -- internals: bookkeeping --------------------------------------------------------

    async def _wait_ringing(self, caller: str | None, wait: float | None) -> _Offer:
        loop = asyncio.get_running_loop()
        deadline = None if wait is None else loop.time() + wait
        while True:
            for offer in self._ringing.values():
                if caller is None or offer.caller == caller:
                    return offer
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                who = f" from {caller}" if caller else ""
                raise CallRejected("no_call", f"no call{who} is ringing")
            self._ring_changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._ring_changed.wait()

    async def _finish(self, call: _Call, reason: str, by: str | None) -> None:
        """The call is over: stop its media, then emit LEAVE with its summary."""
        if self._call is not call:
            return
        self._call = None
        ended = time.monotonic()
        received: dict[str, Any] = {}
        try:
            if call.media is not None and call.media.recorder is not None:
                try:
                    await self._stop_recording(call)
                except Exception as exc:  # disk full, encoder error: the call still ends
                    log.debug("finishing the recording failed", exc_info=True)
                    self._emit(ev.Notice(f"the recording could not be finished: {exc}"))
            received = {
                "video": call.link.video_in.snapshot(),
                "audio": call.link.audio_in.snapshot(),
            }
        finally:
            try:
                await self._drop(call)
            finally:
                summary = summarize(
                    call.stats,
                    duration_s=(ended - call.connected_at) if call.connected_at else 0.0,
                    reason=reason,
                    received=received,
                )
                self._emit(ev.Leave(call.call_id or "", reason, by, summary))

    async def _drop(self, call: _Call) -> None:
        current = asyncio.current_task()
        for task in call.tasks:
            if task is not current:
                task.cancel()
        if self._call is call:
            self._call = None
        if call.media is not None:
            await call.media.close()  # speaker, unfinished recording, then the link
        else:
            await call.link.close()

    async def _leave_quietly(self, call_id: str | None) -> None:
        """Best effort: tell the server a call we gave up on is over (it may still ring)."""
        with contextlib.suppress(OmniError, TimeoutError):
            async with asyncio.timeout(LEAVE_TIMEOUT):
                await self._client.request("leave", call_id=call_id)

    def _spawn(self, coro: Any, call: _Call | None = None) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if call is not None:
            call.tasks.append(task)

    def _emit(self, event: ev.CallEvent) -> None:
        self.events.put_nowait(event)

    def _need_idle(self) -> None:
        if self.session is None:
            raise UsageError("create a session first")
        if self._call is not None:
            raise UsageError(f"already in a call with {self._call.peer}; hang up first")

    def _need_call(self) -> _Call:
        if self._call is None:
            raise UsageError("not in a call")
        return self._call


def _media_error(exc: BaseException, what: str) -> BaseException:
    """`exc` itself if deliberate (OmniError) or not an error; else MediaFailed in one line."""
    if isinstance(exc, OmniError) or not isinstance(exc, Exception):
        return exc
    log.debug("%s", what, exc_info=exc)
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return MediaFailed(f"{what}: {detail[:200]}")


def _call_type(value: str | CallType) -> str:
    try:
        return CallType(value).value
    except ValueError:
        raise UsageError(f"call type must be videocall or audiocall, not '{value}'") from None


__all__ = ["CallInfo", "MediaOptions", "Peer", "Phone", "PhoneConfig", "SessionInfo"]
