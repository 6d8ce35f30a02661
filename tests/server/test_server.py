"""The real signaling server on port 0, driven by raw websocket clients (and one real process)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

import omnicli.server.driver as srv
from omnicli.server.driver import ServerConfig, SignalingServer

OFFER_SDP = "v=0 offer"
ANSWER_SDP = "v=0 answer"


class Client:
    """A raw protocol client: requests wait for their response, events are buffered in order."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._rids = itertools.count(1)
        self._events: deque[dict[str, Any]] = deque()

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            message: dict[str, Any] = json.loads(await self.ws.recv())
        return message

    async def send_raw(self, frame: str | bytes) -> dict[str, Any]:
        """Send any frame; the next non-event message is its response."""
        await self.ws.send(frame)
        while "event" in (message := await self.recv()):
            self._events.append(message)
        return message

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        rid = next(self._rids)
        response = await self.send_raw(json.dumps({"op": op, "id": rid, **fields}))
        assert response["id"] == rid, response
        return response

    async def ok(self, op: str, **fields: Any) -> dict[str, Any]:
        response = await self.request(op, **fields)
        assert response["ok"] is True, response
        result: dict[str, Any] = response["result"]
        return result

    async def error(self, op: str, **fields: Any) -> dict[str, Any]:
        response = await self.request(op, **fields)
        assert response["ok"] is False, response
        err: dict[str, Any] = response["error"]
        return err

    async def event(self, timeout: float = 5.0) -> dict[str, Any]:
        if self._events:
            return self._events.popleft()
        message = await self.recv(timeout)
        assert "event" in message, message
        return message

    async def no_event(self, wait: float = 0.2) -> None:
        assert not self._events, self._events
        with pytest.raises(TimeoutError):
            await self.recv(wait)

    async def offer(self, callee: str, call_type: str = "videocall") -> dict[str, Any]:
        result = await self.ok("offer_call", call_type=call_type, callee=callee, sdp=OFFER_SDP)
        ringback = await self.event()
        assert ringback["event"] == "RINGBACK" and ringback["call_id"] == result["call_id"]
        return result


Open = Callable[..., Awaitable[Client]]


@pytest.fixture
def config() -> ServerConfig:
    return ServerConfig(port=0, ring_timeout=5.0, connect_timeout=5.0)


@pytest.fixture
async def server(config: ServerConfig) -> AsyncIterator[SignalingServer]:
    async with SignalingServer(config) as server:
        yield server


@pytest.fixture
async def open_client(server: SignalingServer) -> AsyncIterator[Open]:
    """Connect a client, say hello and (given a user id) create its session."""
    opened: list[ClientConnection] = []

    async def open_(user_id: str | None = None, *, hello: bool = True, **kw: Any) -> Client:
        ws = await connect(server.url, **kw)
        opened.append(ws)
        client = Client(ws)
        if hello:
            assert await client.ok("hello", version=1, service_id="dev") == {
                "version": 1,
                "service_id": "dev",
            }
        if user_id is not None:
            result = await client.ok("create_session", user_id=user_id)
            assert result["user_id"] == user_id
        return client

    yield open_
    for ws in opened:
        await ws.close()


async def ringing(open_client: Open) -> tuple[Client, Client, str]:
    alice, bob = await open_client("alice"), await open_client("bob")
    call_id = (await alice.offer("bob"))["call_id"]
    ring = await bob.event()
    assert ring["event"] == "RINGING" and ring["caller"] == "alice" and ring["sdp"] == OFFER_SDP
    return alice, bob, call_id


async def connected(open_client: Open) -> tuple[Client, Client, str]:
    alice, bob, call_id = await ringing(open_client)
    await bob.ok("answer_call", sdp=ANSWER_SDP, caller="alice", call_type="videocall")
    assert (await alice.event())["event"] == "ANSWERED"
    await alice.ok("media_state", state="connected")
    await bob.ok("media_state", state="connected")
    for client, peer in ((alice, "bob"), (bob, "alice")):
        event = await client.event()
        assert (event["event"], event["peer"]) == ("CONNECTED", peer)
    return alice, bob, call_id


async def online(client: Client) -> dict[str, str]:
    rows = (await client.ok("session_list"))["sessions"]
    return {row["user_id"]: row["state"] for row in rows}


# -- registration -----------------------------------------------------------------------------


async def test_registration(open_client: Open) -> None:
    """create_session over the wire grants the user id and a session; session_list shows it."""
    alice = await open_client()
    result = await alice.ok("create_session", user_id="alice")
    assert result["user_id"] == "alice" and result["session"] and result["ice_servers"] == []
    anon = await open_client()
    assert (await anon.ok("create_session"))["user_id"].startswith("user-")
    assert set((await online(alice)).values()) == {"idle"} and "alice" in await online(alice)


