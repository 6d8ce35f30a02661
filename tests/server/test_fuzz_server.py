"""Fuzzing the server with random sequences of valid and invalid messages from several clients.

Invariants: the server never crashes; every request gets exactly one response, first, with its
id; the registry stays consistent; and once every client is gone (and the timers have run) no
user is left online or busy and no call is left open."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stores import STORES
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from omnicli.server.driver import ServerConfig, SignalingServer
from omnicli.server.switchboard import Service, Switchboard
from omnicli.wire import protocol as p
from omnicli.wire import requests as rq

USERS = ["alice", "bob", "carol", "dave"]


class Pools:
    """Values seen so far that make requests likely to be valid (tokens, call ids)."""

    def __init__(self) -> None:
        self.resume_tokens: list[str] = ["x.y.z"]
        self.call_ids: list[str] = ["c-none"]

    def learn(self, message: dict[str, Any]) -> None:
        result = message.get("result") or {}
        if isinstance(result.get("resume_token"), str):
            self.resume_tokens.append(result["resume_token"])
        for holder in (result, message):
            if isinstance(holder.get("call_id"), str):
                self.call_ids.append(holder["call_id"])


def frame(pick: random.Random, rid: int, pools: Pools) -> dict[str, Any] | str:
    """One request: mostly well-formed with plausible values for its op, sometimes broken."""
    roll = pick.random()
    if roll < 0.03:
        return pick.choice(["", "{", "[1]", "null", '{"op": 5}', "\u0000", "x" * 300])
    call_ids = [None, None, None, *pools.call_ids[-2:], "c-none"]
    spec: dict[str, dict[str, list[Any]]] = {
        "hello": {
            "version": [1] * 6 + [2, "1"],
            "service_id": ["dev"] * 6 + ["locked", "x"],
            "service_key": [None, None, "s3cret", "k"],
        },
        "create_session": {"user_id": [*USERS, *USERS, None, "", "bad id", "x" * 70]},
        "session_list": {},
        "offer_call": {
            "call_type": ["videocall"] * 3 + ["audiocall", "fax"],
            "callee": [*USERS, *USERS, "ghost", "", 7],
            "sdp": ["v=0"] * 5 + [" "],
            "record": [False, False, True, "yes"],
        },
        "answer_call": {
            "sdp": ["v=0"] * 5 + [None],
            "caller": [*USERS, None, None, None],
            "call_type": [None] * 4 + ["videocall", "audiocall"],
            "call_id": call_ids,
        },
        "leave": {"call_id": call_ids},
        "mute": {"track": ["audio", "video"] * 3 + ["screen"], "call_id": call_ids},
        "unmute": {"track": ["audio", "video"] * 3 + [None], "call_id": call_ids},
        "media_state": {"state": ["connected"] * 5 + ["failed", "up"], "call_id": call_ids},
        "recording": {"on": [True, False, False, None], "call_id": call_ids},
        "resume": {
            "resume_token": [*pools.resume_tokens[-3:], "bad", None],
            "call_id": call_ids,
            "peer": [*USERS, None],
            "role": ["caller", "callee", "both"],
            "call_type": ["videocall", "audiocall"],
        },
        "ping": {},
        "bogus": {"x": [1]},
    }
    weights = {
        "hello": 3,
        "create_session": 3,
        "offer_call": 4,
        "answer_call": 4,
        "media_state": 4,
        "leave": 2,
        "resume": 2,
    }
    ops = list(spec)
    op = pick.choices(ops, weights=[weights.get(o, 1) for o in ops])[0]
    fields: dict[str, Any] = {"op": op, "id": rid}
    for name, choices in spec[op].items():
        if pick.random() < 0.95:
            value = pick.choice(choices)
            if value is not None:
                fields[name] = value
    if pick.random() < 0.05:  # a field of another op, maybe mistyped
        other = spec[pick.choice(ops)]
        if other:
            name = pick.choice(list(other))
            fields[name] = pick.choice([*other[name], 3.5, [], {}])
    if roll > 0.98:
        fields["id"] = pick.choice([-1, "7", 1.5, None, True])
    return fields


def check_registry(sb: Switchboard) -> None:
    for key, conn in sb.users.items():
        assert sb.conns[conn].user_id == key[1] and key not in sb.away
    for key, call_id in sb.user_call.items():
        call = sb.calls[call_id]
        assert key[1] in (call.caller, call.callee)
    for call_id, call in sb.calls.items():
        assert sb.user_call[(call.service_id, call.caller)] == call_id
        assert sb.user_call[(call.service_id, call.callee)] == call_id


def check_empty(sb: Switchboard) -> None:
    assert sb.users == {} and sb.away == {}
    assert sb.calls == {} and sb.user_call == {}


# -- the switchboard, driven directly -----------------------------------------------------------


def guided(
    sb: Switchboard, kind: str, pick: random.Random, rid: int, live: list[int], pools: Pools
) -> tuple[int, dict[str, Any]] | None:
    """A request that moves things forward: register, call someone online, answer, report
    media, resume a session."""
    fresh = [c for c in live if sb.conns[c].user_id is None]
    if kind == "register" and fresh:
        conn = pick.choice(fresh)
        if sb.conns[conn].service_id is None:
            return conn, {"op": "hello", "id": rid, "version": 1, "service_id": "dev"}
        return conn, {"op": "create_session", "id": rid, "user_id": pick.choice(USERS)}
    if kind == "resume" and fresh:
        conn = pick.choice(fresh)
        if sb.conns[conn].service_id is None:
            return conn, {"op": "hello", "id": rid, "version": 1, "service_id": "dev"}
        return conn, {"op": "resume", "id": rid, "resume_token": pick.choice(pools.resume_tokens)}
    if kind == "offer" and len(sb.users) >= 2:
        (svc, caller), (_, callee) = pick.sample(sorted(sb.users), 2)
        return sb.users[(svc, caller)], {
            "op": "offer_call",
            "id": rid,
            "callee": callee,
            "call_type": "videocall",
            "sdp": "v=0",
        }
    calls = sorted(sb.calls.values(), key=lambda c: c.call_id)
    if kind not in ("answer", "media"):
        return None
    if kind == "answer":
        calls = [c for c in calls if c.state.value == "ringing"]
    else:
        calls = [c for c in calls if c.state.value in ("answered", "connected")]
    if not calls:
        return None
    call = pick.choice(calls)
    user = call.callee if kind == "answer" else pick.choice([call.caller, call.callee])
    conn = sb.users.get((call.service_id, user))
    if conn is None:
        return None
    if kind == "answer":
        return conn, {"op": "answer_call", "id": rid, "sdp": "v=0", "caller": call.caller}
    state = "connected" if pick.random() < 0.9 else "failed"
    return conn, {"op": "media_state", "id": rid, "state": state}


KINDS = (
    ["request"] * 6
    + ["register"] * 3
    + ["offer", "answer", "media"] * 2
    + ["resume", "connect", "drop", "tick"]
)


TRAFFIC = given(
    st.lists(st.sampled_from(KINDS), min_size=40, max_size=150),
    st.randoms(use_true_random=True),
    st.booleans(),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@TRAFFIC
def test_switchboard_survives_random_traffic(
    actions: list[str], pick: random.Random, lost_at_end: bool
) -> None:
    """Random valid and invalid requests, drops and clock ticks from several connections,
    over the in-memory store."""
    random_traffic("memory", actions, pick, lost_at_end)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@TRAFFIC
def test_switchboard_survives_random_traffic_over_redis(
    actions: list[str], pick: random.Random, lost_at_end: bool
) -> None:
    """The same over Redis (fewer examples: each step is a few round trips to Redis)."""
    random_traffic("redis", actions, pick, lost_at_end)


def random_traffic(store: str, actions: list[str], pick: random.Random, lost_at_end: bool) -> None:
    sb = Switchboard(
        [Service("dev", None), Service("locked", "s3cret")],
        ring_timeout=30,
        connect_timeout=10,
        resume_grace=5,
        store=STORES[store](),
    )
    pools, now, live, next_conn, rid = Pools(), 0.0, [], 1, 0
    for kind in actions:
        which = pick.randrange(6)
        if kind == "connect" or not live:
            sb.connect(next_conn)
            live.append(next_conn)
            next_conn += 1
        elif kind == "drop":
            conn = live.pop(which % len(live))
            out = sb.route(sb.disconnect(conn, now, lost=pick.random() < 0.5))
            assert all(s.conn in live and "event" in s.message for s in out)
        elif kind == "tick":
            now += pick.choice([0.5, 3.0, 12.0, 40.0])
            out = sb.route(sb.expire(now))
            assert all(s.conn in live and "event" in s.message for s in out)
        else:
            conn = live[which % len(live)]
            rid += 1
            raw = frame(pick, rid, pools)
            if kind != "request":
                conn, raw = guided(sb, kind, pick, rid, live, pools) or (conn, raw)
            text = raw if isinstance(raw, str) else json.dumps(raw)
            try:
                request = rq.parse_request(p.decode(text))
            except p.ProtocolError as exc:
                assert isinstance(exc.code, p.ErrorCode)
                continue
            out = sb.route(sb.handle(conn, request, now))
            response, *rest = out
            assert response.conn == conn and response.message["id"] == request.id
            assert isinstance(response.message["ok"], bool)
            assert all("event" in s.message and s.conn in live for s in rest)
            for s in out:
                pools.learn(s.message)
        check_registry(sb)
    for conn in live:
        sb.disconnect(conn, now, lost=lost_at_end)
    sb.expire(now + 1000)
    check_empty(sb)


# -- a real server over real sockets -----------------------------------------------------------


async def drive(url: str, seed: int, user: str, n: int, results: dict[str, int]) -> None:
    """One client: n random frames, each answered by exactly one response; then it leaves
    cleanly or drops abruptly."""
    pick = random.Random(seed)
    pools = Pools()
    ws: ClientConnection = await connect(url)
    try:
        for rid in range(1, n + 1):
            raw = frame(pick, rid, pools)
            if rid == 1 and pick.random() < 0.9:  # most clients register first
                raw = {"op": "hello", "id": rid, "version": 1, "service_id": "dev"}
            elif rid == 2 and pick.random() < 0.9:
                raw = {"op": "create_session", "id": rid, "user_id": user}
            await ws.send(raw if isinstance(raw, str) else json.dumps(raw))
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                pools.learn(message)
                if "event" not in message:
                    break
            sent_id = raw.get("id") if isinstance(raw, dict) else None
            expected = (
                sent_id
                if isinstance(sent_id, int) and not isinstance(sent_id, bool) and sent_id >= 0
                else None
            )
            assert message["id"] == expected, (raw, message)
            results["responses"] += 1
    finally:
        if pick.random() < 0.5:
            ws.transport.abort()  # a network drop: the session may linger for the grace
        with contextlib.suppress(ConnectionClosed):
            await ws.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_real_server_survives_random_clients(seed: int) -> None:
    """Four clients send random frames concurrently; each gets one response per frame, the
    server still answers afterwards, and it ends with no session or call left."""
    config = ServerConfig(
        port=0,
        ring_timeout=2,
        connect_timeout=2,
        resume_grace=0.3,
        rate_limit=0,
        max_failed_hellos=0,
    )
    async with SignalingServer(config) as server:
        results = {"responses": 0}
        await asyncio.gather(
            *(drive(server.url, seed * 100 + k, user, 60, results) for k, user in enumerate(USERS))
        )
        assert results["responses"] == 4 * 60
        async with connect(server.url) as probe:
            await probe.send(json.dumps({"op": "ping", "id": 1}))
            assert json.loads(await probe.recv())["ok"] is True
        async with asyncio.timeout(10):
            while server.board.users or server.board.away or server.board.calls:
                await asyncio.sleep(0.05)
        check_empty(server.board)
