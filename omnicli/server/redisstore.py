"""`RedisStore`: the switchboard's store in Redis, shared by every server node.

Each write of the `Store` contract is one Lua script (`redisscripts`), so it applies
atomically on the Redis server and only to the record it expects (compare and set):
presence by its whole stored JSON, a call by its `rev`. Reads are plain GETs. Records
are JSON (`to_dict`).

Keys (`P` is the prefix, default `omni:`; `{svc}` is a Redis Cluster hash tag, so every
key a script touches lives in one slot, the service's):

    P{svc}:p:USER        presence JSON (one session per user id)
    P{svc}:users         sorted set of user ids (score 0: ordered by name) for listings
    P{svc}:away          sorted set USER -> away_until (resume grace timers)
    P{svc}:node:NODE     set of the users whose connection NODE holds (for reaping)
    P{svc}:c:CALL        call JSON
    P{svc}:uc:USER       the call id the user is in
    P{svc}:deadlines     sorted set CALL -> ring or connect deadline
    P{svc}:states        hash STATE -> calls in that state (five fields at most), written only
                         by the call scripts, in the step that writes the record
    Pservices            set of service ids that ever held a record
    Pnodes               hash NODE -> last lease renewal (Unix time)

Times are Unix seconds: several nodes share these deadlines, so the driver feeds the
switchboard wall time when it runs on Redis.

Two clients, one contract. The switchboard is synchronous; on a node the driver runs each
request inside `suspend.run`, and there every command goes through `pipe` (`RedisPipe`, one
pipelined connection on the event loop): the request pauses while Redis answers and the
node serves other connections meanwhile, their commands sharing writes and reads. Anywhere
else (tests, the lease thread, timers, start-up) the same methods use redis-py's blocking
client `r`, with short timeouts. Either way the requests of a call cycle take as few round
trips as they can: an offer is one script (`place_call`), and the calls this node read or
wrote lately are kept (`recent_call`) so that answer, media reports and leave are one
compare-and-set each (a stale copy fails it, the script answers the current record, and
the change is computed again). `RedisStoreError` is what an unreachable Redis raises.

`call_states` is one HGETALL of `P{svc}:states`: what a `/metrics` scrape costs, whatever
the number of calls. A Redis that restarts empty has lost the calls and their counts
together; the calls the nodes put back (`rebuild`, with `add_call`) and those made after
are counted again by the same scripts. All nodes on one Redis must run the same scripts: a
node whose scripts kept no counts would leave them wrong until its calls end.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from typing import Any

import redis
from redis.commands.core import Script

from omnicli.server import suspend
from omnicli.server.records import CallRecord, CallState, Presence, UserKey
from omnicli.server.redispipe import RedisPipe
from omnicli.server.redisscripts import Scripts
from omnicli.server.store import Offered, Placed

RedisStoreError = redis.RedisError
SERVICES_TTL = 2.0  # s a node's list of services may lag another node's first record
DUE_BATCH = 1000  # records one `due` returns per kind, at most
RECENT = 20_000  # users whose call this node keeps a copy of, at most
_PLACED = (Offered.OK, Offered.CALLER_BUSY, Offered.CALLEE_BUSY, Offered.TAKEN)


def _dump(fields: dict[str, Any]) -> str:
    """One spelling per record, so that scripts can compare stored JSON byte for byte."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _presence_json(presence: Presence) -> str:
    fields = presence.to_dict()
    if fields["away_until"] is not None:
        fields["away_until"] = float(fields["away_until"])
    return _dump(fields)


def _score(value: float | None) -> str:
    return "" if value is None or math.isinf(value) else repr(float(value))


