"""The call-core: an SDK-like phone that the CLI and the REPL both drive.

`Phone` mirrors the Omnitalk SDK: `create_session`, `session_list`, `offer_call`,
`answer_call`, `leave`, `set_mute`/`set_unmute`, and a stream of typed events
(`omnicli.phone.events`). It is the thin async driver of three parts: the pure call
state (`callstate.CallMachine`: typed server events in, actions out), the signaling
client and each call's media (`callmedia.CallMedia`); reconnection is
`resume.Reconnector`. It never prints, and it imports aiortc only when a call needs media.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
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
from omnicli.phone.callmedia import offers_media
from omnicli.phone.callrun import CallRun
from omnicli.phone.callstate import (
    AcceptAnswer,
    Action,
    Call,
    CallInfo,
    CallMachine,
    CallState,
    Emit,
    EndCall,
    Offer,
    ReportMedia,
    SendLeave,
    SendMutes,
    SessionInfo,
    StartRecording,
    StartStats,
)
from omnicli.phone.figures import CallFigures
from omnicli.phone.reconcile import declaration
from omnicli.phone.resume import Reconnector, ResumeHooks
from omnicli.phone.signaling import SignalingClient
from omnicli.wire import messages as m
from omnicli.wire.protocol import (
    CLOSE_KICKED_OUT,
    DTMF_RE,
    MAX_DTMF,
    VERSION,
    CallType,
    EndReason,
    ErrorCode,
    Track,
    check_sip_uri,
    check_user_id,
    is_sip_uri,
)

if TYPE_CHECKING:
    from omnicli.phone.callmedia import CallMedia

log = logging.getLogger("omnicli.phone.core")

LEAVE_TIMEOUT = 3.0  # a best-effort leave after a failed offer or answer


@dataclass(frozen=True)
class MediaOptions:
    """Where outgoing media comes from (see `omnicli.media.sources.open_source`)."""

    video_source: str = "test"
    audio_source: str = "tone"
    width: int = 640
    height: int = 480
    fps: int = 30
    max_bitrate: int = 0  # ceiling of the video encoder's target, bit/s (0: none; bitcap.py)
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
class Peer:
    user_id: str
    state: m.Presence
    call_type: CallType | None


@dataclass(frozen=True)
class SessionPage:
    """One `session_list` answer: the rows, how many sessions there are, whether more follow."""

    peers: list[Peer]
    total: int
    truncated: bool


def check_quality(size: tuple[int, int] | None, fps: int | None, max_bitrate: int | None) -> None:
    """UsageError unless each given value is in range (the settings' ranges)."""
    if size is not None and not (16 <= size[0] <= 3840 and 16 <= size[1] <= 2160):
        raise UsageError(f"video size {size[0]}x{size[1]}: must be 16x16 to 3840x2160")
    if fps is not None and not 1 <= fps <= 60:
        raise UsageError(f"frame rate {fps}: must be 1 to 60")
    if max_bitrate is not None and max_bitrate != 0 and not 30_000 <= max_bitrate <= 20_000_000:
        raise UsageError(f"bitrate {max_bitrate}: must be 30k to 20M bit/s, or 0 for none")


class _MediaHost:
    """The phone as a call's media sees it (`callmedia.MediaHost`)."""

    def __init__(self, phone: Phone) -> None:
        self._phone = phone

    @property
    def media_options(self) -> MediaOptions:
        return self._phone.config.media

    @property
    def ice_servers(self) -> list[dict[str, Any]]:
        return self._phone.ice_servers

    @property
    def video_sink(self) -> Callable[[Any], None] | None:
        return self._phone.video_sink

    @property
    def preview_sink(self) -> Callable[[Any], None] | None:
        return self._phone.preview_sink

    def emit(self, event: ev.CallEvent) -> None:
        self._phone._emit(event)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._phone._spawn(coro)


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
        self.video_sink = video_sink  # remote video, BGR images
        self.preview_sink = preview_sink  # local video, BGR images, at most PREVIEW_FPS
        self.events: asyncio.Queue[ev.CallEvent] = asyncio.Queue()
        self.machine = CallMachine(record_all=config.media.record)  # the pure call state
        self.ice_servers: list[dict[str, Any]] = []
        self.signaling = SignalingClient(
            config.server_url,
            on_event=self._on_server_event,
            on_close=self._on_server_closed,
            ca_file=config.ca_file,
        )
        self.resume_token: str | None = None  # from create_session; see omnicli.phone.resume
        self.resume_grace = 0.0
        self.reconnector = Reconnector(
            ResumeHooks(
                can_resume=self._can_resume,
                grace=lambda: self.resume_grace,
                attempt=self._attempt_resume,
                resumed=self._resumed,
                lost=self._session_lost,
                close=self.signaling.close,
                emit=self._emit,
                spawn=self._spawn,
            )
        )
        self._run: CallRun | None = None
        self._ring_changed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    # -- state, for front ends ---------------------------------------------------------

    def set_video_sinks(
        self,
        video_sink: Callable[[Any], None] | None,
        preview_sink: Callable[[Any], None] | None,
    ) -> None:
        """Where remote and local video go, from now on: the current call too.

        A call converts frames only for a sink that is set, so a front end that shows
        video now and then (the REPL's `view`) sets its sinks only while it shows it.
        """
        self.video_sink, self.preview_sink = video_sink, preview_sink
        media = self.media
        if media is not None:
            media.route()

    @property
    def session(self) -> SessionInfo | None:
        return self.machine.session

    @session.setter
    def session(self, value: SessionInfo | None) -> None:
        self.machine.session = value

    @property
    def call_state(self) -> CallState:
        """offline (no session), idle, ringing, calling, connecting, connected."""
        return self.machine.state

    @property
    def call(self) -> CallInfo | None:
        return self.machine.info

    @property
    def muted(self) -> frozenset[Track]:
        call = self.machine.call
        return frozenset(call.muted) if call else frozenset()

    @property
    def ringing_from(self) -> list[str]:
        return list(self.machine.ringing)

    @property
    def media_reconnecting(self) -> bool:
        """The current call's media path died and a new one is being negotiated."""
        run = self._run
        return run is not None and run.restart is not None and run.restart.recovering

    @property
    def media(self) -> CallMedia | None:
        """The current call's media (its PeerLink is `media.link`), None outside a call."""
        run = self._run
        return run.media if run is not None and run.call is self.machine.call else None

    # -- the SDK surface ---------------------------------------------------------------

    async def connect(self) -> None:
        """Open the signaling connection and authenticate (the SDK's init).

        Single-flight (see SignalingClient.connect): overlapping calls share one socket.
        """
        await self.signaling.connect(self._hello)

    async def _hello(self) -> None:
        await self.signaling.request(
            "hello",
            version=VERSION,
            service_id=self.config.service_id,
            service_key=self.config.service_key,
            token=self.config.token,
            client="omnicli",
        )

    async def create_session(
        self, user_id: str | None = None, *, sip_inbound: bool = False
    ) -> SessionInfo:
        """Register; `sip_inbound`: SIP phones may call this user too (a server with a
        SIP registrar registers it there)."""
        if user_id is not None and (why := check_user_id(user_id)):
            raise UsageError(f"bad user id '{user_id[:80]}': {why}")
        await self._ensure_connected()
        fields: dict[str, Any] = {"sip_inbound": True} if sip_inbound else {}
        result = await self.signaling.ask(
            m.SessionResult.parse, "create_session", user_id=user_id, **fields
        )
        self._take_session(result)
        self._act(self.machine.session_started(SessionInfo(result.session, result.user_id)))
        if result.sip_address:
            self._emit(ev.Notice(f"SIP phones reach you at {result.sip_address}"))
        assert self.machine.session is not None
        return self.machine.session

    def _take_session(self, result: m.SessionResult) -> None:
        self.ice_servers = list(result.ice_servers)
        self.resume_token = result.resume_token or self.resume_token
        self.resume_grace = result.resume_grace

    async def session_list(self) -> list[Peer]:
        return (await self.session_page()).peers

    async def session_page(self, limit: int | None = None, after: str | None = None) -> SessionPage:
        """Up to `limit` sessions (the server's maximum if None) whose user id is after `after`."""
        await self._ensure_connected()
        result = await self.signaling.ask(
            m.SessionListResult.parse, "session_list", limit=limit, after=after
        )
        peers = [Peer(s.user_id, s.state, s.call_type) for s in result.sessions]
        return SessionPage(peers, result.total, result.truncated)

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
        media = self.media
        if media is None:
            return
        note = await media.switch_speaker()
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

        call = self.machine.need_call()
        media = self.media
        if call.state is not CallState.CONNECTED or media is None:
            raise UsageError("recording starts once the call is connected")
        if media.recorder is not None:
            return str(media.recorder.path)
        me = self.machine.me or "me"
        target = path or self.config.media.record_file or default_path(me, call.peer)
        video = call.call_type is CallType.VIDEO
        if not await media.start_recording(target, video=video, me=me, call_id=call.call_id or ""):
            # raced with another start: that one records
            return str(media.recorder.path) if media.recorder is not None else target
        with contextlib.suppress(OmniError):
            await self.signaling.request("recording", on=True)
        return target

    async def recording_stop(self) -> str | None:
        """Finish the recording file and tell the peer; its path (None if none ran)."""
        run = self._run
        if run is None or self.media is None or run.media.recorder is None:
            return None
        path = await self._stop_recording(run)
        with contextlib.suppress(OmniError):
            await self.signaling.request("recording", on=False)
        return path

    async def _stop_recording(self, run: CallRun) -> str:
        return await run.media.stop_recording(self.machine.me or "me", run.call.call_id or "")

    async def stats(self) -> CallFigures | None:
        """The current call's figures now (None unless connected)."""
        run = self._run
        if run is None or run.call.connected_at is None or self.media is None:
            return None
        return await run.figures()

    async def next_event(self, timeout: float | None = None) -> ev.CallEvent:
        async with asyncio.timeout(timeout):
            return await self.events.get()

    async def close(self) -> None:
        """Hang up if needed, then close the session and every task."""
        if self._closing:
            return
        with contextlib.suppress(OmniError):
            if self.machine.call is not None or self.machine.ringing:
                await self.leave()
        self._closing = True
        if self._run is not None:
            await self._drop(self._run)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.signaling.close()

    # -- internals: carrying out the call state's actions -----------------------------

    def _act(self, actions: list[Action]) -> None:
        """Carry out `actions` in order; what follows a call's end waits for it."""
        for i, action in enumerate(actions):
            if isinstance(action, EndCall):
                self._spawn(self._act_inline(actions[i:]))
                return
            self._do(action)

    async def _act_inline(self, actions: list[Action]) -> None:
        """Carry out `actions` in order, awaiting a call's end."""
        for action in actions:
            if isinstance(action, EndCall):
                await self._finish(action.call, action.reason, action.by)
            else:
                self._do(action)

    def _do(self, action: Action) -> None:
        run = self._run if self._run is not None and self._run.call is self.machine.call else None
        match action:
            case Emit(event=event):
                self._emit(event)
            case AcceptAnswer(sdp=sdp) if run is not None:
                self._spawn(run.take_answer(sdp, self.config.media.connect_timeout), run)
            case SendMutes(tracks=tracks) if run is not None:
                self._spawn(run.send_mutes(tracks), run)
            case StartStats() if run is not None:
                self._spawn(run.sample_stats(), run)
                self._keep_media_alive(run)
            case StartRecording() if run is not None:
                self._spawn(self._auto_record(), run)
            case SendLeave(call_id=call_id):
                self._spawn(self._request_quietly("leave", call_id=call_id))
            case ReportMedia():
                self._spawn(self._request_quietly("media_state", state="connected"))
            case _:
                log.debug("no call to carry out %s for", type(action).__name__)
        self._ring_changed.set()

    # -- internals: media --------------------------------------------------------------

    async def _open_media(self, call_type: CallType) -> tuple[CallMedia, list[str]]:
        """A call's media with its sources open, and notes on devices that fell back."""
        from omnicli.phone.callmedia import CallMedia

        return await CallMedia.open(_MediaHost(self), call_type.value)

    @staticmethod
    async def _discard(media: CallMedia) -> None:
        """Media opened for a call that could not begin."""
        media.retire()
        await media.close()

    async def set_video_quality(
        self,
        *,
        size: tuple[int, int] | None = None,
        fps: int | None = None,
        max_bitrate: int | None = None,
    ) -> None:
        """Change what video is sent (None: keep): capture size, frame rate, and the video
        bitrate ceiling in bit/s (0: no ceiling); now and for later calls, mid-call without
        renegotiating. A new size or frame rate reopens the video source with them (through
        the source switch); the ceiling applies to the encoder at once."""
        check_quality(size, fps, max_bitrate)
        m_ = self.config.media
        width, height = size or (m_.width, m_.height)
        rate = m_.fps if fps is None else fps
        cap = m_.max_bitrate if max_bitrate is None else max_bitrate
        new = replace(m_, width=width, height=height, fps=rate, max_bitrate=cap)
        self.config = replace(self.config, media=new)
        media = self.media
        if media is None:
            return
        if max_bitrate is not None:
            media.link.set_max_bitrate(max_bitrate or None)
        reshaped = (width, height, rate) != (m_.width, m_.height, m_.fps)
        if reshaped and media.link.sends("video"):
            media.use_source("video", await media.reopen_source("video"))

    def _start_run(self, call: Call, media: CallMedia) -> CallRun:
        self._run = CallRun(call, media, self.signaling.request, self._emit)
        return self._run

    async def _request_quietly(self, op: str, **fields: Any) -> None:
        with contextlib.suppress(OmniError):
            await self.signaling.request(op, **fields)

    async def _switch_source(self, track: Track, spec: str) -> None:
        """Later calls use `spec` too; a call in progress switches now."""
        m_ = self.config.media
        media = self.media
        if media is not None and not media.link.sends(track.value):
            raise UsageError(f"this call sends no {track.value}")
        source = None if media is None else await media.open_source(track.value, spec)
        key = "video_source" if track is Track.VIDEO else "audio_source"
        self.config = replace(self.config, media=replace(m_, **{key: spec}))  # type: ignore[arg-type]  # key names a str field
        if media is not None:
            media.use_source(track.value, source)  # stops it if the call ended

    async def send_dtmf(self, digits: str) -> None:
        """Touch tones (0-9 * # A-D) to the SIP phone of this answered sipcall."""
        call = self.machine.need_call()
        if call.call_type is not CallType.SIP:
            raise UsageError("touch tones go to SIP calls only (call sip:...)")
        if not DTMF_RE.fullmatch(digits) or len(digits) > MAX_DTMF:
            raise UsageError(f"touch tones are 1 to {MAX_DTMF} of 0-9 * # A-D, not '{digits[:40]}'")
        if call.state not in (CallState.CONNECTING, CallState.CONNECTED):
            raise UsageError("the call is not answered yet")
        await self.signaling.request("dtmf", digits=digits, call_id=call.call_id)

    async def _set_muted(self, track: Track, muted: bool) -> None:
        call = self.machine.need_call()
        media = self.media
        if media is None or not media.link.sends(track.value):
            raise UsageError(f"this call sends no {track.value}")
        out = media.link.video_out if track is Track.VIDEO else media.link.audio_out
        out.set_muted(muted)
        if call.call_type is CallType.SIP:
            state = "muted" if muted else "unmuted"
            self._emit(ev.Notice(f"{track.value} {state} here only: SIP cannot tell the phone"))
        if self.machine.set_muted(track, muted):
            await self.signaling.request(
                "mute" if muted else "unmute", track=track.value, call_id=call.call_id
            )

    async def _auto_record(self) -> None:
        try:
            await self.recording_start()
        except OmniError as exc:
            self._emit(ev.Notice(f"cannot record: {exc}"))

    # -- internals: the signaling connection --------------------------------------------

    def _on_server_event(self, event: m.ServerEvent) -> None:
        if isinstance(event, m.MediaRestartEvent):  # the media restart's own business
            run = self._run
            if run is not None and run.restart is not None and run.call.call_id == event.call_id:
                run.restart.on_event(event)
            return
        self._act(self.machine.receive(event, time.monotonic()))

    def _keep_media_alive(self, run: CallRun) -> None:
        """A connected call gets a new peer connection when its media path dies."""
        limit = self.config.media.media_recovery
        if limit <= 0 or run.restart is not None:
            return
        from omnicli.phone.mediarestart import MediaRestart, RestartHooks

        async def end_call(reason: EndReason) -> None:
            await self._finish(run.call, reason, None)

        hooks = RestartHooks(
            request=self.signaling.request,
            emit=self._emit,
            spawn=lambda coro: self._spawn(coro, run),
            signaling_up=lambda: self.signaling.connected and not self.reconnector.active,
            local_address=self.signaling.local_address,
            drop_signaling=self.signaling.drop,
            ice_servers=lambda: self.ice_servers,
            relay_only=self.config.media.ice_relay_only,
            end_call=end_call,
        )
        run.restart = MediaRestart(run.call, run.media, hooks, limit=limit)
        run.restart.start()

    async def _ensure_connected(self) -> None:
        """Connect if the socket is down; never beside a resume, which owns reconnecting."""
        if self.signaling.connected:
            return
        if self.reconnector.active:
            raise ServerUnreachable("reconnecting to the server; try again in a moment")
        await self.connect()

    def _on_server_closed(self, reason: str) -> None:
        if self._closing:
            return
        if self.reconnector.take_over(reason):  # media goes on; session back or call ended
            return
        self._session_lost(reason)  # call ended, ringing dropped, offline, SERVER_LOST

    def _can_resume(self) -> bool:
        return (
            self.machine.session is not None
            and bool(self.resume_token)
            and self.resume_grace > 0
            and self.signaling.close_code != CLOSE_KICKED_OUT
        )

    def _session_lost(self, reason: str) -> None:
        self.resume_token = None
        self._act(self.machine.session_lost(reason))

    async def _attempt_resume(self) -> m.ResumeResult:
        """One try: a new socket and hello if needed, then `resume`. Any failure closes the
        socket so that the next try starts afresh."""
        call = self.machine.call
        local = None if call is None else call.local(self._media_up())
        try:
            if not self.signaling.connected:
                await self.connect()  # a new websocket and hello
            return await self.signaling.ask(
                m.ResumeResult.parse,
                "resume",
                resume_token=self.resume_token,
                **declaration(local),
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await self.signaling.close()  # the next attempt starts from a new socket
            raise

    def _media_up(self) -> bool:
        media = self.media
        return media is not None and getattr(media.link, "state", None) == "connected"

    async def _resumed(self, result: m.ResumeResult, downtime_ms: float, attempts: int) -> None:
        self._take_session(result.session)
        actions = self.machine.resumed(
            result,
            media_up=self._media_up(),
            downtime_ms=downtime_ms,
            attempts=attempts,
            now=time.monotonic(),
        )
        await self._act_inline(actions)

    # -- internals: bookkeeping --------------------------------------------------------

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

    def _spawn(self, coro: Coroutine[Any, Any, Any], run: CallRun | None = None) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if run is not None:
            run.own(task)

    def _emit(self, event: ev.CallEvent) -> None:
        self.events.put_nowait(event)


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


__all__ = [
    "CallInfo",
    "CallState",
    "MediaOptions",
    "Peer",
    "Phone",
    "PhoneConfig",
    "SessionInfo",
    "SessionPage",
]
