"""A ceiling on the video encoder's bitrate (`--max-bitrate`), changeable mid-call.

aiortc sets its VP8 or H.264 encoder's target bitrate from the peer's REMB (the
receiver's delay-based estimate), clamped to the codec's range (VP8 250 kbit/s to
1.5 Mbit/s, H.264 500 kbit/s to 3 Mbit/s), and starts at 500 kbit/s (VP8) or 1 Mbit/s
(H.264). Nothing else bounds it. `BitrateCap` is a ceiling over whatever sets that
target, aiortc's REMB handling or a send-rate controller wrapped around it
(`sendrate.py`, which takes the same ceiling as its own: `SendRate.set_ceiling`):
after each RTCP packet the sender handles, the encoder's target becomes the lower of
what was set and the ceiling, and a new ceiling applies at once. The encoder rebuilds
itself (one keyframe) when its target moves by more than 10 %, so the received bitrate
follows within about a second.

A ceiling below the codec's floor lowers that floor (module-wide, never raises it):
aiortc's VP8 floor alone is 250 kbit/s. Audio (Opus) is not capped; it adds up to
96 kbit/s.

Pure where it can be: `parse_bitrate` and `capped` need no aiortc; `install` and
`apply` touch one aiortc `RTCRtpSender`, through the privates listed in `PRIVATES`
(`recovery.PRIVATES` is the receiver side's list).
"""

from __future__ import annotations

import logging
import re
from typing import Any

logger = logging.getLogger(__name__)

MIN_CAP_BPS = 30_000
MAX_CAP_BPS = 20_000_000

# Every aiortc private this module uses, and why.
PRIVATES: dict[str, str] = {
    "RTCRtpSender._handle_rtcp_packet": "wrapped: after REMB (or a send-rate controller) "
    "set the encoder's target, the ceiling applies",
    "RTCRtpSender.__encoder": "the encoder whose target_bitrate is capped (None until "
    "the first frame)",
    "codecs.vpx.MIN_BITRATE, codecs.h264.MIN_BITRATE": "the encoders' floors, lowered "
    "to a ceiling below them",
}

_BITRATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([km]?)(?:bit/s|bps|b)?\s*$", re.IGNORECASE)
_UNCAPPED = ("0", "none", "off", "no", "unlimited")


def parse_bitrate(text: str) -> int | None:
    """'300k' -> 300000, '1.5M' -> 1500000, '250000' -> 250000; 'none'/'off'/'0' -> None.

    ValueError (with the reason) for anything else or outside 30 kbit/s to 20 Mbit/s.
    """
    if text.strip().lower() in _UNCAPPED:
        return None
    found = _BITRATE.match(text)
    if found is None:
        raise ValueError("must be bits per second like 300k, 1.5M or 250000 (or none)")
    number, unit = float(found.group(1)), found.group(2).lower()
    bps = int(number * {"": 1, "k": 1_000, "m": 1_000_000}[unit])
    if not MIN_CAP_BPS <= bps <= MAX_CAP_BPS:
        raise ValueError("must be from 30k to 20M bit/s (or none)")
    return bps


def describe(bps: int | None) -> str:
    """300000 -> '300 kbit/s'; None -> 'no cap'."""
    if bps is None:
        return "no cap"
    if bps >= 1_000_000 and bps % 100_000 == 0:
        return f"{bps / 1_000_000:g} Mbit/s"
    return f"{bps / 1000:g} kbit/s"


def capped(target_bps: int, ceiling_bps: int | None) -> int:
    """The target an encoder gets under `ceiling_bps` (None: no ceiling)."""
    return target_bps if ceiling_bps is None else min(target_bps, ceiling_bps)


class BitrateCap:
    """The ceiling of one video `RTCRtpSender`'s encoder target; `install` it once."""

    def __init__(self, ceiling_bps: int | None = None) -> None:
        self.ceiling_bps = ceiling_bps
        self.wanted_bps: int | None = None  # what REMB (or a controller) last set
        self.applied_bps: int | None = None  # what we last gave the encoder
        self._sender: Any = None

    @property
    def installed(self) -> bool:
        return self._sender is not None

    def install(self, sender: Any) -> bool:
        """Cap `sender` from now on (after whatever wraps its RTCP handler already)."""
        original = getattr(sender, "_handle_rtcp_packet", None)
        if original is None or not hasattr(sender, "_RTCRtpSender__encoder"):
            logger.warning("this aiortc version has no sender hooks: --max-bitrate is off")
            return False
        self._sender = sender

        async def handle(packet: Any) -> None:
            await original(packet)
            self.apply()

        sender._handle_rtcp_packet = handle
        self.apply()
        return True

    def set(self, ceiling_bps: int | None) -> None:
        """A new ceiling (None: none), applied now if the encoder exists."""
        self.ceiling_bps = ceiling_bps
        self.apply()

    def apply(self) -> None:
        """Give the encoder the lower of its wanted target and the ceiling."""
        encoder = getattr(self._sender, "_RTCRtpSender__encoder", None)
        if encoder is None or not hasattr(encoder, "target_bitrate"):
            return
        now = int(encoder.target_bitrate)
        if now != self.applied_bps or self.wanted_bps is None:
            self.wanted_bps = now  # someone else set it since we did
        if self.ceiling_bps is not None:
            lower_floor(self.ceiling_bps)
        target = capped(self.wanted_bps, self.ceiling_bps)
        if target != now:
            encoder.target_bitrate = target
            logger.debug(
                "video encoder target %d -> %d bps (cap %s)", now, target, self.ceiling_bps
            )
        self.applied_bps = int(encoder.target_bitrate)


def lower_floor(bps: int) -> None:
    """Let aiortc's VP8 and H.264 encoders take targets down to `bps` (never raises a floor)."""
    from aiortc.codecs import h264, vpx

    for codec in (vpx, h264):
        floor = getattr(codec, "MIN_BITRATE", None)
        if isinstance(floor, int) and floor > bps:
            setattr(codec, "MIN_BITRATE", bps)  # noqa: B010  (a module of either codec)


__all__ = ["PRIVATES", "BitrateCap", "capped", "describe", "lower_floor", "parse_bitrate"]
