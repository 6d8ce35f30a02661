"""Server benchmark: signaling-only websocket clients (no media) against one `omni server`.

1. Memory per idle session: the server process's RSS with 0, 1,000 and 5,000
   sessions (hello + create_session, then nothing), per session above the empty server.
2. Call cycles: pairs of clients each run complete calls in a loop (offer_call with a
   fake SDP, RINGING, answer_call, ANSWERED, media_state connected from both,
   CONNECTED at both, leave, LEAVE at the callee). The number of pairs doubles each
   step until the 99th percentile of a cycle's latency degrades (past twice
   --p99-limit, 50 ms) or throughput stays below 80 % of its peak for two steps.
   The server runs with `--rate-limit 0`: each bench client makes far more requests
   per second than a person would.

Baseline in the same run: a bare `websockets` echo server in a child process, doing
the same number of round trips per cycle (8), so the cycle rate shows what omnicli's
protocol and switchboard cost over the websocket library itself.

    .venv/bin/python scripts/bench_server.py [--sessions 1000,5000] [--step-seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))

import benchlib as bl

FAKE_SDP = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
_ids = itertools.count(1)


class Client:
    """One raw protocol client: requests matched by id, events in a queue."""

    def __init__(self, ws: Any, user: str) -> None:
        self.ws, self.user = ws, user
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, url: str, user: str) -> Client:
        from websockets.asyncio.client import connect

        ws = await connect(url, compression=None, ping_interval=None, open_timeout=30)
        client = cls(ws, user)
        await client.request("hello", version=1, service_id="dev")
        await client.request("create_session", user_id=user)
        return client

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                if "event" in msg:
                    self.events.put_nowait(msg)
                else:
                    future = self._pending.pop(msg.get("id"), None)
                    if future is not None and not future.done():
                        future.set_result(msg)
        except Exception:  # the socket closed: fail whoever waits
            pass
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("closed"))

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        rid = next(_ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        await self.ws.send(json.dumps({"op": op, "id": rid, **fields}))
        msg = await future
        if not msg.get("ok"):
            raise RuntimeError(f"{op} refused: {msg.get('error')}")
        return msg.get("result", {})

    async def event(self, name: str) -> dict[str, Any]:
        while True:
            msg = await self.events.get()
            if msg["event"] == name:
                return msg

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


async def open_many(url: str, prefix: str, count: int, batch: int = 100) -> list[Client]:
    clients: list[Client] = []
    for start in range(0, count, batch):
        clients += await asyncio.gather(
            *(Client.open(url, f"{prefix}{i}") for i in range(start, min(count, start + batch)))
        )
    return clients


async def close_many(clients: list[Client], batch: int = 200) -> None:
    for start in range(0, len(clients), batch):
        await asyncio.gather(
            *(c.close() for c in clients[start : start + batch]), return_exceptions=True
        )


async def idle_memory(url: str, pid: int, counts: list[int]) -> dict[str, Any]:
    await asyncio.sleep(0.5)
    base = bl.rss_kib(pid)
    clients: list[Client] = []
    out: dict[str, Any] = {"rss_kib_empty": base, "levels": []}
    for count in counts:
        started = time.perf_counter()
        clients += await open_many(url, f"idle{len(clients)}-", count - len(clients))
        opened = time.perf_counter() - started
        await asyncio.sleep(1.0)
        rss = bl.rss_kib(pid)
        out["levels"].append(
            {
                "sessions": count,
                "rss_kib": rss,
                "kib_per_session": round((rss - base) / count, 2),
                "open_seconds": round(opened, 2),
            }
        )
    await close_many(clients)
    return out


async def cycle(a: Client, b: Client) -> float:
    start = time.perf_counter()
    await a.request("offer_call", call_type="audiocall", callee=b.user, sdp=FAKE_SDP)
    await b.event("RINGING")
    await b.request("answer_call", sdp=FAKE_SDP, caller=a.user)
    await a.event("ANSWERED")
    await asyncio.gather(
        a.request("media_state", state="connected"), b.request("media_state", state="connected")
    )
    await asyncio.gather(a.event("CONNECTED"), b.event("CONNECTED"))
    await a.request("leave")
    await b.event("LEAVE")
    return time.perf_counter() - start


async def echo_cycle(a: Client, b: Client) -> float:
    """8 round trips, as many as a call cycle has, against the bare echo server."""
    start = time.perf_counter()
    for _ in range(4):
        await asyncio.gather(a.request("echo"), b.request("echo"))
    return time.perf_counter() - start


async def run_level(
    pairs: list[tuple[Client, Client]], seconds: float, fn: Any, pids: dict[str, int]
) -> dict[str, Any]:
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def loop(a: Client, b: Client) -> None:
        while time.perf_counter() < stop:
            latencies.append(1000 * await fn(a, b))

    cpu0 = {name: bl.cpu_seconds(p) for name, p in pids.items()}
    started = time.perf_counter()
    await asyncio.gather(*(loop(a, b) for a, b in pairs))
    elapsed = time.perf_counter() - started
    cpu = {
        name: round(100 * (bl.cpu_seconds(p) - cpu0[name]) / elapsed, 1) for name, p in pids.items()
    }
    stats = bl.summary(latencies)
    return {
        "pairs": len(pairs),
        "cycles_per_s": round(len(latencies) / elapsed, 1),
        "latency_ms": stats,
        "cpu_pct": cpu,
    }


async def ramp(
    url: str,
    pid: int | dict[str, int],
    fn: Any,
    levels: list[int],
    seconds: float,
    p99_limit: float,
    prefix: str,
    callee_url: str | None = None,
) -> list[dict[str, Any]]:
    """Pairs of clients running `fn`; the callees on `callee_url` when given (another node)."""
    pids = dict(pid) if isinstance(pid, dict) else {"server": pid}
    pids["load_generator"] = os.getpid()
    if callee_url is None:
        clients = await open_many(url, prefix, 2 * max(levels))
        pairs = list(zip(clients[0::2], clients[1::2], strict=True))
    else:
        callers = await open_many(url, prefix + "a", max(levels))
        callees = await open_many(callee_url, prefix + "b", max(levels))
        clients = callers + callees
        pairs = list(zip(callers, callees, strict=True))
    results: list[dict[str, Any]] = []
    try:
        await run_level(pairs[:1], 0.5, fn, pids)  # warm up
        for n in levels:
            result = await run_level(pairs[:n], seconds, fn, pids)
            results.append(result)
            lat = result["latency_ms"]
            print(
                f"  {prefix.rstrip('-'):6} {n:4} pairs: {result['cycles_per_s']:7.1f} cycles/s, "
                f"median {lat['median']} ms, p99 {lat['p99']} ms, cpu {result['cpu_pct']}"
            )
            if lat["p99"] is not None and lat["p99"] > p99_limit:
                break
            peak = max(r["cycles_per_s"] for r in results)
            if len(results) > 2 and all(r["cycles_per_s"] < 0.8 * peak for r in results[-2:]):
                break  # twice below the peak: more pairs only queue up
    finally:
        await close_many(clients)
    return results


ECHO_SERVER = """
import asyncio, json, sys
from websockets.asyncio.server import serve
async def handler(ws):
    async for raw in ws:
        msg = json.loads(raw)
        await ws.send(json.dumps({"id": msg.get("id"), "ok": True, "result": {}}))
