"""The interactive REPL as a person meets it: real terminals, a real server, real calls."""

from __future__ import annotations

import json
import re
import time

import pytest
from procs import Omni, omni_env, run_omni, start_server
from terminal import Terminal

pytestmark = pytest.mark.e2e

MEDIA = ("--no-window", "--video-source", "test")
FIGURES = r"in (\d+\.\d) fps (\d+x\d+) .* out (\d+\.\d) fps (\d+x\d+)"


@pytest.fixture(scope="module")
def server():
    proc, url = start_server()
    yield url
    proc.stop()


@pytest.fixture
def term_env(tmp_path):
    return omni_env(XDG_STATE_HOME=str(tmp_path / "state"), TERM="xterm")


@pytest.fixture
def terminals(tmp_path):
    opened: list[Terminal] = []

    def open_(*args: str, env: dict[str, str]) -> Terminal:
        opened.append(Terminal(*args, env=env, cwd=str(tmp_path)))
        return opened[-1]

    yield open_
    for term in opened:
        term.close()


def stats_rows(term: Terminal) -> dict[str, tuple[str, str]]:
    """Clear the screen (Ctrl-L), run `stats`, and read its table as figure -> (in, out)."""
    term.ctrl("l")
    term.wait_for(r"^(?![\s\S]*Call quality)")
    term.enter("stats")
    term.wait_for(r"Call quality with [\s\S]*└")
    rows: dict[str, tuple[str, str]] = {}
    for line in term.screen().splitlines():
        cells = [c.strip() for c in line.strip().split("│")[1:-1]]
        if len(cells) == 3 and cells[0]:
            rows[cells[0]] = (cells[1], cells[2])
    return rows


def fps(cell: str) -> float:
    return float(cell.split()[0])


def table_ok(rows: dict[str, tuple[str, str]]) -> bool:
    """The switched tone and sizes have reached the table, and a round trip was measured
    (RTCP reports come every 1 to 2 s; right after the device switches there may be none)."""
    return (
        rows["audio tone"][0] == "880 Hz"
        and 16 <= fps(rows["frame rate"][0]) <= 22
        and 24 <= fps(rows["frame rate"][1]) <= 33
        and rows["round-trip time"][0].endswith(" ms")
    )


def settle(term: Terminal, ok, timeout: float = 20.0) -> None:
    """Wait until the status line's figures satisfy `ok` (a live reading may wobble)."""
    deadline = time.monotonic() + timeout
    while not ok(found := term.wait_for(FIGURES)):
        assert time.monotonic() < deadline, found[0]
        term.read_some(0.5)


