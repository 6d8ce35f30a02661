"""What one client, or one address, may make the server hold: connection caps and the
throttle on failed authentication.

Pure except `raise_fd_limit` (one system call): the driver tells these objects what
happened and the time, and they answer what to do.

- `ConnectionGate` counts every TCP connection from the moment it is accepted (before
  the websocket handshake), in total, per source address, and by stage: not past
  `hello` (*unauthenticated*), past hello without a session (*sessionless*), holding a
  session. Past the per-address cap a new connection is refused at once. At the
  unauthenticated cap the *oldest* unauthenticated connection makes room for the new
  one (as sshd's MaxStartups does); at the total cap the oldest connection that is
  unauthenticated or sessionless does. So connections that never say hello, or say hello
  and nothing more, cannot lock out a client that registers: only sessions hold a
  place for good, and they are bounded per address and per service.
- `AuthThrottle` counts failed authentications (hello refused with 401) per source
  address. After `free` failures each further one blocks the address for a delay that
  doubles up to `max_block`; a blocked address is answered 429 without its key being
  checked. It also keeps the counts the driver logs as one summary line per address.
- `AddressBudget` is a token bucket per source address for costly answers: a
  `session_list` of N rows costs 1 + N/100 of the connection's rate limit and of its
  address's budget, so many connections from one address cannot make the server
  build thousands of long lists a second.
"""

from __future__ import annotations

import itertools
import resource
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field

from omnicli.server.ratelimit import TokenBucket

DEFAULT_MAX_CONNECTIONS = 10_000
DEFAULT_MAX_PER_ADDRESS = 256
DEFAULT_MAX_UNAUTHENTICATED = 512
FD_RESERVE = 64  # descriptors kept free for the listening socket, logs, files, refusals


