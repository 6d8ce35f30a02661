"""Client settings: one validated model, from defaults < config file < environment < flags.

The config file is TOML at `$OMNI_CONFIG`, else `~/.config/omnicli/config.toml`; its
keys are the field names of `Settings`, and every key also has an environment variable,
`OMNI_` and the key in capitals (`OMNI_FPS=15`)::

    server = "ws://127.0.0.1:8765"
    service_id = "dev"
    service_key = "..."
    video_source = "auto"     # camera if there is one, else the test pattern
    audio_source = "auto"     # microphone if there is one, else a tone
    speaker = "auto"          # default output if there is one, else none
    video_out = "auto"        # window, terminal or none; auto: a window if a display
                              # exists, else the terminal if it shows colour, else none
    width = 640
    height = 480
    fps = 30
    max_bitrate = "500k"      # video bitrate ceiling (0 or "none": no ceiling)

Every value is checked where it comes from, and a bad one is a `UsageError` (exit 2)
naming the file and key, the variable, or the flag, and the value. To add a setting,
add a field with `setting(...)`: the file key, the variable and the check follow.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from omnicli.errors import UsageError
from omnicli.media.bitcap import parse_bitrate

Check = Callable[[Any], Any]  # returns the value to store, or raises ValueError(why)
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


def word(value: Any) -> str:
    checked = text(value)
    if not checked.strip():
        raise ValueError("must not be empty")
    return checked


def server_url(value: Any) -> str:
    url = word(value)
    if not url.startswith(("ws://", "wss://")):
        raise ValueError("must start with ws:// or wss://")
    return url


def optional_text(value: Any) -> str | None:
    return None if value is None else text(value)


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS + FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise ValueError("must be true or false")


def whole(low: int, high: int) -> Check:
    def check(value: Any) -> int:
        number = value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            number = int(value)
        if isinstance(number, bool) or not isinstance(number, int) or not low <= number <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return number

    return check


def seconds(low: float, high: float) -> Check:
    """A number of seconds from `low` to `high` (e.g. --media-recovery)."""

    def check(value: Any) -> float:
        number = value
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                number = None
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise ValueError(f"must be a number of seconds from {low:g} to {high:g}")
        if not low <= number <= high:
            raise ValueError(f"must be a number of seconds from {low:g} to {high:g}")
        return float(number)

    return check


def choice(*allowed: str) -> Check:
    """One of `allowed` (e.g. a `--video-out auto|window|terminal|none` setting)."""

    def check(value: Any) -> str:
        if not isinstance(value, str) or value.strip().lower() not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value.strip().lower()

    return check


def bitrate(value: Any) -> int:
    """A bitrate ceiling in bit/s: 300k, 1.5M, 250000; 0 or none for no ceiling."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError("must be bits per second like 300k, 1.5M or 250000 (or none)")
    return parse_bitrate(value) or 0


def setting(default: Any, check: Check) -> Any:
    """A settings field: its default and the check every layer's value goes through."""
    return field(default=default, metadata={"check": check})


@dataclass(frozen=True)
class Settings:
    server: str = setting("ws://127.0.0.1:8765", server_url)
    service_id: str = setting("dev", word)
    service_key: str | None = setting(None, optional_text)
    token: str | None = setting(None, optional_text)
    ca_file: str | None = setting(None, optional_text)
    video_source: str = setting("auto", word)
    audio_source: str = setting("auto", word)
    speaker: str = setting("auto", word)
    require_devices: bool = setting(False, boolean)
    record: bool = setting(False, boolean)
    record_file: str | None = setting(None, optional_text)
    relay_only: bool = setting(False, boolean)  # ICE through the server's TURN relay only
    # s to re-establish a call's dead media (a new peer connection) before media_failed; 0: off
    media_recovery: float = setting(15.0, seconds(0, 3600))
    width: int = setting(640, whole(16, 3840))
    height: int = setting(480, whole(16, 2160))
    fps: int = setting(30, whole(1, 60))
    max_bitrate: int = setting(0, bitrate)  # the video encoder's ceiling, bit/s (0: none)
    window: bool = setting(True, boolean)
    # where remote video goes (omnicli.ui.videoout): auto, window, terminal or none
    video_out: str = setting("auto", choice("auto", "window", "terminal", "none"))
    json: bool = setting(False, boolean)
    verbose: bool = setting(False, boolean)

    def phone_config(self) -> Any:
        """The call-core's configuration (imported here: `omni --help` loads no phone)."""
        from omnicli.phone.config import MediaOptions, PhoneConfig

        media = MediaOptions(
            video_source=self.video_source,
            audio_source=self.audio_source,
            width=self.width,
            height=self.height,
            fps=self.fps,
            speaker=self.speaker,
            require_devices=self.require_devices,
            record=self.record,
            record_file=self.record_file,
            ice_relay_only=self.relay_only,
            media_recovery=self.media_recovery,
            max_bitrate=self.max_bitrate,
        )
        return PhoneConfig(
            server_url=self.server,
            service_id=self.service_id,
            service_key=self.service_key,
            token=self.token,
            ca_file=self.ca_file,
            media=media,
        )