def test_two_repls_call_each_other(server, term_env, terminals):
    """Ring, answer with y, mute/unmute, switch sources, stats, hang up: both screens show it.

    alice sends 20 fps at 320x240 and bob 30 fps at 400x300, so each side's figures
    (from the peer connection's statistics and receive probes) are checked against what
    the other really sent, not against a default.
    """
    alice = terminals(
        "repl",
        "--user-id",
        "alice",
        "--server",
        server,
        *MEDIA,
        "--fps",
        "20",
        "--video-size",
        "320x240",
        "--audio-source",
        "tone:440",
        env=term_env,
    )
    bob = terminals(
        "repl",
        "--user-id",
        "bob",
        "--server",
        server,
        *MEDIA,
        "--video-size",
        "400x300",
        "--audio-source",
        "tone:660",
        env=term_env,
    )
    alice.wait_for(r"SESSION +online as alice")
    bob.wait_for(r"SESSION +online as bob")
    alice.wait_prompt(r"^alice>$")

    alice.enter("call bob")
    alice.wait_for(r"RINGBACK +ringing bob \(videocall\)")
    bob.wait_for(r"RINGING +incoming videocall from alice")
    bob.wait_for(r"bob · RINGING: alice · y answers, n rejects")
    assert bob.bells() >= 1
    bob.type("y")
    alice.wait_for(r"CONNECTED +connected with bob")
    bob.wait_for(r"CONNECTED +connected with alice")
    alice.wait_for(r"alice · connected with bob · you: audio on video on")

    alice.enter("mute audio")
    alice.wait_for(r"your audio is muted")
    bob.wait_for(r"MUTE +alice muted audio")
    bob.wait_for(r"alice: audio off video on")
    alice.enter("unmute audio")
    bob.wait_for(r"UNMUTE +alice unmuted audio")
    bob.wait_for(r"alice: audio on video on")

    alice.enter("record start")
    alice.wait_for(r"NOTICE +recording to \S+\.mp4")
    bob.wait_for(r"RECORDING +alice started recording")
    bob.wait_for(r"alice: audio on video on · REC")
    alice.enter("record stop")
    alice.wait_for(r"NOTICE +recording saved: ")
    bob.wait_for(r"RECORDING +alice stopped recording")
    bob.wait_for(r"alice: audio on video on · not recording")

    alice.enter("device mic tone:880")
    alice.wait_for(r"mic: tone:880 \(now and for the next calls\)")
    bob.enter("device camera test")
    bob.wait_for(r"camera: test \(now and for the next calls\)")

    # the live status lines, both directions: each shows what the other side really sends
    # (live readings wobble under load, so each must settle into range within 20 s)
    settle(
        bob,
        lambda m: (
            16 <= float(m[1]) <= 22
            and m[2] == "320x240"
            and 24 <= float(m[3]) <= 33
            and m[4] == "400x300"
        ),
    )
    settle(
        alice,
        lambda m: (
            24 <= float(m[1]) <= 33
            and m[2] == "400x300"
            and 16 <= float(m[3]) <= 22
            and m[4] == "320x240"
        ),
    )

    # stats: the Rich table; the switched tone reaches bob within a few samples
    deadline = time.monotonic() + 20
    while not table_ok(rows := stats_rows(bob)) and time.monotonic() < deadline:
        bob.read_some(0.5)
    assert rows["audio tone"][0] == "880 Hz", rows
    assert 16 <= fps(rows["frame rate"][0]) <= 22, rows
    assert 24 <= fps(rows["frame rate"][1]) <= 33, rows
    assert rows["resolution"] == ("320x240", "400x300"), rows
    assert rows["round-trip time"][0].endswith(" ms") and rows["bitrate"][0] != "-", rows

    alice.enter("hangup")
    for term in (alice, bob):
        term.wait_for(r"LEAVE +call ended: hangup by alice")
        summary = term.wait_for(r"call summary: [\d.]+ s · ended: hangup · rtt .* ([\d.]+) fps")
    assert 15 <= float(summary[1]) <= 23, summary[0]  # bob's average of alice's 20 fps
    bob.wait_for(r"bob · idle")

    alice.enter("quit")
    bob.ctrl("d")
    for term in (alice, bob):
        term.wait_for(r"left; bye")
        assert term.wait_exit() == 0
        assert "Traceback" not in term.screen()


def test_completion_history_and_hints(server, term_env, terminals):
    """Tab completes commands, online user ids and sources; history survives a restart;
    a mistyped command gets a hint; Ctrl-C on a typed line clears it."""
    dave = Omni(
        "session", "create", "--user-id", "dave", "--server", server, "--json", "--no-window"
    )
    try:
        dave.event("SESSION")
        carol = terminals("repl", "--user-id", "carol", "--server", server, *MEDIA, env=term_env)
        carol.wait_for(r"SESSION +online as carol")
        carol.wait_prompt(r"^carol>$")

        carol.type("ca\t")
        carol.wait_prompt(r"^carol> call$")
        carol.type("da\t")  # a whole, unique word ends with a space: no "calldave"
        carol.wait_prompt(r"^carol> call dave$")
        carol.type("--au\t")
        carol.wait_prompt(r"^carol> call dave --audio$")
        carol.ctrl("c")
        carol.wait_prompt(r"^carol>$")
        carol.type("device cam\t")
        carol.wait_prompt(r"^carol> device camera$")
        carol.type("te\t")
        carol.wait_prompt(r"^carol> device camera test$")
        carol.ctrl("c")

        carol.enter("cal dave")
        carol.wait_for(r"unknown command 'cal' — did you mean 'call'\? type help")
        carol.enter("mute sound")
        carol.wait_for(r"say audio or video; usage: mute audio\|video")
        carol.enter("hangup")
        carol.wait_for(r"not in a call")
        # errors of the call-core are one line each, and the prompt goes on
        carol.enter("answer")
        carol.wait_for(r"no call is ringing")
        carol.enter("call carol")
        carol.wait_for(r"you cannot call yourself")
        carol.enter("device camera /nonexistent/clip.mp4")
        carol.wait_for(r"camera: /nonexistent/clip.mp4 \(for the next calls\)")
        carol.enter("call dave")
        carol.wait_for(r"no such media file: /nonexistent/clip.mp4")
        carol.wait_for(r"carol · idle")
        carol.enter("sessions")
        carol.wait_for(r"│ dave +│ idle")
        carol.enter("devices")
        carol.wait_for(r"Devices[\s\S]*│ camera ")
        carol.enter("quit")
        assert carol.wait_exit() == 0
        assert "Traceback" not in carol.screen()

        # `omni` with no command is the same prompt; history came along
        again = terminals(env=term_env | {"OMNI_SERVER": server})
        again.wait_for(r"SESSION +online as ")
        again.wait_prompt(r">$")
        again.type("\x1b[A")  # Up: the last line typed before
        again.wait_prompt(r"> quit$")
        again.type("\x1b[A\x1b[A")
        again.wait_prompt(r"> sessions$")
        again.ctrl("c")
        again.ctrl("d")
        assert again.wait_exit() == 0
    finally:
        dave.stop()


