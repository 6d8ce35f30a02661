"""The REPL's command language: lines in, `Command`s out; help and completion. Pure.

`parse(line)` returns a `Command` (or None for a blank line) and raises one
`CommandError` with a short hint for anything else. `complete(text, context)` gives
the word being completed and its candidates, from the command table, the online
user ids and the device ids in a `CompletionContext`.
"""

from __future__ import annotations

import difflib
import shlex
from dataclasses import dataclass

from omnicli.errors import UsageError
from omnicli.media.bitcap import parse_bitrate
from omnicli.wire.protocol import Track


@dataclass(frozen=True)
class Spec:
    name: str
    usage: str
    summary: str
    aliases: tuple[str, ...] = ()


SPECS = (
    Spec(
        "call",
        "call ID [--audio|--video] [--record]",
        "call ID (a video call unless --audio); ID sip:USER@HOST calls a SIP phone (audio)",
    ),
    Spec("answer", "answer [ID]", "answer the ringing call (from ID); y while it rings"),
    Spec("reject", "reject", "decline the ringing call; n while it rings"),
    Spec("hangup", "hangup", "end the call, or cancel it while it rings", ("leave",)),
    Spec("mute", "mute audio|video", "stop sending your audio or video"),
    Spec("unmute", "unmute audio|video", "send your audio or video again"),
    Spec("devices", "devices", "the audio and video devices with their ids"),
    Spec(
        "device",
        "device camera|mic|speaker ID",
        "use device ID (or a source: test, tone:880, silence, a file), now and later",
    ),
    Spec("dtmf", "dtmf DIGITS", "send touch tones (0-9 * # A-D) in a SIP call, e.g. dtmf 1234#"),
    Spec(
        "quality",
        "quality [size WxH|fps N|bitrate BPS]",
        "the video you send: size, frame rate, bitrate cap (300k, 1.5M, none), now and later",
    ),
    Spec("stats", "stats", "the live quality figures of the call, both directions"),
    Spec("view", "view", "the call's video in this whole terminal; any key comes back"),
    Spec("record", "record start|stop", "start or stop recording the call"),
    Spec("sessions", "sessions", "who is online under the service, and who is busy"),
    Spec("session", "session create [ID]", "leave this session and register as ID"),
    Spec("help", "help [command]", "this list, or one command's usage"),
    Spec("clear", "clear", "clear the screen", ("cls",)),
    Spec("quit", "quit", "hang up, close the session and leave (also Ctrl-D)", ("exit",)),
)
BY_NAME = {name: spec for spec in SPECS for name in (spec.name, *spec.aliases)}
TRACKS = tuple(t.value for t in Track)
DEVICE_KINDS = ("camera", "mic", "speaker")
DEVICE_ALIASES = {"video": "camera", "microphone": "mic", "audio": "mic", "speakers": "speaker"}
CALL_FLAGS = ("--video", "--audio", "--record")
QUALITY_KNOBS = ("size", "fps", "bitrate")
# offered by completion after `quality KNOB`
QUALITY_VALUES = {
    "size": ("320x240", "640x480", "1280x720"),
    "fps": ("10", "15", "30"),
    "bitrate": ("300k", "500k", "1M", "none"),
}
# sources that work without any device: offered by completion next to device ids
SOURCE_SPECS = {
    "camera": ("test", "none"),
    "mic": ("tone", "tone:440", "tone:880", "silence", "none"),
    "speaker": (),
}


class CommandError(UsageError):
    """A line that is not a valid command; the message is the hint to show."""


@dataclass(frozen=True)
class Command:
    name: str  # canonical: aliases are resolved
    args: tuple[str, ...] = ()
    flags: frozenset[str] = frozenset()


def suggestion(word: str) -> str | None:
    """The known command closest to a mistyped `word`, if any is close."""
    close = difflib.get_close_matches(word.lower(), list(BY_NAME), n=1, cutoff=0.6)
    return BY_NAME[close[0]].name if close else None


