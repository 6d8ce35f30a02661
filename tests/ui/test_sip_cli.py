"""sipcall options on the command line: bad input is one `omni:` line and exit 2."""

from __future__ import annotations

import pytest
from procs import run_omni, start_server


@pytest.fixture(scope="module")
def server():
    proc, url = start_server()
    yield url
    proc.stop()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("call", "sip:a@b;transport=tcp"), "bad callee"),
        (("call", "sips:a@b"), "sips: addresses are not supported"),
        (("call", "sip:a@b", "--dtmf", "12x"), "--dtmf takes"),
    ],
)
def test_bad_sip_input_is_a_usage_error(server: str, args: tuple[str, ...], says: str) -> None:
    done = run_omni(*args, "--server", server, "--no-window")
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("omni: ") and says in last, done.stderr
    assert "Traceback" not in done.stderr


def test_a_server_without_a_gateway_refuses_sip_calls(server: str) -> None:
    done = run_omni("call", "sip:carol@pbx.example", "--server", server, "--no-window")
    assert done.returncode == 4 and "no SIP gateway" in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--sip-gateway", "http://127.0.0.1:8188"), "websocket URL"),
        (("--sip-registrar", "sip:127.0.0.1:5060"), "needs --sip-gateway"),
        (("--sip-gateway", "ws://127.0.0.1:8188", "--sip-registrar", "pbx"), "SIP address"),
    ],
)
def test_bad_server_sip_options(args: tuple[str, ...], says: str) -> None:
    done = run_omni("server", "--port", "0", *args, timeout=20)
    assert done.returncode == 2 and says in done.stderr, done.stderr
