"""One call in progress, as the driver runs it: its media, its tasks and its figures.

`CallRun` is what `Phone` holds beside the pure call state (`callstate.Call`): the
call's `CallMedia`, the tasks that belong to the call (cancelled when it ends), the
running stats for its summary, and the small jobs those tasks do: take the callee's
answer, report our media state to the server, sample the figures every second (and hand
the allocator's free memory back every 10 s: `media/allocator.py`), send mutes made
before the answer. It talks to the server through a `Requester` (the
signaling client's `request`) and to the user through `emit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from omnicli.errors import MediaFailed, OmniError
from omnicli.media import allocator
from omnicli.phone import events as ev
from omnicli.phone.callstate import Call
from omnicli.phone.figures import CallFigures
from omnicli.phone.summary import RunningStats, summarize
from omnicli.wire.protocol import EndReason, Track

if TYPE_CHECKING:
    from omnicli.media.peer import PeerLink
    from omnicli.phone.callmedia import CallMedia
    from omnicli.phone.mediarestart import MediaRestart

log = logging.getLogger("omnicli.phone.callrun")

STATS_INTERVAL = 1.0


class Requester(Protocol):
    def __call__(self, op: str, **fields: Any) -> Awaitable[dict[str, Any]]: ...


@dataclass(eq=False)
class CallRun:
    """The running parts of one call."""

    call: Call
    media: CallMedia
    request: Requester
    emit: Callable[[ev.CallEvent], None]
    stats: RunningStats = field(default_factory=RunningStats)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    restart: MediaRestart | None = None  # re-establishes dead media (see mediarestart.py)

    def __post_init__(self) -> None:
        self.media.muted = self.call.muted  # one set: the call state's
        allocator.limit_arenas()  # before the media's decoder and encoder threads start

    @property
    def link(self) -> PeerLink:
        return self.media.link

    def own(self, task: asyncio.Task[Any]) -> None:
        """`task` belongs to this call: it is cancelled when the call ends."""
        self.tasks.append(task)

    async def request_quietly(self, op: str, **fields: Any) -> None:
        with contextlib.suppress(OmniError):
            await self.request(op, **fields)

    async def report_media(self, state: str) -> None:
        """Tell the server our side's media is `connected` or `failed` (best effort)."""
        await self.request_quietly("media_state", state=state, call_id=self.call.call_id)

    async def watch_media(self, timeout: float) -> None:
        """Report our side's media state to the server, which announces CONNECTED."""
        try:
            await self.link.wait_connected(timeout)
        except MediaFailed as exc:
            self.emit(ev.Notice(f"media failed: {exc}"))
            await self.report_media("failed")
            return
        await self.report_media("connected")

    async def take_answer(self, sdp: str, timeout: float) -> None:
        """The callee's answer SDP, then watch the media come up."""
        try:
            await self.link.accept_answer(sdp)
        except Exception as exc:  # a broken answer SDP ends the call as a media failure
            log.debug("bad answer SDP", exc_info=True)
            self.emit(ev.Notice(f"cannot use the callee's answer: {exc}"))
            await self.report_media("failed")
            return
        await self.watch_media(timeout)

    async def send_mutes(self, tracks: tuple[Track, ...]) -> None:
        for track in tracks:
            await self.request_quietly("mute", track=track.value, call_id=self.call.call_id)

    async def figures(self) -> CallFigures:
        return CallFigures.of(await self.link.stats())

    async def sample_stats(self, interval: float = STATS_INTERVAL) -> None:
        """Every `interval` s: the figures, into the summary and out as STATS; every
        `allocator.TRIM_EVERY` s, the allocator's free memory back to the kernel."""
        loop = asyncio.get_running_loop()
        trimmed = loop.time()
        while True:
            await asyncio.sleep(interval)
            figures = await self.figures()
            self.stats.add(figures)
            self.emit(ev.Stats(figures, self.call.call_id or ""))
            if loop.time() - trimmed >= allocator.TRIM_EVERY:
                trimmed = loop.time()
                await asyncio.to_thread(allocator.trim)

    def summary(self, reason: EndReason, ended: float, received: dict[str, Any]) -> dict[str, Any]:
        connected = self.call.connected_at
        return summarize(
            self.stats,
            duration_s=(ended - connected) if connected else 0.0,
            reason=reason,
            received=received,
        )

    def received(self) -> dict[str, Any]:
        """What the receive probes counted, for the summary."""
        return {"video": self.link.video_in.snapshot(), "audio": self.link.audio_in.snapshot()}

    async def close(self) -> None:
        """Cancel the call's tasks (not the one running this) and close its media."""
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()
        self.media.retire()
        await self.media.close()  # speaker, unfinished recording, then the link


__all__ = ["STATS_INTERVAL", "CallRun", "Requester"]
