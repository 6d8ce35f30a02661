"""The command line as a user meets it: help, mistakes, an unreachable or refusing server."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from procs import CALL_MEDIA, OMNI, Omni, answering_peer, omni_env, run_omni, start_server

HEAVY = ("aiortc", "av", "cv2", "sounddevice")


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The one `omni: ...` line a failed command ended with, checked to be no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("omni: ")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.rstrip().endswith(errors[0])
    return errors[0]


def test_help_does_not_import_media_libraries():
    """`omni --help` runs without importing aiortc, av, cv2 or sounddevice."""
    code = (
        "import sys\n"
        "from omnicli.ui.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=omni_env(), timeout=30
    )
    assert "call" in result.stdout and "server" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_unreachable_server_is_one_line_and_exit_3():
    """A call to a server that is not there says so in one line and exits 3."""
    result = run_omni("call", "bob", "--server", "ws://127.0.0.1:9", "--no-window")
    assert result.returncode == 3
    assert one_line_error(result).startswith("omni: cannot reach the server at ws://127.0.0.1:9")


def test_bad_server_url_is_a_usage_error():
    """A server URL that is not ws:// or wss:// is a usage error (exit 2)."""
    result = run_omni("sessions", "--server", "http://example.invalid")
    assert result.returncode == 2
    assert "must start with ws:// or wss://" in one_line_error(result)


def test_unknown_command_is_a_usage_error():
    """An unknown command exits 2 without a traceback."""
    result = run_omni("dial", "bob")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "dial" in result.stderr


@pytest.fixture(scope="module")
def server():
    proc, url = start_server("--ring-timeout", "1.5")
    yield url
    proc.stop()


@pytest.fixture(scope="module")
def keyed_server():
    proc, url = start_server("--service", "acme:s3cret")
    yield url
    proc.stop()


def test_invalid_user_id_is_refused_before_connecting(server):
    """A user id with a space is explained in one line, exit 2."""
    result = run_omni("call", "bob", "--user-id", "bad id", "--server", server, "--no-window")
    assert result.returncode == 2
    assert one_line_error(result).startswith("omni: bad user id 'bad id'")


def test_wrong_service_key_is_refused_with_exit_4(keyed_server):
    """A wrong service key gets the server's refusal in one line and exit 4."""
    result = run_omni(
        "sessions", "--server", keyed_server, "--service-id", "acme", "--service-key", "wrong"
    )
    assert result.returncode == 4
    assert one_line_error(result) == "omni: wrong service key (unauthorized, 401)"
    missing = run_omni("sessions", "--server", keyed_server, "--service-id", "acme")
    assert missing.returncode == 4
    assert one_line_error(missing) == (
        "omni: service 'acme' needs a service key and none was given (unauthorized, 401)"
    )
    good = run_omni(
        "sessions",
        "--server",
        keyed_server,
        "--service-id",
        "acme",
        "--service-key",
        "s3cret",
        "--json",
    )
    assert good.returncode == 0 and good.stdout == ""


def test_taken_user_id_is_refused(server):
    """Registering a user id that is online already exits 4 naming the id."""
    bob = Omni("session", "create", "--user-id", "bob", "--server", server, "--json", "--no-window")
    try:
        bob.event("SESSION")
        result = run_omni("call", "alice", "--user-id", "bob", "--server", server, "--no-window")
        assert result.returncode == 4
        assert "'bob' is online already" in one_line_error(result)
    finally:
        bob.stop()


def test_unanswered_call_ends_with_no_answer(server):
    """A callee who never answers: after the ring timeout the caller exits 5, reason no_answer."""
    bob = Omni(
        "session", "create", "--user-id", "dave", "--server", server, "--json", "--no-window"
    )
    try:
        bob.event("SESSION")
        result = run_omni(
            "call", "dave", "--user-id", "erin", "--server", server, "--json", "--no-window"
        )
        assert result.returncode == 5, result.stderr
        assert one_line_error(result) == "omni: call ended: no answer"
        last = json.loads(result.stdout.splitlines()[-1])
        assert (last["event"], last["reason"]) == ("LEAVE", "no_answer")
        assert bob.event("RINGING")["caller"] == "erin"
        assert bob.event("CANCEL")["reason"] == "no_answer"
    finally:
        bob.stop()


