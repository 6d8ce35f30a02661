"""A call's live quality figures as one typed, frozen object. Pure.

`PeerLink.stats()` (media) measures and returns a plain mapping; the phone turns it into
`CallFigures` once (`CallFigures.of()`), and everything above reads attributes: the
`STATS` event, the REPL's status line and `stats` table, the end-of-call summary.
`as_dict()` is the `--json` form, with the same keys the mapping had (keys the media
layer adds later travel along in `extra`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

# the figures averaged over a call in its summary (omnicli.phone.summary)
AVERAGED = (
    "rtt_ms",
    "jitter_ms",
    "loss_pct",
    "bitrate_in_kbps",
    "bitrate_out_kbps",
    "fps_in",
)


@dataclass(frozen=True)
class CallFigures:
    """One sample of a call's quality; None where a figure is not known (yet)."""

    rtt_ms: float | None = None
    jitter_ms: float | None = None  # of what we receive
    loss_pct: float | None = None  # of what we receive
    packets_lost: int | None = None
    bitrate_in_kbps: float | None = None
    bitrate_out_kbps: float | None = None
    fps_in: float | None = None
    width_in: int | None = None
    height_in: int | None = None
    fps_out: float | None = None
    width_out: int | None = None
    height_out: int | None = None
    audio_level: float | None = None
    state: str | None = None  # the peer connection's state
    inbound: Mapping[str, Any] = field(default_factory=dict)  # per kind: packets, lost, jitter
    outbound: Mapping[str, Any] = field(default_factory=dict)  # per kind, with the peer's reports
    video_in: Mapping[str, Any] = field(default_factory=dict)  # the video probe's snapshot
    audio_in: Mapping[str, Any] = field(default_factory=dict)  # the audio probe's snapshot
    muted: Mapping[str, bool] = field(default_factory=dict)
    sample: Mapping[str, Any] = field(default_factory=dict)  # the raw quality sample
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys this class does not name

    @classmethod
    def of(cls, figures: Mapping[str, Any]) -> CallFigures:
        """From `PeerLink.stats()`'s mapping: named keys become fields, others `extra`."""
        named = {f.name for f in fields(cls)} - {"extra"}
        known = {k: v for k, v in figures.items() if k in named}
        extra = {k: v for k, v in figures.items() if k not in named}
        return cls(**known, extra=extra)

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in out.items()}
        return {**out, **self.extra}

    @property
    def resolution_in(self) -> str | None:
        return f"{self.width_in}x{self.height_in}" if self.width_in and self.height_in else None

    def averaged(self) -> dict[str, float | None]:
        """The figures a call's summary averages, by name."""
        return {key: getattr(self, key) for key in AVERAGED}


__all__ = ["AVERAGED", "CallFigures"]
