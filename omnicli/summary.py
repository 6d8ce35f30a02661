"""The end-of-call summary: averages of the live figures and what was received.

Pure: plain dicts in, a plain dict out (it is also the `--json` form).
"""

from __future__ import annotations

from statistics import fmean
from typing import Any

AVERAGED = (
    "rtt_ms",
    "jitter_ms",
    "loss_pct",
    "bitrate_in_kbps",
    "bitrate_out_kbps",
    "fps_in",
)


def _mean(samples: list[dict[str, Any]], key: str) -> float | None:
    values = [s[key] for s in samples if isinstance(s.get(key), int | float)]
    return round(fmean(values), 1) if values else None


def summarize(
    samples: list[dict[str, Any]],
    *,
    duration_s: float,
    reason: str,
    received: dict[str, Any],
) -> dict[str, Any]:
    """One call's summary from its periodic stats samples and its receive probes."""
    summary: dict[str, Any] = {"duration_s": round(duration_s, 1), "reason": reason}
    for key in AVERAGED:
        summary[f"avg_{key}"] = _mean(samples, key)
    last = samples[-1] if samples else {}
    if last.get("width_in"):
        summary["resolution_in"] = f"{last['width_in']}x{last['height_in']}"
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
