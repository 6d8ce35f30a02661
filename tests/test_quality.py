"""QualityMeter and QualitySummary arithmetic, without aiortc."""

from __future__ import annotations

import pytest

from omnicli.quality import Counters, QualityMeter, QualitySummary, kbps, loss_pct


def test_first_sample_has_no_rates() -> None:
    """The first reading has totals but no bitrates or interval loss (nothing to diff)."""
    sample = QualityMeter().update(Counters(at=10.0, bytes_in=5000, packets_in=90,
                                            packets_lost_in=10, rtt_s=0.0123))
    assert sample.interval_s is None
    assert sample.bitrate_in_kbps is None and sample.loss_pct is None
    assert sample.loss_pct_total == pytest.approx(10.0)
    assert sample.rtt_ms == pytest.approx(12.3)


def test_rates_over_interval() -> None:
    """Bitrates and loss come from counter deltas divided by the elapsed time."""
    meter = QualityMeter()
    meter.update(Counters(at=1.0, bytes_in=1000, bytes_out=2000, packets_in=100))
    sample = meter.update(Counters(at=3.0, bytes_in=251_000, bytes_out=127_000,
                                   packets_in=296, packets_lost_in=4, jitter_s=0.004))
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


def test_summary_averages_and_line() -> None:
    """QualitySummary averages known figures, skips unknown ones, and renders one line."""
    meter = QualityMeter()
    samples = [
        meter.update(Counters(at=0.0, bytes_in=0, packets_in=0, fps_in=30.0)),
        meter.update(Counters(at=1.0, bytes_in=100_000, packets_in=100, rtt_s=0.010,
                              jitter_s=0.002, fps_in=28.0)),
        meter.update(Counters(at=2.0, bytes_in=300_000, packets_in=199, packets_lost_in=1,
                              rtt_s=0.020, jitter_s=0.006, fps_in=29.0)),
    ]
    summary = QualitySummary.of(samples)
    assert summary.samples == 3 and summary.duration_s == pytest.approx(2.0)
    assert summary.rtt_ms == pytest.approx(15.0)
    assert summary.jitter_ms_max == pytest.approx(6.0)
    assert summary.bitrate_in_kbps == pytest.approx(1200.0)  # mean of 800 and 1600
    assert summary.loss_pct == pytest.approx(0.5)
    assert summary.fps_in == pytest.approx(29.0)
    assert summary.line() == ("rtt 15 ms, jitter 4 ms, loss 0.5%, in 1200 kbps, out 0 kbps, "
                              "video 29.0 fps")
    assert QualitySummary.of([]).line().startswith("rtt n/a")
