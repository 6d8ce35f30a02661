"""The call-core: an SDK-like phone that the CLI and the REPL both drive.

`Phone` mirrors the Omnitalk SDK: `create_session`, `session_list`, `offer_call`,
`answer_call`, `leave`, `set_mute`/`set_unmute`, and a stream of typed events
(`omnicli.phone.events`). It is the thin async driver of three parts: the pure call
state (`callstate.CallMachine`: typed server events in, actions out), the signaling
client and each call's media (`callmedia.CallMedia`); reconnection is
`resume.Reconnector`. It never prints, and it imports aiortc only when a call needs media.

This module holds the session, the state front ends read and the carrying out of the
call state's actions; the rest of `Phone` is written in three parts it inherits, each
on the same state: `dialer.Dialer` (offer, answer, leave, a call's end),
`controls.CallControls` (mutes, sources, quality, recording, touch tones, figures)
and `resilience.Resilience` (resuming the session, restarting a call's media). Its
config and `session_list` rows are `phone.config`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from omnicli.errors import (
    OmniError,
    UsageError,
)
from omnicli.phone import events as ev
from omnicli.phone.callrun import CallRun
from omnicli.phone.callstate import (
    AcceptAnswer,
    Action,
    CallInfo,
    CallMachine,
    CallState,
    Emit,
    EndCall,
    ReportMedia,
    SendLeave,
    SendMutes,
    SessionInfo,
    StartRecording,
    StartStats,
)
from omnicli.phone.config import MediaOptions, Peer, PhoneConfig, SessionPage
from omnicli.phone.controls import CallControls
from omnicli.phone.dialer import Dialer
from omnicli.phone.resilience import Resilience
from omnicli.phone.resume import Reconnector, ResumeHooks
from omnicli.phone.signaling import SignalingClient
from omnicli.wire import messages as m
from omnicli.wire.protocol import (
    VERSION,
    CallType,
    Track,
    check_user_id,
)

if TYPE_CHECKING:
    from omnicli.phone.callmedia import CallMedia

log = logging.getLogger("omnicli.phone.core")


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


class Phone(Dialer, CallControls, Resilience):
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

    # -- internals: media and signaling ------------------------------------------------

    async def _open_media(self, call_type: CallType) -> tuple[CallMedia, list[str]]:
        """A call's media with its sources open, and notes on devices that fell back."""
        from omnicli.phone.callmedia import CallMedia

        return await CallMedia.open(_MediaHost(self), call_type.value)

    async def _request_quietly(self, op: str, **fields: Any) -> None:
        with contextlib.suppress(OmniError):
            await self.signaling.request(op, **fields)

    def _on_server_event(self, event: m.ServerEvent) -> None:
        if isinstance(event, m.MediaRestartEvent):  # the media restart's own business
            run = self._run
            if run is not None and run.restart is not None and run.call.call_id == event.call_id:
                run.restart.on_event(event)
            return
        self._act(self.machine.receive(event, time.monotonic()))

    # -- internals: bookkeeping --------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any], run: CallRun | None = None) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if run is not None:
            run.own(task)

    def _emit(self, event: ev.CallEvent) -> None:
        self.events.put_nowait(event)


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
