"""The REPL's pure parts: command parsing and hints, completion, the status line, `stats`."""

from __future__ import annotations

import asyncio

import pytest
from rich.console import Console

from omnicli.phone.callstate import CallState
from omnicli.phone.figures import CallFigures
from omnicli.ui.commands import (
    Command,
    CommandError,
    CompletionContext,
    complete,
    help_lines,
    parse,
)
from omnicli.ui.render import stats_table
from omnicli.ui.statusline import Status, directions, status_lines
from omnicli.wire.protocol import Track

FIGURES = CallFigures.of(
    {
        "rtt_ms": 1.25,
        "jitter_ms": 2.0,
        "loss_pct": 0.5,
        "bitrate_in_kbps": 640.4,
        "bitrate_out_kbps": 700.0,
        "fps_in": 29.9,
        "width_in": 640,
        "height_in": 480,
        "fps_out": 20.0,
        "width_out": 320,
        "height_out": 240,
        "outbound": {
            "audio": {"packets": 100, "remote_lost": 1, "remote_jitter_ms": 3.0},
            "video": {"packets": 300, "remote_lost": 3, "remote_jitter_ms": 9.0},
        },
        "audio_in": {"dominant_hz": 440.0},
        "video_in": {"latency_ms_median": 37.0},
    }
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("call bob", Command("call", ("bob",))),
        (
            "call bob --audio --record",
            Command("call", ("bob",), frozenset({"--audio", "--record"})),
        ),
        ("answer", Command("answer")),
        ("answer alice", Command("answer", ("alice",))),
        ("LEAVE", Command("hangup")),
        ("mute Audio", Command("mute", ("audio",))),
        ("unmute video", Command("unmute", ("video",))),
        ("device microphone tone:880", Command("device", ("mic", "tone:880"))),
        ("device camera '/tmp/my clip.mp4'", Command("device", ("camera", "/tmp/my clip.mp4"))),
        ("record stop", Command("record", ("stop",))),
        ("quality", Command("quality")),
        ("quality size 320X240", Command("quality", ("size", "320x240"))),
        ("quality fps 15", Command("quality", ("fps", "15"))),
        ("quality bitrate 1.5M", Command("quality", ("bitrate", "1.5m"))),
        ("quality bitrate none", Command("quality", ("bitrate", "none"))),
        ("session create", Command("session")),
        ("session create zoe", Command("session", ("zoe",))),
        ("help call", Command("help", ("call",))),
        ("exit", Command("quit")),
    ],
)
def test_parse_accepts_every_command(line, expected):
    """Each command of the issue parses, aliases and case resolved."""
    assert parse(line) == expected


def test_blank_line_is_no_command():
    """An empty or blank line is nothing to do, not an error."""
    assert parse("") is None and parse("   ") is None


@pytest.mark.parametrize(
    ("line", "hint"),
    [
        ("cal bob", "unknown command 'cal' — did you mean 'call'? type help"),
        ("hangpu", "did you mean 'hangup'?"),
        ("frobnicate", "unknown command 'frobnicate'; type help"),
        ("call", "call needs one user id; usage: call ID [--audio|--video] [--record]"),
        ("call bob --audio --video", "choose --audio or --video"),
        ("call bob --loud", "call has no option --loud"),
        ("mute sound", "say audio or video; usage: mute audio|video"),
        ("device printer 1", "say camera, mic or speaker"),
        ("device mic", "say camera, mic or speaker"),
        ("record pause", "say start or stop"),
        ("quality colour 3", "say size, fps or bitrate"),
        ("quality size", "say size, fps or bitrate"),
        ("quality size big", "size big: must look like 640x480"),
        ("quality size 8x8", "must be 16x16 to 3840x2160"),
        ("quality fps 90", "fps 90: must be a whole number from 1 to 60"),
        ("quality bitrate fast", "bitrate fast: must be bits per second like 300k"),
        ("quality bitrate 5k", "must be from 30k to 20M"),
        ("stats now", "stats takes no arguments"),
        ("session drop", "the only session command is create"),
        ("help dial", "no command 'dial'"),
        ("call 'bob", "cannot read that line"),
    ],
)
def test_bad_lines_get_one_short_hint(line, hint):
    """A mistyped or malformed line raises one CommandError whose message is the hint."""
    with pytest.raises(CommandError) as info:
        parse(line)
    assert hint in str(info.value)
    assert "\n" not in str(info.value)


