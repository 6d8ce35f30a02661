"""Security and limits: tokens, acting only on one's own calls, the registration policy,
loopback-only open services, TLS, TURN credentials, the rate limit, stalled clients."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import time
from pathlib import Path
from typing import Any

import pytest
from board import Board as BaseBoard
from procs import run_omni
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import omnicli.server.connection as bounded
import omnicli.server.driver as srv
from omnicli.errors import ServerRefused, ServerUnreachable, UsageError
from omnicli.phone.signaling import SignalingClient
from omnicli.server.driver import ServerConfig, SignalingServer, check_config
from omnicli.server.switchboard import Service
from omnicli.server.turn import TurnConfig
from omnicli.wire import protocol as p
from omnicli.wire import tokens
from omnicli.wire.messages import EndedEvent, KickoutEvent, MuteEvent

KEY = "acme-key"
WALL = 1_800_000_000.0


class Board(BaseBoard):
    """The driver on services acme (key KEY) and dev, with a fixed wall clock."""

    def __init__(self, **kw: Any) -> None:
        kw.setdefault("wall_clock", lambda: WALL)
        super().__init__([Service("acme", KEY), Service("dev", None)], **kw)

    def conn(self) -> int:
        return self.connect()


def token(user: str, service: str = "acme", ttl: float = 600, key: str = KEY) -> str:
    return tokens.mint_user_token(key, service_id=service, user_id=user, ttl=ttl, now=WALL)


# -- tokens ------------------------------------------------------------------------------------


def test_required_tokens_admit_only_the_named_user() -> None:
    """With require_tokens a hello needs a valid token; its session is only for its user."""
    b = Board(require_tokens=True)
    for hello in (
        {},
        {"service_key": KEY},
        {"token": token("bob", ttl=1) + "x"},
        {"token": token("bob", service="dev")},
        {"token": token("bob", key="wrong")},
    ):
        assert b.code(b.conn(), "hello", version=1, service_id="acme", **hello) == 401, hello
    expired = Board(require_tokens=True, wall_clock=lambda: WALL + 3600)
    assert (
        expired.code(expired.conn(), "hello", version=1, service_id="acme", token=token("bob"))
        == 401
    )
    conn = b.conn()
    b.result(conn, "hello", version=1, service_id="acme", token=token("bob"))
    assert b.code(conn, "create_session", user_id="alice") == 403
    assert b.result(conn, "create_session")["user_id"] == "bob"  # no id: the token's


def test_without_require_tokens_a_token_still_pins_the_user() -> None:
    """A key alone admits any user id; a token (instead of the key) admits only its user."""
    b = Board()
    assert b.sb.user_of(b.user("mallory", "acme", service_key=KEY)) == "mallory"
    conn = b.conn()
    b.result(conn, "hello", version=1, service_id="acme", token=token("bob"))
    assert b.code(conn, "create_session", user_id="alice") == 403
    assert b.result(conn, "create_session", user_id="bob")["user_id"] == "bob"


async def test_token_from_the_cli_opens_a_required_tokens_server(tmp_path: Path) -> None:
    """`omni token create` prints a token that `--require-tokens` accepts, for that user only."""
    done = await asyncio.to_thread(
        run_omni,
        "token",
        "create",
        "--user-id",
        "bob",
        "--ttl",
        "10m",
        "--service-id",
        "acme",
        "--service-key",
        KEY,
    )
    assert done.returncode == 0, done.stderr
    minted = done.stdout.strip()
    config = ServerConfig(port=0, services=(Service("acme", KEY),), require_tokens=True)
    async with SignalingServer(config) as server:
        client = SignalingClient(server.url, on_event=lambda m: None)
        await client.connect()
        try:
            with pytest.raises(ServerRefused) as refused:
                await client.request("hello", version=1, service_id="acme", service_key=KEY)
            assert refused.value.code == 401
            await client.request("hello", version=1, service_id="acme", token=minted)
            with pytest.raises(ServerRefused) as refused:
                await client.request("create_session", user_id="alice")
            assert refused.value.code == 403
            assert (await client.request("create_session", user_id="bob"))["user_id"] == "bob"
        finally:
            await client.close()


# -- only one's own calls ---------------------------------------------------------------------

IN_CALL_OPS = [
    ("leave", {}),
    ("mute", {"track": "audio"}),
    ("unmute", {"track": "video"}),
    ("media_state", {"state": "failed"}),
    ("recording", {"on": True}),
    ("answer_call", {"sdp": "v=0 mallory"}),
]


@pytest.mark.parametrize(("op", "fields"), IN_CALL_OPS, ids=[o for o, _ in IN_CALL_OPS])
def test_outsiders_cannot_act_on_a_call(op: str, fields: dict[str, Any]) -> None:
    """Naming someone else's call is 403, naming no call when in none is 404; the call and
    its parties are untouched and hear nothing."""
    b = Board()
    alice, bob = b.user("alice"), b.user("bob")
    call_id = b.result(alice, "offer_call", call_type="videocall", callee="bob", sdp="offer")[
        "call_id"
    ]
    b.result(bob, "answer_call", sdp="answer")
    carol, dave = b.user("carol"), b.user("dave")
    assert b.code(carol, op, call_id=call_id, **fields) == 403
    assert b.code(carol, op, **fields) == 404
    b.result(carol, "offer_call", call_type="audiocall", callee="dave", sdp="o2")  # own call
    assert b.code(carol, op, call_id=call_id, **fields) == 403
    assert b.code(carol, op, call_id="c-nope", **fields) == 404
    assert b.sb.calls[call_id].state.value == "answered"
    assert dave  # carol's own call is unaffected too
    assert b.result(alice, "mute", track="audio", call_id=call_id) == {
        "track": "audio",
        "muted": True,
    }


def test_sdp_goes_only_to_the_two_parties() -> None:
    """Over a whole call every message carrying SDP goes to the caller or the callee only."""
    b = Board()
    alice, bob, carol = b.user("alice"), b.user("bob"), b.user("carol")
    sends = b.send(alice, "offer_call", call_type="videocall", callee="bob", sdp="SECRET-O")
    sends += b.send(bob, "answer_call", sdp="SECRET-A")
    sends += b.send(carol, "answer_call", sdp="x", caller="alice")
    assert sends[-1].message["error"]["code"] == 404  # a caller name is not a way in
    assert all(s.conn in (alice, bob) for s in sends if "SECRET" in json.dumps(s.message))
    assert b.code(alice, "answer_call", sdp="x") == 404  # the caller cannot answer itself


def test_second_registration_is_refused() -> None:
    """A user id that is online (or away, awaiting resume) cannot be registered again (409)."""
    b = Board()
    bob = b.user("bob")
    other = b.conn()
    b.result(other, "hello", version=1, service_id="dev")
    assert b.code(other, "create_session", user_id="bob") == 409
    b.disconnect(bob, 0.0, lost=True)
    assert b.code(other, "create_session", user_id="bob") == 409
    b.expire(100.0)
    assert b.result(other, "create_session", user_id="bob")["user_id"] == "bob"


# -- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "example.org"])
def test_open_service_refused_off_loopback(host: str) -> None:
    """An open (keyless) service may only listen on loopback; keyed services may listen anywhere."""
    with pytest.raises(UsageError, match="loopback"):
        check_config(ServerConfig(host=host))
    check_config(ServerConfig(host=host, services=(Service("acme", KEY),)))
    for loopback in ("127.0.0.1", "::1", "localhost", "127.3.4.5"):
        check_config(ServerConfig(host=loopback))


def test_require_tokens_needs_keys_and_cli_says_so() -> None:
    """--require-tokens with an open service is refused in one line with exit code 2."""
    with pytest.raises(UsageError, match="no key"):
        check_config(ServerConfig(require_tokens=True))
    done = run_omni("server", "--host", "0.0.0.0", "--port", "0")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "loopback" in done.stderr


# -- TLS -----------------------------------------------------------------------------------


def self_signed(tmp: Path) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "omni test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


async def test_tls_with_a_ca_file(tmp_path: Path) -> None:
    """A TLS server is reached over wss:// when the client trusts its CA file, and refused
    (ServerUnreachable) when it does not."""
    cert, key = self_signed(tmp_path)
    async with SignalingServer(ServerConfig(port=0, tls_cert=cert, tls_key=key)) as server:
        assert server.url.startswith("wss://127.0.0.1:")
        trusted = SignalingClient(server.url, on_event=lambda m: None, ca_file=cert)
        await trusted.connect()
        try:
            result = await trusted.request("hello", version=1, service_id="dev")
            assert result == {"version": 1, "service_id": "dev"}
        finally:
            await trusted.close()
        stranger = SignalingClient(server.url, on_event=lambda m: None)
        with pytest.raises(ServerUnreachable):
            await stranger.connect()


async def test_unreadable_tls_files_are_a_usage_error(tmp_path: Path) -> None:
    """A missing certificate file is a one-line UsageError, not a traceback."""
    server = SignalingServer(
        ServerConfig(port=0, tls_cert=str(tmp_path / "no.pem"), tls_key=str(tmp_path / "no.key"))
    )
    with pytest.raises(UsageError, match="TLS"):
        await server.start()


# -- TURN ----------------------------------------------------------------------------------


def test_turn_credentials_in_create_session() -> None:
    """With TURN configured each session gets its own expiring REST credential."""
    b = Board(turn=TurnConfig(("turn:turn.example:3478",), "turnsecret", ttl=600))
    conn = b.conn()
    b.result(conn, "hello", version=1, service_id="dev")
    ice = b.result(conn, "create_session", user_id="bob")["ice_servers"]
    assert len(ice) == 1 and ice[0]["urls"] == ["turn:turn.example:3478"]
    assert ice[0]["username"] == f"{int(WALL) + 600}:bob" and ice[0]["credential"]
    assert "turnsecret" not in json.dumps(ice)


# -- limits --------------------------------------------------------------------------------


async def test_rate_limit_answers_429_and_recovers() -> None:
    """A flood past the burst gets 429 rate_limited (one response per request, ids kept);
    after a pause the connection works again."""
    config = ServerConfig(port=0, rate_limit=5, rate_burst=5)
    async with SignalingServer(config) as server, connect(server.url) as ws:
        for rid in range(1, 21):
            await ws.send(json.dumps({"op": "ping", "id": rid}))
        responses = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(20)]
        assert sorted(r["id"] for r in responses) == list(range(1, 21))
        limited = [r for r in responses if not r["ok"]]
        assert 5 <= len(limited) <= 15
        assert {r["error"]["code"] for r in limited} == {429}
        assert limited[0]["error"]["reason"] == "rate_limited"
        await asyncio.sleep(0.5)
        await ws.send(json.dumps({"op": "ping", "id": 99}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {
            "id": 99,
            "ok": True,
            "result": {},
        }


async def test_session_cap_per_service() -> None:
    """A service with max_sessions=2 refuses the third session with 503 server_full."""
    config = ServerConfig(port=0, services=(Service("dev", None, max_sessions=2),))
    async with SignalingServer(config) as server:
        clients = []
        try:
            for n in range(3):
                c = SignalingClient(server.url, on_event=lambda m: None)
                await c.connect()
                clients.append(c)
                await c.request("hello", version=1, service_id="dev")
                if n < 2:
                    await c.request("create_session", user_id=f"u{n}")
            with pytest.raises(ServerRefused) as refused:
                await clients[2].request("create_session", user_id="u2")
            assert (refused.value.code, refused.value.reason) == (503, "server_full")
        finally:
            for c in clients:
                await c.close()


async def test_stalled_client_is_closed_without_delaying_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client whose socket never drains fills its bounded queue and is closed; the others'
    messages keep flowing meanwhile and its peer hears connection_lost."""
    monkeypatch.setattr(bounded, "SEND_QUEUE_BYTES", 600)  # about 8 MUTE events
    async with SignalingServer(ServerConfig(port=0, rate_limit=0)) as server:
        events: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        clients = {}
        for name in ("alice", "bob", "carol", "dave"):
            events[name] = asyncio.Queue()
            c = SignalingClient(server.url, on_event=events[name].put_nowait)
            await c.connect()
            await c.request("hello", version=1, service_id="dev")
            await c.request("create_session", user_id=name)
            clients[name] = c
        try:
            for caller, callee in (("alice", "bob"), ("carol", "dave")):
                await clients[caller].request(
                    "offer_call", call_type="audiocall", callee=callee, sdp="o"
                )
                await clients[callee].request("answer_call", sdp="a")
            for queue in events.values():  # one RINGING or ANSWERED each: setup is done
                await asyncio.wait_for(queue.get(), 5)
                while not queue.empty():
                    queue.get_nowait()
            bob_conn = server.board.users[("dev", "bob")]
            stuck = asyncio.Event()

            async def never(_: str) -> None:
                await stuck.wait()  # bob's network is stuck: nothing is ever written

            monkeypatch.setattr(server._clients[bob_conn].ws, "send", never)
            started = time.monotonic()
            for n in range(20):
                with contextlib.suppress(ServerRefused):  # 404 once bob has been dropped
                    await clients["alice"].request("mute" if n % 2 else "unmute", track="audio")
                await clients["carol"].request("mute", track="audio")
                got = await asyncio.wait_for(events["dave"].get(), 2)
                assert isinstance(got, MuteEvent) and got.muted
            assert time.monotonic() - started < 5
            async with asyncio.timeout(10):
                while True:
                    msg = await events["alice"].get()
                    if isinstance(msg, EndedEvent) and not msg.cancel:  # LEAVE
                        break
            assert (msg.reason, msg.by) == ("connection_lost", "bob")
            stuck.set()
        finally:
            for c in clients.values():
                await c.close()