class RedisStore:
    """The `Store` contract over one Redis database (see the module docstring for keys)."""

    caches_calls = True

    def __init__(self, client: redis.Redis, prefix: str = "omni:") -> None:
        # Any: redis-py types replies as unions over decode_responses; ours are str
        self.r: Any = client
        self.prefix = prefix
        self.scripts = Scripts(client)
        self._recent: dict[UserKey, CallRecord] = {}  # see `recent_call`
        self.written = math.inf  # the soonest deadline this store wrote (the driver resets it)
        self._services: set[str] = set()  # known to be in Pservices already
        self._services_read = -math.inf
        self.pipe: RedisPipe | None = None  # set by the node (`cluster`) while it serves

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 1.0, prefix: str = "omni:") -> RedisStore:
        client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=True,
        )
        return cls(client, prefix)

    # -- the two clients ---------------------------------------------------------------

    def _do(self, *args: Any) -> Any:
        """One command: through the pipe inside `suspend.run`, else blocking."""
        if self.pipe is not None and suspend.pausable():
            return self._wait(self.pipe, *args)
        return self.r.execute_command(*args)

    @staticmethod
    def _wait(pipe: RedisPipe, *args: Any) -> Any:
        return suspend.wait(pipe.call(*args) if pipe.connected else pipe.execute(*args))

    def _do_all(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Several commands in one round trip, their replies in order."""
        if not commands:
            return []
        if self.pipe is not None and suspend.pausable():
            return suspend.wait(self.pipe.execute_all(commands))
        pipe = self.r.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(pipe.execute())

    def _run(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        """A script by its SHA (loaded again if Redis lost it, as after a restart)."""
        if self.pipe is None or not suspend.pausable():
            return script(keys, args)
        try:
            return self._wait(self.pipe, "EVALSHA", script.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            self._wait(self.pipe, "SCRIPT", "LOAD", script.script)
            return self._wait(self.pipe, "EVALSHA", script.sha, len(keys), *keys, *args)

    # -- keys --------------------------------------------------------------------------

    def _k(self, service_id: str, kind: str, name: str = "") -> str:
        return f"{self.prefix}{{{service_id}}}:{kind}{':' + name if name else ''}"

    def _note_service(self, service_id: str) -> None:
        if service_id not in self._services:
            self._do("SADD", f"{self.prefix}services", service_id)
            self._services.add(service_id)

    def forget_services(self) -> None:
        """Write the services again with their next record (Redis came back empty)."""
        self._services.clear()
        self._services_read = -math.inf

    def services(self, *, fresh: bool = False) -> list[str]:
        """The services with records, read again at most every SERVICES_TTL s (`fresh`:
        now)."""
        now = time.monotonic()
        if fresh or now - self._services_read > SERVICES_TTL:
            self._services |= set(self._do("SMEMBERS", f"{self.prefix}services"))
            self._services_read = now
        return sorted(self._services)

    # -- presence ----------------------------------------------------------------------

    def presence(self, service_id: str, user_id: str) -> Presence | None:
        text = self._do("GET", self._k(service_id, "p", user_id))
        return Presence.from_dict(json.loads(text)) if text else None

    def add_presence(self, presence: Presence) -> bool:
        svc, user = presence.key
        self._note_service(svc)
        keys = [
            self._k(svc, "p", user),
            self._k(svc, "users"),
            self._k(svc, "away"),
            self._k(svc, "node", presence.node),
        ]
        args = [_presence_json(presence), user, _score(presence.away_until)]
        return bool(self._run(self.scripts.add_presence, keys, args))

    def swap_presence(self, old: Presence, new: Presence | None) -> bool:
        svc, user = old.key
        assert new is None or new.key == old.key
        keys = [
            self._k(svc, "p", user),
            self._k(svc, "users"),
            self._k(svc, "away"),
            self._k(svc, "node", old.node),
            self._k(svc, "node", (new or old).node),
        ]
        args = [
            _presence_json(old),
            "" if new is None else _presence_json(new),
            user,
            "" if new is None else _score(new.away_until),
        ]
        if not self._run(self.scripts.swap_presence, keys, args):
            return False
        if new is not None and new.away_until is not None:
            self.written = min(self.written, new.away_until)
        return True

    def count(self, service_id: str) -> int:
        return int(self._do("ZCARD", self._k(service_id, "users")))

    def first_users(self, service_id: str, limit: int, after: str | None = None) -> list[str]:
        start = "-" if after is None else f"({after}"
        users = self._do("ZRANGEBYLEX", self._k(service_id, "users"), start, "+", "LIMIT", 0, limit)
        return list(users)

    def held_by(self, service_id: str, node: str) -> list[Presence]:
        """The presences node `node` held its connections for (for reaping a dead node)."""
        users = sorted(self._do("SMEMBERS", self._k(service_id, "node", node)))
        return self._presences(service_id, users)

    def _presences(self, service_id: str, users: list[str]) -> list[Presence]:
        if not users:
            return []
        texts = self._do("MGET", *(self._k(service_id, "p", u) for u in users))
        return [Presence.from_dict(json.loads(t)) for t in texts if t]

    # -- calls -------------------------------------------------------------------------

    def call(self, call_id: str) -> CallRecord | None:
        """The call, looked for in every service (one pipelined round trip)."""
        texts = self._do_all([("GET", self._k(svc, "c", call_id)) for svc in self.services()])
        for text in texts:
            if text:
                return self._remember(CallRecord.from_dict(json.loads(text)))
        return None

    def call_of(self, service_id: str, user_id: str) -> CallRecord | None:
        text = self._run(
            self.scripts.call_of,
            [self._k(service_id, "uc", user_id)],
            [self._k(service_id, "c") + ":"],
        )
        if not text:
            self._recent.pop((service_id, user_id), None)
            return None
        return self._remember(CallRecord.from_dict(json.loads(text)))

    def recent_call(self, service_id: str, user_id: str) -> CallRecord | None:
        """The copy of the user's call this node read or wrote last (maybe stale), or None."""
        return self._recent.get((service_id, user_id))

    def learn(self, call: CallRecord) -> None:
        """Keep a copy of a call another node wrote (sent along with a routed message),
        unless the copy here is of the same call and newer."""
        for user in call.parties:
            mine = self._recent.get((call.service_id, user))
            if mine is not None and mine.call_id == call.call_id and mine.rev > call.rev:
                return
        self._remember(call)

    def drop(self, service_id: str, user_id: str, call_id: str) -> None:
        """Forget the user's copy of a call another node says has ended."""
        mine = self._recent.get((service_id, user_id))
        if mine is not None and mine.call_id == call_id:
            self._forget(mine)

    def _remember(self, call: CallRecord) -> CallRecord:
        if len(self._recent) >= RECENT:
            self._recent.clear()  # cheap and rare; the copies are hints
        for user in call.parties:
            self._recent[(call.service_id, user)] = call
        return call

    def _forget(self, call: CallRecord) -> None:
        for user in call.parties:
            key = (call.service_id, user)
            if (mine := self._recent.get(key)) is not None and mine.call_id == call.call_id:
                del self._recent[key]

    def _call_keys(self, call: CallRecord) -> list[str]:
        svc = call.service_id
        return [
            self._k(svc, "c", call.call_id),
            self._k(svc, "uc", call.caller),
            self._k(svc, "uc", call.callee),
            self._k(svc, "deadlines"),
            self._k(svc, "states"),
        ]

    def add_call(self, call: CallRecord) -> bool:
        self._note_service(call.service_id)
        args = [_dump(call.to_dict()), call.call_id, _score(call.deadline)]
        if self._run(self.scripts.add_call, self._call_keys(call), args):
            self.written = min(self.written, call.deadline)
            self._remember(call)
            return True
        return False

    def place_call(self, call: CallRecord) -> Placed:
        """The offer in one script: both parties free, the id unused, the callee's presence
        read, the call added ringing (callee online) or calling."""
        self._note_service(call.service_id)
        calling = call.evolve(state=CallState.CALLING)
        keys = [*self._call_keys(call), self._k(call.service_id, "p", call.callee)]
        args = [_dump(call.to_dict()), _dump(calling.to_dict()), call.call_id]
        reply = self._run(self.scripts.place_call, keys, [*args, _score(call.deadline)])
        outcome = _PLACED[int(reply[0])]
        if outcome is not Offered.OK:
            return Placed(outcome)
        callee = Presence.from_dict(json.loads(reply[2])) if len(reply) > 2 and reply[2] else None
        self.written = min(self.written, call.deadline)
        return Placed(outcome, self._remember(call if reply[1] else calling), callee)

    def swap_call(self, old: CallRecord, new: CallRecord | None) -> CallRecord | None:
        stored = None
        if new is not None:
            assert (new.call_id, new.parties) == (old.call_id, old.parties)
            stored = new.evolve(rev=old.rev + 1)
        args = [
            str(old.rev),
            "" if stored is None else _dump(stored.to_dict()),
            old.call_id,
            "" if stored is None else _score(stored.deadline),
        ]
        reply = self._run(self.scripts.swap_call, self._call_keys(old), args)
        if not int(reply[0]):  # changed (keep the current copy) or gone
            if len(reply) > 1:
                self._remember(CallRecord.from_dict(json.loads(reply[1])))
            else:
                self._forget(old)
            return None
        if stored is None:
            self._forget(old)
            return CallRecord.from_dict(json.loads(reply[1]))
        self.written = min(self.written, stored.deadline)
        return self._remember(stored)

    def call_states(self, service_id: str) -> dict[str, int]:
        reply = self._do("HGETALL", self._k(service_id, "states"))
        # redis-py answers a dict, the pipe the flat list Redis sends
        pairs = (
            reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2], strict=True)
        )
        return {state: int(n) for state, n in pairs if int(n) > 0}

    # -- timers and inspection -----------------------------------------------------------

    def next_deadline(self) -> float | None:
        services = self.services()
        pipe = self.r.pipeline(transaction=False)
        for svc in services:
            pipe.zrange(self._k(svc, "deadlines"), 0, 0, withscores=True)
            pipe.zrange(self._k(svc, "away"), 0, 0, withscores=True)
        firsts = [float(rows[0][1]) for rows in pipe.execute() if rows]
        return min(firsts, default=None)

    def due(self, now: float) -> tuple[list[Presence], list[CallRecord]]:
        gone: list[Presence] = []
        calls: list[CallRecord] = []
        for svc in self.services():
            away = self.r.zrangebyscore(self._k(svc, "away"), "-inf", now, 0, DUE_BATCH)
            gone += self._presences(svc, away)
            ids = self.r.zrangebyscore(self._k(svc, "deadlines"), "-inf", now, 0, DUE_BATCH)
            if ids:
                texts = self.r.mget([self._k(svc, "c", i) for i in ids])
                calls += [CallRecord.from_dict(json.loads(t)) for t in texts if t]
        return gone, calls

    def presences(self) -> Iterator[Presence]:
        for svc in self.services():
            users = self.r.zrange(self._k(svc, "users"), 0, -1)
            yield from self._presences(svc, users)

    def calls(self) -> Iterator[CallRecord]:
        for svc in self.services():
            keys = list(self.r.scan_iter(match=self._k(svc, "c", "*"), count=1000))
            for text in self.r.mget(keys) if keys else []:
                if text:
                    yield CallRecord.from_dict(json.loads(text))

    # -- nodes -------------------------------------------------------------------------

    def renew_lease(self, node: str, now: float) -> bool:
        """Write the node's lease; True if it had none (first, or dropped as dead)."""
        return bool(self.r.hset(f"{self.prefix}nodes", node, repr(now)))

    def leases(self) -> dict[str, float]:
        return {n: float(t) for n, t in self.r.hgetall(f"{self.prefix}nodes").items()}

    def drop_lease(self, node: str) -> None:
        self.r.hdel(f"{self.prefix}nodes", node)
