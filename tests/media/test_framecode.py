"""Frame codes: exact on raw images, readable after VP8/H264 compression, None on garbage."""

from __future__ import annotations

import fractions

import av
import numpy as np
import pytest

from omnicli.media import framecode

TS = 1_700_000_000_123 & framecode.TS_MASK


def busy_image(width: int, height: int, seed: int) -> np.ndarray:
    """Colour gradient plus noise: a background that makes the encoder work."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, width, dtype=np.float64)
    img = np.empty((height, width, 3), dtype=np.float64)
    img[...] = x[None, :, None]
    img += rng.normal(0, 40, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("size", [(160, 120), (320, 240), (641, 479), (1280, 720), (1920, 1080)])
def test_round_trip_raw(size: tuple[int, int]) -> None:
    """stamp then read gives back counter and timestamp exactly, colour or gray, any size."""
    width, height = size
    for counter, ts in [(0, 0), (1, TS), (2**32 - 1, framecode.TS_MASK), (123456, 42)]:
        img = busy_image(width, height, counter % 7)
        framecode.stamp(img, counter, ts)
        assert framecode.read(img) == (counter, ts)
        assert framecode.read(img[:, :, 0].copy()) == (counter, ts)


def test_garbage_reads_none() -> None:
    """Images without a code (noise, black, white, too small) read as None."""
    assert framecode.read(busy_image(640, 480, 1)) is None
    assert framecode.read(np.zeros((480, 640, 3), np.uint8)) is None
    assert framecode.read(np.full((480, 640, 3), 255, np.uint8)) is None
    assert framecode.read(np.zeros((10, 10, 3), np.uint8)) is None
    rng = np.random.default_rng(5)
    for _ in range(200):
        assert framecode.read(rng.integers(0, 256, (120, 160), dtype=np.uint8)) is None


def test_corrupted_code_reads_none() -> None:
    """Flipping one cell of a valid code makes the checksum reject it."""
    img = np.zeros((240, 320, 3), np.uint8)
    framecode.stamp(img, 77, TS)
    cell = framecode.cell_size(320)
    img[cell * 3 : cell * 4, cell * 31 : cell * 32] ^= 255
    assert framecode.read(img) is None


def transcode(codec: str, width: int, height: int, images: list[np.ndarray]) -> list[np.ndarray]:
    """Encode BGR images at a call-like bitrate and decode them back (BGR)."""
    enc = av.CodecContext.create(codec, "w")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
    enc.time_base = fractions.Fraction(1, 30)
    enc.bit_rate = 300_000
    enc.options = (
        {"preset": "ultrafast", "tune": "zerolatency"}
        if codec == "libx264"
        else {"deadline": "realtime", "cpu-used": "-6", "lag-in-frames": "0"}
    )
    dec = av.CodecContext.create("h264" if codec == "libx264" else "vp8", "r")
    out = []
    packets = []
    for i, img in enumerate(images):
        frame = av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format="yuv420p")
        frame.pts = i
        packets += enc.encode(frame)
    packets += enc.encode(None)
    for packet in packets:
        out += [f.to_ndarray(format="bgr24") for f in dec.decode(packet)]
    return out


@pytest.mark.parametrize("codec", ["libvpx", "libx264"])
@pytest.mark.parametrize("size", [(320, 240), (640, 480)])
def test_survives_compression(codec: str, size: tuple[int, int]) -> None:
    """Codes on noisy frames survive a VP8 or H264 round trip at 300 kbps."""
    width, height = size
    images = []
    for i in range(10):
        img = busy_image(width, height, i)
        framecode.stamp(img, 1000 + i, TS + 33 * i)
        images.append(img)
    decoded = transcode(codec, width, height, images)
    assert len(decoded) == len(images)
    read = [framecode.read(img) for img in decoded]
    assert read == [(1000 + i, TS + 33 * i) for i in range(10)]
