"""One server node among several on one Redis: leases, routing between nodes, reaping.

The switchboard decides; this module carries what it decides between nodes.

- **Lease** (`lease`): every node writes its wall time into `Pnodes` every `LEASE_RENEW` s,
  from a thread, while its event loop runs (a busy loop keeps its lease). A node
  whose lease is older than `LEASE_TTL` is dead: any live node *reaps* it by turning the
  sessions it held into away ones (`away_until` = its last renewal + the resume grace), so
  that their clients may resume on another node, and the grace timers (data in Redis) end
  the rest with `connection_lost`. With the defaults a dead node's peers hear it within
  LEASE_TTL + 1 s + grace (about 8 s of its death, 10 s at worst).
- **Routing:** a message for a user whose connection is on another node is published on
  that node's channel `Pnode:NODE`. One publisher task sends them in order, all that are
  queued in one write on its own `RedisPipe`, so no request waits for these round trips;
  each node listens on its channel with a `RedisSubscription` (hiredis parses what
  arrives, and each message is handled on the loop as it comes). Pub/sub
  delivers at most once. A message to a node that is not listening is seen by its sender
  (`PUBLISH` answers 0 subscribers: counted as undelivered, logged); the receiving node
  makes the loss harmless once it is subscribed again (`catchup`): after its next lease
  renewal it compares what each of its users was told with the store and sends what they
  missed (an ending, a ring, an answer, a connect). A routed message carries the
  sender's copy of the recipient's call, which the receiving node keeps as its recent
  copy (a hint checked by compare-and-set, see `RedisStore.recent_call`).
- **Redis back after a restart (empty):** seen at the next lease renewal (it failed while
  Redis was down, or it finds the lease gone), the node adds its connected users'
  presence again, so they are online and callable, and puts back the calls Redis lost
  from its copies (`rebuild`): connected calls go on once both parties' nodes vouch for
  them, ringing and answered ones with their deadlines; a call this node has no copy of
  ends for its user (`LEAVE`/`CANCEL`, `connection_lost`), so no client stays in a call the
  service no longer knows and nobody stays busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from omnicli.server import catchup, suspend
from omnicli.server.lease import LEASE_RENEW, LEASE_TTL, LeaseKeeper, reap_dead
from omnicli.server.rebuild import Held, Rebuild
from omnicli.server.records import CallRecord, Presence, Send, ToHolder, ToUser, UserKey
from omnicli.server.redispipe import RedisPipe, RedisSubscription
from omnicli.server.redisstore import RedisStore, RedisStoreError
from omnicli.server.switchboard import Switchboard
from omnicli.wire.protocol import EndReason, Event

log = logging.getLogger("omnicli.server.cluster")

POLL = 1.0  # s: dead nodes are looked for at most this often
PUBLISH_BATCH = 500  # messages to other nodes in one pipeline, at most
FLUSH_TIMEOUT = 2.0  # s a closing node waits for its queued messages to go out
LOST = EndReason.CONNECTION_LOST
_CALL_STARTS = (Event.RINGBACK, Event.RINGING, Event.ANSWERED, Event.CONNECTED)


@dataclass
class ClusterStats:
    routed: int = 0  # messages published to another node
    undelivered: int = 0  # messages whose recipient was gone or whose node did not listen
    redis_errors: int = 0
    redis_seconds: float = 0.0  # duration of the last lease renewal (a Redis round trip)


class Cluster:
    """This node's side of the shared store: call `start()` after the websocket server."""

    def __init__(
        self,
        board: Switchboard,
        store: RedisStore,
        url: str,
        deliver: Callable[[list[Send]], None],
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.board = board
        self.store = store
        self.url = url
        self.node = board.boot
        self.deliver = deliver  # hands sends for this node's users to their connections
        self.wall = wall
        self.stats = ClusterStats()
        self.healthy = False  # the last lease renewal reached Redis
        self._tasks: list[asyncio.Task[None]] = []
        self._last_reap = 0.0
        self.subscription = RedisSubscription(url, self.channel, self._heard, self._subscribed)
        self._subscriptions = 0
        self._catching: asyncio.Task[None] | None = None
        self._renewed = asyncio.Event()
        self.lease = LeaseKeeper(store, self.node, wall, self.stats)
        self._outbox: asyncio.Queue[tuple[str, str, str | None]] = asyncio.Queue()
        # the call each user of this node was last told about, and whether it was ringing
        # for them: what to end for them if Redis comes back without it
        self.told: dict[UserKey, catchup.Told] = {}
        self._kept: dict[UserKey, CallRecord] = {}  # copies set aside while Redis is gone
        self._unsettled: set[UserKey] = set()  # registered again; call not settled yet

    @property
    def channel(self) -> str:
        return f"{self.store.prefix}node:{self.node}"

    def channel_of(self, node: str) -> str:
        return f"{self.store.prefix}node:{node}"

    async def start(self) -> None:
        self.store.pipe = RedisPipe(self.url)  # requests' commands, pipelined on the loop
        self.renew()
        self.lease.start()
        self._tasks = [
            asyncio.create_task(self._lease_loop(), name="omni-cluster-lease"),
            asyncio.create_task(self._listen_loop(), name="omni-cluster-listen"),
            asyncio.create_task(self._publish_loop(), name="omni-cluster-publish"),
        ]
        async with asyncio.timeout(5):
            await self.subscription.subscribed.wait()  # what is published now reaches us

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError):  # the endings of its calls, forwarded
            async with asyncio.timeout(FLUSH_TIMEOUT):
                await self._outbox.join()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await asyncio.to_thread(self.lease.stop)  # no renewal after the drop
        with contextlib.suppress(RedisStoreError):
            self.store.drop_lease(self.node)
        if self.store.pipe is not None:
            await self.store.pipe.close()
            self.store.pipe = None

    # -- lease -----------------------------------------------------------------------

    def fresh(self) -> bool:
        """The lease was renewed lately: Redis answers and other nodes see this one alive."""
        return self.healthy and time.monotonic() - self.lease.renewed < LEASE_TTL

    def renew(self) -> None:
        """Renew the lease now, on the loop, and act on the outcome (see `_after_renewal`)."""
        self.lease.write()
        self._after_renewal()

    def _after_renewal(self) -> None:
        """On the loop, after the lease thread's renewals: register again when Redis is
        back, take sessions back when this node was reaped meanwhile."""
        outcome = self.lease.take()
        if outcome is None:
            return
        error, lost = outcome
        try:
            if error is not None:
                raise error
            if not self.healthy:
                self._reregister()
            elif lost:  # the lease was gone: Redis restarted between two renewals, or
                self._reregister()  # this node was reaped during a stall past STALL_LIMIT
                self._reclaim()
        except RedisStoreError as exc:
            if self.healthy:
                log.warning("Redis unreachable: %s", exc)
                self._keep_copies()
            self.healthy = False
            return
        self.healthy = True
        self._renewed.set()  # a catch-up waits for this: a Redis restart is settled first

    def _reclaim(self) -> None:
        """Take back the sessions of this node's connected users that another node turned
        away while this one stalled (they would otherwise end when the grace runs out)."""
        back = 0
        for key, conn in list(self.board.sessions.local.items()):
            c = self.board.conns.get(conn)
            presence = self.store.presence(*key)
            if (
                c is not None
                and presence is not None
                and presence.away
                and presence.session == c.session
                and self.store.swap_presence(presence, replace(presence, away_until=None))
            ):
                back += 1
        if back:
            log.warning("this node's lease had run out (a stall): %d sessions taken back", back)

    def _reregister(self) -> None:
        """Add this node's connected users again where Redis has lost them (a restart),
        and put back the calls it lost from this node's copies (`rebuild`). Redis failing
        half way raises; the next renewal finishes (a rebuild may run twice: it joins
        what it put back)."""
        self.store.forget_services()
        local = self.board.sessions.local
        for key, conn in list(local.items()):
            c = self.board.conns.get(conn)
            if c is None or c.session is None:
                continue
            if self.store.presence(*key) is None and self.store.add_presence(
                Presence(*key, c.session, self.node)
            ):
                self._unsettled.add(key)  # registered again: its call is to settle
        if not self._unsettled:
            self._kept = {}
            return
        held = [
            Held(key, told.call_id, told.ringing, self._copy(key, told.call_id))
            for key in sorted(self._unsettled)
            if key in local and (told := self.told.get(key)) is not None
        ]
        rebuild = Rebuild(self.board.machine, self.wall())
        sends = rebuild.run(held)
        log.warning(
            "Redis came back without this node's sessions: %d registered again; calls: %s",
            len(self._unsettled),
            ", ".join(f"{n} {what}" for what, n in sorted(rebuild.outcomes.items())) or "none",
        )
        self._unsettled.clear()
        self._kept = {}
        self.deliver(sends)  # the endings for this node's users
        self.forward(sends)  # CONNECTED for a party on another node (a joined answered call)

    def _keep_copies(self) -> None:
        """Redis is gone: set aside this node's copies of its users' calls. If it comes
        back empty, a request served before `_reregister` finds no call and the store drops
        its copy; the rebuild takes the copy from here then."""
        self._kept = {k: c for k in self.told if (c := self.store.recent_call(*k)) is not None}

    def _copy(self, key: UserKey, call_id: str) -> CallRecord | None:
        """This node's copy of call `call_id` for the user: the store's, or the one kept."""
        for copy in (self.store.recent_call(*key), self._kept.get(key)):
            if copy is not None and copy.call_id == call_id:
                return copy
        return None

    def note(self, conn: int, message: dict[str, Any]) -> None:
        """Remember the call a user of this node is told about (see `told`)."""
        name = message.get("event")
        if name is None:
            return
        service_id, user_id = self.board.service_of(conn), self.board.user_of(conn)
        if service_id is None or user_id is None:
            return
        key = (service_id, user_id)
        if name in _CALL_STARTS:
            self.told[key] = catchup.Told(message["call_id"], name == Event.RINGING, name)
        elif name in (Event.LEAVE, Event.CANCEL):
            self.told.pop(key, None)
        if len(self.told) > 2 * len(self.board.sessions.local) + 16:  # users gone meanwhile
            for gone in [k for k in self.told if k not in self.board.sessions.local]:
                del self.told[gone]

    def left(self, conn: int) -> None:
        """The user of `conn` left its call (a response, not an event, tells it)."""
        service_id, user_id = self.board.service_of(conn), self.board.user_of(conn)
        if service_id is not None and user_id is not None:
            self.told.pop((service_id, user_id), None)

    async def _lease_loop(self) -> None:
        """The loop's beat for the lease thread, and what follows its renewals."""
        while True:
            await asyncio.sleep(LEASE_RENEW)
            self.lease.beat()
            self._after_renewal()

    # -- reaping dead nodes ------------------------------------------------------------

    def reap(self, now: float) -> None:
        """Turn the sessions of nodes whose lease ran out into away ones (at most once a s)."""
        if now - self._last_reap >= POLL:
            self._last_reap = now
            reap_dead(self.store, self.node, now, self.board.resume_grace)

    # -- routing -----------------------------------------------------------------------

    def forward(self, sends: list[Send]) -> None:
        """Queue the sends for users held by other nodes for those nodes' channels."""
        for send in self.board.remote(sends):
            assert isinstance(send.to, ToUser | ToHolder)
            service_id, user_id = send.to.service_id, send.to.user_id
            node = send.to.node  # where the switchboard saw the user just now
            if isinstance(send.to, ToUser) and (not node or node == self.node):
                presence = self.store.presence(service_id, user_id)
                if presence is None or presence.away or presence.node == self.node:
                    self.stats.undelivered += 1
                    continue
                node = presence.node
            payload: dict[str, Any] = {
                "service_id": service_id,
                "user_id": user_id,
                "message": send.message,
                "close": send.close,
                "holder": isinstance(send.to, ToHolder),
            }
            if (call := self.store.recent_call(service_id, user_id)) is not None:
                payload["call"] = call.to_dict()
            self._outbox.put_nowait((node, json.dumps(payload), send.message.get("event")))

    async def _publish_loop(self) -> None:
        """Publish the queued messages in order; those queued together in one write."""
        pipe = RedisPipe(self.url)
        try:
            while True:
                batch = [await self._outbox.get()]
                while not self._outbox.empty() and len(batch) < PUBLISH_BATCH:
                    batch.append(self._outbox.get_nowait())
                commands = [("PUBLISH", self.channel_of(node), data) for node, data, _ in batch]
                counts: list[int] = []
                for attempt in (1, 2):  # a connection Redis closed (a restart) fails once
                    try:
                        counts = await pipe.execute_all(commands)
                        break
                    except RedisStoreError as exc:
                        self.stats.redis_errors += 1
                        if attempt == 2:
                            self.stats.undelivered += len(batch)
                            log.warning("%d messages to other nodes lost: %s", len(batch), exc)
                for (node, _, name), got in zip(batch, counts, strict=False):
                    if got:
                        self.stats.routed += 1
                    else:
                        self.stats.undelivered += 1
                        log.warning("node %s did not receive %s", node, name)
                for _ in batch:
                    self._outbox.task_done()
        finally:
            await pipe.close()

    def receive(self, payload: dict[str, Any]) -> None:
        if payload.get("holder"):  # our connection's session was resumed on another node
            kicks = self.board.kick_holder(
                payload["service_id"], payload["user_id"], payload["message"]
            )
            if not kicks:
                self.stats.undelivered += 1  # gone already
            self.deliver(kicks)
            return
        message = payload["message"]
        if isinstance(call := payload.get("call"), dict):
            self.store.learn(CallRecord.from_dict(call))
        elif message.get("event") in (Event.LEAVE, Event.CANCEL):
            self.store.drop(payload["service_id"], payload["user_id"], message["call_id"])
        send = Send(
            ToUser(payload["service_id"], payload["user_id"]),
            payload["message"],
            bool(payload.get("close")),
        )
        if self.board.remote([send]):
            self.stats.undelivered += 1  # the user left this node meanwhile
            return
        self.deliver([send])

    def _heard(self, text: str) -> None:
        try:
            self.receive(json.loads(text))
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("bad message on %s", self.channel)

    def _subscribed(self) -> None:
        """Subscribed (again): after a gap, catch up with what was published meanwhile."""
        self._subscriptions += 1
        if self._subscriptions > 1 and (self._catching is None or self._catching.done()):
            self._catching = asyncio.create_task(self._catch_up(), name="omni-cluster-catch-up")

    async def _catch_up(self) -> None:
        self._renewed.clear()  # after the next renewal, so that a Redis that came back
        try:  # empty has had its calls put back (`_reregister`) and nothing looks missed
            async with asyncio.timeout(2 * LEASE_TTL):
                await self._renewed.wait()
        except TimeoutError:  # Redis is still away: the subscription fails again, and
            return  # its next return starts another catch-up
        told = {key: self.told.get(key) for key in list(self.board.sessions.local)}
        try:
            sends = await suspend.run(catchup.missed, self.store, list(told.items()))
        except RedisStoreError as exc:
            log.warning("catching up after the subscription came back: %s", exc)
            return
        await asyncio.sleep(catchup.SETTLE)  # messages published just before the read
        sends = catchup.unless_told(sends, told, self.told)  # came the usual way meanwhile
        if sends:
            log.warning(
                "subscription came back: %d messages its users missed, sent again", len(sends)
            )
        self.deliver(sends)

    async def _listen_loop(self) -> None:
        while True:
            try:
                await self.subscription.run()
            except RedisStoreError as exc:
                self.stats.redis_errors += 1
                log.debug("subscription lost: %s", exc)
                await asyncio.sleep(0.5)
