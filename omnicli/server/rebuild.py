"""Putting back the calls a store lost (Redis restarted empty): one node's side. Pure.

When Redis comes back without its data, each node still knows, for each of its connected
users, the call it last told them about (`Cluster.told`) and usually a copy of that call's
record (`RedisStore.recent_call`). The media of a call is peer to peer and never stopped,
so ending the call because the signaling store lost it would be the harshest answer: each
call is put back from these copies instead, with the store's atomic `add_call`. When the
parties are on two nodes both try; one add wins, and the other node finds the call there
(same id) and *joins* it (below) instead of ending it.

What comes back, by the state of this node's copy:

- **Connected** (or `RESUMING`): re-added `RESUMING`, `media_up` = the parties this node
  vouches for (connected here and told of this call), deadline `REBUILD_WAIT` s away. The
  other party's node, finding it, adds its party; with both, the call is `CONNECTED` again,
  without deadline, and nobody was told anything. A call only one side still holds (the
  other party left while Redis was down, its `leave` refused; or its node had no copy and
  ended it) ends at the deadline with `connection_lost`, as a call half rebuilt after a
  server restart does (`resume`). Why not re-add it `CONNECTED` from one copy: a connected
  call has no deadline, so a party whose client left during the outage would stay busy
  until the other hung up. Both parties on this node: `CONNECTED` at once.
- **Answered** (connecting): re-added as it was, with the connect deadline it got at the
  answer (the protocol's bound: an answered call connects or ends within the connect
  timeout, outage or not). The joining node adds its party's media report if its copy has
  one (`Calls.mark_up`: `CONNECTED` to both once both are up). A report made while Redis
  was down was refused and phones do not send it again, so a call whose media came up
  during the outage ends `media_failed` at that deadline: bounded, never stuck.
- **Ringing or calling**: re-added as it was, with its ring deadline from the offer: the
  callee may still answer, and if nobody does the ring timeout ends it (`no_answer`,
  `unavailable`) as it would have without the outage, at once if it ran out meanwhile.
  A fresh ring deadline would make the caller's wait longer than the ring timeout it was
  promised; ending it (`CANCEL`) would drop a call that can still be answered.
- **No copy** of the told call (the node restarted, or dropped its copies), a copy of
  another call, or a call with a SIP party (the gateway's leg is not rebuilt): ended for
  this node's user (`LEAVE`, or `CANCEL` while it rang, with `connection_lost`), so that no
  client stays in a call the service no longer knows.

A node that finds the user's call in the store already (the other node won) joins it:
`RESUMING` gets its party in `media_up` (and `CONNECTED` once both are); an answered call
gets its media report; any other state is left as it is.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from omnicli.server.calls import Calls
from omnicli.server.records import NEVER, CallRecord, CallState, Refusal, Send, ToUser, UserKey
from omnicli.server.store import Store
from omnicli.wire import protocol as p
from omnicli.wire.protocol import EndReason, Event

REBUILD_WAIT = 6.0  # s a half-rebuilt connected call waits for its other party's node
ATTEMPTS = 3  # joins retried when the other node changed the call meanwhile
_UP = (CallState.CONNECTED, CallState.RESUMING)


@dataclass(frozen=True)
class Held:
    """A user connected to this node, the call it was last told about, and this node's
    copy of a call's record for it (maybe of another call, or None)."""

    user: UserKey
    call_id: str
    ringing: bool  # it was told RINGING/RINGBACK last (CANCEL, not LEAVE, if it ends)
    copy: CallRecord | None


class Rebuild:
    """Puts back the calls of this node's users that the store has lost (see module)."""

    def __init__(self, calls: Calls, now: float) -> None:
        self.calls = calls
        self.store: Store = calls.store
        self.now = now  # wall time: the deadlines are shared with other nodes
        self.outcomes: Counter[str] = Counter()  # rebuilt, joined, ended

    def run(self, held: list[Held]) -> list[Send]:
        """Each held user's call back in the store, or ended for it; what to send."""
        vouched: dict[str, set[str]] = {}
        for h in held:
            vouched.setdefault(h.call_id, set()).add(h.user[1])
        out: list[Send] = []
        for h in held:
            self.outcomes[self._one(h, vouched[h.call_id], out)] += 1
        return out

    def _one(self, h: Held, vouched: set[str], out: list[Send]) -> str:
        current = self.store.call_of(*h.user)
        if current is None:
            copy = h.copy
            if copy is None or copy.call_id != h.call_id or copy.sip:
                return self._end_for(h, out)
            if self.store.add_call(self.rebuilt(copy, vouched)):
                return "rebuilt"
            current = self.store.call_of(*h.user)  # the other party's node was first
        if current is None or current.call_id != h.call_id:
            # a stale call of another node's holds the user (it ends on its own deadline):
            # the one this user knows cannot come back
            return self._end_for(h, out)
        return self._join(current, h, out)

    def rebuilt(self, copy: CallRecord, vouched: set[str]) -> CallRecord:
        """The record to add again for `copy` (see the module docstring)."""
        if copy.state not in _UP:
            return copy  # ringing, calling, answered: with the deadline it had
        if vouched >= set(copy.parties):
            return copy.evolve(
                state=CallState.CONNECTED, deadline=NEVER, media_up=frozenset(copy.parties)
            )
        return copy.evolve(
            state=CallState.RESUMING,
            deadline=self.now + REBUILD_WAIT,
            media_up=frozenset(vouched & set(copy.parties)),
        )

    def _join(self, current: CallRecord, h: Held, out: list[Send]) -> str:
        """The call is in the store (the other party's node put it back): add this node's
        party to it, read again if the other node changed it meanwhile."""
        user = h.user[1]
        for _ in range(ATTEMPTS):
            if current.state is CallState.RESUMING:
                up = current.media_up | {user}
                joined = current.evolve(media_up=up)
                if up >= set(current.parties):
                    joined = joined.evolve(state=CallState.CONNECTED, deadline=NEVER)
                elif up == current.media_up:
                    return "joined"
                if self.store.swap_call(current, joined) is not None:
                    return "joined"
            elif current.state is CallState.ANSWERED:
                reported = h.copy is not None and user in h.copy.media_up
                if not reported or user in current.media_up:
                    return "joined"
                sends: list[Send] = []
                try:
                    self.calls.mark_up(current, user, sends)  # CONNECTED to both if both up
                except Refusal:
                    pass  # changed meanwhile
                else:
                    out.extend(sends)
                    return "joined"
            else:
                return "joined"  # connected, ringing: as the other node put it back
            again = self.store.call_of(*h.user)
            if again is None or again.call_id != h.call_id:
                return "joined"  # ended meanwhile: whoever ended it told the parties
            current = again
        return "joined"

    def _end_for(self, h: Held, out: list[Send]) -> str:
        name = Event.CANCEL if h.ringing else Event.LEAVE
        msg = p.event(name, call_id=h.call_id, reason=EndReason.CONNECTION_LOST.value, by=None)
        out.append(Send(ToUser(*h.user), msg))
        return "ended"
