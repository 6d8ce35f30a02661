"""How a phone comes back from a failure without ending its call.

`Resilience` is the part of `Phone` (`phone.core`) that drives the two recoveries: the
signaling connection dropped (`resume.Reconnector` retries; these are its hooks: may
we resume, one attempt, what the server said, the session lost), and a connected
call's media path died (`mediarestart.MediaRestart`, a new peer connection for the
same call, started here for each connected call when `media_recovery` is on).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from omnicli.errors import ServerUnreachable
from omnicli.phone import events as ev
from omnicli.phone.callrun import CallRun
from omnicli.phone.callstate import Action, Call, CallMachine
from omnicli.phone.config import PhoneConfig
from omnicli.phone.reconcile import declaration
from omnicli.phone.resume import Reconnector
from omnicli.phone.signaling import SignalingClient
from omnicli.wire import messages as m
from omnicli.wire.protocol import CLOSE_KICKED_OUT, EndReason

if TYPE_CHECKING:
    from omnicli.phone.callmedia import CallMedia


class Resilience:
    """Resuming the session, restarting a call's media: a part of `Phone`, on its state."""

    config: PhoneConfig
    machine: CallMachine
    signaling: SignalingClient
    reconnector: Reconnector
    resume_token: str | None
    resume_grace: float
    ice_servers: list[dict[str, Any]]
    _closing: bool

    if TYPE_CHECKING:

        @property
        def media(self) -> CallMedia | None: ...
        async def connect(self) -> None: ...
        def _take_session(self, result: m.SessionResult) -> None: ...
        def _act(self, actions: list[Action]) -> None: ...
        async def _act_inline(self, actions: list[Action]) -> None: ...
        async def _finish(self, call: Call, reason: EndReason, by: str | None) -> None: ...
        def _emit(self, event: ev.CallEvent) -> None: ...
        def _spawn(self, coro: Coroutine[Any, Any, Any], run: CallRun | None = None) -> None: ...

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
