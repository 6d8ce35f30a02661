"""The end-of-call summary: averages of the live figures and what was received.

Pure: `CallFigures` samples in, a plain dict out (it is also the `--json` form).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from omnicli.phone.figures import AVERAGED, CallFigures

Sample = CallFigures | Mapping[str, Any]


class RunningStats:
    """Running sums of the averaged figures and the last sample: a call's stats in O(1)."""

    def __init__(self) -> None:
        self.count = 0
        self.last = CallFigures()
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}

    @classmethod
    def of(cls, samples: Iterable[Sample]) -> RunningStats:
        stats = cls()
        for sample in samples:
            stats.add(sample)
        return stats

    def add(self, sample: Sample) -> None:
        figures = sample if isinstance(sample, CallFigures) else CallFigures.of(sample)
        self.count += 1
        self.last = figures
        for key, value in figures.averaged().items():
            if isinstance(value, int | float):
                self._sums[key] = self._sums.get(key, 0.0) + value
                self._counts[key] = self._counts.get(key, 0) + 1

    def mean(self, key: str) -> float | None:
        n = self._counts.get(key, 0)
        return round(self._sums[key] / n, 1) if n else None


def summarize(
    samples: Iterable[Sample] | RunningStats,
    *,
    duration_s: float,
    reason: str,
    received: dict[str, Any],
) -> dict[str, Any]:
    """One call's summary from its periodic stats samples and its receive probes."""
    stats = samples if isinstance(samples, RunningStats) else RunningStats.of(samples)
    summary: dict[str, Any] = {"duration_s": round(duration_s, 1), "reason": reason}
    for key in AVERAGED:
        summary[f"avg_{key}"] = stats.mean(key)
    if stats.last.width_in:
        summary["resolution_in"] = f"{stats.last.width_in}x{stats.last.height_in}"
    summary["received"] = received
    return summary


def _fmt(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:g}{unit}"


def one_line(summary: dict[str, Any]) -> str:
    """`12.3 s, ended: hangup · rtt 1 ms · jitter 2 ms · loss 0 % · in 1200 kbit/s ...`."""
    parts = [
        f"{summary.get('duration_s', 0):g} s",
        f"ended: {str(summary.get('reason', '?')).replace('_', ' ')}",
        f"rtt {_fmt(summary.get('avg_rtt_ms'), ' ms')}",
        f"jitter {_fmt(summary.get('avg_jitter_ms'), ' ms')}",
        f"loss {_fmt(summary.get('avg_loss_pct'), ' %')}",
        f"in {_fmt(summary.get('avg_bitrate_in_kbps'), ' kbit/s')}",
        f"out {_fmt(summary.get('avg_bitrate_out_kbps'), ' kbit/s')}",
        f"{_fmt(summary.get('avg_fps_in'), ' fps')}",
    ]
    if summary.get("resolution_in"):
        parts.append(str(summary["resolution_in"]))
    return " · ".join(parts)
