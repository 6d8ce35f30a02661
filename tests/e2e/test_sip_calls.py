"""sipcall end to end: omni users call a real SIP phone (baresip) through a real Janus
gateway that `omni server --sip-gateway` drives; everything in a private namespace."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from baresip import BareSip, dominant_hz
from janus import Janus, SipLab, unavailable
from kamailio import Kamailio
from kamailio import unavailable as kamailio_unavailable
from procs import Omni, omni_env

pytestmark = pytest.mark.e2e

OMNI = [sys.executable, "-m", "omnicli.ui.cli"]
SERVER = "ws://127.0.0.1:8765"  # inside the lab's namespace
CLIENT = ("--server", SERVER, "--json", "--no-window", "--speaker", "none")


@pytest.fixture
def lab() -> Iterator[SipLab]:
    if (why := unavailable()) is not None:
        pytest.skip(why)
    with SipLab() as lab:
        yield lab


class Server:
    """`omni server --sip-gateway` inside the lab; its log lines are kept."""

    def __init__(self, lab: SipLab, gateway: str, *extra: str) -> None:
        self.log = lab.dir / "server.log"
        with open(self.log, "w") as log:
            self.proc = lab.popen(
                [*OMNI, "server", "--port", "8765", "--sip-gateway", gateway, *extra],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=omni_env(),
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "listening on" in line, line + self.log.read_text()


def call(lab: SipLab, *args: str, timeout: float = 40) -> tuple[int, list[dict[str, Any]], str]:
    """Run `omni call ...` in the lab: exit code, JSON events, stderr."""
    done = lab.run([*OMNI, "call", *args, *CLIENT], timeout=timeout)
    events = json_lines(done.stdout)
    return done.returncode, [e for e in events if e.get("event") != "STATS"], done.stderr


def start_call(lab: SipLab, callee: str, *extra: str) -> subprocess.Popen[str]:
    """`omni call CALLEE` in the lab, left running: its stdout and stderr are piped."""
    return subprocess.Popen(
        lab.cmd([*OMNI, "call", callee, *CLIENT, *extra]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=omni_env(),
    )


def json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def names(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in events]


@pytest.fixture
def janus(lab: SipLab) -> Janus:
    return lab.start_janus()


def test_omni_calls_a_sip_phone_and_hears_it_both_ways(lab: SipLab, janus: Janus) -> None:
    """omni -> Janus -> baresip: RINGBACK, CONNECTED, each side hears the other's tone."""
    carol = BareSip(lab, "carol", tone_hz=880, answer="auto")
    Server(lab, janus.url)
    code, events, err = call(lab, carol.uri, "--audio-source", "tone:440", "--duration", "4")
    assert code == 0, err
    assert names(events)[:2] == ["SESSION", "RINGBACK"], events
    connected = next(e for e in events if e["event"] == "CONNECTED")
    assert connected["call_type"] == "sipcall" and connected["peer"] == carol.uri
    leave = events[-1]
    assert leave["event"] == "LEAVE" and leave["reason"] == "hangup", leave
    heard = leave["summary"]["received"]["audio"]
    assert heard["seconds_received"] >= 2.5, heard
    assert heard["dominant_hz"] == pytest.approx(880, abs=10), heard
    carol.wait_event("CALL_CLOSED")  # omni's hang-up reached the phone as a BYE
    hz, seconds = dominant_hz(carol.received_wav())
    assert seconds >= 2.5 and hz == pytest.approx(440, abs=10), (hz, seconds)


def test_the_sip_phone_hangs_up_and_omni_hears_why(lab: SipLab, janus: Janus) -> None:
    """A BYE from the phone ends the omni call with LEAVE hangup, by the SIP address."""
    carol = BareSip(lab, "carol", answer="auto")
    Server(lab, janus.url)
    proc = start_call(lab, carol.uri, "--duration", "30")
    try:
        carol.wait_event("CALL_ESTABLISHED")
        time.sleep(1.0)
        carol.hangup()
        out, err = proc.communicate(timeout=15)
    finally:
        lab.stop(proc)
    events = json_lines(out)
    leave = events[-1]
    assert leave["event"] == "LEAVE", events[-3:]
    assert (leave["reason"], leave["by"]) == ("hangup", carol.uri), leave
    assert proc.returncode == 0, err