def test_help_lists_every_command_and_one_commands_usage():
    """`help` has a line per command; `help call` gives its usage."""
    text = "\n".join(help_lines())
    for word in (
        "call ID",
        "answer",
        "reject",
        "hangup",
        "mute audio|video",
        "devices",
        "device camera|mic|speaker ID",
        "stats",
        "record start|stop",
        "quality [size WxH|fps N|bitrate BPS]",
        "sessions",
        "session create",
        "quit",
    ):
        assert word in text
    assert help_lines("leave")[0] == "hangup (also: leave)"


CONTEXT = CompletionContext(
    users=("bob", "bella", "carl"),
    ringing=("zed",),
    devices={"camera": ("0",), "mic": ("3", "4"), "speaker": ("5",)},
)


@pytest.mark.parametrize(
    ("text", "word", "candidates"),
    [
        ("", "", None),
        ("ca", "ca", ["call"]),
        ("h", "h", ["hangup", "help"]),
        ("call b", "b", ["bob", "bella"]),
        ("call bob ", "", ["--video", "--audio", "--record"]),
        ("call bob --audio --r", "--r", ["--record"]),
        ("answer ", "", ["zed", "bob", "bella", "carl"]),
        ("mute v", "v", ["video"]),
        ("device ", "", ["camera", "mic", "speaker"]),
        ("device camera ", "", ["0", "test", "none"]),
        ("device mic to", "to", ["tone", "tone:440", "tone:880"]),
        ("device speaker ", "", ["5"]),
        ("record s", "s", ["start", "stop"]),
        ("quality ", "", ["size", "fps", "bitrate"]),
        ("quality bitrate ", "", ["300k", "500k", "1M", "none"]),
        ("quality size 6", "6", ["640x480"]),
        ("session ", "", ["create"]),
        ("help ans", "ans", ["answer"]),
        ("stats ", "", []),
        ("dial b", "b", []),
    ],
)
def test_completion_offers_commands_users_devices_and_sources(text, word, candidates):
    """Completion knows the commands, online users, ringing callers, device ids and sources."""
    got_word, got = complete(text, CONTEXT)
    assert got_word == word
    if candidates is None:
        assert {"call", "answer", "quit", "leave"} <= set(got)
    else:
        assert got == candidates


def test_directions_split_figures_into_in_and_out():
    """Outgoing loss and jitter come from the peer's reports about what we send."""
    incoming, outgoing = directions(FIGURES)
    assert (incoming.fps, incoming.resolution, incoming.kbps) == (29.9, "640x480", 640.4)
    assert (outgoing.fps, outgoing.resolution, outgoing.kbps) == (20.0, "320x240", 700.0)
    assert outgoing.loss_pct == pytest.approx(1.0)  # 4 lost of 400 sent
    assert outgoing.jitter_ms == 3.0  # audio's report first
    empty_in, empty_out = directions(CallFigures())
    assert empty_in.fps is None and empty_out.loss_pct is None and empty_out.resolution is None


def test_status_line_in_a_call_shows_everything():
    """Session, call state, peer, both sides' mutes, recording, and figures both ways."""
    status = Status(
        "alice",
        CallState.CONNECTED,
        peer="bob",
        muted=frozenset({Track.VIDEO}),
        peer_muted=frozenset({Track.AUDIO}),
        recording=True,
        figures=FIGURES,
    )
    first, second = status_lines(status)
    assert first == (
        "alice · connected with bob · you: audio on video off · bob: audio off video on · REC"
    )
    assert second == (
        "rtt 1.2 ms │ in 29.9 fps 640x480 · 640 kbit/s · jitter 2.0 ms · loss 0.5 % │ "
        "out 20.0 fps 320x240 · 700 kbit/s · jitter 3.0 ms · loss 1.0 %"
    )


