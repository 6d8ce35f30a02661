"""The server's TURN REST credentials against a real coturn: media relayed, or refused."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from phones import until

from omnicli.phone import events as ev
from omnicli.phone.core import MediaOptions, Phone, PhoneConfig
from omnicli.server.driver import ServerConfig, SignalingServer
from omnicli.server.turn import TurnConfig
from omnicli.ui.cliapp import make_phone
from omnicli.ui.settings import from_flags

SECRET = "omni-turn-test-secret"
TURNSERVER = shutil.which("turnserver")

needs_coturn = pytest.mark.skipif(
    TURNSERVER is None, reason="coturn's turnserver is not installed (apt-get install coturn)"
)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stun_answers(port: int, timeout: float = 0.3) -> bool:
    """True if a STUN binding request to 127.0.0.1:`port` gets a binding response."""
    request = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + os.urandom(12)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(request, ("127.0.0.1", port))
            reply = sock.recv(2048)
        except OSError:
            return False
    return reply[:2] == b"\x01\x01" and reply[8:20] == request[8:20]


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A coturn on 127.0.0.1 with the REST API secret; yields (port, log file)."""
    assert TURNSERVER is not None
    port = free_udp_port()
    log = tmp_path / "turnserver.log"
    proc = subprocess.Popen(
        [
            TURNSERVER,
            "-n",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            f"--listening-port={port}",
            "--use-auth-secret",
            f"--static-auth-secret={SECRET}",
            "--realm=omni",
            "--allow-loopback-peers",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--no-tcp",
            "--no-rfc5780",
            f"--log-file={log}",
            "--simple-log",
            "--no-stdout-log",
            f"--pidfile={tmp_path / 'turnserver.pid'}",
            "--verbose",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while not stun_answers(port):
            assert proc.poll() is None, f"turnserver exited: {log.read_text(errors='replace')}"
            assert time.monotonic() < deadline, "turnserver did not answer STUN within 15 s"
        yield port, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def relay_phone(srv: SignalingServer, *, connect_timeout: float = 15.0) -> Phone:
    media = MediaOptions(
        ice_relay_only=True,
        video_source="test",
        audio_source="tone:440",
        width=320,
        height=240,
        connect_timeout=connect_timeout,
    )
    return Phone(PhoneConfig(server_url=srv.url, media=media))


def nominated_types(p: Phone) -> set[tuple[str, str]]:
    """(local, remote) candidate types of the ICE pairs the call's media uses."""
    pc = p.media.link.pc
    types = set()
    for transceiver in pc.getTransceivers():
        ice = transceiver.sender.transport.transport
        for pair in ice._connection._nominated.values():
            types.add((pair.local_candidate.type, pair.remote_candidate.type))
    return types


@needs_coturn
async def test_turn_credentials_from_the_server_relay_the_call_through_coturn(coturn):
    """Relay-only phones with the server's REST credentials connect via coturn; frames flow."""
    port, log = coturn
    turn = TurnConfig(urls=(f"turn:127.0.0.1:{port}?transport=udp",), secret=SECRET)
    async with SignalingServer(ServerConfig(port=0, ring_timeout=10, turn=turn)) as srv:
        alice, bob = relay_phone(srv), relay_phone(srv)
        try:
            await alice.create_session("alice")
            await bob.create_session("bob")
            assert alice.ice_servers[0]["urls"] == list(turn.urls)
            assert alice.ice_servers[0]["username"].endswith(":alice")
            await alice.offer_call("videocall", "bob")
            await until(bob, ev.Ringing)
            await bob.answer_call("videocall", "alice")
            connected = await until(alice, ev.Connected)
            await until(bob, ev.Connected)
            print(f"relay-only call set up in {connected.setup_ms:.0f} ms")
            for p in (alice, bob):
                sdp = p.media.link.pc.localDescription.sdp
                assert "typ relay" in sdp and "typ host" not in sdp
                assert nominated_types(p) == {("relay", "relay")}
            probe = bob.media.link.video_in
            async with asyncio.timeout(15):
                while probe.frames_received < 10 or alice.media.link.video_in.frames_received < 10:
                    await asyncio.sleep(0.05)
        finally:
            await alice.close()
            await bob.close()
    allocated = [
        line
        for line in log.read_text(errors="replace").splitlines()
        if "ALLOCATE processed, success" in line
    ]
    assert any(":alice>" in line for line in allocated), allocated
    assert any(":bob>" in line for line in allocated), allocated


@needs_coturn
async def test_a_secret_coturn_does_not_share_ends_the_call_with_media_failed(coturn):
    """Credentials signed with the wrong secret are refused: the call ends in media_failed."""
    port, log = coturn
    turn = TurnConfig(urls=(f"turn:127.0.0.1:{port}?transport=udp",), secret="not-" + SECRET)
    config = ServerConfig(port=0, ring_timeout=10, connect_timeout=6, turn=turn)
    async with SignalingServer(config) as srv:
        alice, bob = relay_phone(srv, connect_timeout=3), relay_phone(srv, connect_timeout=3)
        try:
            await alice.create_session("alice")
            await bob.create_session("bob")
            await alice.offer_call("videocall", "bob")
            await until(bob, ev.Ringing)
            await bob.answer_call("videocall", "alice")
            leave = await until(alice, ev.Leave)
            assert leave.reason == "media_failed"
            assert (await until(bob, ev.Leave)).reason == "media_failed"
        finally:
            await alice.close()
            await bob.close()
    lines = log.read_text(errors="replace").splitlines()
    assert not [line for line in lines if "ALLOCATE processed, success" in line]
    refused = [line for line in lines if ":alice>" in line and "401" in line]
    assert refused, "coturn never refused alice's signed username"


def test_relay_only_flag_reaches_the_media_options(tmp_path, monkeypatch):
    """--relay-only (relay_only) sets MediaOptions.ice_relay_only; it is off by default."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("OMNI_CONFIG", raising=False)
    assert make_phone(from_flags({"relay_only": True})).config.media.ice_relay_only is True
    assert make_phone(from_flags({"relay_only": False})).config.media.ice_relay_only is False
