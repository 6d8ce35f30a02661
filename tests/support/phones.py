"""In-process phones for tests: build one, await an event, connect a pair."""

from __future__ import annotations

import asyncio
from typing import Any

from omnicli.phone import events as ev
from omnicli.phone.core import MediaOptions, Phone, PhoneConfig


def make_phone(url: str, **media: Any) -> Phone:
    """A Phone on the server at `url` with synthetic 320x240 media unless told otherwise."""
    media.setdefault("width", 320)
    media.setdefault("height", 240)
    return Phone(PhoneConfig(server_url=url, media=MediaOptions(**media)))


async def until(phone: Phone, kind: type[ev.CallEvent], timeout: float = 15) -> Any:
    """The next event of `kind` (skipping others)."""
    async with asyncio.timeout(timeout):
        while True:
            event = await phone.next_event()
            if isinstance(event, kind):
                return event


async def eventually(check: Any, timeout: float = 5.0) -> None:
    """Wait until `check()` is true."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)


async def call_connected(alice: Phone, bob: Phone) -> None:
    """Register alice and bob; alice offers a videocall, bob hears it ring and answers;
    returns once both are CONNECTED."""
    await alice.create_session("alice")
    await bob.create_session("bob")
    await alice.offer_call("videocall", "bob")
    ringing = await until(bob, ev.Ringing)
    assert (ringing.caller, ringing.call_type) == ("alice", "videocall")
    await bob.answer_call("videocall", "alice")
    await until(alice, ev.Connected, timeout=10)
    await until(bob, ev.Connected, timeout=10)