async def test_duplicate_and_invalid_user_ids(open_client: Open) -> None:
    """A taken user id is 409 user_id_taken, a malformed one 422; the connection stays usable."""
    await open_client("alice")
    other = await open_client()
    err = await other.error("create_session", user_id="alice")
    assert (err["code"], err["reason"]) == (409, "user_id_taken")
    for bad in ("", "a" * 65, "-x", "al ice"):
        err = await other.error("create_session", user_id=bad)
        assert (err["code"], err["reason"]) == (422, "invalid_user_id"), bad
    assert (await other.ok("create_session", user_id="alice2"))["user_id"] == "alice2"


async def test_requests_before_hello_and_session(open_client: Open) -> None:
    """Before hello requests are 401; after hello but before a session call requests are 428."""
    client = await open_client(hello=False)
    assert (await client.error("session_list"))["code"] == 401
    err = await client.error("hello", version=9, service_id="dev")
    assert (err["code"], err["reason"]) == (426, "version_unsupported")
    assert (await client.error("hello", version=1, service_id="nope"))["code"] == 401
    await client.ok("hello", version=1, service_id="dev")
    assert (await client.error("leave"))["code"] == 428


# -- calls ------------------------------------------------------------------------------------


async def test_offer_to_busy_callee(open_client: Open) -> None:
    """Calling a user who is in a call gets 486 busy; the call in progress is not disturbed."""
    alice, bob, _ = await ringing(open_client)
    carol = await open_client("carol")
    err = await carol.error("offer_call", call_type="videocall", callee="bob", sdp=OFFER_SDP)
    assert (err["code"], err["reason"]) == (486, "busy")
    await alice.no_event(0.1)
    await bob.no_event(0.1)


async def test_offer_to_absent_callee_that_registers_late(open_client: Open) -> None:
    """An absent callee gets RINGING as soon as it registers, and answers seed-style by caller."""
    alice = await open_client("alice")
    result = await alice.offer("bob")
    assert result["callee_online"] is False
    bob = await open_client("bob")
    ring = await bob.event()
    assert ring == {
        "event": "RINGING",
        "call_id": result["call_id"],
        "caller": "alice",
        "call_type": "videocall",
        "record": False,
        "sdp": OFFER_SDP,
    }
    answer = await bob.ok("answer_call", sdp=ANSWER_SDP, call_type="videocall", caller="alice")
    assert answer == {"call_id": result["call_id"], "caller": "alice", "call_type": "videocall"}
    answered = await alice.event()
    assert (answered["event"], answered["sdp"]) == ("ANSWERED", ANSWER_SDP)


@pytest.mark.parametrize(
    "config", [ServerConfig(port=0, ring_timeout=0.4, connect_timeout=5.0)], ids=["ring0.4s"]
)
async def test_absent_callee_never_registers(open_client: Open) -> None:
    """An offer to a user who never comes online ends as unavailable at the ring timeout."""
    alice = await open_client("alice")
    started = time.monotonic()
    await alice.offer("bob")
    leave = await alice.event(timeout=3)
    assert (leave["event"], leave["reason"]) == ("LEAVE", "unavailable")
    assert 0.3 <= time.monotonic() - started < 2.0


async def test_decline(open_client: Open) -> None:
    """The callee leaving a ringing call: the caller gets LEAVE declined."""
    alice, bob, call_id = await ringing(open_client)
    assert await bob.ok("leave") == {"call_id": call_id, "reason": "declined"}
    assert await alice.event() == {
        "event": "LEAVE",
        "call_id": call_id,
        "reason": "declined",
        "by": "bob",
    }
    assert await online(alice) == {"alice": "idle", "bob": "idle"}


async def test_cancel(open_client: Open) -> None:
    """The caller leaving a ringing call: the callee gets CANCEL cancelled."""
    alice, bob, call_id = await ringing(open_client)
    assert await alice.ok("leave") == {"call_id": call_id, "reason": "cancelled"}
    cancel = await bob.event()
    assert (cancel["event"], cancel["reason"], cancel["call_id"]) == (
        "CANCEL",
        "cancelled",
        call_id,
    )