def test_status_line_when_idle_ringing_or_offline():
    """Idle and offline are one line; a ringing call says which keys answer."""
    assert status_lines(Status("alice", CallState.IDLE)) == ["alice · idle"]
    assert status_lines(Status(None, CallState.OFFLINE)) == ["no session · offline"]
    ringing = status_lines(Status("bob", CallState.RINGING, ringing_from=("alice",)))
    assert ringing == ["bob · RINGING: alice · y answers, n rejects"]


def table_rows(figures: CallFigures) -> dict[str, list[str]]:
    console = Console(width=80, record=True, color_system=None)
    console.print(stats_table(figures, "bob"))
    rows = {}
    for line in console.export_text().splitlines():
        cells = [c.strip() for c in line.strip().split("│")[1:-1]]
        if len(cells) == 3:
            rows[cells[0]] = cells[1:]
    return rows


def test_stats_table_shows_both_directions():
    """The `stats` table has a row per figure, in and out columns, and dashes for unknowns."""
    rows = table_rows(FIGURES)
    assert rows["frame rate"] == ["29.9 fps", "20.0 fps"]
    assert rows["resolution"] == ["640x480", "320x240"]
    assert rows["bitrate"] == ["640 kbit/s", "700 kbit/s"]
    assert rows["packet loss"] == ["0.5 %", "1.0 %"]
    assert rows["round-trip time"] == ["1.2 ms", "1.2 ms"]
    assert rows["audio tone"] == ["440 Hz", ""]
    empty = table_rows(CallFigures())
    assert empty["round-trip time"] == ["-", "-"] and empty["resolution"] == ["-", "-"]