def test_a_busy_phone_ends_the_call_busy(lab: SipLab, janus: Janus) -> None:
    """The phone rejects the ringing call (486): RINGBACK, then LEAVE busy, exit 5."""
    carol = BareSip(lab, "carol", answer="manual")
    Server(lab, janus.url)
    proc = start_call(lab, carol.uri)
    try:
        carol.wait_event("CALL_INCOMING")
        carol.hangup()
        out, err = proc.communicate(timeout=15)
    finally:
        lab.stop(proc)
    events = json_lines(out)
    assert "RINGBACK" in names(events), events
    assert events[-1]["reason"] == "busy", events[-1]
    assert proc.returncode == 5 and "busy" in err, err


def test_an_unanswered_sip_call_ends_no_answer_and_cancels_the_ringing(
    lab: SipLab, janus: Janus
) -> None:
    """The server's ring timeout ends it no_answer and the phone stops ringing (CANCEL)."""
    carol = BareSip(lab, "carol", answer="manual")
    Server(lab, janus.url, "--ring-timeout", "2")
    code, events, err = call(lab, carol.uri)
    assert events[-1]["event"] == "LEAVE" and events[-1]["reason"] == "no_answer", events
    assert code == 5, err
    carol.wait_event("CALL_CLOSED")


def test_gateway_down_ends_the_call_unavailable_at_once(lab: SipLab) -> None:
    """No gateway listening: the offer ends LEAVE unavailable within a second, not busy."""
    Server(lab, f"ws://{lab.addr}:8188")
    started = time.monotonic()
    code, events, err = call(lab, f"sip:carol@{lab.addr}:5070")
    assert events[-1]["event"] == "LEAVE" and events[-1]["reason"] == "unavailable", events
    assert code == 5 and "unavailable" in err, err
    assert time.monotonic() - started < 8  # process start included; the call itself is instant
    code, _, err = call(lab, f"sip:carol@{lab.addr}:5070")
    assert code == 5 and "unavailable" in err, "a second call is refused the same way (not busy)"


def test_sip_calls_are_refused_where_not_allowed(lab: SipLab, janus: Janus) -> None:
    """--sip-allow limits the domains: another one is refused with 403, exit 4."""
    Server(lab, janus.url, "--sip-allow", "pbx.example")
    code, _, err = call(lab, f"sip:carol@{lab.addr}:5070")
    assert code == 4 and "not allowed" in err, err


def test_a_gateway_that_dies_mid_call_ends_it_and_a_restarted_one_serves_again(
    lab: SipLab, janus: Janus
) -> None:
    """Janus killed mid-call: LEAVE connection_lost at once; after a restart calls work."""
    carol = BareSip(lab, "carol", answer="auto")
    Server(lab, janus.url)
    proc = start_call(lab, carol.uri, "--duration", "30")
    try:
        carol.wait_event("CALL_ESTABLISHED")
        time.sleep(0.5)
        janus.proc.kill()
        killed = time.monotonic()
        out, err = proc.communicate(timeout=15)
        ended_after = time.monotonic() - killed
    finally:
        lab.stop(proc)
    events = json_lines(out)
    assert events[-1]["event"] == "LEAVE", events[-3:]
    assert events[-1]["reason"] == "connection_lost", events[-1]
    assert ended_after < 5, ended_after
    carol.hangup()  # the phone has no way to know: Janus died without a BYE
    lab.start_janus()
    code, events, err = call(lab, carol.uri, "--duration", "1")
    assert code == 0 and "CONNECTED" in names(events), err