@pytest.mark.parametrize(
    "config", [ServerConfig(port=0, ring_timeout=0.5, connect_timeout=5.0)], ids=["ring0.5s"]
)
async def test_ring_timeout(open_client: Open) -> None:
    """A call nobody answers ends after ring_timeout: LEAVE no_answer / CANCEL no_answer."""
    started = time.monotonic()
    alice, bob, call_id = await ringing(open_client)
    leave, cancel = await alice.event(timeout=3), await bob.event(timeout=3)
    elapsed = time.monotonic() - started
    assert (leave["event"], leave["reason"], leave["call_id"]) == ("LEAVE", "no_answer", call_id)
    assert (cancel["event"], cancel["reason"]) == ("CANCEL", "no_answer")
    assert 0.4 <= elapsed < 2.5
    assert (await bob.error("answer_call", sdp=ANSWER_SDP))["code"] == 404


async def test_hangup_mute_and_call_again(open_client: Open) -> None:
    """In a connected call mute reaches the peer, hang-up ends it, and both can call again."""
    alice, bob, call_id = await connected(open_client)
    assert await alice.ok("mute", track="video") == {"track": "video", "muted": True}
    mute = await bob.event()
    assert (mute["event"], mute["track"], mute["user_id"]) == ("MUTE", "video", "alice")
    await alice.no_event(0.05)
    assert await bob.ok("leave") == {"call_id": call_id, "reason": "hangup"}
    leave = await alice.event()
    assert (leave["event"], leave["reason"], leave["by"]) == ("LEAVE", "hangup", "bob")
    await bob.offer("alice")
    assert (await alice.event())["caller"] == "bob"


# -- malformed input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "rid", "code"),
    [
        ("not json", None, 400),
        ("[1, 2]", None, 400),
        (b'{"op": "ping", "id": 1}', None, 400),
        ('{"op": "ping"}', None, 400),
        ('{"op": "dance", "id": 7}', 7, 501),
        ('{"op": "offer_call", "id": 8, "callee": "bob"}', 8, 400),
        ('{"op": "hello", "id": 9, "version": 2, "service_id": "dev"}', 9, 426),
    ],
)
async def test_malformed_frame_keeps_connection(
    open_client: Open, frame: str | bytes, rid: int | None, code: int
) -> None:
    """A malformed frame gets an error response (echoing a usable id) and the connection lives."""
    client = await open_client("alice")
    response = await client.send_raw(frame)
    assert response["ok"] is False and response["id"] == rid
    assert response["error"]["code"] == code and response["error"]["message"]
    assert await client.ok("ping") == {}


async def test_oversized_frame_closes_with_1009(open_client: Open) -> None:
    """A frame over 64 KiB closes that connection with code 1009; its session ends."""
    alice = await open_client("alice")
    bob = await open_client("bob")
    await bob.ws.send("x" * (64 * 1024 + 1))
    with pytest.raises(ConnectionClosed) as info:
        await bob.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    assert await online(alice) == {"alice": "idle"}


async def test_frame_at_limit_is_accepted(open_client: Open) -> None:
    """A frame of exactly 64 KiB is read and answered (here: sdp too long, 400)."""
    alice = await open_client("alice")
    frame = json.dumps({"op": "answer_call", "id": 5, "sdp": ""})
    frame = frame.replace('"sdp": ""', '"sdp": "' + "x" * (64 * 1024 - len(frame)) + '"')
    assert len(frame.encode()) == 64 * 1024
    response = await alice.send_raw(frame)
    assert (response["id"], response["error"]["code"]) == (5, 400)


