"""Microphone and speaker through a private PulseAudio: end to end, switching, buffering."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from desktop import pulse, wait_until
from phones import call_connected, make_phone
from procs import Omni, answering_peer, omni_env, start_server

from omnicli.media import devices
from omnicli.media.handoff import DropQueue
from omnicli.media.playout import PlayoutBuffer
from omnicli.media.probes import dominant_frequency
from omnicli.server.driver import ServerConfig, SignalingServer

REAL = ("--mic", "default", "--speaker", "default", "--require-devices", "--json", "--no-window")


def heard(pa, sink: str, seconds: float = 0.6) -> tuple[float | None, float]:
    """(dominant frequency, RMS) of what `sink` plays during the next `seconds`."""
    samples = pa.record(sink, seconds)
    if samples.size < 4800:
        return None, 0.0
    rms = float(np.sqrt(np.mean(samples**2)))
    return (dominant_frequency(samples, 48_000) if rms > 0.01 else None), rms


@pytest.mark.e2e
def test_tone_into_one_microphone_comes_out_of_the_other_speaker_both_ways() -> None:
    """440 Hz into alice's mic plays on bob's speaker, 660 Hz into bob's on alice's."""
    with pulse("alice_mic", "alice_spk", "bob_mic", "bob_spk") as pa:
        server, url = start_server()
        pa.play_tone("alice_mic", 440, 40)
        pa.play_tone("bob_mic", 660, 40)
        bob = answering_peer(
            "bob",
            url,
            *REAL,
            env=omni_env(**pa.env, PULSE_SOURCE="bob_mic.monitor", PULSE_SINK="bob_spk"),
        )
        alice = None
        try:
            alice = Omni(
                "call",
                "bob",
                "--audio",
                "--user-id",
                "alice",
                "--duration",
                "20",
                "--server",
                url,
                *REAL,
                env=omni_env(**pa.env, PULSE_SOURCE="alice_mic.monitor", PULSE_SINK="alice_spk"),
            )
            alice.event("CONNECTED")
            # PortAudio streams through PulseAudio take ~2 s to start: wait for the sound
            wait_until(lambda: heard(pa, "bob_spk")[0], 15, "the tone on bob's speaker")
            wait_until(lambda: heard(pa, "alice_spk")[0], 15, "the tone on alice's speaker")
            on_bob, bob_rms = heard(pa, "bob_spk", 1.0)
            on_alice, alice_rms = heard(pa, "alice_spk", 1.0)
            assert on_bob == pytest.approx(440, abs=5) and bob_rms > 0.05, (on_bob, bob_rms)
            assert on_alice == pytest.approx(660, abs=5) and alice_rms > 0.05, (on_alice, alice_rms)
            alice.interrupt()  # first Ctrl-C: a clean hang-up
            leave = alice.event("LEAVE", timeout=30)
            assert leave["summary"]["received"]["audio"]["dominant_hz"] == pytest.approx(
                660, abs=10
            )
            assert alice.wait() == 0
            assert not [e for e in alice.stderr_lines if "Traceback" in e]
        finally:
            if alice is not None:
                alice.stop()
            bob.stop()
            server.stop()


@pytest.fixture
def pulse_here(monkeypatch):
    """A PulseAudio that this test process's PortAudio uses (re-initialised around the test)."""
    with pulse("mic", "spk") as pa:
        for key, value in pa.env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("PULSE_SOURCE", "mic.monitor")
        monkeypatch.setenv("PULSE_SINK", "spk")
        sd = devices.load_sounddevice()
        sd._terminate()  # PortAudio lists devices once, when it initialises
        sd._initialize()
        try:
            yield pa
        finally:
            sd._terminate()
            sd._initialize()


async def test_switching_microphone_and_speaker_mid_call(pulse_here) -> None:
    """Tone → real mic → tone at alice's, a speaker switched on at bob's; no renegotiation."""
    pa = pulse_here
    pa.play_tone("mic", 880, 40)
    async with SignalingServer(ServerConfig(port=0)) as srv:
        alice = make_phone(srv.url, audio_source="tone:440")
        bob = make_phone(srv.url, audio_source="tone:660")
        try:
            await call_connected(alice, bob)
            audio, video = bob.media.link.audio_in, bob.media.link.video_in

            async def hears(hz: float, timeout: float = 10) -> float:
                start = time.monotonic()
                async with asyncio.timeout(timeout):
                    while (f := audio.dominant_frequency()) is None or abs(f - hz) > 5:
                        await asyncio.sleep(0.05)
                return time.monotonic() - start

            await hears(440)
            await alice.set_audio_device("mic")
            switch_s = await hears(880)
            assert switch_s < 8  # includes PortAudio's ~2 s start through PulseAudio
            frames = video.frames_received
            await bob.set_speaker_device("default")
            await asyncio.to_thread(wait_until, lambda: heard(pa, "spk")[0], 15, "bob's speaker")
            found, _ = await asyncio.to_thread(heard, pa, "spk", 1.0)  # past the start-up
            assert found == pytest.approx(880, abs=5)
            await alice.set_audio_device("tone:440")
            assert await hears(440) < 3
            assert video.frames_received > frames + 30  # video went on all along
            assert alice.config.media.audio_source == "tone:440"
        finally:
            await alice.close()
            await bob.close()


def test_playout_buffer_keeps_at_most_its_limit_and_plays_silence_on_underflow() -> None:
    """A burst is cut to the newest 60 ms; playing starts from the newest `prime_samples`
    (older audio waited for a late sound card: stale); a dry buffer gives zeros until primed."""
    buf = PlayoutBuffer(max_samples=2880, prime_samples=960)
    burst = np.arange(10 * 960, dtype=np.int16)  # 200 ms at once
    buf.push(burst)
    assert buf.buffered == 2880 and buf.dropped_samples == 10 * 960 - 2880
    out = buf.take(960)
    assert np.array_equal(out, burst[-960:])  # the newest audio, in order
    tail = buf.take(480)
    assert not tail.any() and buf.underflows == 1
    buf.push(np.ones(480, np.int16))  # less than prime_samples: still silent
    assert not buf.take(480).any()
    buf.push(np.ones(960, np.int16))
    assert buf.take(480).all()


async def test_drop_queue_hands_over_from_a_thread_and_drops_the_oldest() -> None:
    """Items put by another thread wake the consumer; a full queue drops the oldest."""
    queue: DropQueue[int] = DropQueue(3)
    for i in range(10):
        queue.put(i)
    assert [await queue.get(1) for _ in range(3)] == [7, 8, 9] and queue.dropped == 7
    threading.Timer(0.1, queue.put, args=(42,)).start()
    assert await queue.get(5) == 42
    with pytest.raises(TimeoutError):
        await queue.get(0.05)
