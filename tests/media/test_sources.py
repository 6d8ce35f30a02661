"""Local sources: pacing, frame codes, tone frequency, source specs and their errors."""

from __future__ import annotations

import fractions
import time
from pathlib import Path

import av
import numpy as np
import pytest

from omnicli.errors import SourceError
from omnicli.media import framecode
from omnicli.media.probes import AudioProbe, luma
from omnicli.media.sources import FileTrack, SilenceTrack, TestPatternTrack, ToneTrack
from omnicli.media.sourcespec import open_source


async def test_pattern_paces_and_stamps_counters() -> None:
    """TestPatternTrack delivers ~30 fps with increasing counters, fresh timestamps, 90 kHz pts."""
    track = TestPatternTrack(320, 240, fps=30)
    start = time.monotonic()
    frames = [await track.recv() for _ in range(31)]
    elapsed = time.monotonic() - start
    track.stop()
    assert 0.9 < elapsed < 1.3  # 30 intervals after the first frame
    codes = [framecode.read(luma(f)) for f in frames]
    assert [c[0] for c in codes] == list(range(31))
    now = time.time_ns() // 1_000_000
    assert all(0 <= now - c[1] < 2000 for c in codes)
    assert [f.pts for f in frames[:3]] == [0, 3000, 6000]
    assert frames[0].time_base == fractions.Fraction(1, 90_000)
    assert (frames[0].width, frames[0].height) == (320, 240)


async def test_pattern_moves() -> None:
    """Successive test-pattern frames differ below the code strip (something visibly moves)."""
    track = TestPatternTrack(320, 240)
    a, b = track.render(0, 0), track.render(15, 0)
    top = framecode.strip_height(320)
    assert np.abs(a[top:].astype(int) - b[top:].astype(int)).sum() > 0


async def test_tone_frequency_and_pacing() -> None:
    """ToneTrack at 660 Hz: 20 ms mono s16 frames, FFT finds 660 Hz, continuous pts."""
    track = ToneTrack(660)
    probe = AudioProbe()
    frames = [await track.recv() for _ in range(50)]
    track.stop()
    assert all(f.samples == 960 and f.format.name == "s16" for f in frames)
    assert [f.pts for f in frames[:3]] == [0, 960, 1920]
    for frame in frames:
        probe._handle(frame)
    assert abs(probe.dominant_frequency() - 660) < 2
    assert 0.2 < probe.rms() < 0.22  # 0.3 / sqrt(2)


async def test_silence() -> None:
    """SilenceTrack produces zero samples (no dominant frequency)."""
    track = SilenceTrack()
    probe = AudioProbe()
    for _ in range(20):
        probe._handle(await track.recv())
    track.stop()
    assert probe.rms() == 0.0 and probe.dominant_frequency() is None


def write_media(path: Path, seconds: float = 2.0) -> None:
    """A small webm with VP8 video (160x120, 15 fps) and Opus audio (a 440 Hz tone)."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libvpx", rate=15)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        audio = out.add_stream("libopus", rate=48000)
        audio.layout = "stereo"
        for i in range(int(seconds * 15)):
            img = np.full((120, 160, 3), (i * 8) % 256, np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        tone = ToneTrack(440)
        for i in range(int(seconds * 50)):
            pcm = tone._samples(i * 960, 960)
            frame = av.AudioFrame.from_ndarray(
                np.repeat(pcm, 2).reshape(1, -1), format="s16", layout="stereo"
            )
            frame.sample_rate, frame.pts = 48000, i * 960
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))


async def test_open_source_specs(tmp_path: Path) -> None:
    """Every spec opens the right kind of track; none gives None."""
    assert open_source("video", "none") is None and open_source("audio", "none") is None
    video = open_source("video", "test", width=320, height=240, fps=15)
    assert isinstance(video, TestPatternTrack) and (video.width, video.fps) == (320, 15)
    tone = open_source("audio", "tone")
    assert isinstance(tone, ToneTrack) and tone.frequency == 440
    tone660 = open_source("audio", "tone:660")
    assert isinstance(tone660, ToneTrack) and tone660.frequency == 660
    assert isinstance(open_source("audio", "silence"), SilenceTrack)
    for track in (video, tone, tone660):
        track.stop()


async def test_file_source_loops_with_monotonic_pts(tmp_path: Path) -> None:
    """A media file opens as video and audio tracks, plays at its rate and loops on."""
    path = tmp_path / "clip.webm"
    write_media(path, seconds=0.6)
    video = open_source("video", str(path))
    audio = open_source("audio", str(path))
    assert isinstance(video, FileTrack) and isinstance(audio, FileTrack)
    start = time.monotonic()
    frames = [await video.recv() for _ in range(15)]  # 1 s at 15 fps: loops once
    elapsed = time.monotonic() - start
    pts = [f.pts for f in frames]
    assert pts == sorted(pts) and len(set(pts)) == len(pts)
    assert 0.8 < elapsed < 1.3
    assert (frames[0].width, frames[0].height) == (160, 120)
    probe = AudioProbe()
    for _ in range(50):
        frame = await audio.recv()
        probe._handle(frame)
    assert frame.format.name == "s16" and frame.sample_rate == 48000
    assert abs(probe.dominant_frequency() - 440) < 10
    video.stop()
    audio.stop()


@pytest.mark.parametrize(
    ("kind", "spec", "message"),
    [
        ("video", "/nonexistent/clip.mp4", "clip.mp4"),
        ("video", "nosuchsource", "test, none"),
        ("audio", "tone:abc", "tone:FREQ"),
        ("audio", "test", "tone, tone:FREQ, silence"),
        ("video", "device:0", "no such video device"),
    ],
)
def test_bad_specs_raise_source_error(kind: str, spec: str, message: str) -> None:
    """Unknown specs, missing files, bad tone frequencies and devices raise SourceError."""
    with pytest.raises(SourceError, match=message.replace(".", r"\.")):
        open_source(kind, spec)


def test_unreadable_file_raises_source_error(tmp_path: Path) -> None:
    """A file that is not media raises a one-line SourceError naming the file."""
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n")
    with pytest.raises(SourceError, match=r"notes\.mp4") as info:
        open_source("video", str(path))
    assert "\n" not in str(info.value)


def test_file_without_that_kind(tmp_path: Path) -> None:
    """Asking a video-only file for audio raises SourceError."""
    path = tmp_path / "video.webm"
    with av.open(str(path), "w") as out:
        video = out.add_stream("libvpx", rate=15)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((120, 160, 3), np.uint8), format="bgr24")
        out.mux(video.encode(frame))
        out.mux(video.encode(None))
    with pytest.raises(SourceError, match="no audio stream"):
        open_source("audio", str(path))