def test_answer_with_no_call_gives_up_after_wait(server):
    """`omni answer` for a call that never comes exits 5 after --wait seconds."""
    result = run_omni(
        "answer", "nobody", "--user-id", "frank", "--wait", "0.5", "--server", server, "--no-window"
    )
    assert result.returncode == 5
    assert one_line_error(result) == "omni: no call from nobody is ringing"


def test_missing_media_file_is_a_usage_error(server):
    """A --video-source file that does not exist is named in one line, exit 2."""
    bob = answering_peer("gina", server, "--no-window")
    try:
        result = run_omni(
            "call",
            "gina",
            "--server",
            server,
            "--no-window",
            "--video-source",
            "/nonexistent/clip.mp4",
        )
        assert result.returncode == 2
        assert "/nonexistent/clip.mp4" in one_line_error(result)
    finally:
        bob.stop()


def test_a_port_that_is_not_an_omni_server_is_named_as_such(tmp_path):
    """A plain HTTP server at the URL is reported as 'not an omni server', exit 3."""
    import http.server
    import threading

    handler = http.server.SimpleHTTPRequestHandler
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        result = run_omni("sessions", "--server", f"ws://127.0.0.1:{httpd.server_port}")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert result.returncode == 3
    assert "not an omni server" in one_line_error(result)


def test_cancelling_ones_own_ringing_call_is_a_success(server):
    """Ctrl-C while the callee rings cancels the call: the callee hears it, the caller exits 0."""
    callee = Omni(
        "session", "create", "--user-id", "hank", "--server", server, "--json", "--no-window"
    )
    caller = Omni(
        "call",
        "hank",
        "--user-id",
        "ivy",
        "--server",
        server,
        "--json",
        "--no-window",
        "--video-source",
        "test",
        "--audio-source",
        "tone",
        "--speaker",
        "none",
    )
    try:
        callee.event("SESSION")
        caller.event("RINGBACK")
        assert callee.event("RINGING")["caller"] == "ivy"
        caller.interrupt()
        assert caller.wait() == 0, caller.stderr_lines
        assert caller.event("LEAVE")["reason"] == "cancelled"
        assert callee.event("CANCEL")["reason"] == "cancelled"
    finally:
        caller.stop()
        callee.stop()


def test_mistyped_ids_and_service_specs_are_usage_errors(server):
    """A bad callee id and a --service without a colon are explained in one line, exit 2."""
    result = run_omni("call", "bad callee", "--server", server, "--no-window")
    assert result.returncode == 2
    assert one_line_error(result).startswith("omni: bad callee 'bad callee'")
    result = run_omni("server", "--port", "0", "--service", "nocolon")
    assert result.returncode == 2
    assert "--service must look like ID:KEY" in one_line_error(result)


def test_a_token_alone_names_its_service():
    """With --token and no --service-id the client uses the service the token names."""
    proc, url = start_server("--service", "acme:s3cret", "--require-tokens")
    try:
        minted = run_omni(
            "token", "create", "--user-id", "bob", "--service-id", "acme", "--service-key", "s3cret"
        )
        assert minted.returncode == 0, minted.stderr
        listing = run_omni("sessions", "--json", "--server", url, "--token", minted.stdout.strip())
        assert listing.returncode == 0, listing.stderr
        no_token = run_omni("sessions", "--server", url)
        assert no_token.returncode == 4
        assert "unknown service id 'dev'" in one_line_error(no_token)
    finally:
        proc.stop()


def test_server_stops_cleanly_on_sigterm():
    """SIGTERM makes `omni server` close every connection with 1001 and exit 0."""
    import signal as signals

    proc, url = start_server()
    client = Omni("session", "create", "--user-id", "kim", "--server", url, "--json", "--no-window")
    try:
        client.event("SESSION")
        proc.proc.send_signal(signals.SIGTERM)
        assert proc.wait(timeout=10) == 0
        reconnecting = client.event("RECONNECTING")
        assert "1001" in reconnecting["reason"], reconnecting
    finally:
        client.stop()
        proc.stop()