def wait_for(check: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} in {timeout} s")
        time.sleep(0.05)


def test_a_sip_phone_calls_an_omni_user_registered_for_sip(lab: SipLab, janus: Janus) -> None:
    """baresip -> kamailio -> Janus -> omni bob (--sip-inbound): RINGING, tones both ways."""
    if (why := kamailio_unavailable()) is not None:
        pytest.skip(why)
    registrar = Kamailio(lab)
    domain = registrar.uri.removeprefix("sip:")
    server = Server(lab, janus.url, "--sip-registrar", registrar.uri, "--sip-domain", domain)
    bob = Omni(
        "session",
        "create",
        "--user-id",
        "bob",
        "--sip-inbound",
        "--auto-answer",
        *CLIENT,
        "--audio-source",
        "tone:660",
        prefix=tuple(lab.cmd([])),
        env=omni_env(),
    )
    try:
        assert bob.event("SESSION")["user_id"] == "bob"
        wait_for(
            lambda: "registered at" in server.log.read_text(),
            what=f"SIP registration: {server.log.read_text()[-1500:]} {janus.log_tail()}",
        )
        dave = BareSip(lab, "dave", tone_hz=880, answer="auto")
        dave.dial(f"sip:bob@{domain}")
        ringing = bob.event("RINGING")
        assert ringing["caller"] == dave.uri and ringing["call_type"] == "sipcall", ringing
        bob.event("CONNECTED")
        dave.wait_event("CALL_ESTABLISHED")
        time.sleep(3)
        dave.hangup()
        leave = bob.event("LEAVE")
    finally:
        bob.stop()
    assert (leave["reason"], leave["by"]) == ("hangup", dave.uri), leave
    heard = leave["summary"]["received"]["audio"]
    assert heard["seconds_received"] >= 2 and heard["dominant_hz"] == pytest.approx(880, abs=10)
    hz, seconds = dominant_hz(dave.received_wav())
    assert seconds >= 2 and hz == pytest.approx(660, abs=10), (hz, seconds)


def test_touch_tones_reach_the_sip_phone(lab: SipLab, janus: Janus) -> None:
    """`omni call sip:... --dtmf 12#9`: the phone receives those digits, in order."""
    carol = BareSip(lab, "carol", answer="auto")
    Server(lab, janus.url)
    code, _, err = call(lab, carol.uri, "--dtmf", "12#9", "--duration", "3")
    assert code == 0, err
    carol.wait_event("CALL_CLOSED")
    digits = [e["param"] for e in carol.seen if e.get("type") == "CALL_DTMF_START"]
    assert "".join(digits) == "12#9", [e.get("type") for e in carol.seen]


def test_several_sip_calls_at_once(lab: SipLab, janus: Janus) -> None:
    """Two omni users call two phones at the same time: both connect and hear their tone."""
    phones = [
        BareSip(lab, "carol", tone_hz=880),
        BareSip(lab, "dave", sip_port=5072, ctrl_port=4445, tone_hz=660),
    ]
    Server(lab, janus.url)
    callers = [start_call(lab, phone.uri, "--duration", "4") for phone in phones]
    try:
        outputs = [proc.communicate(timeout=40) for proc in callers]
    finally:
        for proc in callers:
            lab.stop(proc)
    for proc, (out, err), hz in zip(callers, outputs, (880, 660), strict=True):
        assert proc.returncode == 0, err
        leave = json.loads(out.splitlines()[-1])
        assert leave["reason"] == "hangup", leave
        assert leave["summary"]["received"]["audio"]["dominant_hz"] == pytest.approx(hz, abs=10)


