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
import contextlib
import itertools
import json
import resource
import shutil
import subprocess
import sys
import threading
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


async def close_many(clients: list[Client], batch: int = 200) -> None:
    for start in range(0, len(clients), batch):
        await asyncio.gather(
            *(c.close() for c in clients[start : start + batch]), return_exceptions=True
        )


async def open_idle(
    url: str, prefix: str, count: int, batch: int = 100
) -> tuple[list[Client], int]:
    """`count` idle sessions (hello + create_session), `batch` at a time; and how many failed."""
    opened: list[Client] = []
    failed = 0
    for start in range(0, count, batch):
        names = (f"{prefix}{n}" for n in range(start, min(count, start + batch)))
        got = await asyncio.gather(*(Client.open(url, n) for n in names), return_exceptions=True)
        opened += [c for c in got if isinstance(c, Client)]
        failed += sum(not isinstance(c, Client) for c in got)
    return opened, failed


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


class EchoClient(Client):
    @classmethod
    async def open(cls, url: str, user: str) -> Client:
        from websockets.asyncio.client import connect

        ws = await connect(url, compression=None, ping_interval=None, open_timeout=30)
        return cls(ws, user)


async def run_pairs(
    pairs: list[tuple[Client, Client]], seconds: float, echo: bool
) -> dict[str, Any]:
    """Each pair runs cycles (or echo round trips) for `seconds`: their latencies (ms)."""
    fn = echo_cycle if echo else cycle
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def loop_pair(a: Client, b: Client) -> None:
        while time.perf_counter() < stop:
            latencies.append(1000 * await fn(a, b))

    started = time.perf_counter()
    await asyncio.gather(*(loop_pair(a, b) for a, b in pairs))
    return {"latencies": latencies, "elapsed": time.perf_counter() - started}


async def generate() -> None:
    """A load generator process (`--generate`): one JSON command a line on stdin, one JSON
    answer a line on stdout. Its clients answer the server's keepalive pings by
    themselves (their reader task runs), so idle sessions stay."""
    loop = asyncio.get_running_loop()
    pairs: list[tuple[Client, Client]] = []
    idle: list[Client] = []
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        cmd = json.loads(line)
        answer: dict[str, Any] = {}
        if cmd["op"] == "open":
            kind = EchoClient if cmd.get("echo") else Client
            prefix, n = cmd["prefix"], cmd["pairs"]
            callers = await open_many(kind, cmd["url"], prefix + "a", n)
            callees = await open_many(kind, cmd["callee_url"], prefix + "b", n)
            pairs = list(zip(callers, callees, strict=True))
        elif cmd["op"] == "run":
            answer = await run_pairs(pairs[: cmd["pairs"]], cmd["seconds"], cmd.get("echo", False))
        elif cmd["op"] == "idle":  # targets: [url, prefix, count], opened at once
            results = await asyncio.gather(*(open_idle(*t) for t in cmd["targets"]))
            failed = 0
            for got, lost in results:
                idle += got
                failed += lost
            answer = {"opened": sum(len(got) for got, _ in results), "failed": failed}
        elif cmd["op"] == "close":
            await close_many([c for pair in pairs for c in pair] + idle)
            pairs, idle = [], []
        print(json.dumps(answer), flush=True)


async def open_many(kind: type[Client], url: str, prefix: str, count: int) -> list[Client]:
    clients: list[Client] = []
    for start in range(0, count, 100):
        names = (f"{prefix}{i}" for i in range(start, min(count, start + 100)))
        clients += await asyncio.gather(*(kind.open(url, n) for n in names))
    return clients