def parse(line: str) -> Command | None:
    """The command on `line`; None when it is blank; CommandError with a hint otherwise."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise CommandError(f"cannot read that line: {exc}") from None
    if not words:
        return None
    head, rest = words[0].lower(), words[1:]
    spec = BY_NAME.get(head)
    if spec is None:
        near = suggestion(head)
        maybe = f" — did you mean '{near}'?" if near else ";"
        raise CommandError(f"unknown command '{words[0]}'{maybe} type help")
    flags = frozenset(w for w in rest if w.startswith("--"))
    args = tuple(w for w in rest if not w.startswith("--"))
    allowed = frozenset(CALL_FLAGS) if spec.name == "call" else frozenset()
    if flags - allowed:
        raise CommandError(
            f"{spec.name} has no option {sorted(flags - allowed)[0]}; usage: {spec.usage}"
        )
    _check(spec, args, flags)
    return Command(spec.name, _normalise(spec.name, args), flags)


def _check(spec: Spec, args: tuple[str, ...], flags: frozenset[str]) -> None:
    def usage(why: str) -> CommandError:
        return CommandError(f"{why}; usage: {spec.usage}")

    name = spec.name
    if (
        name in ("reject", "hangup", "devices", "stats", "view", "sessions", "quit", "clear")
        and args
    ):
        raise usage(f"{name} takes no arguments")
    if name == "call":
        if len(args) != 1:
            raise usage("call needs one user id")
        if {"--audio", "--video"} <= flags:
            raise usage("choose --audio or --video")
    elif name in ("answer", "help") and len(args) > 1:
        raise usage(f"{name} takes at most one argument")
    elif name == "help" and args and args[0].lower() not in BY_NAME:
        raise CommandError(f"no command '{args[0]}'; type help")
    elif name in ("mute", "unmute") and (len(args) != 1 or args[0].lower() not in TRACKS):
        raise usage("say audio or video")
    elif name == "device":
        if len(args) != 2 or _device_kind(args[0]) is None:
            raise usage("say camera, mic or speaker, then a device id or source")
    elif name == "dtmf" and len(args) != 1:
        raise usage("say the digits, e.g. dtmf 1234#")
    elif name == "quality" and args:
        if len(args) != 2 or args[0].lower() not in QUALITY_KNOBS:
            raise usage("say size, fps or bitrate, then a value")
        why = quality_problem(args[0].lower(), args[1])
        if why:
            raise usage(f"{args[0].lower()} {args[1]}: {why}")
    elif name == "record" and (len(args) != 1 or args[0].lower() not in ("start", "stop")):
        raise usage("say start or stop")
    elif name == "session" and (not args or args[0].lower() != "create" or len(args) > 2):
        raise usage("the only session command is create")


def quality_value(knob: str, value: str) -> tuple[int, int] | int:
    """`quality` values: size 320x240 -> (320, 240), fps 15 -> 15, bitrate 300k -> 300000
    (none -> 0); ValueError with the reason otherwise."""
    if knob == "size":
        width, x, height = value.lower().partition("x")
        if not (x and width.isdigit() and height.isdigit()):
            raise ValueError("must look like 640x480")
        if not (16 <= int(width) <= 3840 and 16 <= int(height) <= 2160):
            raise ValueError("must be 16x16 to 3840x2160")
        return int(width), int(height)
    if knob == "fps":
        if not value.isdigit() or not 1 <= int(value) <= 60:
            raise ValueError("must be a whole number from 1 to 60")
        return int(value)
    return parse_bitrate(value) or 0


def quality_problem(knob: str, value: str) -> str | None:
    try:
        quality_value(knob, value)
    except ValueError as exc:
        return str(exc)
    return None


def _device_kind(word: str) -> str | None:
    word = word.lower()
    kind = DEVICE_ALIASES.get(word, word)
    return kind if kind in DEVICE_KINDS else None


def _normalise(name: str, args: tuple[str, ...]) -> tuple[str, ...]:
    if name in ("mute", "unmute", "record", "help", "quality"):
        return tuple(a.lower() for a in args)
    if name == "device":
        return (_device_kind(args[0]) or args[0], args[1])
    if name == "session":
        return args[1:]  # just the optional user id
    return args


def help_lines(name: str | None = None) -> list[str]:
    """Every command with its summary, or one command's usage and summary."""
    if name:
        spec = BY_NAME[name.lower()]
        also = f" (also: {', '.join(spec.aliases)})" if spec.aliases else ""
        return [f"{spec.usage}{also}", f"  {spec.summary}"]
    width = max(len(s.usage) for s in SPECS)
    lines = [f"{s.usage:<{width}}  {s.summary}" for s in SPECS]
    lines.append(
        "keys: Tab completes · ↑ history · Ctrl-C hangs up (twice: leaves) · Ctrl-D leaves"
    )
    return lines


# -- completion -------------------------------------------------------------------------


@dataclass(frozen=True)
class CompletionContext:
    """What completion may offer besides the command table."""

    users: tuple[str, ...] = ()  # online user ids, yourself excluded
    ringing: tuple[str, ...] = ()  # callers whose call rings here
    devices: dict[str, tuple[str, ...]] | None = None  # kind (camera/mic/speaker) -> ids


def _completing(text: str) -> tuple[str, list[str]]:
    words = text.split()
    if not text or text[-1].isspace():
        words.append("")
    return words[-1], [w.lower() for w in words[:-1]]


def wants_users(text: str) -> bool:
    """Whether completing `text` offers online user ids (so they are worth fetching)."""
    _, before = _completing(text)
    name = BY_NAME[before[0]].name if before and before[0] in BY_NAME else None
    positional = [w for w in before[1:] if not w.startswith("--")]
    return (name == "call" and not positional) or (name == "answer" and len(before) == 1)


def wants_devices(text: str) -> bool:
    """Whether completing `text` offers device ids."""
    _, before = _completing(text)
    return len(before) == 2 and before[0] == "device"


def complete(text: str, context: CompletionContext) -> tuple[str, list[str]]:
    """The word being completed at the end of `text`, and the candidates that extend it."""
    word, before = _completing(text)
    return word, [c for c in _candidates(before, context) if c.startswith(word) and c != word]


def _candidates(before: list[str], ctx: CompletionContext) -> list[str]:
    if not before:
        return [spec.name for spec in SPECS] + [a for spec in SPECS for a in spec.aliases]
    spec = BY_NAME.get(before[0])
    if spec is None:
        return []
    position = len(before)
    positional = [w for w in before[1:] if not w.startswith("--")]
    match spec.name:
        case "call":
            if not positional:
                return list(ctx.users)
            return [f for f in CALL_FLAGS if f not in before]
        case "answer" if position == 1:
            return list(dict.fromkeys([*ctx.ringing, *ctx.users]))
        case "mute" | "unmute" if position == 1:
            return list(TRACKS)
        case "quality" if position == 1:
            return list(QUALITY_KNOBS)
        case "quality" if position == 2:
            return list(QUALITY_VALUES.get(before[1], ()))
        case "record" if position == 1:
            return ["start", "stop"]
        case "session" if position == 1:
            return ["create"]
        case "help" if position == 1:
            return [s.name for s in SPECS]
        case "device" if position == 1:
            return list(DEVICE_KINDS)
        case "device" if position == 2:
            kind = _device_kind(before[1])
            if kind is None:
                return []
            ids = (ctx.devices or {}).get(kind, ())
            return list(dict.fromkeys([*ids, *SOURCE_SPECS[kind]]))
    return []