async def test_internal_error_keeps_connection(
    server: SignalingServer, open_client: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in the switchboard becomes a 500 response; the connection and server go on."""
    alice = await open_client("alice")
    real_handle = server.board.handle

    def broken(conn: int, request: Any, now: float) -> Any:
        if request.op == "session_list":
            raise RuntimeError("boom")
        return real_handle(conn, request, now)

    monkeypatch.setattr(server.board, "handle", broken)
    err = await alice.error("session_list")
    assert (err["code"], err["reason"]) == (500, "internal")
    assert await alice.ok("ping") == {}


# -- lost clients -----------------------------------------------------------------------------

CHILD = """
import asyncio, json, sys
from websockets.asyncio.client import connect

async def main(url):
    async with connect(url) as ws:
        n = 0
        async def request(op, **fields):
            nonlocal n
            n += 1
            await ws.send(json.dumps({"op": op, "id": n, **fields}))
        await request("hello", version=1, service_id="dev")
        await request("create_session", user_id="bob")
        while True:
            message = json.loads(await ws.recv())
            print(json.dumps(message), flush=True)
            if message.get("event") == "RINGING":
                await request("answer_call", sdp="v=0 answer", caller=message["caller"])
                await request("media_state", state="connected")

asyncio.run(main(sys.argv[1]))
"""


async def read_json_line(stream: asyncio.StreamReader, timeout: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        line = await stream.readline()
    assert line, "the child process ended"
    message: dict[str, Any] = json.loads(line)
    return message


async def test_client_killed_mid_call(server: SignalingServer, open_client: Open) -> None:
    """A callee process killed with SIGKILL mid-call: the caller gets LEAVE connection_lost
    quickly, and other clients (one in a call of their own) are not disturbed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, server.url, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        await read_json_line(proc.stdout)  # hello
        assert (await read_json_line(proc.stdout))["result"]["user_id"] == "bob"
        alice = await open_client("alice")
        carol, dave = await open_client("carol"), await open_client("dave")
        await carol.offer("dave")
        await dave.event()
        await dave.ok("answer_call", sdp=ANSWER_SDP)
        await carol.event()
        for client in (carol, dave):  # connected: no timer may end it while we wait
            await client.ok("media_state", state="connected")
        for client in (carol, dave):
            assert (await client.event())["event"] == "CONNECTED"

        call_id = (await alice.offer("bob"))["call_id"]
        assert (await alice.event())["event"] == "ANSWERED"
        await alice.ok("media_state", state="connected")
        assert (await alice.event())["event"] == "CONNECTED"

        os.kill(proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        leave = await alice.event(timeout=10)
        assert leave == {
            "event": "LEAVE",
            "call_id": call_id,
            "reason": "connection_lost",
            "by": "bob",
        }
        assert time.monotonic() - killed < 10
        assert await proc.wait() == -signal.SIGKILL
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    assert await online(carol) == {"alice": "idle", "carol": "busy", "dave": "busy"}
    await carol.ok("mute", track="audio")
    assert (await dave.event())["event"] == "MUTE"
    await carol.no_event(0.05)
    assert (await alice.error("leave"))["code"] == 404  # alice is in no call any more


async def test_unresponsive_client_is_noticed() -> None:
    """A peer that stops reading (no pongs) is dropped after the ping and close timeouts
    (`--keepalive 0.3`: a ping every 0.3 s, 0.3 s to answer it); after the resume grace
    the other side gets LEAVE connection_lost."""
    async with SignalingServer(ServerConfig(port=0, resume_grace=0.5, keepalive=0.3)) as fast:
        alice = Client(await connect(fast.url))
        bob = Client(await connect(fast.url, ping_interval=None))
        try:
            for client, name in ((alice, "alice"), (bob, "bob")):
                await client.ok("hello", version=1, service_id="dev")
                await client.ok("create_session", user_id=name)
            await alice.offer("bob")
            bob.ws.transport.pause_reading()  # bob's process hangs: it reads nothing, pongs nothing
            stalled = time.monotonic()
            leave = await alice.event(timeout=10)
            elapsed = time.monotonic() - stalled
            assert (leave["event"], leave["reason"], leave["by"]) == (
                "LEAVE",
                "connection_lost",
                "bob",
            )
            assert elapsed < 0.6 + srv.CLOSE_TIMEOUT + 0.5 + 1.5  # keepalive + grace
            assert await online(alice) == {"alice": "idle"}
        finally:
            bob.ws.transport.abort()
            with contextlib.suppress(ConnectionClosed):
                await bob.ws.close()
            await alice.ws.close()


async def test_default_keepalive_notices_within_ten_seconds(server: SignalingServer) -> None:
    """With the default settings a client that stops answering pings has its connection
    dropped by the server within 10 s (its session then waits out the resume grace)."""
    ws = await connect(server.url, ping_interval=None)
    try:
        await Client(ws).ok("hello", version=1, service_id="dev")
        assert len(server.board.conns) == 1
        ws.transport.pause_reading()  # the client hangs: it reads nothing, pongs nothing
        stalled = time.monotonic()
        async with asyncio.timeout(15):
            while server.board.conns:
                await asyncio.sleep(0.05)
        assert time.monotonic() - stalled < 10
    finally:
        ws.transport.abort()
        with contextlib.suppress(ConnectionClosed):
            await ws.close()


async def test_hello_timeout(open_client: Open, monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection that never says hello is closed (1008) after HELLO_TIMEOUT; one that did
    is kept."""
    monkeypatch.setattr(srv, "HELLO_TIMEOUT", 0.3)
    silent = await open_client(hello=False)
    greeted = await open_client(hello=True)
    started = time.monotonic()
    with pytest.raises(ConnectionClosed) as info:
        await silent.recv(timeout=3)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008
    assert 0.2 <= time.monotonic() - started < 2.0
    await asyncio.sleep(0.3)
    assert await greeted.ok("ping") == {}
