"""Source specs: which track a ``--video-source`` / ``--audio-source`` names, and
opening it, with the synthetic source in place of a missing device.

Specs:

    video   auto | camera | camera:ID | device:ID | test | none | PATH
    audio   auto | mic | mic:ID | device:ID | tone | tone:FREQ | silence | none | PATH

``camera``/``mic`` is the default device, ``camera:ID``/``mic:ID`` (``device:ID`` is
the same) a chosen one (ids as `omni devices` lists them; a microphone may also be
named by a part of its name, a camera by ``/dev/videoN``). ``auto`` is the default
device when there is one, else the synthetic source (`open_with_fallback` says so).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiortc import MediaStreamTrack

from omnicli.errors import SourceError
from omnicli.media.sources import FileTrack, SilenceTrack, TestPatternTrack, ToneTrack

VIDEO_SPECS = "test, none, auto, camera, camera:ID or a media file path"
AUDIO_SPECS = "tone, tone:FREQ, silence, none, auto, mic, mic:ID or a media file path"
SYNTHETIC = {"video": "test", "audio": "tone"}
DEVICE_MISSING = "no such {kind} device: "
DEVICE_WORDS = {"video": ("camera", "device"), "audio": ("mic", "device")}


def device_id(kind: str, spec: str) -> str | None:
    """For a real-device spec, the device id ("" for the default); None for other specs."""
    spec = spec.strip()
    if spec == "auto":
        return ""
    word, sep, rest = spec.partition(":")
    if word in DEVICE_WORDS.get(kind, ()):
        if sep and not rest:
            raise SourceError(f"'{spec}' names no device: use {word}:ID (see `omni devices`)")
        return rest if sep else ("" if word != "device" else None)
    return None


def open_source(
    kind: str,
    spec: str,
    *,
    width: int = 640,
    height: int = 480,
    fps: float = 30,
    on_lost: Callable[[str], None] | None = None,
) -> MediaStreamTrack | None:
    """The track a source spec names, or None for ``none``; SourceError if it can't be.

    A real device that is missing or busy raises SourceError as well (``auto``
    included); `open_with_fallback` turns that into the synthetic source.
    """
    if kind not in ("video", "audio"):
        raise ValueError(f"kind must be 'video' or 'audio', not {kind!r}")
    valid = VIDEO_SPECS if kind == "video" else AUDIO_SPECS
    spec = spec.strip()
    if spec == "none":
        return None
    device = device_id(kind, spec)
    if device is not None:
        return open_device(kind, device, width=width, height=height, fps=fps, on_lost=on_lost)
    if kind == "video" and spec == "test":
        return TestPatternTrack(width, height, fps)
    if kind == "audio" and spec == "silence":
        return SilenceTrack()
    if kind == "audio" and (spec == "tone" or spec.startswith("tone:")):
        return ToneTrack(_tone_frequency(spec))
    if spec and (Path(spec).exists() or "/" in spec or "." in spec):
        if not Path(spec).is_file():
            raise SourceError(f"no such media file: {spec}")
        return FileTrack(spec, kind)
    raise SourceError(f"unknown {kind} source {spec!r}: use {valid}")


def _tone_frequency(spec: str) -> float:
    text = spec.partition(":")[2] or "440"
    try:
        frequency = float(text)
    except ValueError:
        raise SourceError(f"bad tone frequency {text!r}: use tone:FREQ, e.g. tone:660") from None
    if not 20 <= frequency <= 20_000:
        raise SourceError(f"tone frequency {frequency:g} Hz is outside 20..20000 Hz")
    return frequency


def open_device(
    kind: str,
    device: str,
    *,
    width: int = 640,
    height: int = 480,
    fps: float = 30,
    on_lost: Callable[[str], None] | None = None,
) -> MediaStreamTrack:
    """A camera or microphone track ("" = the default device); SourceError if it can't be."""
    from omnicli.errors import DeviceMissing

    try:
        if kind == "video":
            from omnicli.media.camera import CameraTrack
            from omnicli.media.devices import camera_index

            index = camera_index(device or None)
            return CameraTrack(index, width=width, height=height, fps=fps, on_lost=on_lost)
        from omnicli.media.audio_io import MicrophoneTrack

        return MicrophoneTrack(device or None, on_lost=on_lost)
    except DeviceMissing as exc:
        raise SourceError(f"{DEVICE_MISSING.format(kind=kind)}{exc}") from None


@dataclass(frozen=True)
class Opened:
    """What `open_with_fallback` opened: the track, the spec used, and a note if it fell back."""

    track: MediaStreamTrack | None
    spec: str
    fallback: str | None = None  # e.g. "no camera (...): sending the test pattern instead"


def open_with_fallback(
    kind: str,
    spec: str,
    *,
    width: int = 640,
    height: int = 480,
    fps: float = 30,
    require: bool = False,
    on_lost: Callable[[str], None] | None = None,
) -> Opened:
    """`open_source`, but a missing real device gives the synthetic source and a note.

    With `require`, a missing device raises DeviceMissing instead. Errors in other
    specs (a bad file, a bad tone) are raised as SourceError either way.
    """
    from omnicli.errors import DeviceMissing

    try:
        track = open_source(kind, spec, width=width, height=height, fps=fps, on_lost=on_lost)
    except SourceError as exc:
        if device_id(kind, spec) is None:
            raise
        if require:
            raise DeviceMissing(str(exc)) from None
        synthetic = SYNTHETIC[kind]
        track = open_source(kind, synthetic, width=width, height=height, fps=fps)
        reason = str(exc).removeprefix(DEVICE_MISSING.format(kind=kind))
        if spec == "auto":  # no device was asked for: the fallback is expected, say it short
            logging.getLogger(__name__).info("%s; %s", reason, fallback_text(kind))
            device = "camera" if kind == "video" else "microphone"
            return Opened(track, synthetic, f"no {device}: {SHORT_FALLBACK[kind]}")
        return Opened(track, synthetic, f"{reason}; {fallback_text(kind)}")
    return Opened(track, spec)


SHORT_FALLBACK = {"video": "test pattern", "audio": "440 Hz tone"}


def fallback_text(kind: str) -> str:
    return (
        "sending the test pattern instead" if kind == "video" else "sending a 440 Hz tone instead"
    )
