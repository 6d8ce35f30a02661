"""A real call drawn in a real terminal: `omni call --video-out terminal` in a pty (read back
through pyte) and in xterm under Xvfb (read back from a screenshot), and `view` in the REPL."""

from __future__ import annotations

import re

import numpy as np
import pytest
from desktop import wait_until
from procs import OMNI, answering_peer, omni_env, start_server
from terminal import Terminal

pytestmark = pytest.mark.e2e

BARS_RGB = [
    (192, 192, 192),
    (192, 192, 0),
    (0, 192, 192),
    (0, 192, 0),
    (192, 0, 192),
    (192, 0, 0),
    (0, 0, 192),
]  # the test pattern's colour bars left to right (the eighth is near black)
PEER = ("--video-source", "test", "--audio-source", "tone:660", "--speaker", "none")
ME = ("--video-source", "test", "--audio-source", "tone:440", "--speaker", "none")
COLS, ROWS = 120, 40


@pytest.fixture(scope="module")
def server():
    proc, url = start_server()
    yield url
    proc.stop()


@pytest.fixture
def bob(server):
    peer = answering_peer("bob", server, *PEER)
    yield peer
    peer.stop()


def rgb(hex_colour: str) -> np.ndarray | None:
    if hex_colour == "default" or not re.fullmatch(r"[0-9a-f]{6}", hex_colour):
        return None
    return np.array([int(hex_colour[i : i + 2], 16) for i in (0, 2, 4)])


def row(term: Terminal, y: int) -> str:
    """The text on row `y` of the screen now (empty rows included)."""
    term.screen()  # take in what was written
    return str(term.pyte_screen.display[y])


def picture_row(term: Terminal, y: int) -> list[np.ndarray | None]:
    """The colours of the upper halves of row `y`, cell by cell."""
    term.screen()  # take in what was written
    line = term.pyte_screen.buffer[y]
    cols = term.pyte_screen.columns
    return [rgb(line[x].bg if line[x].data == " " else line[x].fg) for x in range(cols)]


def bars_in_order(
    colours: list[np.ndarray | None],
    tolerance: int = 48,
    bars: list[tuple[int, int, int]] = BARS_RGB,
) -> bool:
    """Each bar colour appears, left to right, as a run of at least three cells."""
    at = 0
    for want in bars:
        run, found = 0, False
        while at < len(colours):
            got = colours[at]
            at += 1
            near = got is not None and np.abs(got - want).max() <= tolerance
            run = run + 1 if near else 0
            if run >= 3:
                found = True
                break
        if not found:
            return False
    return True