def test_help_does_not_import_prompt_toolkit():
    """`omni --help` stays fast: prompt_toolkit is imported only when a prompt opens."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom omnicli.ui.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('prompt_toolkit' in sys.modules, 'omnicli.ui.repl' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    assert "repl" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "False False"


async def test_repl_errors_are_one_line_and_unexpected_ones_are_logged(tmp_path, monkeypatch):
    """A call-core error is its one line; an unexpected one is one line, its traceback in a file."""
    import io
    import logging

    from omnicli.errors import CallRejected
    from omnicli.ui.render import Output
    from omnicli.ui.repl import Repl, ReplOptions

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    crash = logging.getLogger("omnicli.ui.repl.crash")
    monkeypatch.setattr(crash, "handlers", [])
    repl = Repl(lambda sink: None, ReplOptions())
    screen = io.StringIO()
    repl.out = Output(json_mode=False, stdout=screen, stderr=screen)

    async def refused() -> None:
        raise CallRejected("busy", "bob is busy")

    async def broken() -> None:
        raise RuntimeError("kaboom")

    await repl.guarded(refused())
    await repl.guarded(broken())
    log_file = tmp_path / "omnicli" / "repl.log"
    assert screen.getvalue().splitlines() == [
        "bob is busy",
        f"unexpected error: RuntimeError('kaboom') (details in {log_file})",
    ]
    crash.handlers[0].close()
    assert "Traceback" in log_file.read_text() and "kaboom" in log_file.read_text()


# -- the REPL around a fake phone: Ctrl-C, completion fetches, device probing --------------


class FakePhone:
    """Just enough of `Phone` for the REPL; leave() and close() can be made to hang."""

    def __init__(self) -> None:
        from omnicli.phone.core import Peer, SessionInfo

        self.events: asyncio.Queue = asyncio.Queue()
        self.session = None
        self.info = SessionInfo("s1", "alice")
        self.peers = [Peer("alice", "idle", None), Peer("bob", "idle", None)]
        self.page_size = 1000  # the server's cap on one session_list answer
        self.call_state = "idle"
        self.call = None
        self.muted = frozenset()
        self.ringing_from: list[str] = []
        self.leaves = self.lists = 0
        self.leave_started, self.close_started = asyncio.Event(), asyncio.Event()
        self.hang = asyncio.Event()  # leave() and close() wait for this when `stuck`
        self.stuck = False

    async def create_session(self, user_id):
        self.session = self.info
        return self.info

    async def next_event(self):
        return await self.events.get()

    async def session_page(self):
        from omnicli.phone.core import SessionPage

        self.lists += 1
        shown = self.peers[: self.page_size]
        return SessionPage(shown, len(self.peers), len(shown) < len(self.peers))

    async def leave(self):
        self.leaves += 1
        self.leave_started.set()
        if self.stuck:
            await self.hang.wait()
        self.call_state = "idle"
        return "hangup"

    async def close(self):
        self.close_started.set()
        if self.stuck:
            await self.hang.wait()


class FakeReader:
    def __init__(self, lines=()) -> None:
        self.lines = list(lines)
        self.reading = asyncio.Event()
        self.stopped = asyncio.Event()

    async def read(self) -> str:
        self.reading.set()
        if self.lines:
            return self.lines.pop(0)
        await self.stopped.wait()
        raise EOFError

    def redraw(self) -> None:
        pass

    def stop(self) -> None:
        self.stopped.set()

    def bell(self) -> None:
        pass


def fake_repl(phone: FakePhone):
    import io

    from omnicli.ui.render import Output
    from omnicli.ui.repl import Repl, ReplOptions
    from omnicli.ui.settings import Settings

    repl = Repl(lambda sink: phone, ReplOptions(Settings(json=True, window=False)))
    screen = io.StringIO()
    repl.out = Output(json_mode=False, stdout=screen, stderr=screen)
    repl.hard_exit_after = None  # never os._exit the test run
    return repl, screen


class KeyEvent:
    """A Ctrl-C key press on an empty prompt line."""

    def __init__(self) -> None:
        from types import SimpleNamespace

        self.current_buffer = SimpleNamespace(text="")
        self.app = None


def ctrl_c_key(repl):
    from prompt_toolkit.keys import Keys

    from omnicli.ui.prompt import _key_bindings

    return next(b.handler for b in _key_bindings(repl).bindings if b.keys == (Keys.ControlC,))


async def test_ctrl_c_while_hanging_up_exits_130_without_a_second_leave():
    """The prompt's Ctrl-C key hangs up once; a SIGINT during that hang-up exits 130."""
    phone = FakePhone()
    phone.call_state, phone.stuck = "connected", True
    repl, screen = fake_repl(phone)
    reader = FakeReader()
    served = asyncio.ensure_future(repl.serve(reader))
    await asyncio.wait_for(reader.reading.wait(), 10)
    ctrl_c_key(repl)(KeyEvent())  # the key binding: the same counter as SIGINT
    await asyncio.wait_for(phone.leave_started.wait(), 10)
    repl._on_sigint()  # a second press, the hang-up still running
    assert await asyncio.wait_for(served, 10) == 130
    assert phone.leaves == 1 and repl.presses == 2
    assert not phone.close_started.is_set()  # did not wait for the session to close
    assert "interrupted: leaving without waiting" in screen.getvalue()


async def test_ctrl_c_during_shutdown_exits_130():
    """Ctrl-D starts the shutdown; a Ctrl-C while the session's close hangs exits 130."""
    phone = FakePhone()
    phone.stuck = True
    repl, _ = fake_repl(phone)
    reader = FakeReader()
    served = asyncio.ensure_future(repl.serve(reader))
    await asyncio.wait_for(reader.reading.wait(), 10)
    reader.stop()  # Ctrl-D
    await asyncio.wait_for(phone.close_started.wait(), 10)
    repl._on_sigint()
    assert await asyncio.wait_for(served, 10) == 130


async def test_two_ctrl_c_when_idle_leave_with_0():
    """Idle: the first Ctrl-C warns, the second in a row leaves normally (exit 0)."""
    phone = FakePhone()
    repl, screen = fake_repl(phone)
    reader = FakeReader()
    served = asyncio.ensure_future(repl.serve(reader))
    await asyncio.wait_for(reader.reading.wait(), 10)
    repl.ctrl_c()
    assert "Ctrl-C again, Ctrl-D or quit leaves" in screen.getvalue()
    repl.ctrl_c()
    assert await asyncio.wait_for(served, 10) == 0
    assert phone.close_started.is_set() and "left; bye" in screen.getvalue()


