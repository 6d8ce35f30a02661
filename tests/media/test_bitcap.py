"""The video bitrate ceiling: parsing, and capping whatever sets an encoder's target."""

from __future__ import annotations

from typing import Any

import pytest
from aiortc.codecs import h264, vpx

from omnicli.media.bitcap import BitrateCap, capped, describe, parse_bitrate


@pytest.mark.parametrize(
    ("text", "bps"),
    [
        ("300k", 300_000),
        ("300 kbit/s", 300_000),
        ("1.5M", 1_500_000),
        ("250000", 250_000),
        ("64kbps", 64_000),
        ("none", None),
        ("0", None),
        ("off", None),
    ],
)
def test_parse_bitrate_reads_units(text: str, bps: int | None) -> None:
    """Plain bit/s, k and M (any case, optional bit/s or bps); none/off/0 is no ceiling."""
    assert parse_bitrate(text) == bps


@pytest.mark.parametrize(
    ("text", "why"),
    [("fast", "like 300k"), ("5k", "from 30k"), ("1G", "like 300k"), ("25M", "to 20M")],
)
def test_parse_bitrate_refuses_the_rest_with_a_reason(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_bitrate(text)


def test_describe_and_capped() -> None:
    assert (describe(300_000), describe(1_500_000), describe(None)) == (
        "300 kbit/s",
        "1.5 Mbit/s",
        "no cap",
    )
    assert (capped(800_000, 300_000), capped(200_000, 300_000), capped(800_000, None)) == (
        300_000,
        200_000,
        800_000,
    )


class FakeSender:
    """An RTCRtpSender as the cap sees it: an RTCP handler that may set the target."""

    def __init__(self) -> None:
        self._RTCRtpSender__encoder: Any = None
        self.remb: int | None = None

    async def _handle_rtcp_packet(self, packet: Any) -> None:
        if packet == "remb" and self._RTCRtpSender__encoder is not None:
            self._RTCRtpSender__encoder.target_bitrate = self.remb


async def test_the_cap_has_the_last_word_over_remb_and_lifts_cleanly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """REMB (or a controller) sets the target; the cap lowers it after each RTCP packet,
    at once when set, lowers VP8's 250 kbit/s floor for a cap below it, and gives the
    wanted target back when lifted."""
    monkeypatch.setattr(vpx, "MIN_BITRATE", 250_000)
    monkeypatch.setattr(h264, "MIN_BITRATE", 500_000)
    sender = FakeSender()
    cap = BitrateCap(300_000)
    assert cap.install(sender)
    await sender._handle_rtcp_packet("rr")  # no encoder yet (no frame sent): nothing to do
    sender._RTCRtpSender__encoder = encoder = vpx.Vp8Encoder()  # starts at 500 kbit/s
    await sender._handle_rtcp_packet("rr")
    assert encoder.target_bitrate == 300_000
    sender.remb = 1_200_000
    await sender._handle_rtcp_packet("remb")
    assert (encoder.target_bitrate, cap.wanted_bps) == (300_000, 1_200_000)
    sender.remb = 280_000
    await sender._handle_rtcp_packet("remb")
    assert encoder.target_bitrate == 280_000  # under the ceiling: REMB's own
    cap.set(100_000)  # below VP8's floor
    assert encoder.target_bitrate == 100_000 and vpx.MIN_BITRATE == 100_000
    assert h264.MIN_BITRATE == 100_000
    cap.set(None)
    assert encoder.target_bitrate == 280_000  # what REMB last asked for
    cap.set(400_000)
    assert encoder.target_bitrate == 280_000


async def test_h264_floor_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """H.264's 500 kbit/s floor gives way to a ceiling below it as VP8's does."""
    monkeypatch.setattr(vpx, "MIN_BITRATE", 250_000)
    monkeypatch.setattr(h264, "MIN_BITRATE", 500_000)
    sender = FakeSender()
    sender._RTCRtpSender__encoder = encoder = h264.H264Encoder()  # starts at 1 Mbit/s
    cap = BitrateCap(200_000)
    cap.install(sender)
    assert encoder.target_bitrate == 200_000
    await sender._handle_rtcp_packet("rr")
    assert encoder.target_bitrate == 200_000