KEYS = {f.name: f for f in fields(Settings)}


def env_name(key: str) -> str:
    return f"OMNI_{key.upper()}"


def default_of(key: str) -> Any:
    default = KEYS[key].default
    return None if default is MISSING else default


def config_path(environ: Mapping[str, str]) -> Path:
    if environ.get("OMNI_CONFIG"):
        return Path(environ["OMNI_CONFIG"])
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "omnicli" / "config.toml"


def _checked(key: str, value: Any, where: str | None) -> Any:
    """The checked value; `where` is the config file, None for a flag."""
    try:
        return KEYS[key].metadata["check"](value)
    except ValueError as exc:
        if where is None:
            raise UsageError(f"--{key.replace('_', '-')} {value!r}: {exc}") from None
        raise UsageError(f"{where}: {key} = {value!r}: {exc}") from None


def _from_file(path: Path, explicit: bool) -> dict[str, Any]:
    if not path.exists():
        if explicit:
            raise UsageError(f"config file {path} does not exist")
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read config file {path}: {exc}") from None
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise UsageError(
            f"config file {path}: unknown key '{unknown[0]}' (known: {', '.join(KEYS)})"
        )
    return {k: _checked(k, v, f"config file {path}") for k, v in data.items()}


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key in KEYS:
        value = environ.get(env_name(key))
        if value:  # set but empty counts as unset, as in most tools
            try:
                found[key] = KEYS[key].metadata["check"](value)
            except ValueError as exc:
                raise UsageError(f"{env_name(key)}={value!r}: {exc}") from None
    return found


def load(flags: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from every layer; `flags` holds None for options not given."""
    env = os.environ if environ is None else environ
    layered = _from_file(config_path(env), explicit=bool(env.get("OMNI_CONFIG")))
    layered.update(_from_env(env))
    for key, value in flags.items():
        if value is not None:
            layered[key] = _checked(key, value, None)
    if layered.get("token") and "service_id" not in layered:
        from omnicli.wire.tokens import service_of  # a token names its service

        layered["service_id"] = service_of(str(layered["token"])) or default_of("service_id")
    return replace(Settings(), **layered)


def parse_size(size: str) -> tuple[int, int]:
    """'640x480' -> (640, 480); a UsageError names the flag otherwise."""
    try:
        width, height = (int(x) for x in size.lower().split("x"))
    except ValueError:
        raise UsageError(f"--video-size must look like 640x480, not '{size}'") from None
    if not (16 <= width <= 3840 and 16 <= height <= 2160):
        raise UsageError(f"--video-size {size}: must be between 16x16 and 3840x2160")
    return width, height


def from_flags(flags: dict[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from a command's options, which include some that are shorthands.

    `--mic ID` is `--audio-source mic:ID`, `--camera ID` is `--video-source camera:ID`,
    `--video-size WxH` sets width and height, `--no-window` is `window = false`. An
    off switch (False) is "not given", so the file and the environment still count.
    """
    flags = dict(flags)
    for device, source, prefix in (
        ("mic", "audio_source", "mic"),
        ("camera", "video_source", "camera"),
    ):
        chosen = flags.pop(device, None)
        if chosen is not None:
            if flags.get(source) is not None:
                raise UsageError(
                    f"--{device} and --{source.replace('_', '-')} both choose the "
                    f"{source.split('_')[0]} source: give one"
                )
            flags[source] = f"{prefix}:{chosen}"
    size = flags.pop("video_size", None)
    if size is not None:
        flags["width"], flags["height"] = parse_size(size)
    no_window = flags.pop("no_window", False)
    for key, value in list(flags.items()):
        if value is False and KEYS[key].metadata["check"] is boolean:
            del flags[key]
    if no_window:
        if flags.get("video_out") not in (None, "none"):
            raise UsageError("--no-window and --video-out both choose where video goes: give one")
        flags["window"], flags["video_out"] = False, "none"
    return load(flags, environ)
