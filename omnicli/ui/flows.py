"""The one-shot flows the CLI runs on a Phone: a call, an answering loop, the demo.

Each flow consumes the phone's events, hands them to an `Output`, and decides when
to hang up (duration elapsed, Ctrl-C, `q` in the window). No Typer here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, TypeVar

from omnicli.errors import CallRejected, ExitCode, OmniError
from omnicli.phone import events as ev
from omnicli.phone.core import Phone
from omnicli.phone.endings import exit_code_for_reason
from omnicli.phone.figures import CallFigures
from omnicli.ui.callwindow import Window
from omnicli.ui.render import Output
from omnicli.wire.protocol import EndReason

T = TypeVar("T")
HANGUP_GRACE = 10.0  # after asking to hang up, how long to wait for the call's LEAVE
RING_WATCH_S = 0.25  # how often a waiting `omni answer` looks for other calls ringing
NO_MEDIA_AFTER_S = 2.0  # a connected call with nothing from the peer this long says so


def media_gap(figures: CallFigures, peer_muted: AbstractSet[str] = frozenset()) -> float | None:
    """Seconds since anything came from the peer, over the tracks it has not muted.

    None when no track has delivered anything yet or every track is muted by the peer.
    """
    probes = {"audio": figures.audio_in, "video": figures.video_in}
    gaps = [probe.get("paused_for_s") for track, probe in probes.items() if track not in peer_muted]
    known = [g for g in gaps if g is not None]
    return min(known) if known else None


@dataclass
class Stopper:
    """First Ctrl-C (or `q`) asks for a clean hang-up; a second one exits at once."""

    event: asyncio.Event
    presses: int = 0
    before_exit: Callable[[], None] | None = None  # e.g. give the terminal back

    @classmethod
    def install(cls) -> Stopper:
        stopper = cls(asyncio.Event())
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGINT, stopper.press)
            loop.add_signal_handler(signal.SIGTERM, stopper.press)
        return stopper

    def press(self) -> None:
        self.presses += 1
        if self.presses > 1:
            if self.before_exit is not None:
                with contextlib.suppress(Exception):
                    self.before_exit()
            os._exit(int(ExitCode.INTERRUPTED))
        self.event.set()

    def hang_up(self) -> None:
        """`q` in the window: ask for the clean hang-up; pressing it again never kills."""
        self.event.set()


async def until_stopped(aw: Awaitable[T], stop: asyncio.Event) -> tuple[bool, T | None]:
    """Await `aw` unless `stop` is set first, then cancel it: (stopped, its result)."""
    task = asyncio.ensure_future(aw)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        stopper.cancel()
    if task.done():
        return False, task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, OmniError):
        await task
    return True, None


async def follow_call(
    phone: Phone,
    out: Output,
    *,
    duration: float,
    stop: asyncio.Event,
    window: Window | None = None,
    offline_wait: float | None = None,
) -> ev.Leave:
    """Render events until the call ends; hang up after `duration` s connected or on stop.

    A callee not online when called is said at once. `offline_wait` (seconds; None: as
    long as the server rings) is how long such a call may wait for the callee to come
    online and answer; when it runs out the call is cancelled and CallRejected raised.
    """
    loop = asyncio.get_running_loop()
    deadline: float | None = None
    give_up_at: float | None = None  # the offline callee's time to come online and answer
    gave_up: str | None = None
    hung_up = False
    answered = False  # ANSWERED or CONNECTED seen: leaving now hangs up, not cancels
    peer_muted: set[str] = set()
    while True:
        ends = [t for t in (deadline, give_up_at) if t is not None]
        timeout = max(0.0, min(ends) - loop.time()) if ends else None
        getter = asyncio.ensure_future(phone.next_event())
        waiting: set[asyncio.Future[Any]] = {getter}
        stopper = None if hung_up else asyncio.ensure_future(stop.wait())
        if stopper is not None:
            waiting.add(stopper)
        done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if stopper is not None:
            stopper.cancel()
        if getter not in done:
            getter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await getter
            if hung_up:  # asked to leave and no LEAVE came: the call is over here anyway
                if gave_up:
                    raise CallRejected(EndReason.UNAVAILABLE, gave_up)
                call_id = phone.call.call_id if phone.call else ""
                return ev.Leave(call_id, EndReason.HANGUP, None)
            overdue = give_up_at is not None and loop.time() >= give_up_at
            if overdue and gave_up is None and not stop.is_set():
                callee = phone.call.peer if phone.call else "the callee"
                gave_up = f"{callee} did not come online and answer within {offline_wait:g} s"
            give_up_at = None
            hung_up = True
            out.status("hanging up…" if answered else "cancelling the call…")
            await phone.leave()
            deadline = loop.time() + HANGUP_GRACE  # the LEAVE is normally already queued
            continue
        event = getter.result()
        out.event(event)
        if window is not None:
            window.on_event(event)
        match event:
            case ev.Ringback(callee=callee, callee_online=False) if not hung_up:
                if offline_wait == 0:
                    gave_up = f"{callee} is not online"
                    give_up_at = loop.time()  # cancel now, through the hang-up path
                    continue
                how_long = (
                    f"up to {offline_wait:g} s" if offline_wait else "as long as the server rings"
                )
                out.status(
                    f"{callee} is not online: the call waits {how_long} for {callee} to come "
                    "online and answer; Ctrl-C cancels",
                    "yellow",
                )
                if offline_wait:
                    give_up_at = loop.time() + offline_wait
            case ev.Answered() | ev.Connected():
                give_up_at, answered = None, True
            case ev.Mute(track=track) if phone.call and event.user_id == phone.call.peer:
                peer_muted.add(track)
            case ev.Unmute(track=track) if phone.call and event.user_id == phone.call.peer:
                peer_muted.discard(track)
            case ev.Stats(figures=figures) if phone.call and not hung_up:
                gap = media_gap(figures, frozenset(peer_muted))
                if gap is not None and gap >= NO_MEDIA_AFTER_S:
                    out.status(f"no media from {phone.call.peer} for {gap:.0f} s", "yellow")
        if isinstance(event, ev.Connected) and duration > 0 and not hung_up:
            deadline = loop.time() + duration
        if isinstance(event, ev.Leave):
            if gave_up:
                raise CallRejected(EndReason.UNAVAILABLE, gave_up)
            return event
        if isinstance(event, ev.ServerLost) and phone.call is None:
            return ev.Leave("", EndReason.CONNECTION_LOST, None)


async def answer_waiting(
    phone: Phone, out: Output, call_type: str | None, caller: str, wait: float
) -> None:
    """Answer `caller`'s call, saying what is awaited and which other calls ring here.

    A call from someone else rings here while waiting: say who, and how to answer it;
    when the wait runs out, the error names them too.
    """
    me = phone.session.user_id if phone.session else "you"
    if caller not in phone.ringing_from:
        out.status(f"waiting up to {wait:g} s for {caller} to call {me}; Ctrl-C gives up")
    told: set[str] = set()

    def tell() -> None:
        for other in phone.ringing_from:
            if other != caller and other not in told:
                told.add(other)
                out.status(
                    f"{other} is calling {me}, not {caller}: "
                    f"omni answer {other} --user-id {me} answers that call",
                    "yellow",
                )

    async def watch() -> None:
        while True:
            tell()
            await asyncio.sleep(RING_WATCH_S)

    watcher = asyncio.ensure_future(watch())
    try:
        await phone.answer_call(call_type, caller, wait=wait)
    except CallRejected as exc:
        others = [o for o in phone.ringing_from if o != caller]
        if exc.reason != "no_call" or not others:
            raise
        raise CallRejected(
            exc.reason, f"{exc}; ringing for {me} instead: {', '.join(others)}"
        ) from None
    finally:
        watcher.cancel()


async def answer_forever(
    phone: Phone,
    out: Output,
    *,
    stop: asyncio.Event,
    auto_answer: bool,
    ask: Callable[[ev.Ringing], Any] | None = None,
    max_calls: int = 0,
    window: Window | None = None,
) -> int:
    """Stay online; answer calls (by itself or after asking) until stopped.

    `window`, started once for the session, opens for each call answered and hides
    when it ends: no window work on the event loop, however many calls (issue #12).
    """
    calls = 0
    while not stop.is_set():
        getter = asyncio.ensure_future(phone.next_event())
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if getter not in done:
            getter.cancel()
            break
        event = getter.result()
        out.event(event)
        if isinstance(event, ev.ServerLost):
            return int(ExitCode.UNREACHABLE)
        if not isinstance(event, ev.Ringing):
            continue
        if not auto_answer and ask is None:
            continue  # nobody to ask: let it ring until the caller or the timer ends it
        if not auto_answer:
            assert ask is not None
            stopped, yes = await until_stopped(ask(event), stop)
            if stopped:  # Ctrl-C while asking: decline and leave
                await phone.leave()
                break
            if not yes:
                await phone.leave()
                continue
        if window is not None:
            window.bind(phone)
            window.open()
            phone.video_sink, phone.preview_sink = window.show, window.preview
        try:
            try:
                await phone.answer_call(event.call_type, event.caller)
            except Exception as exc:  # the caller may have given up meanwhile
                out.status(f"could not answer {event.caller}: {exc}", "yellow")
                continue
            leave = await follow_call(phone, out, duration=0, stop=stop, window=window)
        finally:
            if window is not None:
                phone.video_sink = phone.preview_sink = None
                window.hide()
        calls += 1
        if max_calls and calls >= max_calls:
            return exit_code_for_reason(leave.reason)
    return int(ExitCode.OK)
