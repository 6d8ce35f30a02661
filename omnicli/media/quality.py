"""Call-quality arithmetic, free of aiortc: counters in, figures out.

`QualityMeter.update(counters)` turns one raw `Counters` snapshot (cumulative byte and
packet counters plus instantaneous readings, stamped with a monotonic time) into a
`QualitySample` with rates over the interval since the previous snapshot.
`QualitySummary` averages samples for the end-of-call line.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Counters:
    """One raw reading. Byte/packet counts are cumulative since the call started."""

    at: float  # monotonic seconds
    bytes_in: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    packets_lost_in: int = 0
    packets_out: int = 0
    rtt_s: float | None = None
    jitter_s: float | None = None
    fps_in: float | None = None
    width_in: int | None = None
    height_in: int | None = None
    audio_level: float | None = None


@dataclass(frozen=True)
class QualitySample:
    at: float
    interval_s: float | None
    rtt_ms: float | None
    jitter_ms: float | None
    packets_in: int
    packets_lost: int
    packets_out: int
    loss_pct: float | None  # over the interval since the previous sample
    loss_pct_total: float | None  # since the call started
    bitrate_in_kbps: float | None
    bitrate_out_kbps: float | None
    fps_in: float | None
    width_in: int | None
    height_in: int | None
    audio_level: float | None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def loss_pct(received: int, lost: int) -> float | None:
    """Lost packets as a percentage of expected ones (None when nothing was expected)."""
    expected = received + lost
    if expected <= 0:
        return None
    return 100.0 * max(lost, 0) / expected


def kbps(byte_delta: int, seconds: float) -> float | None:
    if seconds <= 0 or byte_delta < 0:
        return None
    return byte_delta * 8 / seconds / 1000


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


class QualityMeter:
    """Rates between successive `Counters` readings."""

    def __init__(self) -> None:
        self._previous: Counters | None = None

    def update(self, now: Counters) -> QualitySample:
        prev, self._previous = self._previous, now
        interval = None if prev is None else now.at - prev.at
        rate_in = rate_out = interval_loss = None
        if prev is not None and interval is not None and interval > 0:
            rate_in = kbps(now.bytes_in - prev.bytes_in, interval)
            rate_out = kbps(now.bytes_out - prev.bytes_out, interval)
            received = now.packets_in - prev.packets_in
            lost = now.packets_lost_in - prev.packets_lost_in
            if received >= 0:
                interval_loss = loss_pct(received, lost)
        return QualitySample(
            at=now.at,
            interval_s=interval,
            rtt_ms=_ms(now.rtt_s),
            jitter_ms=_ms(now.jitter_s),
            packets_in=now.packets_in,
            packets_lost=now.packets_lost_in,
            packets_out=now.packets_out,
            loss_pct=interval_loss,
            loss_pct_total=loss_pct(now.packets_in, now.packets_lost_in),
            bitrate_in_kbps=rate_in,
            bitrate_out_kbps=rate_out,
            fps_in=now.fps_in,
            width_in=now.width_in,
            height_in=now.height_in,
            audio_level=now.audio_level,
        )