def test_usage_errors_are_one_line_with_a_hint_and_exit_2():
    """Click's usage mistakes (missing argument, bad value, unknown option) are one omni: line."""
    for args, expected in (
        (("call",), "omni: Missing argument 'CALLEE'; see 'omni call --help'"),
        (("call", "bob", "--fps", "fast"), "omni: Invalid value for '--fps'"),
        (("answer", "bob", "--bogus"), "omni: No such option: --bogus"),
        (("dial",), "omni: No such command 'dial'; see 'omni --help'"),
    ):
        result = run_omni(*args)
        assert result.returncode == 2, args
        line = one_line_error(result)
        assert line.startswith(expected) and "--help'" in line, line


def test_version_and_bare_omni_take_the_repl_options():
    """`omni --version` prints one; `omni --user-id X` is the REPL (unreachable server: exit 3)."""
    version = run_omni("--version")
    assert version.returncode == 0 and version.stdout.startswith("omni ")
    bare = run_omni("--user-id", "alice", "--server", "ws://127.0.0.1:9", "--no-window")
    assert bare.returncode == 3
    assert one_line_error(bare).startswith("omni: cannot reach the server")
    misplaced = run_omni("--json", "sessions")
    assert misplaced.returncode == 2 and "put them after 'sessions'" in one_line_error(misplaced)


def test_repl_with_an_unreachable_server_exits_3():
    """The REPL ends like `omni call` when its first session cannot be made: omni: line, exit 3."""
    result = subprocess.run(
        [*OMNI, "repl", "--server", "ws://127.0.0.1:9", "--no-window"],
        input="sessions\ncall bob\n",
        capture_output=True,
        text=True,
        timeout=30,
        env=omni_env(),
    )
    assert result.returncode == 3
    assert one_line_error(result).startswith("omni: cannot reach the server at ws://127.0.0.1:9")
    assert "no session" not in result.stderr  # the piped commands were not run one by one


def test_help_names_arguments_and_says_what_record_does():
    """Usage lines name CALLEE, and answer's --record is about this call, not every call."""
    call = run_omni("call", "--help")
    assert "Usage: omni call [OPTIONS] CALLEE\n" in call.stdout
    assert "{" not in call.stdout and "<str>" not in call.stdout
    answer = run_omni("answer", "--help")
    assert "every call answered" not in answer.stdout
    top = run_omni("--help")
    assert "…" not in top.stdout and "..." not in top.stdout.split("Commands:")[1]