async def test_shutdown_awaits_the_tasks_it_cancels():
    """`_shutdown` waits until its cancelled tasks have finished cleaning up."""
    repl, _ = fake_repl(FakePhone())
    cleaned = []

    async def background() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0)
            cleaned.append(True)
            raise

    repl.spawn(background())
    await asyncio.sleep(0)
    await repl._shutdown()
    assert cleaned == [True]


async def test_user_ids_are_fetched_only_to_complete_one_and_not_while_reconnecting():
    """session_list runs for `call `/`answer ` completion, is cached, and skips reconnects."""
    from omnicli.phone import events as ev

    phone = FakePhone()
    repl, _ = fake_repl(phone)
    await repl.new_session(None)
    assert phone.lists == 0  # no polling
    await repl.prepare_completion("mute ")
    await repl.prepare_completion("call bob --")
    assert phone.lists == 0
    await repl.prepare_completion("call b")
    assert phone.lists == 1 and repl.completion_context("call b").users == ("bob",)
    await repl.prepare_completion("answer ")
    assert phone.lists == 1  # cached
    repl.completion.users_at = -1e9
    repl._react(phone, ev.Reconnecting("gone", 10.0))
    await repl.prepare_completion("call ")
    assert phone.lists == 1  # not while reconnecting
    repl._react(phone, ev.Reconnected("alice", 5.0, 1, None))
    await repl.prepare_completion("call ")
    assert phone.lists == 2
    await repl._close_phone()


async def test_devices_are_probed_off_the_loop_and_cameras_not_during_a_call(monkeypatch):
    """Probing runs in a worker thread; in a call the cameras keep their last list."""
    import threading

    from omnicli.media import devices
    from omnicli.ui.repl_actions import probe_devices

    opened: list[str] = []

    def cameras():
        opened.append(threading.current_thread().name)
        return [{"id": "0", "name": "cam", "path": "/dev/video0", "default": True}]

    def audio():
        return [{"id": "1", "name": "mic", "default": True}], [
            {"id": "2", "name": "spk", "default": True}
        ]

    monkeypatch.setattr(devices, "cameras", cameras)
    monkeypatch.setattr(devices, "audio_devices", audio)
    phone = FakePhone()
    repl, _ = fake_repl(phone)
    await repl.new_session(None)
    await repl.prepare_completion("device camera ")
    assert len(opened) == 1 and opened[0] != threading.current_thread().name
    assert repl.completion.device_ids() == {"camera": ("0",), "mic": ("1",), "speaker": ("2",)}
    phone.call_state = "connected"
    report = await probe_devices(repl)
    assert len(opened) == 1  # the camera in use was not opened again
    assert [c["id"] for c in report.video_inputs] == ["0"]
    assert any("cameras are not probed" in p for p in report.problems)
    phone.call_state = "idle"
    await repl._close_phone()


async def test_sessions_says_when_the_list_is_cut():
    """`sessions` shows the server's first page and, when more follow, how many there are."""
    from omnicli.phone.core import Peer

    async def sessions(page_size: int) -> str:
        phone = FakePhone()
        phone.peers += [Peer("carol", "busy", "videocall")]
        phone.page_size = page_size
        repl, screen = fake_repl(phone)
        reader = FakeReader(["sessions"])
        served = asyncio.ensure_future(repl.serve(reader))
        await asyncio.wait_for(until(lambda: "└" in screen.getvalue()), 10)  # the table ended
        reader.stop()
        assert await asyncio.wait_for(served, 10) == 0
        return screen.getvalue()

    whole = await sessions(1000)
    assert "carol" in whole and "showing the first" not in whole
    cut = await sessions(2)
    assert "carol" not in cut
    assert "showing the first 2 of 3 sessions" in cut


async def until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.01)
