"""What a `Phone` is built from and hands back: its config, and the rows of `session_list`.

Plain frozen data, no I/O, importable without aiortc: the settings (`ui.settings`) build
a `PhoneConfig`, and `check_quality` holds the ranges a mid-call change must keep to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omnicli.errors import UsageError
from omnicli.wire import messages as m
from omnicli.wire.protocol import CallType


@dataclass(frozen=True)
class MediaOptions:
    """Where outgoing media comes from (see `omnicli.media.sourcespec.open_source`)."""

    video_source: str = "test"
    audio_source: str = "tone"
    width: int = 640
    height: int = 480
    fps: int = 30
    max_bitrate: int = 0  # ceiling of the video encoder's target, bit/s (0: none; bitcap.py)
    connect_timeout: float = 15.0
    speaker: str = "none"  # none, auto, default or an output device id (omnicli.media.devices)
    require_devices: bool = False  # a missing real device is DeviceMissing, not a fallback
    record: bool = False  # record every call (the caller's `record` flag records too)
    record_file: str | None = None  # default: omni-ME-PEER-TIME.mp4 in the current directory
    ice_relay_only: bool = False  # gather TURN relay candidates only (needs a TURN server)
    media_recovery: float = 15.0  # s to re-establish dead media before media_failed (0: off)


@dataclass(frozen=True)
class PhoneConfig:
    server_url: str = "ws://127.0.0.1:8765"
    service_id: str = "dev"
    service_key: str | None = None
    token: str | None = None
    ca_file: str | None = None
    media: MediaOptions = field(default_factory=MediaOptions)


@dataclass(frozen=True)
class Peer:
    user_id: str
    state: m.Presence
    call_type: CallType | None


@dataclass(frozen=True)
class SessionPage:
    """One `session_list` answer: the rows, how many sessions there are, whether more follow."""

    peers: list[Peer]
    total: int
    truncated: bool


def check_quality(size: tuple[int, int] | None, fps: int | None, max_bitrate: int | None) -> None:
    """UsageError unless each given value is in range (the settings' ranges)."""
    if size is not None and not (16 <= size[0] <= 3840 and 16 <= size[1] <= 2160):
        raise UsageError(f"video size {size[0]}x{size[1]}: must be 16x16 to 3840x2160")
    if fps is not None and not 1 <= fps <= 60:
        raise UsageError(f"frame rate {fps}: must be 1 to 60")
    if max_bitrate is not None and max_bitrate != 0 and not 30_000 <= max_bitrate <= 20_000_000:
        raise UsageError(f"bitrate {max_bitrate}: must be 30k to 20M bit/s, or 0 for none")