def shows_the_call(term: Terminal) -> bool:
    """The bars in order on some row of the picture's middle third (the moving white bar and
    the preview cover different rows and columns at different times)."""
    rows = term.pyte_screen.lines
    return any(bars_in_order(picture_row(term, y)) for y in range(rows // 3, 2 * rows // 3))


def test_a_call_in_a_pty_shows_the_bars_and_q_restores_the_terminal(server, bob, tmp_path) -> None:
    """alice's terminal shows bob's colour bars in order with a caption; q hangs up (exit 0)
    and the shell's screen, cursor and terminal modes are exactly as before."""
    env = omni_env(TERM="xterm-256color", COLORTERM="truecolor")
    program = in_shell(server, "alice")
    term = Terminal(env=env, cwd=str(tmp_path), size=(COLS, ROWS), program=program)
    try:
        term.wait_for(r"bob · connected", timeout=30)
        wait_until(lambda: shows_the_call(term), 20, "bob's colour bars in order")
        assert term.pyte_screen.cursor.hidden
        # the caption, on the last row: the peer, the state and the live figures
        term.wait_for(r"\nbob · connected · in \d+ fps 640x480 · \d+ kbit/s · rtt", timeout=15)
        term.type("q")
        term.wait_for(r"EXIT=0", timeout=20)
        assert "call ended: hangup by alice" in term.screen()  # held while drawing, shown after
        restored(term, tmp_path)
    finally:
        term.close()


def test_the_picture_refits_when_the_terminal_is_resized(server, bob, tmp_path) -> None:
    env = omni_env(TERM="xterm-256color", COLORTERM="truecolor")
    term = Terminal(
        "call", "bob", "--user-id", "carol", "--server", server, "--video-out", "terminal", *ME,
        env=env, cwd=str(tmp_path), size=(COLS, ROWS),
    )  # fmt: skip
    try:
        term.wait_for(r"bob · connected", timeout=30)
        wait_until(lambda: shows_the_call(term), 20, "the bars at 120x40")
        term.type("m")  # as in the window: the microphone off, then the camera
        term.wait_for(r"\nbob · connected · your mic off", timeout=20)
        term.type("v")
        term.wait_for(r"\nbob · connected · your mic off · your camera off", timeout=20)
        term.resize(80, 24)
        wait_until(lambda: row(term, 23).startswith("bob"), 20, "the caption on row 24")
        wait_until(lambda: shows_the_call(term), 20, "the bars refitted to 80x24")
        term.ctrl("c")  # Ctrl-C hangs up just as cleanly
        assert term.wait_exit(20) == 0
        assert term.pyte_screen.saved_screen is None and not term.pyte_screen.cursor.hidden
    finally:
        term.close()


def in_shell(server: str, user: str, *extra: str) -> tuple[str, ...]:
    """sh -c: note the terminal modes, run an omni call in the terminal, note them again."""
    omni = " ".join(OMNI)
    script = (  # the trap keeps the shell alive through a Ctrl-C, as an interactive one is
        "trap true INT; echo BEFORE-THE-CALL; stty -g > before; "
        f"{omni} call bob --user-id {user} --server {server} --video-out terminal "
        + " ".join((*ME, *extra))
        + "; echo EXIT=$?; stty -g > after; sleep 30"
    )
    return ("sh", "-c", script)


def restored(term: Terminal, tmp_path) -> None:
    """The screen, cursor and terminal modes are as they were before the call."""
    assert row(term, 0).rstrip() == "BEFORE-THE-CALL"
    assert not term.pyte_screen.cursor.hidden
    assert term.pyte_screen.saved_screen is None
    wait_until(lambda: (tmp_path / "after").exists(), 10, "stty after")
    assert (tmp_path / "before").read_text() == (tmp_path / "after").read_text()


def test_an_error_ending_the_call_gives_the_terminal_back_then_says_it(
    server, bob, tmp_path
) -> None:
    """bob's process is killed mid-call: alice's call fails (exit 6) with one omni: line,
    shown on the restored screen."""
    env = omni_env(TERM="xterm-256color", COLORTERM="truecolor")
    program = in_shell(server, "frank")
    term = Terminal(env=env, cwd=str(tmp_path), size=(COLS, ROWS), program=program)
    try:
        term.wait_for(r"bob · connected", timeout=30)
        bob.proc.kill()
        match = term.wait_for(r"EXIT=(\d+)", timeout=40)
        assert match.group(1) == "6", term.screen()
        assert re.search(r"^omni: ", term.screen(), re.M)
        restored(term, tmp_path)
    finally:
        term.close()


def test_a_second_ctrl_c_exits_at_once_and_still_restores_the_terminal(
    server, bob, tmp_path
) -> None:
    env = omni_env(TERM="xterm-256color", COLORTERM="truecolor")
    term = Terminal(env=env, cwd=str(tmp_path), size=(COLS, ROWS), program=in_shell(server, "gina"))
    try:
        term.wait_for(r"bob · connected", timeout=30)
        term.ctrl("c")
        term.ctrl("c")
        match = term.wait_for(r"EXIT=(\d+)", timeout=20)
        assert match.group(1) in ("0", "130")  # 0 if the hang-up won the race
        restored(term, tmp_path)
    finally:
        term.close()


def test_view_in_the_repl_shows_the_call_and_any_key_returns(server, bob, tmp_path) -> None:
    """`view` takes the terminal for the call's video; a key gives the prompt back, the call
    goes on."""
    env = omni_env(
        TERM="xterm-256color", COLORTERM="truecolor", XDG_STATE_HOME=str(tmp_path / "state")
    )
    term = Terminal(
        "repl", "--user-id", "dave", "--server", server, *ME,
        env=env, cwd=str(tmp_path), size=(COLS, ROWS),
    )  # fmt: skip
    try:
        term.wait_prompt(r"^dave>$")
        term.enter("call bob")
        term.wait_for(r"CONNECTED", timeout=30)
        term.enter("view")
        wait_until(lambda: shows_the_call(term), 20, "the call in the REPL's view")
        assert "any key: prompt" in term.screen()
        term.type("x")
        term.wait_prompt(r"^dave>$")
        assert term.pyte_screen.saved_screen is None
        assert "LEAVE" not in term.screen()
        term.enter("hangup")
        term.wait_for(r"LEAVE", timeout=20)
        term.enter("quit")
        assert term.wait_exit(20) == 0
    finally:
        term.close()


def test_session_create_with_video_out_terminal_shows_each_call_at_once(
    server, bob, tmp_path
) -> None:
    """In a terminal, `session create --video-out terminal` opens the prompt, and a call that
    connects takes the terminal by itself; a key gives the prompt back."""
    env = omni_env(
        TERM="xterm-256color", COLORTERM="truecolor", XDG_STATE_HOME=str(tmp_path / "state")
    )
    term = Terminal(
        "session", "create", "--user-id", "erin", "--server", server, "--video-out", "terminal",
        *ME, env=env, cwd=str(tmp_path), size=(COLS, ROWS),
    )  # fmt: skip
    try:
        term.wait_prompt(r"^erin>$")
        term.enter("call bob")
        wait_until(lambda: shows_the_call(term), 30, "the call, without typing view")
        term.type("x")
        term.wait_prompt(r"^erin>$")
        term.wait_for(r"CONNECTED", timeout=10)  # the events held meanwhile are shown now
        term.enter("quit")
        assert term.wait_exit(20) == 0
        assert term.pyte_screen.saved_screen is None
    finally:
        term.close()


@pytest.mark.parametrize("kind", ["halfblocks", "sixel"])
def test_xterm_under_xvfb_shows_the_bars(server, bob, tmp_path, kind: str) -> None:
    """The same call in a real xterm: half blocks in truecolor, and sixel when xterm is a
    VT340 (which it says in its answer to DA1); the screenshot shows the bars in order."""
    from desktop import display, need

    need("xterm", install="xterm")
    omni = " ".join(OMNI)
    # xterm needs TERM to match what it emulates; the call exits by itself after a while
    command = (
        f"{omni} call bob --user-id xt{kind[0]} --server {server} --video-out terminal "
        + " ".join(ME)
        + " --duration 25"
    )
    args = ["xterm", "-geometry", "100x32", "-fa", "Monospace", "-fs", "9"]
    args += ["-bg", "black", "-fg", "white"]
    if kind == "sixel":
        args += ["-ti", "vt340"]
    env = omni_env(COLORTERM="truecolor", TERM="xterm-256color")
    with display() as screen:
        import subprocess

        proc = subprocess.Popen(
            [*args, "-e", "sh", "-c", command],
            env={**env, **screen.env()},
            cwd=str(tmp_path),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            # half blocks come out at 192 (xterm drawing 24-bit colour) or 175 (xterm mapping
            # it to its 256 palette, as it did in some runs); sixels are drawn in a 6-level
            # colour cube (192 -> 204): the level tells which path drew the bars
            levels = (204,) if kind == "sixel" else (192, 175)

            def shows_bars() -> bool:
                shot = screen.screenshot()
                return any(screenshot_bars(shot, level) for level in levels)

            wait_until(shows_bars, 40, f"bars in xterm ({kind})")
        finally:
            proc.terminate()
            proc.wait(10)


def screenshot_bars(img: np.ndarray, level: int) -> bool:
    """Some row of the (BGR) screenshot shows the bars in order, at this colour level."""
    rows = img[:, :, ::-1]
    bars = [tuple(level if v else 0 for v in bar) for bar in BARS_RGB]
    for y in range(rows.shape[0] // 4, 3 * rows.shape[0] // 4, 8):
        line = [rows[y, x] for x in range(0, rows.shape[1], 2)]
        if bars_in_order(line, tolerance=10, bars=bars):
            return True
    return False
