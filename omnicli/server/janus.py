"""A small client for the Janus gateway's websocket API (one Janus session).

Janus speaks JSON over a websocket with the ``janus-protocol`` subprotocol: every
request carries a ``transaction`` and gets either a synchronous answer (``success``,
``error``) or an ``ack`` followed later by an ``event`` with the same transaction.
Events about a plugin handle (``event``, ``webrtcup``, ``media``, ``hangup``,
``detached``...) arrive on their own and name the handle in ``sender``.

The pure half (`request()`, `JanusEvent.parse()`) builds and reads frames; the
`JanusSession` owns the socket, matches answers to requests, keeps the session alive
(Janus drops a session that sends nothing for its ``session_timeout``, 60 s by
default) and hands handle events to the callback given to `attach()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

log = logging.getLogger("omnicli.server.janus")

SUBPROTOCOL = "janus-protocol"
KEEPALIVE = 25.0  # s between keepalives (Janus's default session timeout is 60 s)
REQUEST_TIMEOUT = 5.0  # s for Janus to acknowledge or answer a request
MAX_FRAME = 256 * 1024


class JanusError(Exception):
    """The gateway is unreachable, closed, or refused a request."""


def request(kind: str, transaction: str, **fields: Any) -> dict[str, Any]:
    """One request frame: ``{"janus": kind, "transaction": ..., **fields}``."""
    return {"janus": kind, "transaction": transaction, **fields}


@dataclass(frozen=True)
class JanusEvent:
    """An event about one handle.

    `kind` is the Janus frame type (``event``, ``webrtcup``, ``hangup``, ``media``,
    ``detached``, ``slowlink``); for ``event`` frames `data` is the plugin's data
    (``{"sip": "event", "result": {"event": "ringing", ...}}`` for the SIP plugin) and
    `jsep` the SDP it carries, if any.
    """

    handle: int
    kind: str
    data: dict[str, Any]
    jsep: dict[str, Any] | None = None

    @classmethod
    def parse(cls, frame: dict[str, Any]) -> JanusEvent | None:
        sender = frame.get("sender")
        kind = frame.get("janus")
        if not isinstance(sender, int) or not isinstance(kind, str):
            return None
        plugindata = frame.get("plugindata")
        data = plugindata.get("data", {}) if isinstance(plugindata, dict) else {}
        if kind != "event":
            data = {k: v for k, v in frame.items() if k not in ("janus", "session_id", "sender")}
        jsep = frame.get("jsep")
        return cls(sender, kind, data if isinstance(data, dict) else {}, jsep or None)

    @property
    def sip_event(self) -> str | None:
        """The SIP plugin's event name (``ringing``, ``accepted``, ``hangup``...)."""
        result = self.data.get("result")
        if isinstance(result, dict) and isinstance(result.get("event"), str):
            return str(result["event"])
        return None

    @property
    def result(self) -> dict[str, Any]:
        result = self.data.get("result")
        return result if isinstance(result, dict) else {}

    @property
    def error(self) -> tuple[int, str] | None:
        """The plugin's (error_code, error) when the event reports a refused request."""
        if "error" in self.data:
            return int(self.data.get("error_code") or 0), str(self.data["error"])
        return None


EventCallback = Callable[[JanusEvent], None]


class JanusSession:
    """One websocket and one Janus session; `closed` is set when either goes."""

    def __init__(self, url: str, *, keepalive: float = KEEPALIVE) -> None:
        self.url = url
        self.keepalive = keepalive
        self.session_id: int | None = None
        self.closed = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._handlers: dict[int, EventCallback] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.on_close: Callable[[], None] | None = None

    async def open(self, timeout: float = REQUEST_TIMEOUT) -> None:
        try:
            async with asyncio.timeout(timeout):
                self._ws = await connect(
                    self.url,
                    subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                    max_size=MAX_FRAME,
                    compression=None,
                    ping_interval=None,  # Janus keepalives do this job
                )
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            raise JanusError(f"cannot reach the SIP gateway at {self.url}: {exc}") from None
        self._tasks.append(asyncio.create_task(self._read_loop(), name="janus-read"))
        try:
            answer = await self._call("create")
        except JanusError:
            await self.close()
            raise
        self.session_id = int(answer["data"]["id"])
        self._tasks.append(asyncio.create_task(self._keepalive_loop(), name="janus-keepalive"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._ws is not None:
            await self._ws.close()
        self._gone()

    # -- requests ----------------------------------------------------------------------

    async def attach(self, plugin: str, on_event: EventCallback) -> int:
        """A new handle on `plugin`; its events go to `on_event`."""
        answer = await self._call("attach", plugin=plugin)
        handle = int(answer["data"]["id"])
        self._handlers[handle] = on_event
        return handle

    async def message(
        self, handle: int, body: dict[str, Any], jsep: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Send a plugin message; returns the ``ack`` (the plugin answers with an event)
        or the synchronous ``success`` frame."""
        fields: dict[str, Any] = {"handle_id": handle, "body": body}
        if jsep is not None:
            fields["jsep"] = jsep
        return await self._call("message", **fields)

    async def detach(self, handle: int) -> None:
        self._handlers.pop(handle, None)
        with contextlib.suppress(JanusError):
            await self._call("detach", handle_id=handle)

    def forget(self, handle: int) -> None:
        """Stop delivering this handle's events (it is being torn down)."""
        self._handlers.pop(handle, None)

    async def _call(self, kind: str, **fields: Any) -> dict[str, Any]:
        if self._ws is None or self.closed.is_set():
            raise JanusError("the SIP gateway connection is closed")
        transaction = f"t{next(self._ids)}"
        if self.session_id is not None:
            fields["session_id"] = self.session_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[transaction] = future
        try:
            await self._ws.send(json.dumps(request(kind, transaction, **fields)))
            async with asyncio.timeout(REQUEST_TIMEOUT):
                answer = await future
        except (ConnectionClosed, TimeoutError) as exc:
            raise JanusError(f"the SIP gateway did not answer '{kind}': {exc!r}") from None
        finally:
            self._pending.pop(transaction, None)
        if answer.get("janus") == "error":
            err = answer.get("error") or {}
            raise JanusError(f"the SIP gateway refused '{kind}': {err.get('reason', err)}")
        return answer

    # -- background ----------------------------------------------------------------------

    async def _read_loop(self) -> None:
        assert self._ws is not None
        try:
            async for text in self._ws:
                try:
                    frame = json.loads(text)
                except ValueError:
                    log.warning("janus: a frame that is not JSON")
                    continue
                if isinstance(frame, dict):
                    self._dispatch(frame)
        except ConnectionClosed:
            pass
        finally:
            self._gone()

    def _dispatch(self, frame: dict[str, Any]) -> None:
        kind = frame.get("janus")
        if kind == "timeout":  # Janus dropped the session
            log.warning("janus: session %s timed out", self.session_id)
            self._gone()
            return
        future = self._pending.get(str(frame.get("transaction")))
        if future is not None and kind in ("success", "error", "ack") and not future.done():
            future.set_result(frame)
            return
        event = JanusEvent.parse(frame)
        if event is None:
            return
        handler = self._handlers.get(event.handle)
        if handler is not None:
            try:
                handler(event)
            except Exception:  # one call's bug must not stop the gateway for all
                log.exception("janus: handling %s for handle %d", event.kind, event.handle)

    async def _keepalive_loop(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive)
            try:
                await self._call("keepalive")
            except JanusError as exc:
                log.warning("janus: keepalive failed: %s", exc)
                self._gone()
                return

    def _gone(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionClosed(None, None))
        if self.on_close is not None:
            self.on_close()