async def main():
    async with serve(handler, "127.0.0.1", 0, compression=None) as srv:
        print("listening on ws://127.0.0.1:%d" % srv.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()
asyncio.run(main())
"""


class EchoServer(bl.Server):
    def __init__(self) -> None:  # same interface as bl.Server, a bare websockets server
        self.proc = subprocess.Popen(
            [bl.PYTHON, "-c", ECHO_SERVER],
            env=bl.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().rsplit(" ", 1)[1].strip()


class EchoClient(Client):
    @classmethod
    async def open(cls, url: str, user: str) -> Client:
        from websockets.asyncio.client import connect

        ws = await connect(url, compression=None, ping_interval=None, open_timeout=30)
        return cls(ws, user)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    counts = [int(x) for x in args.sessions.split(",")]
    levels = [2**i for i in range(0, 12) if 2**i <= args.max_pairs]
    with bl.Server("--rate-limit", "0", "--max-sessions", str(max(counts) + 10_000)) as srv:
        print(f"idle sessions against {srv.url} (pid {srv.pid})")
        memory = await idle_memory(srv.url, srv.pid, counts)
        for level in memory["levels"]:
            print(
                f"  {level['sessions']:5} sessions: RSS {level['rss_kib']} KiB, "
                f"{level['kib_per_session']} KiB/session (opened in {level['open_seconds']} s)"
            )
        print("call cycles (omni server)")
        cycles = await ramp(
            srv.url, srv.pid, cycle, levels, args.step_seconds, args.p99_limit, "cyc-"
        )
    print("round trips (bare websockets echo server, 8 per cycle)")
    global Client
    saved, Client = Client, EchoClient  # open_many builds EchoClients for the baseline
    echo = EchoServer()
    try:
        baseline = await ramp(
            echo.url, echo.pid, echo_cycle, levels, args.step_seconds, args.p99_limit, "echo-"
        )
    finally:
        Client = saved
        echo.stop()
    result = {"idle": memory, "cycles": cycles, "baseline_echo": baseline}
    if args.redis:
        result["redis"] = await redis_section(args, levels)
    return result


async def redis_section(args: argparse.Namespace, levels: list[int]) -> dict[str, Any]:
    """The same call cycles on one node over Redis and on two nodes over one Redis
    (callers on one, callees on the other); then idle sessions spread over the two nodes
    and what each costs Redis in memory."""
    import redis as redis_py
    from redisd import RedisServer

    server = RedisServer().start()
    try:
        client = redis_py.Redis.from_url(server.url)
        pid = server.proc.pid if server.proc else 0
        limit = str(args.redis_sessions + 10_000)
        flags = ("--rate-limit", "0", "--max-sessions", limit, "--redis", server.url)
        print(f"call cycles (1 node on Redis {server.url})")
        with bl.Server(*flags) as one:
            pids = {"server": one.pid, "redis": pid}
            single = await ramp(
                one.url, pids, cycle, levels, args.step_seconds, args.p99_limit, "r1-"
            )
        client.flushdb()
        print("call cycles (2 nodes on one Redis; callers on node 1, callees on node 2)")
        with bl.Server(*flags) as a, bl.Server(*flags) as b:
            pids = {"node1": a.pid, "node2": b.pid, "redis": pid}
            double = await ramp(
                a.url, pids, cycle, levels, args.step_seconds, args.p99_limit, "r2-", b.url
            )
            client.flushdb()
            idle = await redis_idle(client, [a, b], args.redis_sessions)
    finally:
        server.close()
    return {"one_node": single, "two_nodes": double, "idle": idle}


async def redis_idle(client: Any, nodes: list[bl.Server], count: int) -> dict[str, Any]:
    await asyncio.sleep(0.5)
    used0 = int(client.info("memory")["used_memory"])
    rss0 = [bl.rss_kib(n.pid) for n in nodes]
    started = time.perf_counter()
    half = count // len(nodes)
    opened: list[Client] = []
    failed = 0
    for i, node in enumerate(nodes):
        for start in range(0, half, 100):
            batch = await asyncio.gather(
                *(Client.open(node.url, f"idle{i}-{n}") for n in range(start, start + 100)),
                return_exceptions=True,
            )
            opened += [c for c in batch if isinstance(c, Client)]
            failed += sum(not isinstance(c, Client) for c in batch)
    took = time.perf_counter() - started
    await asyncio.sleep(1.0)
    used = int(client.info("memory")["used_memory"])
    held = int(client.zcard("omni:{dev}:users"))  # still registered: a client too busy to
    rss = [bl.rss_kib(n.pid) for n in nodes]  # answer the keepalive pings gets dropped
    out = {
        "sessions": len(opened),
        "sessions_in_redis": held,
        "failed_to_open": failed,
        "nodes": len(nodes),
        "open_seconds": round(took, 1),
        "redis_used_memory_bytes": used,
        "redis_bytes_per_session": round((used - used0) / max(1, held)),
        "node_kib_per_session": [
            round((r - r0) / half, 2) for r, r0 in zip(rss, rss0, strict=True)
        ],
    }
    print(
        f"  {out['sessions']} idle sessions over {len(nodes)} nodes ({held} in Redis): Redis "
        f"{out['redis_bytes_per_session']} B/session, node RSS "
        f"{out['node_kib_per_session']} KiB/session (opened in {took:.1f} s, {failed} failed)"
    )
    await close_many(opened)
    return out


def best(levels: list[dict[str, Any]], p99_limit: float) -> dict[str, Any] | None:
    ok = [lv for lv in levels if (lv["latency_ms"]["p99"] or 1e9) <= p99_limit]
    return max(ok, key=lambda lv: lv["cycles_per_s"]) if ok else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="1000,5000")
    parser.add_argument("--step-seconds", type=float, default=3.0)
    parser.add_argument("--max-pairs", type=int, default=256)
    parser.add_argument(
        "--redis",
        action=argparse.BooleanOptionalAction,
        default=shutil.which("redis-server") is not None,
        help="also run 1 and 2 nodes on a private Redis (default: when redis-server exists)",
    )
    parser.add_argument("--redis-sessions", type=int, default=50_000)
    parser.add_argument(
        "--p99-limit", type=float, default=50.0, help="ms; the ramp stops past twice this"
    )
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    args_limit = args.p99_limit
    args.p99_limit = 2 * args_limit
    result = asyncio.run(main_async(args))
    top, top_echo = best(result["cycles"], args_limit), best(result["baseline_echo"], args_limit)
    largest = result["idle"]["levels"][-1]
    result["best_within_p99_limit"] = {
        "p99_limit_ms": args_limit,
        "omni": top,
        "echo": top_echo,
        "ratio_cycles_to_echo": bl.ratio(
            top and top["cycles_per_s"], top_echo and top_echo["cycles_per_s"]
        ),
    }
    result["targets"] = {
        ">= 5000 idle sessions at <= 30 KiB each": largest["sessions"] >= 5000
        and largest["kib_per_session"] <= 30,
        ">= 500 cycles/s with p99 <= 50 ms": bool(
            top and top["cycles_per_s"] >= 500 and args_limit <= 50
        ),
    }
    print(
        f"best within p99 <= {args_limit:g} ms: omni {top and top['cycles_per_s']} cycles/s, "
        f"echo baseline {top_echo and top_echo['cycles_per_s']} cycles/s"
    )
    if "redis" in result:
        summarize_redis(result, args_limit, top)
    bl.write("server", result)


def summarize_redis(result: dict[str, Any], p99_limit: float, memory: Any) -> None:
    red = result["redis"]
    one, two = best(red["one_node"], p99_limit), best(red["two_nodes"], p99_limit)
    rate = {k: v and v["cycles_per_s"] for k, v in (("memory", memory), ("one", one), ("two", two))}
    red["best_within_p99_limit"] = {"one_node": one, "two_nodes": two}
    red["ratios"] = {
        "one_node_redis_to_memory": bl.ratio(rate["one"], rate["memory"]),
        "two_nodes_to_one_node_redis": bl.ratio(rate["two"], rate["one"]),
    }
    result["targets"][">= 0.5x memory cycles on 1 Redis node, p99 <= 50 ms"] = bool(
        rate["one"] and rate["memory"] and rate["one"] >= 0.5 * rate["memory"]
    )
    result["targets"][">= 1.5x on 2 Redis nodes (needs a core per node)"] = bool(
        rate["two"] and rate["one"] and rate["two"] >= 1.5 * rate["one"]
    )
    result["targets"][">= 50000 idle sessions over the nodes"] = (
        red["idle"]["sessions_in_redis"] >= 50_000
    )
    print(
        f"best within p99 <= {p99_limit:g} ms: memory {rate['memory']}, 1 Redis node "
        f"{rate['one']}, 2 Redis nodes {rate['two']} cycles/s; ratios {red['ratios']}"
    )


if __name__ == "__main__":
    main()