def test_the_call_core_calls_a_sip_phone_and_says_mute_is_local(lab: SipLab, janus: Janus) -> None:
    """Phone.offer_call to a sip: address: a sipcall; mute gives a NOTICE; dtmf is sent."""
    from phones import make_phone, until

    from omnicli.phone import events as ev

    carol = BareSip(lab, "carol", answer="auto")
    Server(lab, janus.url)

    async def scenario() -> tuple[str, str]:
        phone = make_phone(SERVER, audio_source="tone:440", video_source="none", speaker="none")
        try:
            await phone.create_session("alice")
            info = await phone.offer_call("videocall", carol.uri)  # a sip: address wins
            await until(phone, ev.Connected, timeout=15)
            await phone.set_mute("audio")
            notice = await until(phone, ev.Notice)
            await phone.send_dtmf("7")
            await phone.leave()
            return info.call_type, notice.text
        finally:
            await phone.close()

    kind, notice = lab.run_inside(scenario())
    assert kind == "sipcall"
    assert "here only" in notice and "SIP" in notice, notice
    carol.wait_event("CALL_CLOSED")
    assert [e["param"] for e in carol.seen if e.get("type") == "CALL_DTMF_START"] == ["7"]


def test_sip_users_are_registered_again_after_the_gateway_restarts(
    lab: SipLab, janus: Janus
) -> None:
    """Janus restarts: the server registers bob again by itself, and SIP calls ring him."""
    if (why := kamailio_unavailable()) is not None:
        pytest.skip(why)
    registrar = Kamailio(lab)
    domain = registrar.uri.removeprefix("sip:")
    server = Server(lab, janus.url, "--sip-registrar", registrar.uri, "--sip-domain", domain)
    bob = Omni(
        "session", "create", "--user-id", "bob", "--sip-inbound", *CLIENT,
        prefix=tuple(lab.cmd([])), env=omni_env(),
    )  # fmt: skip

    def registrations() -> int:
        return server.log.read_text().count("registered at")

    try:
        bob.event("SESSION")
        wait_for(lambda: registrations() == 1, what="the first registration")
        janus.proc.kill()
        janus.proc.wait()
        lab.start_janus()
        wait_for(lambda: registrations() == 2, timeout=15, what="a registration again")
        dave = BareSip(lab, "dave", answer="auto")
        dave.dial(f"sip:bob@{domain}")
        assert bob.event("RINGING")["caller"] == dave.uri
    finally:
        bob.stop()


def test_the_prompt_takes_sip_calls_too(lab: SipLab, janus: Janus) -> None:
    """`omni repl --sip-inbound`: a SIP call rings at the prompt and `answer` takes it."""
    if (why := kamailio_unavailable()) is not None:
        pytest.skip(why)
    registrar = Kamailio(lab)
    domain = registrar.uri.removeprefix("sip:")
    server = Server(lab, janus.url, "--sip-registrar", registrar.uri, "--sip-domain", domain)
    repl = subprocess.Popen(
        lab.cmd([*OMNI, "repl", "--user-id", "bob", "--sip-inbound", *CLIENT]),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=omni_env(),
    )
    assert repl.stdin is not None and repl.stdout is not None

    def next_event(name: str) -> dict[str, Any]:
        for line in repl.stdout:  # type: ignore[union-attr]
            if line.startswith("{") and json.loads(line).get("event") == name:
                return dict(json.loads(line))
        raise AssertionError(f"the prompt ended before {name}")

    try:
        next_event("SESSION")
        wait_for(lambda: "registered at" in server.log.read_text(), what="SIP registration")
        dave = BareSip(lab, "dave", answer="auto")
        dave.dial(f"sip:bob@{domain}")
        assert next_event("RINGING")["caller"] == dave.uri
        repl.stdin.write("answer\n")
        repl.stdin.flush()
        next_event("CONNECTED")
        dave.wait_event("CALL_ESTABLISHED")
        dave.hangup()
        assert next_event("LEAVE")["reason"] == "hangup"
        repl.stdin.write("quit\n")
        repl.stdin.flush()
        assert repl.wait(timeout=15) == 0
    finally:
        lab.stop(repl)
