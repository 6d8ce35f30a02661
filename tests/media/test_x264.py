"""x264's preset in aiortc's H.264 encoder (x264.py), on the pinned aiortc."""

from __future__ import annotations

import fractions
import logging

import numpy as np
import pytest
from aiortc.codecs import h264

from omnicli.media import x264

SUBME = {"medium": b"subme=7", "superfast": b"subme=1", "ultrafast": b"subme=0"}


def x264_settings(payloads: list[bytes]) -> bytes:
    """The settings x264 writes into its first keyframe (an SEI: "x264 - core ... subme=N")."""
    data = b"".join(payloads)
    assert b"x264 - core" in data
    return data[data.index(b"x264 - core") :][:2000]


def frame(n: int):
    import av

    img = np.full((240, 320, 3), (n * 7) % 255, np.uint8)
    out = av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format="yuv420p")
    out.pts, out.time_base = n * 3000, fractions.Fraction(1, 90_000)
    return out


def test_the_h264_encoder_runs_x264_at_the_preset_and_still_encodes() -> None:
    """After install, aiortc's own encoder opens libx264 with its options plus the preset."""
    assert x264.install()
    encoder = h264.H264Encoder()
    settings = x264_settings(encoder.encode(frame(0))[0])
    assert SUBME[x264.PRESET] in settings and b"sliced_threads=1" in settings  # zerolatency
    assert all(encoder.encode(frame(n))[0] for n in range(1, 5))


def test_without_the_private_nothing_is_patched(monkeypatch, caplog) -> None:
    """An aiortc whose encoder has no `codec` attribute is left alone, with one warning."""

    class Changed:
        def __init__(self) -> None:
            self.context = None

    monkeypatch.setattr(h264, "H264Encoder", Changed)
    with caplog.at_level(logging.WARNING, logger="omnicli.media.x264"):
        assert not x264.install()
    assert "codec" in caplog.text and not hasattr(Changed, "omnicli_preset")


@pytest.mark.parametrize("preset", ["ultrafast"])
def test_a_later_install_changes_the_preset_of_new_encoders(preset: str) -> None:
    assert x264.install(preset)
    try:
        encoder = h264.H264Encoder()
        assert SUBME[preset] in x264_settings(encoder.encode(frame(0))[0])
    finally:
        x264.install()
