"""x264's speed preset for aiortc's H.264 encoder.

aiortc opens libx264 with `tune zerolatency` and no preset, so x264 runs its default
`medium` preset. For a call that is CPU spent on compression a real-time link cannot
use: at 640x480 (test pattern, 2-core Xeon) `medium` took 3.1 ms of CPU a frame,
`superfast` 1.2 ms and `ultrafast` 0.7 ms, at 360, 460 and 660 kbit/s for the same
picture. `superfast` keeps most of the compression for a third of the CPU; the
encoder's bitrate target (REMB, `--max-bitrate`) still bounds what goes on the wire.

aiortc creates the codec context inside `H264Encoder._encode_frame` and sets its
options just before the first frame opens it, so there is no argument to pass.
`install` makes `H264Encoder.codec` a property: a context put there that is not open
yet, once aiortc has set its options, gets the preset added. That is the one aiortc
private used (`PRIVATES`); `install` checks it first and, if aiortc changed, warns and
leaves the encoder as it is.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

PRESET = "superfast"

# Every aiortc private this module uses, and why.
PRIVATES: dict[str, str] = {
    "codecs.h264.H264Encoder.codec": "the libx264 context aiortc creates (None until the "
    "first frame, or after a size or bitrate change); the preset goes into its options "
    "before it opens",
}


def install(preset: str = PRESET) -> bool:
    """Give every H.264 encoder aiortc makes from now on x264's `preset`; False if not."""
    from aiortc.codecs import h264

    cls: Any = h264.H264Encoder
    if getattr(cls, "omnicli_preset", None) is not None:
        cls.omnicli_preset = preset
        return True
    if vars(cls()).get("codec", "missing") is not None:
        logger.warning("aiortc's H.264 encoder has no `codec` attribute: x264 preset not set")
        return False

    def get(self: Any) -> Any:
        codec = self.__dict__.get("_omnicli_codec")
        if codec is not None and not codec.is_open:
            options = dict(codec.options)
            if "tune" in options and "preset" not in options:  # aiortc has set its own
                codec.options = {**options, "preset": cls.omnicli_preset}
        return codec

    def put(self: Any, codec: Any) -> None:
        self.__dict__["_omnicli_codec"] = codec

    cls.codec = property(get, put)
    cls.omnicli_preset = preset
    return True


__all__ = ["PRESET", "PRIVATES", "install"]
