"""QualityMeter arithmetic, without aiortc."""

from __future__ import annotations

import pytest

from omnicli.media.quality import Counters, QualityMeter, kbps, loss_pct


def test_first_sample_has_no_rates() -> None:
    """The first reading has totals but no bitrates or interval loss (nothing to diff)."""
    sample = QualityMeter().update(
        Counters(at=10.0, bytes_in=5000, packets_in=90, packets_lost_in=10, rtt_s=0.0123)
    )
    assert sample.interval_s is None
    assert sample.bitrate_in_kbps is None and sample.loss_pct is None
    assert sample.loss_pct_total == pytest.approx(10.0)
    assert sample.rtt_ms == pytest.approx(12.3)


def test_rates_over_interval() -> None:
    """Bitrates and loss come from counter deltas divided by the elapsed time."""
    meter = QualityMeter()
    meter.update(Counters(at=1.0, bytes_in=1000, bytes_out=2000, packets_in=100))
    sample = meter.update(
        Counters(
            at=3.0,
            bytes_in=251_000,
            bytes_out=127_000,
            packets_in=296,
            packets_lost_in=4,
            jitter_s=0.004,
        )
    )
    assert sample.interval_s == pytest.approx(2.0)
    assert sample.bitrate_in_kbps == pytest.approx(1000.0)  # 250 kB * 8 / 2 s
    assert sample.bitrate_out_kbps == pytest.approx(500.0)
    assert sample.loss_pct == pytest.approx(2.0)  # 4 lost of 200 expected
    assert sample.jitter_ms == pytest.approx(4.0)
    assert sample.rtt_ms is None


def test_counter_reset_gives_no_rate() -> None:
    """A counter going backwards (a new transport) yields None, not a negative bitrate."""
    meter = QualityMeter()
    meter.update(Counters(at=1.0, bytes_in=9000))
    assert meter.update(Counters(at=2.0, bytes_in=100)).bitrate_in_kbps is None


def test_helpers() -> None:
    """loss_pct and kbps handle empty and zero-time inputs."""
    assert loss_pct(0, 0) is None
    assert loss_pct(99, 1) == pytest.approx(1.0)
    assert kbps(1000, 0) is None
    assert kbps(1000, 1) == pytest.approx(8.0)
