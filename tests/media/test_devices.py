"""Devices: listing them, the camera track, and what happens when a device is missing."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError
from desktop import pulse
from procs import answering_peer, omni_env, run_omni, start_server

from omnicli.errors import DeviceMissing, SourceError
from omnicli.media import devices
from omnicli.media.camera import CameraTrack
from omnicli.media.sourcespec import device_id, open_with_fallback

# PortAudio reaches PulseAudio through ALSA; a socket nobody serves means "no sound devices".
NO_SOUND = {"PULSE_SERVER": "unix:/nonexistent/omni-no-pulse"}


def test_device_specs_parse() -> None:
    """auto, mic, mic:ID, camera:ID and device:ID are device specs; the others are not."""
    assert device_id("audio", "auto") == ""
    assert device_id("audio", "mic") == ""
    assert device_id("audio", "mic:3") == "3"
    assert device_id("audio", "device:pulse") == "pulse"
    assert device_id("video", "camera:/dev/video2") == "/dev/video2"
    assert device_id("video", "mic:1") is None
    assert device_id("audio", "tone:440") is None
    assert device_id("video", "test") is None
    with pytest.raises(SourceError, match="names no device"):
        device_id("audio", "mic:")


def test_missing_camera_falls_back_or_fails_when_required(monkeypatch) -> None:
    """With no camera, auto gives the test pattern and a note; required, it is DeviceMissing."""
    monkeypatch.setattr(devices, "cameras", lambda: [])
    opened = open_with_fallback("video", "auto", width=320, height=240)
    try:
        assert opened.spec == "test"
        assert opened.fallback.startswith("no camera") and "test pattern" in opened.fallback
    finally:
        opened.track.stop()
    with pytest.raises(DeviceMissing, match="no such video device"):
        open_with_fallback("video", "camera", require=True)
    with pytest.raises(SourceError):  # a bad file is never a device to fall back from
        open_with_fallback("video", "/no/such/clip.mp4")


def test_missing_portaudio_is_one_line_with_an_install_hint(monkeypatch) -> None:
    """When libportaudio cannot load, listing says what to install and still lists cameras."""
    real_import = builtins.__import__

    def failing_import(name, *args, **kwargs):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", failing_import)
    monkeypatch.setattr(devices, "cameras", lambda: [{"id": "0", "name": "cam", "default": True}])
    with pytest.raises(DeviceMissing, match="apt-get install libportaudio2"):
        devices.load_sounddevice()
    report = devices.probe()
    assert report.audio_inputs == [] and report.video_inputs[0]["name"] == "cam"
    assert len(report.problems) == 1 and "PortAudio" in report.problems[0]


def test_omni_devices_lists_pulseaudio_inputs_and_outputs() -> None:
    """`omni devices --json` and the table show PulseAudio's devices with ids and a default."""
    with pulse("spk") as pa:
        env = omni_env(**pa.env)
        result = run_omni("devices", "--json", env=env)
        assert result.returncode == 0, result.stderr
        listing = json.loads(result.stdout)
        assert set(listing) == {"audio_inputs", "audio_outputs", "video_inputs"}
        for kind in ("audio_inputs", "audio_outputs"):
            names = {d["name"] for d in listing[kind]}
            assert {"pulse", "default"} <= names, listing
            assert all(d["id"].isdigit() for d in listing[kind])
            assert sum(d["default"] for d in listing[kind]) == 1
        table = run_omni("devices", env=env)
        assert table.returncode == 0
        assert "microphone" in table.stdout and "speaker" in table.stdout
        assert "default *" in table.stdout


def test_headless_call_falls_back_with_one_notice_and_goes_on() -> None:
    """With no devices, `omni call` says in one NOTICE what it used instead; the call works."""
    server, url = start_server()
    env = omni_env(**NO_SOUND)
    bob = answering_peer(
        "bob",
        url,
        "--no-window",
        "--audio-source",
        "tone:660",
        "--video-source",
        "test",
        "--speaker",
        "none",
        env=env,
    )
    try:
        call = run_omni(
            "call",
            "bob",
            "--user-id",
            "alice",
            "--server",
            url,
            "--json",
            "--no-window",
            "--video-size",
            "320x240",
            "--duration",
            "2",
            env=env,
            timeout=60,
        )
        assert call.returncode == 0, call.stderr
        events = [json.loads(line) for line in call.stdout.splitlines()]
        notices = [e["text"] for e in events if e["event"] == "NOTICE"]
        assert len(notices) == 1, notices
        text = notices[0]
        assert "no camera: test pattern" in text
        assert "no microphone: 440 Hz tone" in text
        assert "no speaker: sound not played" in text
        assert "\n" not in text
        assert len(text) <= 90, text  # short: it was ~250 characters (issue #12)
        bob_leave = bob.event("LEAVE")
        video = bob_leave["summary"]["received"]["video"]
        assert video["frames_coded"] > 20  # the fallback test pattern, with its frame codes
        assert bob_leave["summary"]["received"]["audio"]["dominant_hz"] == pytest.approx(
            440, abs=10
        )
    finally:
        bob.stop()
        server.stop()


def test_require_devices_exits_7_in_one_line() -> None:
    """`--require-devices` with no microphone fails before calling: exit 7, one line."""
    server, url = start_server()
    try:
        result = run_omni(
            "call",
            "bob",
            "--user-id",
            "alice",
            "--server",
            url,
            "--no-window",
            "--require-devices",
            env=omni_env(**NO_SOUND),
        )
        assert result.returncode == 7, result.stderr
        lines = [line for line in result.stderr.splitlines() if line.startswith("omni: ")]
        assert len(lines) == 1 and "Traceback" not in result.stderr
        assert lines[0].startswith("omni: no such audio device")
        both = run_omni("call", "bob", "--mic", "1", "--audio-source", "tone", "--server", url)
        assert both.returncode == 2 and "give one" in both.stderr
    finally:
        server.stop()


def _clip(path: Path, frames: int = 40) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libvpx", rate=30)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for i in range(frames):
            img = np.full((120, 160, 3), i * 6, np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")))
        out.mux(stream.encode(None))


async def test_camera_track_reads_in_a_thread_and_drops_stale_frames(tmp_path: Path) -> None:
    """CameraTrack delivers capture images as frames with rising pts and a bounded queue."""
    path = tmp_path / "cam.webm"
    _clip(path)
    lost: list[str] = []
    track = CameraTrack(0, fps=30, capture=cv2.VideoCapture(str(path)), on_lost=lost.append)
    try:
        frames = [await track.recv() for _ in range(8)]
        assert all((f.width, f.height) == (160, 120) for f in frames)
        pts = [f.pts for f in frames]
        assert pts == sorted(pts) and len(set(pts)) == len(pts)
        assert len(track._queue) <= 2
        # the clip ends: the reader notices the capture is gone and says so once
        with pytest.raises(MediaStreamError):
            for _ in range(100):
                await track.recv()
        assert len(lost) == 1 and "stopped delivering" in lost[0]
    finally:
        track.stop()


def test_camera_that_does_not_open_is_device_missing() -> None:
    """A capture that will not open raises DeviceMissing naming the camera."""

    class Closed:
        def isOpened(self) -> bool:
            return False

        def release(self) -> None:
            pass

    with pytest.raises(DeviceMissing, match="cannot open camera 4"):
        CameraTrack(4, capture=Closed())