def test_ctrl_c_in_a_call_hangs_up_and_a_second_leaves(server, term_env, terminals):
    """`session create` in a terminal is the REPL; Ctrl-C hangs up, a second Ctrl-C leaves;
    the peer REPL answers by itself with --auto-answer."""
    erin = terminals(
        "repl", "--user-id", "erin", "--auto-answer", "--server", server, *MEDIA, env=term_env
    )
    erin.wait_for(r"SESSION +online as erin")
    frank = terminals(
        "session", "create", "--user-id", "frank", "--server", server, *MEDIA, env=term_env
    )
    frank.wait_for(r"SESSION +online as frank")
    frank.wait_prompt(r"^frank>$")
    frank.enter("call erin --audio")
    erin.wait_for(r"CONNECTED +connected with frank")
    frank.wait_for(r"CONNECTED +connected with erin")
    frank.wait_for(r"frank · connected with erin")

    frank.ctrl("c")
    frank.wait_for(r"hanging up \(Ctrl-C again leaves\)")
    frank.wait_for(r"LEAVE +call ended: hangup by frank")
    frank.wait_for(r"call summary: .*ended: hangup")
    erin.wait_for(r"LEAVE +call ended: hangup by frank")
    frank.wait_for(r"frank · idle")
    frank.ctrl("c")
    frank.wait_for(r"left; bye")
    assert frank.wait_exit() == 0

    listing = run_omni("sessions", "--json", "--server", server)
    rows = [json.loads(line) for line in listing.stdout.splitlines()]
    users = [r["user_id"] for r in rows]
    assert "erin" in users and "frank" not in users, rows
    erin.enter("quit")
    assert erin.wait_exit() == 0
    assert not re.search(r"Traceback|Error", erin.screen() + frank.screen())


def test_y_and_n_answer_a_ringing_call_even_with_a_line_typed(server, term_env, terminals):
    """'sessi' typed when a call rings is put aside: n rejects, and the line comes back;
    `clear` clears the screen; Ctrl-C while a call rings says it declines."""
    gina = terminals("repl", "--user-id", "gina", "--server", server, *MEDIA, env=term_env)
    gina.wait_for(r"SESSION +online as gina")
    gina.wait_prompt(r"^gina>$")
    gina.type("sessi")
    gina.wait_prompt(r"^gina> sessi$")
    caller = Omni("call", "gina", "--user-id", "hal", "--server", server, "--json", *MEDIA)
    try:
        gina.wait_for(r"gina · RINGING: hal · y answers, n rejects")
        gina.wait_for(r"'sessi' put aside")
        gina.type("n")
        leave = caller.event("LEAVE")
        assert leave["reason"] in ("rejected", "declined"), leave
        gina.wait_prompt(r"^gina> sessi$")
        gina.ctrl("c")
        gina.enter("clear")
        gina.wait_prompt(r"^gina>$")
        assert "unknown command" not in gina.screen()
    finally:
        caller.stop()
    again = Omni("call", "gina", "--user-id", "ivy", "--server", server, "--json", *MEDIA)
    try:
        gina.wait_for(r"gina · RINGING: ivy")
        gina.ctrl("c")  # on an empty line while it rings: declines, and says so
        gina.wait_for(r"declining the call from ivy")
        assert again.event("LEAVE")["reason"] in ("rejected", "declined")
        assert "hanging up" not in gina.screen()
    finally:
        again.stop()
