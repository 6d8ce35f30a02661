"""The REPL's status line: who you are, the call, mutes, recording and live figures. Pure.

`Status` is a snapshot the REPL takes of its phone; `status_lines(status)` turns it into
the two lines of the bottom toolbar. `directions(figures)` splits one `STATS` sample
(`CallFigures`) into what comes in and what goes out; the `stats` table uses it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omnicli.phone.callstate import CallState
from omnicli.phone.figures import CallFigures
from omnicli.wire.protocol import CallType, Track

DASH = "-"


@dataclass(frozen=True)
class Direction:
    """One direction of a call's media, as the figures describe it (None: unknown)."""

    fps: float | None = None
    width: int | None = None
    height: int | None = None
    kbps: float | None = None
    jitter_ms: float | None = None
    loss_pct: float | None = None

    @property
    def resolution(self) -> str | None:
        return f"{self.width}x{self.height}" if self.width and self.height else None


def directions(figures: CallFigures) -> tuple[Direction, Direction]:
    """(incoming, outgoing) from one sample; outgoing loss and jitter are the
    peer's reports about what we send (RTCP receiver reports)."""
    incoming = Direction(
        fps=figures.fps_in,
        width=figures.width_in,
        height=figures.height_in,
        kbps=figures.bitrate_in_kbps,
        jitter_ms=figures.jitter_ms,
        loss_pct=figures.loss_pct,
    )
    outbound: Mapping[str, Mapping[str, Any]] = figures.outbound
    sent = sum(d.get("packets") or 0 for d in outbound.values())
    lost = sum(d.get("remote_lost") or 0 for d in outbound.values())
    reported = any("remote_lost" in d for d in outbound.values())
    loss = 100.0 * max(lost, 0) / sent if reported and sent > 0 else None
    jitter = next(
        (
            outbound[k]["remote_jitter_ms"]
            for k in Track
            if outbound.get(k, {}).get("remote_jitter_ms") is not None
        ),
        None,
    )
    outgoing = Direction(
        fps=figures.fps_out,
        width=figures.width_out,
        height=figures.height_out,
        kbps=figures.bitrate_out_kbps,
        jitter_ms=jitter,
        loss_pct=loss,
    )
    return incoming, outgoing


def number(value: float | None, fmt: str = "{:.0f}", unit: str = "") -> str:
    return DASH if value is None else fmt.format(value) + unit


def direction_text(d: Direction) -> str:
    return (
        f"{number(d.fps, '{:.1f}')} fps {d.resolution or DASH} · "
        f"{number(d.kbps)} kbit/s · jitter {number(d.jitter_ms, '{:.1f}', ' ms')} · "
        f"loss {number(d.loss_pct, '{:.1f}', ' %')}"
    )


@dataclass(frozen=True)
class Status:
    user_id: str | None
    call_state: CallState
    peer: str | None = None
    muted: frozenset[Track] = frozenset()  # our own muted tracks
    peer_muted: frozenset[Track] = frozenset()
    recording: bool = False
    ringing_from: tuple[str, ...] = ()
    call_type: CallType | None = None  # in a call: an audio call shows no video state
    figures: CallFigures | None = field(default=None, compare=False)
    media_reconnecting: bool = False  # the call's media path died; a new one is negotiated


PHRASES = {  # the call state as a phrase about the peer
    CallState.CALLING: "calling {peer}",
    CallState.CONNECTING: "connecting to {peer}",
    CallState.CONNECTED: "connected with {peer}",
}


def _mutes(muted: frozenset[Track], call_type: CallType | None) -> str:
    tracks = [t for t in Track if t is Track.AUDIO or call_type is not CallType.AUDIO]
    return " ".join(f"{track} {'off' if track in muted else 'on'}" for track in tracks)


def status_lines(s: Status) -> list[str]:
    """The toolbar: one line about the session and call, one of live figures in a call."""
    who = s.user_id or "no session"
    if s.call_state is CallState.RINGING and s.ringing_from:
        call = f"RINGING: {', '.join(s.ringing_from)} · y answers, n rejects"
    elif s.peer and s.call_state is not CallState.IDLE:
        call = PHRASES.get(s.call_state, "{state} with {peer}").format(
            state=s.call_state, peer=s.peer
        )
    else:
        call = s.call_state.value
    if s.media_reconnecting:
        call += " · reconnecting media"
    parts = [who, call]
    if s.peer and s.call_state is not CallState.IDLE:
        parts.append(f"you: {_mutes(s.muted, s.call_type)}")
        parts.append(f"{s.peer}: {_mutes(s.peer_muted, s.call_type)}")
        parts.append("REC" if s.recording else "not recording")
    lines = [" · ".join(parts)]
    if s.figures:
        incoming, outgoing = directions(s.figures)
        rtt = number(s.figures.rtt_ms, "{:.1f}", " ms")
        lines.append(f"rtt {rtt} │ in {direction_text(incoming)} │ out {direction_text(outgoing)}")
    return lines
