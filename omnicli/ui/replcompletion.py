"""What Tab completion at the REPL's prompt offers besides the command words.

The other users' ids come from a session_list fetched only when a user id is being
completed, reused for a few seconds, never fetched while the session is reconnecting,
and never waited for longer than a second (a slow answer still fills the cache for the
next Tab). Device ids come from the last device probe, made off the event loop the
first time a device id is completed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from omnicli.errors import OmniError
from omnicli.ui.commands import CompletionContext, wants_devices, wants_users

if TYPE_CHECKING:
    from omnicli.phone.config import SessionPage

log = logging.getLogger("omnicli.ui.repl")
USERS_CACHE_S = 3.0  # completion reuses the online user ids for this long
USERS_FETCH_TIMEOUT_S = 1.0  # completion does not wait longer than this for them


class CompletionData:
    """The user ids and device ids completion offers, and when they were fetched."""

    def __init__(
        self,
        need_phone: Callable[[], Any],
        probe_devices: Callable[[], Awaitable[Any]],
    ) -> None:
        self.need_phone = need_phone  # the session's Phone, or UsageError
        self.probe_devices = probe_devices  # sets `device_report`
        self.users: tuple[str, ...] = ()
        self.users_at = -1e9  # monotonic time of the last session_list
        self.device_report: Any = None  # the last devices.DeviceReport
        self._fetch: asyncio.Task[Any] | None = None

    async def list_page(self) -> SessionPage:
        """One session_list page (the server's maximum); the other users' ids are kept."""
        phone = self.need_phone()
        page: SessionPage = await phone.session_page()
        me = phone.session.user_id if phone.session else None
        self.users = tuple(p.user_id for p in page.peers if p.user_id != me)
        self.users_at = time.monotonic()
        return page

    def forget_users(self) -> asyncio.Task[Any] | None:
        """Drop the session's user ids; the fetch still running, for its owner to stop."""
        fetch, self._fetch = self._fetch, None
        self.users, self.users_at = (), -1e9
        return fetch

    async def prepare(self, text: str, online: bool) -> None:
        """Fetch what completing `text` needs and is not fresh: user ids, device ids."""
        if wants_users(text) and online and time.monotonic() - self.users_at > USERS_CACHE_S:
            if self._fetch is None or self._fetch.done():
                self._fetch = asyncio.ensure_future(self.list_page())
                self._fetch.add_done_callback(
                    lambda t: t.cancelled() or t.exception()
                )  # seen, even if nobody waits
            try:  # shielded: a slow answer still lands in the cache for the next Tab
                await asyncio.wait_for(asyncio.shield(self._fetch), USERS_FETCH_TIMEOUT_S)
            except (OmniError, TimeoutError) as exc:
                log.debug("no user ids for completion: %r", exc)
        if wants_devices(text) and self.device_report is None:
            with contextlib.suppress(Exception):
                await self.probe_devices()

    def device_ids(self) -> dict[str, tuple[str, ...]]:
        """Device ids by kind from the last probe; empty before any."""
        report = self.device_report
        if report is None:
            return {}
        return {
            kind: tuple(str(d.get("id")) for d in getattr(report, key))
            for kind, key in (
                ("camera", "video_inputs"),
                ("mic", "audio_inputs"),
                ("speaker", "audio_outputs"),
            )
        }

    def context(self, text: str, ringing: tuple[str, ...]) -> CompletionContext:
        return CompletionContext(
            users=self.users,
            ringing=ringing,
            devices=self.device_ids() if wants_devices(text) else None,
        )
