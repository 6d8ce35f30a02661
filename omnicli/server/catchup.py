"""Catching up after a gap in a node's subscription: what its users missed. Pure.

Redis pub/sub delivers at most once: a message published while a node's subscription is
down (Redis restarting, a dropped connection, the node's loop stalled past Redis's output
buffer limit) is gone. The sender sees it (`PUBLISH` answers 0 subscribers: counted as
undelivered) but cannot resend it usefully, so the receiving node makes the loss harmless
once it is subscribed again: the call state every message described is in the store, and
the node knows the call it last told each of its users about (`Cluster.told`). For each
user connected to it, it compares the two:

- the user was told of a call the store no longer holds for it: the call ended meanwhile,
  and the user hears it (`LEAVE`, or `CANCEL` if it was ringing, reason
  `connection_lost`: the true reason went with the lost message);
- the store has the user ringing for a call it was not told of: `RINGING` again;
- the user is the caller of a call answered meanwhile and was last told it rang
  (`RINGBACK`): `ANSWERED` again, with the callee's SDP;
- the call connected meanwhile and the user was not told: `CONNECTED`.

A change the store shows may have been published just before the read, its message still
on the way: what `missed` finds waits `SETTLE` s, and what reached a user meanwhile the
usual way (its `told` changed) is not repeated (`unless_told`). In-call relays (mute,
recording notices) that were lost stay lost: they describe nothing
the store keeps, and the next one corrects the picture.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from omnicli.server.calls import answered, connected, ringing
from omnicli.server.records import CallState, Send, ToUser, UserKey
from omnicli.server.store import Store
from omnicli.wire import protocol as p
from omnicli.wire.protocol import EndReason, Event

_ANSWERED = (CallState.ANSWERED, CallState.CONNECTED)
SETTLE = 0.5  # s: a change read in the store may have its message still on the way


class Told(NamedTuple):
    """The call a user of this node was last told about, as the node saw it go out."""

    call_id: str
    ringing: bool  # told RINGING: CANCEL, not LEAVE, if it ends
    event: str  # the last of RINGBACK, RINGING, ANSWERED, CONNECTED it was told


def missed(store: Store, users: Iterable[tuple[UserKey, Told | None]]) -> list[Send]:
    """What each of these users (connected to this node) missed, by the store."""
    out: list[Send] = []
    for key, told in users:
        call = store.call_of(*key)
        user = key[1]
        if told is not None and (call is None or call.call_id != told.call_id):
            name = Event.CANCEL if told.ringing else Event.LEAVE
            lost = EndReason.CONNECTION_LOST.value
            out.append(
                Send(ToUser(*key), p.event(name, call_id=told.call_id, reason=lost, by=None))
            )
            told = None
        if call is None:
            continue
        if call.state is CallState.RINGING and call.callee == user and told is None:
            out.append(Send(ToUser(*key), ringing(call)))
            continue
        if told is None or told.event == Event.CONNECTED:
            continue
        if call.state in _ANSWERED and call.caller == user and told.event == Event.RINGBACK:
            out.append(Send(ToUser(*key), answered(call)))
        if call.state is CallState.CONNECTED:
            out.append(Send(ToUser(*key), connected(call, user)))
    return out


def unless_told(
    sends: list[Send], before: Mapping[UserKey, Told | None], now: Mapping[UserKey, Told]
) -> list[Send]:
    """The sends for users told nothing since `before` was taken (while `missed` read the
    store, a message may have reached them the usual way: it is not repeated)."""
    return [
        s
        for s in sends
        if isinstance(s.to, ToUser)
        and before.get((s.to.service_id, s.to.user_id)) == now.get((s.to.service_id, s.to.user_id))
    ]
