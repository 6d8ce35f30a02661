"""Store benchmark: the switchboard over each store, in one process, no websockets.

One or two switchboards (nodes) share a store; pairs of users run complete call cycles
(offer, answer, media_state from both, leave) through `handle()`. For each store it prints
the cycles per second, the CPU time per cycle of this process (the switchboard, the store
client) and of redis-server, and the Redis round trips per request and per cycle (packets
the client sends: a pipeline or one script call counts once).

Then one node as it serves (`redis_piped_N_pairs`): N pairs at once, each request inside
`suspend.run` with its commands on one `RedisPipe`, and how many commands share a write.
All in one process, so the figures are the switchboard and the store client, without the
websockets.

    .venv/bin/python scripts/bench_store.py [--cycles 3000] [--pairs 1,8,32]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))

import benchlib as bl

from omnicli.server import suspend
from omnicli.server.records import Send, ToUser
from omnicli.server.redispipe import RedisPipe
from omnicli.server.redisstore import RedisStore
from omnicli.server.store import MemoryStore, Store
from omnicli.server.switchboard import Service, Switchboard
from omnicli.wire import protocol as p
from omnicli.wire import requests as rq

SDP = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
OPS = ("offer_call", "answer_call", "media_state", "leave")


class Trips:
    """Counts the packets redis-py sends (one per command, pipeline or script call)."""

    def __init__(self) -> None:
        import redis.connection

        self.count = 0
        original = redis.connection.AbstractConnection.send_packed_command
        trips = self

        def counted(conn: Any, command: Any, check_health: bool = True) -> None:
            trips.count += 1
            original(conn, command, check_health)

        redis.connection.AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]


class Node:
    def __init__(self, store: Store, boot: str) -> None:
        ids = itertools.count(1)
        self.sb = Switchboard(
            [Service("dev", None)], store=store, boot=boot, new_id=lambda x: f"{x}{boot}{next(ids)}"
        )
        self.conns = itertools.count(1)
        self.rid = itertools.count(1)

    def user(self, name: str) -> int:
        conn = next(self.conns)
        self.sb.connect(conn)
        self.req(conn, "hello", version=p.VERSION, service_id="dev")
        self.req(conn, "create_session", user_id=name)
        return conn

    def req(self, conn: int, op: str, **fields: Any) -> list[Send]:
        request = rq.parse_request({"op": op, "id": next(self.rid), **fields})
        out = self.sb.handle(conn, request, time.time())
        assert out[0].message["ok"], out[0].message
        self.sb.route(out)
        return out


def run(
    store: Store, nodes: int, cycles: int, trips: Trips | None, redis_pid: int
) -> dict[str, Any]:
    a = Node(store, "node-a")
    b = a if nodes == 1 else Node(store, "node-b")
    per_op: Counter[str] = Counter()
    pairs = [(a.user(f"a{i}"), b.user(f"b{i}"), f"b{i}") for i in range(8)]

    def op(node: Node, conn: int, name: str, **fields: Any) -> None:
        before = trips.count if trips else 0
        out = node.req(conn, name, **fields)
        remote = [s for s in node.sb.remote(out) if isinstance(s.to, ToUser)]
        if nodes > 1 and remote:  # as Cluster.forward: where does the user live?
            for send in remote:
                if not getattr(send.to, "node", ""):
                    store.presence(send.to.service_id, send.to.user_id)  # type: ignore[union-attr]
        if trips:
            per_op[name] += trips.count - before

    cpu0 = time.process_time()
    rcpu0 = bl.cpu_seconds(redis_pid) if redis_pid else 0.0
    start = time.perf_counter()
    for n in range(cycles):
        caller, callee, name = pairs[n % len(pairs)]
        op(a, caller, "offer_call", call_type="audiocall", callee=name, sdp=SDP)
        op(b, callee, "answer_call", sdp=SDP)
        op(a, caller, "media_state", state="connected")
        op(b, callee, "media_state", state="connected")
        op(a, caller, "leave")
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    rcpu = (bl.cpu_seconds(redis_pid) - rcpu0) if redis_pid else 0.0
    return {
        "cycles_per_s": round(cycles / wall, 1),
        "us_per_cycle": round(1e6 * wall / cycles, 1),
        "cpu_us_per_cycle": round(1e6 * cpu / cycles, 1),
        "redis_cpu_us_per_cycle": round(1e6 * rcpu / cycles, 1),
        "round_trips_per_cycle": round(sum(per_op.values()) / cycles, 2),
        "round_trips_per_request": {k: round(v / cycles, 2) for k, v in per_op.items()},
    }


def run_piped(
    store: RedisStore, url: str, cycles: int, pairs: int, redis_pid: int
) -> dict[str, Any]:
    """One node as it serves: `pairs` pairs run their cycles at once, each request inside
    `suspend.run`, the commands of all on one `RedisPipe`."""

    async def go() -> dict[str, Any]:
        pipe = store.pipe = RedisPipe(url)
        node = Node(store, "node-p")
        users = [(node.user(f"pa{i}"), node.user(f"pb{i}"), f"pb{i}") for i in range(pairs)]

        async def loop(caller: int, callee: int, name: str) -> None:
            for _ in range(cycles // pairs):
                for conn, op, fields in (
                    (caller, "offer_call", {"call_type": "audiocall", "callee": name, "sdp": SDP}),
                    (callee, "answer_call", {"sdp": SDP}),
                    (caller, "media_state", {"state": "connected"}),
                    (callee, "media_state", {"state": "connected"}),
                    (caller, "leave", {}),
                ):
                    await suspend.run(functools.partial(node.req, conn, op, **fields))

        await pipe.execute("PING")
        writes0, commands0 = pipe.batches, pipe.commands
        cpu0 = time.process_time()
        rcpu0 = bl.cpu_seconds(redis_pid)
        start = time.perf_counter()
        await asyncio.gather(*(loop(*u) for u in users))
        wall = time.perf_counter() - start
        done = (cycles // pairs) * pairs
        cpu, rcpu = time.process_time() - cpu0, bl.cpu_seconds(redis_pid) - rcpu0
        writes, commands = pipe.batches - writes0, pipe.commands - commands0
        await pipe.close()
        store.pipe = None
        return {
            "pairs": pairs,
            "cycles_per_s": round(done / wall, 1),
            "us_per_cycle": round(1e6 * wall / done, 1),
            "cpu_us_per_cycle": round(1e6 * cpu / done, 1),
            "redis_cpu_us_per_cycle": round(1e6 * rcpu / done, 1),
            "commands_per_cycle": round(commands / done, 2),
            "commands_per_write": round(commands / max(1, writes), 2),
        }

    return asyncio.run(go())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=3000)
    parser.add_argument("--unix", action="store_true", help="reach Redis on its Unix socket")
    parser.add_argument("--pairs", default="1,8,32", help="pairs at once on the piped node")
    args = parser.parse_args()
    from redisd import RedisServer

    trips = Trips()
    server = RedisServer().start()
    result: dict[str, Any] = {"transport": "unix" if args.unix else "tcp"}
    try:
        assert server.proc is not None
        for name, nodes in (("memory", 1), ("redis_1_node", 1), ("redis_2_nodes", 2)):
            if name == "memory":
                store: Store = MemoryStore()
                pid = 0
            else:
                url = f"unix://{server.dir / 'redis.sock'}?db=0" if args.unix else server.url
                redis_store = RedisStore.from_url(url)
                redis_store.r.flushdb()
                store, pid = redis_store, server.proc.pid
            result[name] = run(store, nodes, args.cycles, None if pid == 0 else trips, pid)
            print(f"{name:14} {result[name]}")
        url = f"unix://{server.dir / 'redis.sock'}?db=0" if args.unix else server.url
        for pairs in (int(n) for n in args.pairs.split(",")):
            piped = RedisStore.from_url(url)
            piped.r.flushdb()
            name = f"redis_piped_{pairs}_pairs"
            result[name] = run_piped(piped, url, args.cycles, pairs, server.proc.pid)
            print(f"{name:14} {result[name]}")
    finally:
        server.close()
    result["ratio_redis_1_node_to_memory"] = bl.ratio(
        result["redis_1_node"]["cycles_per_s"], result["memory"]["cycles_per_s"]
    )
    best = max(
        (v["cycles_per_s"] for k, v in result.items() if k.startswith("redis_piped")), default=0
    )
    result["ratio_redis_piped_to_memory"] = bl.ratio(best, result["memory"]["cycles_per_s"])
    print({k: v for k, v in result.items() if k.startswith("ratio")})
    bl.write("store", result)


if __name__ == "__main__":
    main()
