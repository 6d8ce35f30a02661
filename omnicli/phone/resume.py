"""Getting a phone's session back after its signaling connection dropped.

The call-core hands `Reconnector.take_over()` the reason when the websocket to the
server goes away while it holds a session. Media is peer to peer, so a call in
progress keeps flowing meanwhile. The reconnector emits `RECONNECTING`, retries with
backoff and jitter until the server's resume grace runs out, each try being the
phone's `attempt` (a new socket, `hello`, `resume`); then hands the result to
`resumed` (the pure `CallMachine.resumed()` reconciles the call, see `reconcile.py`);
or, when the grace passes or the server refuses the resume, calls `lost` (the call
ends as `connection_lost`, ringing calls are dropped, the phone is offline and
`SERVER_LOST` says why).

It knows the phone only through the callables it is given: no import of the core.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from omnicli.errors import OmniError, ServerRefused
from omnicli.phone import events as ev
from omnicli.phone.backoff import Backoff
from omnicli.wire.messages import ResumeResult

log = logging.getLogger("omnicli.phone.resume")

MAX_GRACE = 60.0


@dataclass(frozen=True)
class ResumeHooks:
    """What the reconnector may do to its phone."""

    can_resume: Callable[[], bool]  # a session, a token, a grace, and not kicked out
    grace: Callable[[], float]  # how long the server keeps the session (s)
    attempt: Callable[[], Awaitable[ResumeResult]]  # one try; closes the socket if it fails
    resumed: Callable[[ResumeResult, float, int], Awaitable[None]]  # result, downtime ms, tries
    lost: Callable[[str], None]  # the session is gone, for this reason
    close: Callable[[], Awaitable[None]]  # close the signaling socket
    emit: Callable[[ev.CallEvent], None]
    spawn: Callable[[Coroutine[Any, Any, None]], None]


class Reconnector:
    """Resumes one phone's session; at most one resume runs at a time."""

    def __init__(self, hooks: ResumeHooks) -> None:
        self.hooks = hooks
        self.active = False  # a resume owns reconnecting now

    def take_over(self, reason: str) -> bool:
        """The phone's socket closed: True if resuming handles it (or already does)."""
        if self.active:
            return True  # a failed attempt's socket closing: the running reconnect goes on
        if not self.hooks.can_resume():
            return False
        self.active = True
        self.hooks.spawn(self.run(reason))
        return True

    async def run(self, reason: str) -> None:
        """Resume the session within the grace period, or give it up."""
        self.active = True
        try:
            try:
                why = await self._reconnect(reason)
            except Exception as exc:  # a bug must not leave the phone silently half-connected
                log.exception("resuming failed")
                why = f"{reason}; resuming failed: {exc}"
            if why is not None:
                with contextlib.suppress(Exception):
                    await self.hooks.close()  # its close is ours: still `active`
                self.hooks.lost(why)
        finally:
            self.active = False

    async def _reconnect(self, reason: str) -> str | None:
        """None once resumed; otherwise why the session is lost."""
        hooks = self.hooks
        loop = asyncio.get_running_loop()
        grace = min(hooks.grace(), MAX_GRACE)
        started = loop.time()
        hooks.emit(ev.Reconnecting(reason, grace))
        backoff = Backoff()
        attempts = 0
        while (left := started + grace - loop.time()) > 0:
            await asyncio.sleep(min(backoff.next(), left))
            left = started + grace - loop.time()
            if left <= 0:
                break
            attempts += 1
            try:
                async with asyncio.timeout(left):  # an attempt never runs past the grace
                    result = await hooks.attempt()
            except ServerRefused as exc:
                log.info("the server refused to resume the session: %s", exc)
                hooks.emit(ev.Notice(f"the server could not resume the session: {exc}"))
                return f"{reason}; the server refused to resume the session ({exc})"
            except (OmniError, TimeoutError) as exc:
                log.debug("resume attempt %d failed: %s", attempts, exc)
                continue
            downtime = (loop.time() - started) * 1000
            await hooks.resumed(result, round(downtime, 1), attempts)
            return None
        return f"{reason}; not resumed within {grace:.0f} s"


__all__ = ["MAX_GRACE", "Reconnector", "ResumeHooks"]
