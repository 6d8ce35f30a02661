"""Call scripts benchmark: what Redis spends on the Lua scripts of one call cycle.

One cycle is the five scripts a call costs on Redis (place_call, swap_call to answered,
to media up on one side, to connected, and to None: leave), with records that carry SDPs
of `--sdp-bytes` each. Redis itself times them (`INFO commandstats`, the `usec` of
EVALSHA, reset before each batch), so neither this process nor the loopback socket is
counted. The scripts of this tree run against those of `--base` (a git ref, default
main), batches of `--cycles` alternating for `--rounds`, medians printed. A base from
before the calls-per-state counts takes four call keys (its `place_call` reads the
callee at KEYS[5]) and is given them.

Then the ways a script may read one field of a stored record, timed inside Redis on a
record of the same size: `cjson.decode`, a Lua pattern search, a plain substring search.

    .venv/bin/python scripts/bench_callscripts.py [--base main] [--cycles 500] [--rounds 6]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))

import benchlib as bl
import redis

from omnicli.server import redisscripts

LOOPS = 2000  # field reads per timed EVAL


def scripts_at(ref: str) -> types.ModuleType:
    """The `redisscripts` module as it is at git ref `ref`."""
    text = subprocess.run(
        ["git", "show", f"{ref}:omnicli/server/redisscripts.py"],
        cwd=bl.ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    module = types.ModuleType(f"redisscripts_{ref}")
    exec(compile(text, f"{ref}:redisscripts.py", "exec"), module.__dict__)
    return module


def record(i: int, state: str, rev: int, sdp: str, answer: str = "") -> str:
    fields = {
        "call_id": f"c{i}",
        "call_type": "videocall",
        "callee": f"b{i}",
        "caller": f"a{i}",
        "deadline": None,
        "media_up": [],
        "record": False,
        "rev": rev,
        "sdp_answer": answer,
        "sdp_offer": sdp,
        "service_id": "dev",
        "sip": "",
        "started": 0.0,
        "state": state,
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def cycles(r: redis.Redis, scripts: Any, first: int, n: int, sdp: str) -> None:
    place = r.register_script(scripts.PLACE_CALL)
    swap = r.register_script(scripts.SWAP_CALL)
    counting = "KEYS[6]" in scripts.PLACE_CALL
    for i in range(first, first + n):
        keys = [f"b:{{dev}}:c:c{i}", f"b:{{dev}}:uc:a{i}", f"b:{{dev}}:uc:b{i}", "b:{dev}:dl"]
        if counting:
            keys.append("b:{dev}:states")
        offer = [record(i, "ringing", 0, sdp), record(i, "calling", 0, sdp), f"c{i}", "99"]
        place([*keys, f"b:{{dev}}:p:b{i}"], offer)
        swap(keys, ["0", record(i, "answered", 1, sdp, sdp), f"c{i}", "99"])
        swap(keys, ["1", record(i, "answered", 2, sdp, sdp), f"c{i}", "99"])
        swap(keys, ["2", record(i, "connected", 3, sdp, sdp), f"c{i}", ""])
        swap(keys, ["3", "", f"c{i}", ""])


def script_usec(r: redis.Redis) -> float:
    stats = r.info("commandstats")
    return float(
        sum(v["usec"] for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))
    )


def field_reads(r: redis.Redis, text: str) -> dict[str, float]:
    """us per read of the `state` field of `text`, each way, timed by Redis."""
    ways = {
        "cjson_decode": "s = cjson.decode(ARGV[1])['state']",
        "pattern_search": 's = string.match(ARGV[1], \'"state":"([%w_]+)"\')',
        "plain_find": (
            'local _, e = string.find(ARGV[1], \'"state":"\', 1, true); '
            "s = string.match(ARGV[1], '^[%w_]+', e + 1)"
        ),
    }
    result = {}
    for name, body in ways.items():
        r.config_resetstat()
        assert r.eval(f"local s; for i = 1, {LOOPS} do {body} end return s", 0, text) == "connected"
        result[name] = round(script_usec(r) / LOOPS, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="git ref of the scripts to compare with")
    parser.add_argument("--cycles", type=int, default=500, help="call cycles per batch")
    parser.add_argument("--rounds", type=int, default=6, help="batches of each, alternating")
    parser.add_argument("--sdp-bytes", type=int, default=3000, help="size of each SDP")
    args = parser.parse_args()
    from redisd import RedisServer

    line = "a=candidate:1 1 udp 2122260223 192.168.1.2 54321 typ host generation 0\r\n"
    sdp = (line * (args.sdp_bytes // len(line) + 1))[: args.sdp_bytes]
    kinds = {args.base: scripts_at(args.base), "this tree": redisscripts}
    runs: dict[str, list[float]] = {name: [] for name in kinds}
    server = RedisServer().start()
    started = time.monotonic()
    try:
        r = redis.Redis.from_url(server.url, decode_responses=True)
        first = 0
        for _ in range(args.rounds):
            for name, scripts in kinds.items():
                r.config_resetstat()
                cycles(r, scripts, first, args.cycles, sdp)
                first += args.cycles
                runs[name].append(script_usec(r) / args.cycles)
        fields = field_reads(r, record(0, "connected", 3, sdp, sdp))
    finally:
        server.close()
    result: dict[str, Any] = {
        "sdp_bytes": args.sdp_bytes,
        "cycles_per_batch": args.cycles,
        "seconds": round(time.monotonic() - started, 1),
    }
    rows = []
    for name, values in runs.items():
        median = round(statistics.median(values), 1)
        result[name] = {"redis_us_per_cycle": median, "batches": [round(v, 1) for v in values]}
        rows.append([name, median, min(values), max(values)])
    bl.table(["scripts", "Redis us per cycle (median)", "min", "max"], rows)
    base, mine = (result[name]["redis_us_per_cycle"] for name in kinds)
    result["ratio_this_tree_to_base"] = bl.ratio(mine, base)
    result["field_read_us"] = {"record_bytes": len(record(0, "connected", 3, sdp, sdp)), **fields}
    print("ratio this tree / base:", result["ratio_this_tree_to_base"])
    print("one field of a stored record, us per read:", result["field_read_us"])
    bl.write("callscripts", result)


if __name__ == "__main__":
    main()
