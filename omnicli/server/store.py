"""The store seam: where presence and call records live, behind one small interface.

Every write is one atomic step that states what it expects, so that a store shared by
several server processes (Redis, with one Lua script per operation) can apply it or
refuse it without locks held across requests:

- `add_presence` succeeds only if the user id has no session (a user is online once);
- `swap_presence(old, new)` only if the stored session is still `old`;
- `add_call` only if neither party is in a call (a user is in one call at a time);
- `swap_call(old, new)` only if the stored call is still at `old.rev`; `new=None` ends
  the call and frees both parties in the same step.

`place_call` is an offer in one step: it checks both parties, reads whether the callee is
online and adds the call (ringing, or calling when the callee is not online).
`call_states(service_id)` is the number of the service's calls in each state (states
with none left out), kept by the writes themselves (`add_call`, `place_call`, `swap_call`
change a count in the step that changes a record; on Redis a hash per service that only
the call scripts write), so that reading it costs the same with ten calls or a million
(`/metrics`). `recent_call` is a store's own copy of a call it read or wrote lately, or None: a hint
that spares a read, good only for a change that is then compare-and-set (a stale copy
fails the set, and the caller reads again); `MemoryStore` keeps none.

Timers are data: `next_deadline()` and `due(now)` read the deadlines kept in the
records, so any process may fire them. `MemoryStore` is the embedded, single-process
store; the `Switchboard` is written against `Store` only.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from enum import StrEnum
from typing import NamedTuple, Protocol

from omnicli.server.records import NEVER, CallRecord, CallState, Presence, UserKey


class Offered(StrEnum):
    OK = "ok"
    CALLER_BUSY = "caller_busy"
    CALLEE_BUSY = "callee_busy"
    TAKEN = "taken"  # the call id is in use


class Placed(NamedTuple):
    outcome: Offered
    call: CallRecord | None = None  # as stored: ringing, or calling if the callee is not online
    callee: Presence | None = None  # the callee's session when the call was placed


class Store(Protocol):
    # -- presence ----------------------------------------------------------------------
    def presence(self, service_id: str, user_id: str) -> Presence | None: ...
    def add_presence(self, presence: Presence) -> bool: ...
    def swap_presence(self, old: Presence, new: Presence | None) -> bool: ...
    def count(self, service_id: str) -> int: ...
    def first_users(self, service_id: str, limit: int, after: str | None = None) -> list[str]: ...

    # -- calls -------------------------------------------------------------------------
    def call(self, call_id: str) -> CallRecord | None: ...
    def call_of(self, service_id: str, user_id: str) -> CallRecord | None: ...
    def add_call(self, call: CallRecord) -> bool: ...
    def swap_call(self, old: CallRecord, new: CallRecord | None) -> CallRecord | None: ...
    def place_call(self, call: CallRecord) -> Placed: ...
    def recent_call(self, service_id: str, user_id: str) -> CallRecord | None: ...
    def call_states(self, service_id: str) -> dict[str, int]: ...

    caches_calls: bool  # whether recent_call ever answers

    # -- timers and inspection -----------------------------------------------------------
    def next_deadline(self) -> float | None: ...
    def due(self, now: float) -> tuple[list[Presence], list[CallRecord]]: ...
    def presences(self) -> Iterator[Presence]: ...
    def calls(self) -> Iterator[CallRecord]: ...


class MemoryStore:
    """Dicts in one process: every operation is atomic because nothing runs beside it."""

    caches_calls = False

    def __init__(self) -> None:
        self._presence: dict[UserKey, Presence] = {}
        self._away: dict[UserKey, float] = {}  # the timers among them, so idle ones cost nothing
        self._held: dict[str, int] = {}  # service -> sessions (online or away)
        self._calls: dict[str, CallRecord] = {}
        self._user_call: dict[UserKey, str] = {}
        self._states: dict[str, dict[str, int]] = {}  # service -> state -> calls (see `_count`)

    # -- presence ----------------------------------------------------------------------

    def presence(self, service_id: str, user_id: str) -> Presence | None:
        return self._presence.get((service_id, user_id))

    def add_presence(self, presence: Presence) -> bool:
        if presence.key in self._presence:
            return False
        self._presence[presence.key] = presence
        self._held[presence.service_id] = self._held.get(presence.service_id, 0) + 1
        self._timer(presence)
        return True

    def swap_presence(self, old: Presence, new: Presence | None) -> bool:
        if self._presence.get(old.key) != old:
            return False
        if new is None:
            del self._presence[old.key]
            self._away.pop(old.key, None)
            self._held[old.service_id] -= 1
        else:
            assert new.key == old.key
            self._presence[old.key] = new
            self._timer(new)
        return True

    def _timer(self, presence: Presence) -> None:
        if presence.away_until is None:
            self._away.pop(presence.key, None)
        else:
            self._away[presence.key] = presence.away_until

    def count(self, service_id: str) -> int:
        return self._held.get(service_id, 0)

    def first_users(self, service_id: str, limit: int, after: str | None = None) -> list[str]:
        """The service's first `limit` user ids in order, those after `after` if given."""
        users = (
            user
            for svc, user in self._presence
            if svc == service_id and (after is None or user > after)
        )
        return heapq.nsmallest(limit, users)

    # -- calls -------------------------------------------------------------------------

    def call(self, call_id: str) -> CallRecord | None:
        return self._calls.get(call_id)

    def call_of(self, service_id: str, user_id: str) -> CallRecord | None:
        call_id = self._user_call.get((service_id, user_id))
        return self._calls.get(call_id) if call_id else None

    def add_call(self, call: CallRecord) -> bool:
        keys = [(call.service_id, user) for user in call.parties]
        if call.call_id in self._calls or any(key in self._user_call for key in keys):
            return False
        self._calls[call.call_id] = call
        for key in keys:
            self._user_call[key] = call.call_id
        self._count(call, 1)
        return True

    def place_call(self, call: CallRecord) -> Placed:
        if (call.service_id, call.caller) in self._user_call:
            return Placed(Offered.CALLER_BUSY)
        if (call.service_id, call.callee) in self._user_call:
            return Placed(Offered.CALLEE_BUSY)
        if call.call_id in self._calls:
            return Placed(Offered.TAKEN)
        callee = self._presence.get((call.service_id, call.callee))
        if callee is None or callee.away:
            call = call.evolve(state=CallState.CALLING)
        self.add_call(call)
        return Placed(Offered.OK, call, callee)

    def recent_call(self, service_id: str, user_id: str) -> CallRecord | None:
        return None

    def swap_call(self, old: CallRecord, new: CallRecord | None) -> CallRecord | None:
        current = self._calls.get(old.call_id)
        if current is None or current.rev != old.rev:
            return None
        if new is None:
            del self._calls[old.call_id]
            for user in old.parties:
                if self._user_call.get((old.service_id, user)) == old.call_id:
                    del self._user_call[(old.service_id, user)]
            self._count(current, -1)
            return current
        assert (new.call_id, new.parties) == (old.call_id, old.parties)
        stored = new.evolve(rev=old.rev + 1)
        self._calls[old.call_id] = stored
        if stored.state != current.state:
            self._count(current, -1)
            self._count(stored, 1)
        return stored

    def _count(self, call: CallRecord, by: int) -> None:
        """Change the count of the call's state; a state with no calls left is removed."""
        states = self._states.setdefault(call.service_id, {})
        n = states.get(call.state.value, 0) + by
        if n > 0:
            states[call.state.value] = n
        else:
            states.pop(call.state.value, None)

    def call_states(self, service_id: str) -> dict[str, int]:
        return dict(self._states.get(service_id, {}))

    # -- timers and inspection -----------------------------------------------------------

    def next_deadline(self) -> float | None:
        finite = [c.deadline for c in self._calls.values() if c.deadline != NEVER]
        finite += self._away.values()
        return min(finite, default=None)

    def due(self, now: float) -> tuple[list[Presence], list[CallRecord]]:
        gone = [self._presence[key] for key, until in self._away.items() if until <= now]
        return gone, [c for c in self._calls.values() if c.deadline <= now]

    def presences(self) -> Iterator[Presence]:
        return iter(list(self._presence.values()))

    def calls(self) -> Iterator[CallRecord]:
        return iter(list(self._calls.values()))