def raise_fd_limit() -> int:
    """Raise this process's soft descriptor limit to its hard limit; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # not allowed here: keep what we have, the caps follow it
    return int(soft)


def fd_soft_limit() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 1 << 20 if soft == resource.RLIM_INFINITY else int(soft)


@dataclass(frozen=True)
class Caps:
    total: int = DEFAULT_MAX_CONNECTIONS
    per_address: int = DEFAULT_MAX_PER_ADDRESS
    unauthenticated: int = DEFAULT_MAX_UNAUTHENTICATED

    def within(self, fd_limit: int) -> Caps:
        """These caps, with the total kept FD_RESERVE below the descriptor limit."""
        total = max(1, min(self.total, fd_limit - FD_RESERVE))
        return Caps(total, min(self.per_address, total), min(self.unauthenticated, total))


@dataclass(frozen=True)
class Admission:
    admitted: bool
    reason: str = ""  # why not
    evict: Hashable | None = None  # a connection to close to make room


class ConnectionGate:
    """Counts connections; decides who gets in."""

    def __init__(self, caps: Caps) -> None:
        self.caps = caps
        self.address: dict[Hashable, str] = {}
        self.arrival: dict[Hashable, int] = {}
        self._arrivals = itertools.count()
        self.per_address: dict[str, int] = {}
        self.unauthenticated: OrderedDict[Hashable, None] = OrderedDict()  # oldest first
        self.sessionless: OrderedDict[Hashable, None] = OrderedDict()  # past hello, no session
        self.refused = 0  # connections refused so far
        self.evicted = 0  # connections closed to make room

    @property
    def total(self) -> int:
        return len(self.address)

    def admit(self, key: Hashable, address: str) -> Admission:
        if self.per_address.get(address, 0) >= self.caps.per_address:
            self.refused += 1
            return Admission(False, f"{self.caps.per_address} connections from {address}")
        evict = None
        if self.total >= self.caps.total:
            waiting = [stage for stage in (self.unauthenticated, self.sessionless) if stage]
            if not waiting:
                self.refused += 1
                return Admission(False, f"server full ({self.caps.total} connections)")
            # the one that has waited longest, whichever its stage
            evict = self._evict(min(waiting, key=lambda stage: self.arrival[next(iter(stage))]))
        elif len(self.unauthenticated) >= self.caps.unauthenticated:
            evict = self._evict(self.unauthenticated)
        self.address[key] = address
        self.arrival[key] = next(self._arrivals)
        self.per_address[address] = self.per_address.get(address, 0) + 1
        self.unauthenticated[key] = None
        return Admission(True, evict=evict)

    def _evict(self, stage: OrderedDict[Hashable, None]) -> Hashable:
        """The oldest connection of `stage`, no longer counted from now on."""
        victim = next(iter(stage))
        self.release(victim)
        self.evicted += 1
        return victim

    def authenticated(self, key: Hashable) -> None:
        """`key` passed hello."""
        if self.unauthenticated.pop(key, 0) is None:
            self.sessionless[key] = None

    def registered(self, key: Hashable) -> None:
        """`key` holds a session now: it keeps its place."""
        self.sessionless.pop(key, None)

    def release(self, key: Hashable) -> None:
        self.unauthenticated.pop(key, None)
        self.sessionless.pop(key, None)
        self.arrival.pop(key, None)
        address = self.address.pop(key, None)
        if address is None:
            return
        left = self.per_address[address] - 1
        if left:
            self.per_address[address] = left
        else:
            del self.per_address[address]


@dataclass
class _Strikes:
    failures: int = 0  # since the address was last quiet for `forget_after`
    last: float = 0.0
    blocked_until: float = 0.0
    unreported: int = 0  # failures since the last summary
    refused: int = 0  # hellos answered 429 since the last summary


@dataclass
class AuthThrottle:
    """Failed authentication per source address, with a doubling block."""

    free: int = 5  # failures allowed before the first block
    first_block: float = 1.0
    max_block: float = 60.0
    forget_after: float = 300.0  # an address quiet this long starts afresh
    max_addresses: int = 10_000  # the table is bounded too: the oldest entries go
    table: OrderedDict[str, _Strikes] = field(default_factory=OrderedDict)

    def blocked_for(self, address: str, now: float) -> float:
        """Seconds this address must still wait (0: it may try)."""
        strikes = self.table.get(address)
        if strikes is None or strikes.blocked_until <= now:
            return 0.0
        strikes.refused += 1
        return strikes.blocked_until - now

    def failed(self, address: str, now: float) -> float:
        """Count one failure; the block (s) it starts, 0 for none."""
        strikes = self.table.pop(address, None)
        if strikes is None or now - strikes.last > self.forget_after:
            strikes = _Strikes(unreported=strikes.unreported if strikes else 0)
        self.table[address] = strikes  # most recent last
        while len(self.table) > self.max_addresses:
            self.table.popitem(last=False)
        strikes.failures += 1
        strikes.unreported += 1
        strikes.last = now
        over = strikes.failures - self.free
        if over <= 0:
            return 0.0
        block = min(self.max_block, self.first_block * 2.0 ** min(over - 1, 30))
        strikes.blocked_until = now + block
        return block

    def summary(self, now: float) -> list[tuple[str, int, int, float]]:
        """(address, failures, refused while blocked, block left) since the last summary."""
        rows = []
        for address, s in self.table.items():
            if s.unreported or s.refused:
                rows.append((address, s.unreported, s.refused, max(0.0, s.blocked_until - now)))
                s.unreported = s.refused = 0
        return rows


ROWS_PER_TOKEN = 100  # a session_list answer costs 1 + rows / ROWS_PER_TOKEN requests
LIST_RATE = 100.0  # cost units per second per address (10 lists of 1,000 rows)
LIST_BURST = 200


def list_cost(rows: int) -> float:
    """What a session_list answer of `rows` rows costs beyond the one request it was."""
    return rows / ROWS_PER_TOKEN


@dataclass
class AddressBudget:
    """A token bucket per source address (the table bounded, the oldest entries go)."""

    rate: float = LIST_RATE
    burst: float = LIST_BURST
    max_addresses: int = 10_000
    table: OrderedDict[str, TokenBucket] = field(default_factory=OrderedDict)

    def _bucket(self, address: str) -> TokenBucket:
        bucket = self.table.pop(address, None) or TokenBucket(self.rate, self.burst)
        self.table[address] = bucket
        while len(self.table) > self.max_addresses:
            self.table.popitem(last=False)
        return bucket

    def take(self, address: str, now: float) -> float:
        """0 when `address` may go on (one unit taken), else the seconds until it may."""
        bucket = self._bucket(address)
        return 0.0 if bucket.take(now) else max(0.01, bucket.retry_after())

    def charge(self, address: str, amount: float) -> None:
        self._bucket(address).charge(amount)
