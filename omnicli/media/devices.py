"""The machine's audio and video devices: listing them and finding the defaults.

Audio devices come from PortAudio through `sounddevice` (ids are its device indexes,
as strings); cameras from ``/dev/video*`` on Linux, each probed with OpenCV (ids are
the capture indexes, as strings). `sounddevice` is imported only here and only when
needed: without the PortAudio library its import fails, and `load_sounddevice` turns
that into one `DeviceMissing` line saying what to install.
"""

from __future__ import annotations

import glob
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from omnicli.errors import DeviceMissing

log = logging.getLogger(__name__)

PORTAUDIO_HINT = (
    "PortAudio library not found: install it (Debian/Ubuntu: apt-get install "
    "libportaudio2; macOS: brew install portaudio)"
)
KINDS = ("audio_inputs", "audio_outputs", "video_inputs")
CAMERA_PROBE_INDEXES = range(4)  # where /dev/video* does not exist (macOS, Windows)


def load_sounddevice() -> ModuleType:
    """The `sounddevice` module; DeviceMissing with an install hint without PortAudio."""
    try:
        import sounddevice
    except OSError as exc:  # raised by its import when libportaudio cannot be loaded
        log.debug("sounddevice import failed: %s", exc)
        raise DeviceMissing(PORTAUDIO_HINT) from None
    return cast(ModuleType, sounddevice)


@dataclass
class DeviceReport:
    """Every device found, and why some kinds may be missing."""

    audio_inputs: list[dict[str, Any]] = field(default_factory=list)
    audio_outputs: list[dict[str, Any]] = field(default_factory=list)
    video_inputs: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[dict[str, Any]]]:
        return {kind: list(getattr(self, kind)) for kind in KINDS}


def probe() -> DeviceReport:
    """Look for audio devices and cameras now."""
    report = DeviceReport()
    try:
        report.audio_inputs, report.audio_outputs = audio_devices()
    except DeviceMissing as exc:
        report.problems.append(str(exc))
    report.video_inputs = cameras()
    return report


def list_devices() -> dict[str, list[dict[str, Any]]]:
    """``{"audio_inputs": [...], "audio_outputs": [...], "video_inputs": [...]}``.

    Each device is a dict with at least ``id`` and ``name`` (and ``default``).
    """
    return probe().as_dict()


def audio_devices() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(inputs, outputs) as PortAudio sees them; DeviceMissing without PortAudio."""
    sd = load_sounddevice()
    try:
        devices = sd.query_devices()
        apis = sd.query_hostapis()
        default_in, default_out = _defaults(sd)
    except sd.PortAudioError as exc:
        raise DeviceMissing(f"PortAudio cannot list devices: {exc}") from None
    inputs: list[dict[str, Any]] = []
    outputs: list[dict[str, Any]] = []
    for index, dev in enumerate(devices):
        base = {
            "id": str(index),
            "name": dev["name"],
            "host_api": apis[dev["hostapi"]]["name"] if dev["hostapi"] < len(apis) else "",
            "sample_rate": int(dev["default_samplerate"]),
        }
        if dev["max_input_channels"] > 0:
            inputs.append(
                base | {"channels": dev["max_input_channels"], "default": index == default_in}
            )
        if dev["max_output_channels"] > 0:
            outputs.append(
                base | {"channels": dev["max_output_channels"], "default": index == default_out}
            )
    return inputs, outputs


def _defaults(sd: ModuleType) -> tuple[int, int]:
    """PortAudio's default input and output device indexes (-1 where there is none)."""
    found = []
    for kind in ("input", "output"):
        try:
            found.append(int(sd.query_devices(kind=kind)["index"]))
        except (sd.PortAudioError, ValueError, KeyError, TypeError):
            found.append(-1)
    return found[0], found[1]


def default_audio_device(kind: str) -> str | None:
    """The id of the default input (kind "input") or output device, None if there is none."""
    inputs, outputs = audio_devices()
    devices = inputs if kind == "input" else outputs
    for dev in devices:
        if dev["default"]:
            return str(dev["id"])
    return str(devices[0]["id"]) if devices else None


def resolve_audio_device(kind: str, device_id: str | None) -> int | str:
    """A sounddevice `device=` value for an id (index or name substring); DeviceMissing if none.

    None or ``default`` means the default device of that kind.
    """
    inputs, outputs = audio_devices()
    devices = inputs if kind == "input" else outputs
    what = "microphone" if kind == "input" else "speaker"
    if not devices:
        raise DeviceMissing(f"no {what}: PortAudio lists no audio {kind} device")
    if device_id in (None, "", "default"):
        chosen = next((d for d in devices if d["default"]), devices[0])
        return int(chosen["id"])
    assert device_id is not None
    if device_id.isdigit():
        if any(d["id"] == device_id for d in devices):
            return int(device_id)
        raise DeviceMissing(f"no {what} with id {device_id} (see `omni devices`)")
    matches = [d for d in devices if device_id.lower() in d["name"].lower()]
    if len(matches) == 1:
        return int(matches[0]["id"])
    if not matches:
        raise DeviceMissing(f"no {what} named like '{device_id}' (see `omni devices`)")
    names = ", ".join(f"{d['id']}: {d['name']}" for d in matches)
    raise DeviceMissing(f"'{device_id}' matches several {what}s ({names}): use an id")


def cameras() -> list[dict[str, Any]]:
    """Cameras that OpenCV can open, each with id (capture index), name and path."""
    if sys.platform.startswith("linux"):
        found: list[dict[str, Any]] = []
        for path in sorted(glob.glob("/dev/video*"), key=_video_index):
            index = _video_index(path)
            if index < 0 or not _capture_opens(index):
                continue
            name = _sysfs_name(index) or path
            found.append({"id": str(index), "name": name, "path": path, "default": not found})
        return found
    return [
        {"id": str(i), "name": f"camera {i}", "path": "", "default": i == 0}
        for i in CAMERA_PROBE_INDEXES
        if _capture_opens(i)
    ]


def default_camera() -> str | None:
    cams = cameras()
    return cams[0]["id"] if cams else None


def camera_index(device_id: str | None) -> int:
    """The capture index for a camera id (``0``, ``/dev/video2``, None = the first camera)."""
    if device_id in (None, "", "default"):
        found = default_camera()
        if found is None:
            raise DeviceMissing(
                "no camera: "
                + ("no /dev/video* device" if sys.platform.startswith("linux") else "none opens")
            )
        return int(found)
    assert device_id is not None
    index = int(device_id) if device_id.isdigit() else _video_index(device_id)
    if index < 0:
        raise DeviceMissing(f"bad camera id '{device_id}': use an index or /dev/videoN")
    if sys.platform.startswith("linux") and not Path(f"/dev/video{index}").exists():
        raise DeviceMissing(f"no camera {device_id}: /dev/video{index} does not exist")
    return index


def _video_index(path: str) -> int:
    match = re.fullmatch(r"/dev/video(\d+)", path)
    return int(match.group(1)) if match else -1


def _sysfs_name(index: int) -> str | None:
    try:
        return Path(f"/sys/class/video4linux/video{index}/name").read_text().strip() or None
    except OSError:
        return None


def open_capture(index: int) -> Any:
    """`cv2.VideoCapture` for a camera index, without OpenCV's log lines on stderr."""
    import cv2

    backend = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        return cv2.VideoCapture(index, backend)
    finally:
        cv2.utils.logging.setLogLevel(previous)


def _capture_opens(index: int) -> bool:
    cap = open_capture(index)
    try:
        return bool(cap.isOpened())
    finally:
        cap.release()