class Generator:
    """A load generator child process (see `generate`)."""

    def __init__(self, prefix: list[str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [*(prefix or []), bl.PYTHON, __file__, "--generate"],
            env=bl.env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("a load generator died (see its stderr)")
        return dict(json.loads(line))

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def ask_all(gens: list[Generator], cmds: list[dict[str, Any] | None]) -> list[dict[str, Any]]:
    """Send each generator its command (None: none), then read the answers."""
    for gen, cmd in zip(gens, cmds, strict=True):
        if cmd is not None:
            gen.send(**cmd)
    return [gen.answer() if cmd is not None else {} for gen, cmd in zip(gens, cmds, strict=True)]


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (i < total % parts) for i in range(parts)]


def idle_memory(url: str, pid: int, counts: list[int], gens: list[Generator]) -> dict[str, Any]:
    time.sleep(0.5)
    base = bl.rss_kib(pid)
    held = 0
    out: dict[str, Any] = {"rss_kib_empty": base, "levels": []}
    for count in counts:
        started = time.perf_counter()
        shares = split(count - held, len(gens))
        cmds = [
            {"op": "idle", "targets": [[url, f"idle{count}-{i}-", n]]} for i, n in enumerate(shares)
        ]
        answers = ask_all(gens, list(cmds))
        held += sum(a["opened"] for a in answers)
        opened = time.perf_counter() - started
        time.sleep(1.0)
        rss = bl.rss_kib(pid)
        out["levels"].append(
            {
                "sessions": held,
                "rss_kib": rss,
                "kib_per_session": round((rss - base) / max(1, held), 2),
                "open_seconds": round(opened, 2),
            }
        )
    ask_all(gens, [{"op": "close"}] * len(gens))
    return out


def run_level(
    gens: list[Generator], n: int, seconds: float, echo: bool, pids: dict[str, int]
) -> dict[str, Any]:
    shares = split(n, len(gens))
    cmds: list[dict[str, Any] | None] = [
        {"op": "run", "pairs": k, "seconds": seconds, "echo": echo} if k else None for k in shares
    ]
    cpu0 = {name: bl.cpu_seconds(p) for name, p in pids.items()}
    started = time.perf_counter()
    answers = ask_all(gens, cmds)
    elapsed = time.perf_counter() - started
    cpu = {
        name: round(100 * (bl.cpu_seconds(p) - cpu0[name]) / elapsed, 1) for name, p in pids.items()
    }
    latencies = [x for a in answers for x in a.get("latencies", [])]
    return {
        "pairs": n,
        "cycles_per_s": round(len(latencies) / elapsed, 1),
        "latency_ms": bl.summary(latencies),
        "cpu_pct": cpu,
    }


def ramp(
    url: str,
    pid: int | dict[str, int],
    echo: bool,
    levels: list[int],
    args: argparse.Namespace,
    prefix: str,
    callee_url: str | None = None,
) -> list[dict[str, Any]]:
    """Pairs of clients in `args.generators` processes running call cycles (or echo round
    trips); the callees on `callee_url` when given (another node)."""
    pids = dict(pid) if isinstance(pid, dict) else {"server": pid}
    gens = [Generator(args.generator_prefix) for _ in range(args.generators)]
    for i, gen in enumerate(gens):
        pids[f"load_generator{i + 1}"] = gen.pid
    shares = split(max(levels), len(gens))
    opens = [
        {
            "op": "open",
            "url": url,
            "callee_url": callee_url or url,
            "prefix": f"{prefix}{i}-",
            "pairs": k,
            "echo": echo,
        }
        for i, k in enumerate(shares)
    ]
    results: list[dict[str, Any]] = []
    try:
        ask_all(gens, list(opens))
        run_level(gens, 1, 0.5, echo, pids)  # warm up
        for n in levels:
            result = run_level(gens, n, args.step_seconds, echo, pids)
            results.append(result)
            lat = result["latency_ms"]
            print(
                f"  {prefix.rstrip('-'):6} {n:4} pairs: {result['cycles_per_s']:7.1f} cycles/s, "
                f"median {lat['median']} ms, p99 {lat['p99']} ms, cpu {result['cpu_pct']}"
            )
            if lat["p99"] is not None and lat["p99"] > args.p99_limit:
                break
            peak = max(r["cycles_per_s"] for r in results)
            if len(results) > 2 and all(r["cycles_per_s"] < 0.8 * peak for r in results[-2:]):
                break  # twice below the peak: more pairs only queue up
    finally:
        for gen in gens:
            gen.stop()
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


def hard_fd_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def caps(sessions: int) -> tuple[str, ...]:
    """Server flags that let one address (the generators, on loopback) hold `sessions`."""
    n = str(sessions)
    return (
        *("--max-sessions", n, "--max-connections", n),
        *("--max-per-address", n, "--max-unauthenticated", n),
    )


def main_run(args: argparse.Namespace) -> dict[str, Any]:
    counts = [int(x) for x in args.sessions.split(",") if x]
    levels = [2**i for i in range(0, 12) if 2**i <= args.max_pairs]
    result: dict[str, Any] = {"generators": args.generators}
    if not args.redis_only:
        with bl.Server("--rate-limit", "0", *caps(max(counts, default=0) + 10_000)) as srv:
            if counts:
                print(f"idle sessions against {srv.url} (pid {srv.pid})")
                gens = [Generator(args.generator_prefix) for _ in range(args.generators)]
                try:
                    result["idle"] = idle_memory(srv.url, srv.pid, counts, gens)
                finally:
                    for gen in gens:
                        gen.stop()
                for level in result["idle"]["levels"]:
                    print(
                        f"  {level['sessions']:5} sessions: RSS {level['rss_kib']} KiB, "
                        f"{level['kib_per_session']} KiB/session "
                        f"(opened in {level['open_seconds']} s)"
                    )
            print("call cycles (omni server)")
            result["cycles"] = ramp(srv.url, srv.pid, False, levels, args, "cyc-")
        print("round trips (bare websockets echo server, 8 per cycle)")
        echo = EchoServer()
        try:
            result["baseline_echo"] = ramp(echo.url, echo.pid, True, levels, args, "echo-")
        finally:
            echo.stop()
    if args.redis:
        result["redis"] = redis_section(args, levels)
    return result


def redis_section(args: argparse.Namespace, levels: list[int]) -> dict[str, Any]:
    """The same call cycles on one node over Redis and on two nodes over one Redis
    (callers on one, callees on the other); then idle sessions spread over the two nodes
    and what each costs Redis in memory."""
    import redis as redis_py
    from redisd import RedisServer

    server = RedisServer().start()
    try:
        client = redis_py.Redis.from_url(server.url)
        pid = server.proc.pid if server.proc else 0
        url = server.url
        if args.redis_transport == "unix":
            url = f"unix://{server.dir / 'redis.sock'}?db=0"
        flags = ("--rate-limit", "0", *caps(args.redis_sessions + 10_000), "--redis", url)
        single = double = None
        if not args.idle_only:
            print(f"call cycles (1 node on Redis {url})")
            with bl.Server(*flags) as one:
                pids = {"server": one.pid, "redis": pid}
                single = ramp(one.url, pids, False, levels, args, "r1-")
            client.flushdb()
            print("call cycles (2 nodes on one Redis; callers on node 1, callees on node 2)")
            with bl.Server(*flags) as a, bl.Server(*flags) as b:
                pids = {"node1": a.pid, "node2": b.pid, "redis": pid}
                double = ramp(a.url, pids, False, levels, args, "r2-", b.url)
            client.flushdb()
        idle = None
        if args.redis_sessions:
            # a process holds at most RLIMIT_NOFILE connections (often 20,000 here): as many
            # nodes as that takes; pings every --idle-keepalive s (an operator's option)
            per_node = max(1, hard_fd_limit() - 200)
            count = max(args.idle_nodes, -(-args.redis_sessions // per_node))
            flags = (*flags, "--keepalive", str(args.idle_keepalive))
            print(f"idle sessions ({count} nodes on one Redis, keepalive {args.idle_keepalive} s)")
            with contextlib.ExitStack() as stack:
                nodes = [stack.enter_context(bl.Server(*flags)) for _ in range(count)]
                idle = redis_idle(client, nodes, args)
    finally:
        server.close()
    return {
        "transport": args.redis_transport,
        "one_node": single,
        "two_nodes": double,
        "idle": idle,
    }


def redis_idle(client: Any, nodes: list[bl.Server], args: argparse.Namespace) -> dict[str, Any]:
    """`args.redis_sessions` idle sessions spread over the nodes, held by the generators."""
    time.sleep(0.5)
    used0 = int(client.info("memory")["used_memory"])
    rss0 = [bl.rss_kib(n.pid) for n in nodes]
    gens = [Generator(args.generator_prefix) for _ in range(args.idle_generators)]
    samples: list[tuple[float, int]] = []  # (s since the start, sessions in Redis)
    done = threading.Event()

    def sample() -> None:  # a session lost while others open shows here, not only at the end
        while not done.wait(5.0):
            samples.append((round(time.perf_counter() - started, 1), int(client.zcard(users))))

    users = "omni:{dev}:users"
    started = time.perf_counter()
    threading.Thread(target=sample, daemon=True).start()
    try:
        per_node = split(args.redis_sessions, len(nodes))
        shares = [split(n, len(gens)) for n in per_node]  # [node][generator]
        cmds: list[dict[str, Any] | None] = [
            {
                "op": "idle",
                "targets": [
                    [node.url, f"idle{i}-{g}-", shares[i][g]] for i, node in enumerate(nodes)
                ],
            }
            for g in range(len(gens))
        ]
        answers = ask_all(gens, cmds)
        took = time.perf_counter() - started
        opened = sum(a["opened"] for a in answers)
        failed = sum(a["failed"] for a in answers)
        time.sleep(args.idle_hold)  # several keepalive rounds: who cannot answer is dropped
        used = int(client.info("memory")["used_memory"])
        held = int(client.zcard(users))
        done.set()
        rss = [bl.rss_kib(n.pid) for n in nodes]
        out = {
            "sessions": opened,
            "sessions_in_redis": held,
            "held_seconds": args.idle_hold,
            "failed_to_open": failed,
            "nodes": len(nodes),
            "generators": len(gens),
            "open_seconds": round(took, 1),
            "in_redis_every_5s": samples,
            "least_in_redis_after_open": min((n for t, n in samples if t > took), default=held),
            "redis_used_memory_bytes": used,
            "redis_bytes_per_session": round((used - used0) / max(1, held)),
            "node_rss_kib": rss,
            "node_kib_per_session": [
                round((r - r0) / max(1, n), 2) for r, r0, n in zip(rss, rss0, per_node, strict=True)
            ],
        }
        print(
            f"  {opened} idle sessions over {len(nodes)} nodes, {held} in Redis after "
            f"{args.idle_hold:g} s: Redis {out['redis_bytes_per_session']} B/session, node RSS "
            f"{out['node_kib_per_session']} KiB/session (opened in {took:.1f} s, {failed} failed)"
        )
        ask_all(gens, [{"op": "close"}] * len(gens))
    finally:
        for gen in gens:
            gen.stop()
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
    parser.add_argument("--redis-sessions", type=int, default=50_000, help="0: skip")
    parser.add_argument("--redis-only", action="store_true", help="skip the in-memory server")
    parser.add_argument(
        "--idle-only", action="store_true", help="on Redis, only the idle sessions (no cycles)"
    )
    parser.add_argument("--redis-transport", choices=("tcp", "unix"), default="tcp")
    parser.add_argument("--generators", type=int, default=2, help="load generator processes")
    parser.add_argument("--idle-generators", type=int, default=4)
    parser.add_argument("--idle-nodes", type=int, default=2, help="at least (more if fds need)")
    parser.add_argument("--idle-keepalive", type=float, default=15.0, help="s between pings")
    parser.add_argument("--idle-hold", type=float, default=40.0, help="s idle sessions are held")
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--p99-limit", type=float, default=50.0, help="ms; the ramp stops past twice this"
    )
    args = parser.parse_args()
    args.generator_prefix = None
    if args.generate:
        asyncio.run(generate())
        return
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    args_limit = args.p99_limit
    args.p99_limit = 2 * args_limit
    result = main_run(args)
    result["targets"] = {}
    top = None
    if "cycles" in result:
        top, top_echo = (
            best(result["cycles"], args_limit),
            best(result["baseline_echo"], args_limit),
        )
        result["best_within_p99_limit"] = {
            "p99_limit_ms": args_limit,
            "omni": top,
            "echo": top_echo,
            "ratio_cycles_to_echo": bl.ratio(
                top and top["cycles_per_s"], top_echo and top_echo["cycles_per_s"]
            ),
        }
        result["targets"][">= 500 cycles/s with p99 <= 50 ms"] = bool(
            top and top["cycles_per_s"] >= 500 and args_limit <= 50
        )
        print(
            f"best within p99 <= {args_limit:g} ms: omni {top and top['cycles_per_s']} "
            f"cycles/s, echo baseline {top_echo and top_echo['cycles_per_s']} cycles/s"
        )
    if "idle" in result:
        largest = result["idle"]["levels"][-1]
        result["targets"][">= 5000 idle sessions at <= 30 KiB each"] = (
            largest["sessions"] >= 5000 and largest["kib_per_session"] <= 30
        )
    if "redis" in result:
        summarize_redis(result, args_limit, top)
    bl.write("server", result)


def summarize_redis(result: dict[str, Any], p99_limit: float, memory: Any) -> None:
    red = result["redis"]
    if red["idle"] is not None:
        result["targets"][">= 50000 idle sessions over the nodes"] = (
            red["idle"]["sessions_in_redis"] >= 50_000
        )
    if red["one_node"] is None:  # --idle-only
        return
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
    print(
        f"best within p99 <= {p99_limit:g} ms: memory {rate['memory']}, 1 Redis node "
        f"{rate['one']}, 2 Redis nodes {rate['two']} cycles/s; ratios {red['ratios']}"
    )


if __name__ == "__main__":
    main()
