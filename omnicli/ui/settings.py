"""Client settings: defaults < config file < environment < command-line flags.

The config file is TOML at `$OMNI_CONFIG`, else `~/.config/omnicli/config.toml`::

    server = "ws://127.0.0.1:8765"
    service_id = "dev"
    service_key = "..."
    video_source = "auto"     # camera if there is one, else the test pattern
    audio_source = "auto"     # microphone if there is one, else a tone
    speaker = "auto"          # default output if there is one, else none
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from omnicli.errors import UsageError

ENV = {
    "server": "OMNI_SERVER",
    "service_id": "OMNI_SERVICE_ID",
    "service_key": "OMNI_SERVICE_KEY",
    "token": "OMNI_TOKEN",
    "ca_file": "OMNI_CA_FILE",
    "video_source": "OMNI_VIDEO_SOURCE",
    "audio_source": "OMNI_AUDIO_SOURCE",
    "speaker": "OMNI_SPEAKER",
}


@dataclass(frozen=True)
class Settings:
    server: str = "ws://127.0.0.1:8765"
    service_id: str = "dev"
    service_key: str | None = None
    token: str | None = None
    ca_file: str | None = None
    video_source: str = "auto"
    audio_source: str = "auto"
    speaker: str = "auto"
    require_devices: bool = False
    record: bool = False
    record_file: str | None = None
    relay_only: bool = False  # ICE through the server's TURN relay only
    media_recovery: float = 15.0  # s to re-establish dead media before media_failed (0: off)
    width: int = 640
    height: int = 480
    fps: int = 30
    window: bool = True
    json: bool = False
    verbose: bool = False


def config_path(environ: dict[str, str]) -> Path:
    if environ.get("OMNI_CONFIG"):
        return Path(environ["OMNI_CONFIG"])
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "omnicli" / "config.toml"


def _from_file(path: Path, explicit: bool) -> dict[str, Any]:
    if not path.exists():
        if explicit:
            raise UsageError(f"config file {path} does not exist")
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read config file {path}: {exc}") from None
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(f"config file {path}: unknown key '{unknown[0]}'")
    return data


def load(flags: dict[str, Any], environ: dict[str, str] | None = None) -> Settings:
    """Settings from every layer; `flags` holds None for options not given."""
    env = dict(os.environ if environ is None else environ)
    layered: dict[str, Any] = _from_file(config_path(env), explicit="OMNI_CONFIG" in env)
    layered.update({k: env[v] for k, v in ENV.items() if env.get(v)})
    layered.update({k: v for k, v in flags.items() if v is not None})
    if layered.get("token") and "service_id" not in layered:
        from omnicli.wire.tokens import (
            service_of,  # a token names its service: no need to repeat it
        )

        layered["service_id"] = service_of(str(layered["token"])) or Settings.service_id
    try:
        return replace(Settings(), **layered)
    except TypeError as exc:
        raise UsageError(f"bad setting: {exc}") from None