async def test_kickout_closes_the_old_connection() -> None:
    """Resuming a session that a half-open connection still holds: the old connection gets
    KICKOUT and is closed with 4000, and does not resume again by itself."""
    async with SignalingServer(ServerConfig(port=0)) as server:
        old_events: list[dict[str, Any]] = []
        old = SignalingClient(server.url, on_event=old_events.append)
        await old.connect()
        await old.request("hello", version=1, service_id="dev")
        resume_token = (await old.request("create_session", user_id="bob"))["resume_token"]
        new = SignalingClient(server.url, on_event=lambda m: None)
        await new.connect()
        try:
            await new.request("hello", version=1, service_id="dev")
            assert (await new.request("resume", resume_token=resume_token))["user_id"] == "bob"
            async with asyncio.timeout(5):
                while old.connected:
                    await asyncio.sleep(0.02)
            assert old.close_code == 4000
            assert [type(e) for e in old_events] == [KickoutEvent]
            assert server.board.users[("dev", "bob")] != 1
        finally:
            await new.close()
            await old.close()


async def test_oversized_frame_from_a_session_ends_it_at_once() -> None:
    """A 1009 close is the server's doing, not a network drop: no resume grace is given."""
    async with SignalingServer(ServerConfig(port=0)) as server:
        async with connect(server.url) as ws:
            await ws.send(json.dumps({"op": "hello", "id": 1, "version": 1, "service_id": "dev"}))
            await ws.recv()
            await ws.send(json.dumps({"op": "create_session", "id": 2, "user_id": "bob"}))
            await ws.recv()
            await ws.send("x" * (p.MAX_MESSAGE_BYTES + 1))
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
        async with asyncio.timeout(5):
            while ("dev", "bob") in server.board.users:
                await asyncio.sleep(0.02)
        assert server.board.away == {}


# -- review fixes: token subjects, failed hellos ---------------------------------------------


def test_access_token_naming_a_bad_user_id_is_refused() -> None:
    """An access token whose `sub` is not a valid user id is a bad token (401), not a session."""
    b = Board()
    for sub in ("bad id", "x" * 100, "-lead"):
        assert b.code(b.conn(), "hello", version=1, service_id="acme", token=token(sub)) == 401
    with pytest.raises(tokens.TokenError, match="user id"):
        tokens.check_user_token(token("a b"), KEY, service_id="acme", now=WALL)


async def test_a_connection_is_closed_after_too_many_failed_hellos() -> None:
    """After MAX_FAILED_HELLOS refused hellos the server closes the connection with 1008."""
    config = ServerConfig(port=0, services=(Service("acme", KEY),))
    async with SignalingServer(config) as server, connect(server.url) as ws:
        for rid in range(1, srv.MAX_FAILED_HELLOS + 1):
            await ws.send(
                json.dumps(
                    {
                        "op": "hello",
                        "id": rid,
                        "version": 1,
                        "service_id": "acme",
                        "service_key": "guess",
                    }
                )
            )
            assert json.loads(await ws.recv())["error"]["code"] == 401
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(10):
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == p.CLOSE_POLICY