def test_a_closed_stdout_ends_the_demo_quietly():
    """`omni demo --json | head -3`: the reader closing the pipe is a normal end, no error."""
    proc = subprocess.Popen(
        [*OMNI, "demo", "--json", "--no-window", "--duration", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=omni_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    for _ in range(3):
        assert proc.stdout.readline()
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=30) == 0, stderr
    assert "error" not in stderr and "Traceback" not in stderr, stderr


def test_video_and_audio_together_are_refused():
    """`--video --audio` contradicts itself: exit 2 instead of silently an audio call."""
    for command in (("call", "bob"), ("answer", "bob", "--user-id", "carol")):
        result = run_omni(*command, "--video", "--audio")
        assert result.returncode == 2
        assert one_line_error(result) == "omni: --video and --audio contradict each other: give one"


def test_the_server_says_its_address_once_and_that_dev_is_open():
    """One line with the address on stdout; stderr says the open dev service is loopback-only."""
    proc, url = start_server()
    try:
        wait = time.monotonic() + 10
        while not any("is open" in line for line in proc.stderr_lines):
            assert time.monotonic() < wait, proc.stderr_lines
            time.sleep(0.05)
        assert [line for line in proc.stderr_lines if url in line or "listening" in line] == []
        assert proc.stderr_lines[0].startswith("service 'dev' is open (no key)")
        assert "loopback only" in proc.stderr_lines[0]
    finally:
        proc.stop()
    assert not any("listening" in line for line in proc.lines.queue)  # said once, on line 1


@pytest.fixture(scope="module")
def ringing_server():
    proc, url = start_server()  # the default 60 s ring timeout
    yield url
    proc.stop()


def test_the_readme_flow_joins_up(ringing_server):
    """`omni call bob --user-id alice` then `omni answer alice --user-id bob`: a call."""
    alice = Omni(
        "call",
        "bob",
        "--user-id",
        "alice",
        "--server",
        ringing_server,
        "--duration",
        "1",
        "--json",
        *CALL_MEDIA,
    )
    try:
        assert alice.event("RINGBACK")["callee_online"] is False
        bob = run_omni(
            "answer",
            "alice",
            "--user-id",
            "bob",
            "--server",
            ringing_server,
            "--duration",
            "1",
            *CALL_MEDIA,
            timeout=60,
        )
        assert bob.returncode == 0, bob.stderr
        assert alice.wait() == 0
    finally:
        alice.stop()


def test_a_waiting_answer_says_what_it_waits_for_and_who_rings_instead(ringing_server):
    """Waiting for alice while someone else calls: it says so, and the error names them."""
    caller = Omni(
        "call", "carl", "--user-id", "zed", "--server", ringing_server, "--json", *CALL_MEDIA
    )
    try:
        caller.event("RINGBACK")
        result = run_omni(
            "answer",
            "alice",
            "--user-id",
            "carl",
            "--server",
            ringing_server,
            "--wait",
            "2",
            *CALL_MEDIA,
        )
        assert result.returncode == 5
        assert "waiting up to 2 s for alice to call carl" in result.stderr
        assert "zed is calling carl, not alice: omni answer zed --user-id carl" in result.stderr
        assert one_line_error(result) == (
            "omni: no call from alice is ringing; ringing for carl instead: zed"
        )
    finally:
        caller.stop()


def test_calling_someone_offline_says_so_and_waits_as_asked(ringing_server):
    """--wait 0 fails at once when the callee is offline; --wait S says it and gives up after S."""
    started = time.monotonic()
    now = run_omni("call", "nobody", "--server", ringing_server, "--wait", "0", *CALL_MEDIA)
    assert now.returncode == 5
    assert one_line_error(now) == "omni: nobody is not online"
    assert time.monotonic() - started < 15
    later = run_omni("call", "nobody", "--server", ringing_server, "--wait", "1.5", *CALL_MEDIA)
    assert later.returncode == 5
    assert "nobody is not online: the call waits up to 1.5 s" in later.stderr
    assert "Ctrl-C cancels" in later.stderr
    assert one_line_error(later) == ("omni: nobody did not come online and answer within 1.5 s")
    free = run_omni("sessions", "--server", ringing_server, "--json")
    assert "nobody" not in free.stdout  # the held offer was cancelled, not left ringing


def test_shell_completion_completes_commands_and_options():
    """The completion protocol behind `omni --install-completion` answers for bash."""

    def complete(words: str, cword: int) -> list[str]:
        env = omni_env(_OMNI_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=str(cword))
        result = subprocess.run(
            OMNI, capture_output=True, text=True, env=env, timeout=30, stdin=subprocess.DEVNULL
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert complete("omni ca", 1) == ["call"]
    assert "--video-size" in complete("omni call --vi", 2)
    script = run_omni("--show-completion", "bash")
    assert script.returncode == 0 and "_omni_completion" in script.stdout


def test_repl_quality_sets_size_fps_and_bitrate_cap_for_the_next_calls():
    """`quality size|fps|bitrate` changes what the next call sends; `quality` shows it;
    a bad value is one line and the REPL goes on; --max-bitrate is the starting cap."""
    proc, url = start_server()
    try:
        result = subprocess.run(
            [*OMNI, "repl", "--server", url, "--no-window", "--max-bitrate", "1.5M"],
            input="quality\nquality size 320x240\nquality fps 12\nquality bitrate 300k\n"
            "quality fps 99\nquality bitrate none\nquit\n",
            capture_output=True,
            text=True,
            timeout=30,
            env=omni_env(),
        )
    finally:
        proc.stop()
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    lines = [line.strip() for line in out.splitlines() if line.startswith("video ")]
    assert lines == [
        "video 640x480 at 30 fps, bitrate cap: 1.5 Mbit/s (for the next calls)",
        "video 320x240 at 30 fps, bitrate cap: 1.5 Mbit/s (for the next calls)",
        "video 320x240 at 12 fps, bitrate cap: 1.5 Mbit/s (for the next calls)",
        "video 320x240 at 12 fps, bitrate cap: 300 kbit/s (for the next calls)",
        "video 320x240 at 12 fps, bitrate cap: no cap (for the next calls)",
    ], out
    assert "fps 99: must be a whole number from 1 to 60" in out
    assert "Traceback" not in out
