"""Failure paths of the call-core and the CLI: nothing stuck, nothing unexplained."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import replace
from statistics import fmean
from typing import Any

import pytest
import typer
from phones import call_connected, make_phone, until
from procs import Omni, start_server

from omnicli.errors import MediaFailed, UsageError
from omnicli.media.jitter import RESET_GAP, AudioJitter
from omnicli.phone import events as ev
from omnicli.phone.core import Phone
from omnicli.phone.signaling import SignalingClient
from omnicli.phone.summary import RunningStats, summarize
from omnicli.server.driver import ServerConfig, SignalingServer
from omnicli.ui import cliapp
from omnicli.ui import flows as runner
from omnicli.ui.flows import Stopper, answer_forever, follow_call, until_stopped
from omnicli.wire import messages as m


@pytest.fixture
async def server():
    async with SignalingServer(ServerConfig(port=0, ring_timeout=30)) as srv:
        yield srv


def phone(srv: SignalingServer, video: str = "test") -> Phone:
    return make_phone(srv.url, video_source=video, audio_source="tone", width=160, height=120)


async def pair(srv: SignalingServer) -> tuple[Phone, Phone]:
    alice, bob = phone(srv), phone(srv)
    await alice.create_session("alice")
    await bob.create_session("bob")
    return alice, bob


def _without_ice(sdp: str) -> str:
    return "\r\n".join(
        line for line in sdp.split("\r\n") if not line.startswith(("a=ice-ufrag", "a=ice-pwd"))
    )


async def test_answer_with_unusable_offer_is_media_failed_and_frees_the_caller(server):
    """An offer aiortc rejects: MediaFailed (one line), the caller hears LEAVE, can call again."""
    alice, bob = await pair(server)
    try:
        await alice.offer_call("audiocall", "bob")
        await until(bob, ev.Ringing)
        offer = bob.machine.ringing["alice"]
        bob.machine.ringing["alice"] = replace(offer, sdp=_without_ice(offer.sdp))
        with pytest.raises(MediaFailed, match="cannot answer the call from alice") as info:
            await bob.answer_call(caller="alice")
        assert "\n" not in str(info.value)
        leave = await until(alice, ev.Leave)
        assert leave.reason == "declined"
        await alice.offer_call("audiocall", "bob")  # not 412: the server let the call go
        assert (await until(bob, ev.Ringing)).caller == "alice"
    finally:
        await alice.close()
        await bob.close()


async def test_an_offer_without_media_lines_fails_at_once(server):
    """An offer whose SDP has no m= line (nothing to connect) is answered and ended with
    media_failed at once on the callee, instead of holding it busy until its media timeout."""
    bob = phone(server)
    await bob.create_session("bob")
    heard: asyncio.Queue[Any] = asyncio.Queue()
    alice = SignalingClient(server.url, on_event=heard.put_nowait)
    await alice.connect()
    try:
        await alice.request("hello", version=1, service_id="dev")
        await alice.request("create_session", user_id="alice")
        empty = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
        await alice.request("offer_call", call_type="videocall", callee="bob", sdp=empty)
        await until(bob, ev.Ringing)
        started = time.monotonic()
        await bob.answer_call(caller="alice")
        leave = await until(bob, ev.Leave, timeout=5)
        assert leave.reason == "media_failed"
        async with asyncio.timeout(5):
            while not isinstance(event := await heard.get(), m.EndedEvent):
                pass
        assert (event.reason, event.cancel) == ("media_failed", False)
        assert time.monotonic() - started < 3  # not the 15 s media timeout
        assert [p.state for p in await bob.session_list() if p.user_id == "bob"] == ["idle"]
    finally:
        await alice.close()
        await bob.close()


async def test_offer_cancelled_after_it_was_sent_is_left_on_the_server(server):
    """Cancelling offer_call once the request went out still cancels the call at the callee."""
    alice, bob = await pair(server)
    real = alice.signaling.request

    async def slow_offer(op: str, **fields: Any) -> dict[str, Any]:
        result = await real(op, **fields)
        if op == "offer_call":
            await asyncio.sleep(3600)  # the answer is "late": the caller gives up meanwhile
        return result

    alice.signaling.request = slow_offer  # type: ignore[method-assign]
    try:
        task = asyncio.ensure_future(alice.offer_call("audiocall", "bob"))
        await until(bob, ev.Ringing)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        cancel = await until(bob, ev.Cancel)
        assert cancel.by == "alice"
        alice.signaling.request = real  # type: ignore[method-assign]
        await alice.offer_call("audiocall", "bob")
        assert (await until(bob, ev.Ringing)).caller == "alice"
    finally:
        await alice.close()
        await bob.close()


async def test_offer_while_a_call_rings_here_is_a_clear_usage_error(server):
    """offer_call with a call ringing here names the caller instead of a server 412."""
    alice, bob = await pair(server)
    carol = phone(server)
    try:
        await carol.create_session("carol")
        await alice.offer_call("audiocall", "bob")
        await until(bob, ev.Ringing)
        with pytest.raises(UsageError, match="a call from alice is ringing"):
            await bob.offer_call("audiocall", "carol")
    finally:
        for p in (alice, bob, carol):
            await p.close()


async def test_mute_before_the_answer_is_kept_and_sent_once_answered(server):
    """The caller mutes while ringing: no error, and the callee hears MUTE after answering."""
    alice, bob = await pair(server)
    try:
        await alice.offer_call("audiocall", "bob")
        await alice.set_mute("audio")  # the server would refuse this with 412
        assert alice.muted == {"audio"}
        await until(bob, ev.Ringing)
        await bob.answer_call(caller="alice")
        mute = await until(bob, ev.Mute)
        assert (mute.user_id, mute.track) == ("alice", "audio")
    finally:
        await alice.close()
        await bob.close()


async def connected(srv: SignalingServer) -> tuple[Phone, Phone]:
    alice, bob = phone(srv), phone(srv)
    await call_connected(alice, bob)
    return alice, bob


class _BrokenRecorder:
    path = "x.mp4"

    def add_video(self, _: Any) -> None: ...
    def add_audio(self, *_: Any) -> None: ...
    def finish(self) -> None: ...

    def stop(self) -> Any:
        raise OSError("No space left on device")


async def test_a_failing_recording_still_ends_the_call_with_leave(server):
    """_finish with a recorder that fails to stop: link closed and LEAVE emitted all the same."""
    alice, bob = await connected(server)
    try:
        media = alice.media
        media.recorder = _BrokenRecorder()
        assert await alice.leave() == "hangup"
        leave = await until(alice, ev.Leave)
        assert leave.reason == "hangup" and leave.summary["reason"] == "hangup"
        assert media.link.pc.connectionState == "closed"
        assert alice.call is None
        await until(bob, ev.Leave)
    finally:
        await alice.close()
        await bob.close()


async def test_a_late_device_loss_from_another_source_is_ignored(server):
    """on_lost from a source (or speaker) the call no longer uses changes nothing."""
    alice, bob = await connected(server)
    try:
        media = alice.media
        current = media.link.video_out.source

        class Speaker:
            closed = False

            def close(self) -> None:
                self.closed = True

        speaker = Speaker()
        media.speaker = speaker
        media.device_lost("video", "camera 0 stopped", object())  # a previous call's camera
        media.device_lost("speaker", "speaker stopped", object())
        assert media.link.video_out.source is current and not speaker.closed
        media.device_lost("video", "camera 0 stopped", current)  # this call's: falls back
        notice = await until(alice, ev.Notice)
        assert "camera 0 stopped" in notice.text
        assert media.link.video_out.source is not current
        media.speaker = None
    finally:
        await alice.close()
        await bob.close()


def test_running_stats_summary_equals_the_summary_of_all_samples():
    """The O(1) running sums give the same averages and resolution as the full list."""
    rng = random.Random(7)
    samples = [
        {
            "rtt_ms": rng.uniform(0, 80),
            "fps_in": rng.choice([None, 29.5, 30]),
            "loss_pct": rng.uniform(0, 3),
            "width_in": 640,
            "height_in": 480,
        }
        for _ in range(500)
    ]
    stats = RunningStats()
    for s in samples:
        stats.add(s)
    got = summarize(stats, duration_s=5, reason="hangup", received={})
    assert got == summarize(samples, duration_s=5, reason="hangup", received={})
    assert got["avg_rtt_ms"] == round(fmean(s["rtt_ms"] for s in samples), 1)
    assert got["resolution_in"] == "640x480" and got["avg_jitter_ms"] is None


def test_audio_jitter_follows_a_stream_that_restarts_far_behind():
    """A restart more than RESET_GAP back is a new stream, not 'late' packets forever."""
    jb = AudioJitter()
    now = 0.0
    for seq in range(5000, 5010):
        jb.push(seq, f"p{seq}", now)
    start = 5009 - RESET_GAP - 500
    released = []
    for seq in range(start, start + 10):
        now += 0.02
        released += [slot.seq for slot in jb.push(seq, f"q{seq}", now) if slot.packet]
    assert released == list(range(start, start + 10))
    assert jb.stats.late == 0


class _Quiet:
    """A phone whose call never sends LEAVE: leave() returns at once."""

    def __init__(self) -> None:
        self.left = 0
        self.call = None
        self.queue: asyncio.Queue[ev.CallEvent] = asyncio.Queue()

    async def next_event(self) -> ev.CallEvent:
        return await self.queue.get()

    async def leave(self) -> None:
        self.left += 1


class _Out:
    def status(self, *_: Any) -> None: ...
    def event(self, *_: Any) -> None: ...


async def test_follow_call_hangs_up_once_and_ends_without_a_leave(monkeypatch):
    """Stop set and no LEAVE coming: one leave(), then it ends (no spinning on stop.wait)."""
    monkeypatch.setattr(runner, "HANGUP_GRACE", 0.3)
    fake, stop = _Quiet(), asyncio.Event()
    stop.set()
    async with asyncio.timeout(10):
        leave = await follow_call(fake, _Out(), duration=0, stop=stop)  # type: ignore[arg-type]
    assert leave.reason == "hangup" and fake.left == 1


async def test_ctrl_c_while_asking_declines_and_stops():
    """answer_forever stops while 'answer? [y/N]' waits, declining the ringing call."""
    fake, stop = _Quiet(), asyncio.Event()
    fake.queue.put_nowait(ev.Ringing("c-1", "alice", "audiocall", False))
    asked = asyncio.Event()

    async def ask(_: Any) -> bool:
        asked.set()
        await asyncio.sleep(3600)
        return True

    task = asyncio.ensure_future(
        answer_forever(
            fake,
            _Out(),
            stop=stop,  # type: ignore[arg-type]
            auto_answer=False,
            ask=ask,
        )
    )
    await asyncio.wait_for(asked.wait(), 10)
    stop.set()
    assert await asyncio.wait_for(task, 10) == 0
    assert fake.left == 1


async def test_until_stopped_cancels_the_awaited_work():
    """until_stopped returns (True, None) on stop and cancels what it awaited."""
    stop = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever() -> int:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 1

    asyncio.get_running_loop().call_later(0.05, stop.set)
    assert await asyncio.wait_for(until_stopped(forever(), stop), 10) == (True, None)
    assert cancelled.is_set()

    async def quick() -> int:
        return 7

    assert await until_stopped(quick(), asyncio.Event()) == (False, 7)


async def test_the_window_q_key_never_kills_the_process():
    """Stopper.hang_up (the q key) only asks to hang up, however often it is pressed."""
    stopper = Stopper(asyncio.Event())
    stopper.hang_up()
    stopper.hang_up()
    assert stopper.event.is_set() and stopper.presses == 0


def test_run_turns_an_unexpected_exception_into_one_line(capsys):
    """cliapp.run: an exception that is no OmniError is `omni: unexpected error: ...`, exit 1."""

    async def flow() -> int:
        raise RuntimeError("boom\nsecond line")

    with pytest.raises(typer.Exit) as info:
        cliapp.run(flow)
    assert info.value.exit_code == 1
    err = capsys.readouterr().err
    assert err == "omni: unexpected error: RuntimeError: boom second line\n"


def test_ctrl_c_while_answer_waits_exits_130_promptly():
    """`omni answer --wait 60`: the first Ctrl-C ends it at once (130), no second needed."""
    srv, url = start_server()
    answer = None
    try:
        answer = Omni(
            "answer",
            "alice",
            "-u",
            "bob",
            "--wait",
            "60",
            "--server",
            url,
            "--json",
            "--no-window",
            "--audio-source",
            "silence",
        )
        answer.event("SESSION")
        time.sleep(0.5)  # let the flow reach its wait (a signal before would also work)
        answer.interrupt()
        started = time.monotonic()
        assert answer.wait(timeout=20) == 130, answer.stderr_lines
        assert time.monotonic() - started < 15
        assert not any("Traceback" in line for line in answer.stderr_lines)
    finally:
        if answer is not None:
            answer.stop()
        srv.stop()
