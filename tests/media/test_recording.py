"""Recording a call: the audio mixer, recording_start/stop mid-call, and `omni call --record`."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import av
import numpy as np
import pytest
from phones import call_connected, eventually, make_phone
from procs import answering_peer, run_omni, start_server

from omnicli.media import framecode
from omnicli.media.probes import dominant_frequency, luma
from omnicli.media.recorder import AudioMixer
from omnicli.phone import events as ev
from omnicli.server.driver import ServerConfig, SignalingServer

RATE = 48_000


def tone(hz: float, seconds: float, amplitude: float = 0.25) -> np.ndarray:
    n = np.arange(int(seconds * RATE))
    return amplitude * np.sin(2 * np.pi * hz * n / RATE)


def test_mixer_adds_parties_that_arrive_together() -> None:
    """Two parties' chunks arriving at the same times are summed sample by sample."""
    mixer = AudioMixer(lag_s=0.25)
    a, b = tone(440, 0.02), tone(660, 0.02)
    mixer.add("local", a, 0.02)
    assert mixer.pull(0.02).size == 0  # the remote party has not delivered yet
    mixer.add("remote", b, 0.02)
    out = mixer.pull(0.02)
    assert out.size == 960
    assert np.allclose(out / 32767, a + b, atol=1e-3)


def test_mixer_waits_only_lag_s_for_a_silent_party_and_fills_gaps() -> None:
    """A party that never speaks delays the mix by lag_s at most; a gap becomes silence."""
    mixer = AudioMixer(lag_s=0.2)
    mixer.add("local", tone(440, 0.1), 0.1)
    assert mixer.pull(0.1).size == 0
    assert mixer.pull(0.3).size == 0.1 * RATE  # 0.3 s - 0.2 s lag: the first 0.1 s is out
    mixer.add("local", tone(440, 0.1), 1.0)  # 0.8 s later than the timeline expected
    out = mixer.flush(1.0)
    assert out.size == 0.9 * RATE  # the rest of 1.0 s
    assert not out[: int(0.7 * RATE)].any()  # the gap 0.1 .. 0.9 s is silent
    assert np.abs(out[-int(0.1 * RATE) :]).max() > 0.2 * 32767


def read_back(path: Path) -> dict:
    """Durations of the file's streams, its audio as mono floats, and a decoded video frame."""
    with av.open(str(path)) as container:
        info = {
            "duration": container.duration / 1_000_000,
            "kinds": sorted(s.type for s in container.streams),
        }
        samples, frames = [], []
        for frame in container.decode(*container.streams):
            if isinstance(frame, av.AudioFrame):
                samples.append(frame.to_ndarray().reshape(-1))
            else:
                frames.append(frame)
        audio = np.concatenate(samples)
        info["audio_s"] = len(audio) / RATE
        info["audio"] = audio
        info["video_s"] = float(frames[-1].time - frames[0].time) if frames else 0.0
        info["frames"] = frames
    return info


def spectrum_peaks(samples: np.ndarray, *freqs: float) -> list[float]:
    """Relative strength (0..1) of each frequency in `samples`."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    bins = [spectrum[round(f * len(samples) / RATE)] for f in freqs]
    return [b / spectrum.max() for b in bins]


async def test_recording_mid_call_has_both_voices_and_the_remote_video(tmp_path: Path) -> None:
    """recording_start/stop writes remote video and both tones; the peer hears RECORDING."""
    path = tmp_path / "call.mp4"
    async with SignalingServer(ServerConfig(port=0)) as srv:
        alice = make_phone(srv.url, audio_source="tone:440")
        bob = make_phone(srv.url, audio_source="tone:660")
        try:
            await call_connected(alice, bob)
            probe = alice.media.link.video_in
            await eventually(lambda: probe.frames_received >= 5, timeout=10)
            started = time.monotonic()
            assert await alice.recording_start(str(path)) == str(path)
            async with asyncio.timeout(10):
                while not isinstance(told := await bob.next_event(), ev.Recording):
                    pass
            assert (told.user_id, told.on) == ("alice", True)
            await asyncio.sleep(3)  # the length of the recording is what is checked
            assert await alice.recording_stop() == str(path)
            elapsed = time.monotonic() - started
            async with asyncio.timeout(10):
                while not isinstance(told := await bob.next_event(), ev.Recording):
                    pass
            assert told.on is False
        finally:
            await alice.close()
            await bob.close()
    got = await asyncio.to_thread(read_back, path)
    assert got["kinds"] == ["audio", "video"]
    assert got["duration"] == pytest.approx(elapsed, abs=0.5)
    assert got["audio_s"] == pytest.approx(elapsed, abs=0.5)
    assert got["video_s"] == pytest.approx(elapsed, abs=0.5)
    assert len(got["frames"]) > 20 * elapsed * 0.6
    middle = got["audio"][int(RATE * 0.8) : int(RATE * 2.3)]
    local, remote, neither = spectrum_peaks(middle, 440, 660, 550)
    assert local > 0.3 and remote > 0.3 and neither < 0.05
    codes = [framecode.read(luma(f)) for f in got["frames"][len(got["frames"]) // 2 :][:10]]
    assert sum(c is not None for c in codes) >= 5  # bob's pattern, frame codes intact


@pytest.mark.e2e
def test_call_record_flag_writes_a_file_of_the_call_length(tmp_path: Path) -> None:
    """`omni call --record --record-file F` records; the callee is told; F lasts the call."""
    server, url = start_server()
    path = tmp_path / "rec.mp4"
    media = (
        "--json",
        "--no-window",
        "--video-source",
        "test",
        "--video-size",
        "320x240",
        "--speaker",
        "none",
        "--server",
        url,
    )
    bob = answering_peer("bob", url, "--audio-source", "tone:660", *media)
    try:
        call = run_omni(
            "call",
            "bob",
            "--user-id",
            "alice",
            "--record",
            "--record-file",
            str(path),
            "--duration",
            "3",
            "--audio-source",
            "tone:440",
            *media,
            timeout=60,
        )
        assert call.returncode == 0, call.stderr
        events = [json.loads(line) for line in call.stdout.splitlines()]
        names = [e["event"] for e in events]
        assert names.count("RECORDING") == 2, names  # on at CONNECTED, off at the end
        saved = [e["text"] for e in events if e["event"] == "NOTICE" and "saved" in e["text"]]
        assert saved and str(path) in saved[0]
        assert bob.event("RINGING")["record"] is True
        assert bob.event("RECORDING")["on"] is True
    finally:
        bob.stop()
        server.stop()
    got = read_back(path)
    assert got["kinds"] == ["audio", "video"]
    assert got["duration"] == pytest.approx(3.0, abs=0.6)
    assert got["audio_s"] == pytest.approx(3.0, abs=0.6)
    heard = dominant_frequency(got["audio"][RATE // 2 : RATE * 2], RATE)
    assert heard in (pytest.approx(440, abs=5), pytest.approx(660, abs=5))
