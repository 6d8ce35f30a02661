"""How events, tables and summaries look: Rich for people, JSON lines for scripts.

Builders return Rich renderables without printing; `Output` decides where they go:
data to stdout, status to stderr, and with `--json` one JSON object per line on
stdout and nothing else there.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from omnicli.phone import events as ev
from omnicli.phone.figures import CallFigures
from omnicli.phone.summary import one_line
from omnicli.wire.messages import Presence

STYLES = {
    "RINGBACK": "cyan",
    "RINGING": "bold yellow",
    "ANSWERED": "cyan",
    "CONNECTED": "bold green",
    "LEAVE": "bold red",
    "CANCEL": "red",
    "MUTE": "magenta",
    "UNMUTE": "magenta",
    "RECORDING": "magenta",
    "SESSION": "blue",
    "NOTICE": "yellow",
    "SERVER_LOST": "bold red",
    "RECONNECTING": "yellow",
    "RECONNECTED": "green",
}


def describe(event: ev.CallEvent) -> str:
    """The human sentence for one event."""
    match event:
        case ev.SessionCreated(session=session, user_id=user):
            return f"online as {user} (session {session})"
        case ev.Ringback(callee=callee, call_type=kind, callee_online=online):
            where = "" if online else f" ({callee} is not online yet: the offer waits)"
            return f"ringing {callee} ({kind}){where}"
        case ev.Ringing(caller=caller, call_type=kind, record=record):
            return f"incoming {kind} from {caller}" + (" (recorded)" if record else "")
        case ev.Answered(peer=peer):
            return f"{peer} answered; connecting media"
        case ev.Connected(peer=peer, setup_ms=setup):
            return f"connected with {peer} (setup {setup:.0f} ms)"
        case ev.Leave(reason=reason, by=by):
            who = f" by {by}" if by else ""
            return f"call ended: {reason.replace('_', ' ')}{who}"
        case ev.Cancel(reason=reason, by=by):
            return f"call cancelled: {reason.replace('_', ' ')}" + (f" by {by}" if by else "")
        case ev.Mute(user_id=user, track=track):
            return f"{user} muted {track}"
        case ev.Unmute(user_id=user, track=track):
            return f"{user} unmuted {track}"
        case ev.Recording(user_id=user, on=on):
            return f"{user} {'started' if on else 'stopped'} recording"
        case ev.Notice(text=text):
            return text
        case ev.ServerLost(reason=reason):
            return f"lost the signaling server: {reason}"
        case ev.Reconnecting(reason=reason, grace_s=grace):
            return (
                f"signaling connection lost ({reason}); reconnecting for up to "
                f"{grace:.0f} s, media goes on"
            )
        case ev.Reconnected(downtime_ms=ms, attempts=attempts, call_id=call_id):
            tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
            goes_on = "; the call goes on" if call_id else ""
            return f"reconnected after {ms / 1000:.1f} s ({tries}){goes_on}"
        case ev.MediaReconnecting(reason=reason, limit_s=limit):
            return f"media lost ({reason}); reconnecting media for up to {limit:.0f} s"
        case ev.MediaReconnected(gap_ms=gap, attempts=attempts):
            tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
            return f"media back after a {gap / 1000:.1f} s gap ({tries})"
        case ev.Stats(figures=figures):
            return stats_line(figures)
    return event.name


def _n(value: Any, fmt: str = "{:.0f}", unit: str = "") -> str:
    return "-" if value is None else fmt.format(value) + unit


def stats_line(f: CallFigures) -> str:
    size = f.resolution_in or "no video"
    return (
        f"in {_n(f.fps_in, '{:.1f}')} fps {size} {_n(f.bitrate_in_kbps)} kbit/s"
        f" · out {_n(f.bitrate_out_kbps)} kbit/s"
        f" · rtt {_n(f.rtt_ms, '{:.1f}', ' ms')}"
        f" · jitter {_n(f.jitter_ms, '{:.1f}', ' ms')}"
        f" · loss {_n(f.loss_pct, '{:.1f}', ' %')}"
    )


def sessions_table(peers: list[Any]) -> Table:
    table = Table(title="Sessions", title_justify="left")
    table.add_column("user id")
    table.add_column("state")
    table.add_column("call type")
    for peer in peers:
        style = "yellow" if peer.state == Presence.BUSY else "green"
        table.add_row(peer.user_id, Text(peer.state, style=style), peer.call_type or "")
    return table


def devices_table(devices: dict[str, list[dict[str, Any]]]) -> Table:
    """Audio inputs, audio outputs and cameras with their ids; * marks the defaults."""
    table = Table(title="Devices", title_justify="left")
    table.add_column("kind")
    table.add_column("id", justify="right")
    table.add_column("name")
    table.add_column("details", style="dim")
    labels = (
        ("audio_inputs", "microphone"),
        ("audio_outputs", "speaker"),
        ("video_inputs", "camera"),
    )
    for key, label in labels:
        found = devices.get(key, [])
        if not found:
            table.add_row(label, "", Text("none found", style="yellow"), "")
        for dev in found:
            name = Text(dev["name"] + (" *" if dev.get("default") else ""))
            details = ", ".join(
                str(x)
                for x in (
                    dev.get("host_api"),
                    dev.get("path"),
                    f"{dev['channels']} ch" if dev.get("channels") else None,
                    f"{dev['sample_rate']} Hz" if dev.get("sample_rate") else None,
                )
                if x
            )
            table.add_row(label, str(dev["id"]), name, details)
    return table


def session_panel(user_id: str, session: str, server: str, service_id: str) -> Panel:
    body = Text.assemble(
        ("user id  ", "dim"),
        (user_id, "bold"),
        "\n",
        ("session  ", "dim"),
        session,
        "\n",
        ("server   ", "dim"),
        f"{server} (service {service_id})",
    )
    return Panel(body, title="omni session", expand=False)


def stats_table(figures: CallFigures, peer: str | None = None) -> Table:
    """A call's live figures, incoming and outgoing side by side (the REPL's `stats`)."""
    from omnicli.ui.statusline import directions, number

    incoming, outgoing = directions(figures)
    title = f"Call quality with {peer}" if peer else "Call quality"
    table = Table(title=title, title_justify="left")
    table.add_column("figure")
    table.add_column("in", justify="right")
    table.add_column("out", justify="right")
    rtt = number(figures.rtt_ms, "{:.1f}", " ms")
    audio_in, video_in = figures.audio_in, figures.video_in
    rows = [
        ("round-trip time", rtt, rtt),
        (
            "jitter",
            number(incoming.jitter_ms, "{:.1f}", " ms"),
            number(outgoing.jitter_ms, "{:.1f}", " ms"),
        ),
        (
            "packet loss",
            number(incoming.loss_pct, "{:.1f}", " %"),
            number(outgoing.loss_pct, "{:.1f}", " %"),
        ),
        ("bitrate", number(incoming.kbps, unit=" kbit/s"), number(outgoing.kbps, unit=" kbit/s")),
        (
            "frame rate",
            number(incoming.fps, "{:.1f}", " fps"),
            number(outgoing.fps, "{:.1f}", " fps"),
        ),
        ("resolution", incoming.resolution or "-", outgoing.resolution or "-"),
        ("video latency", number(video_in.get("latency_ms_median"), "{:.0f}", " ms"), ""),
        ("audio tone", number(audio_in.get("dominant_hz"), "{:.0f}", " Hz"), ""),
    ]
    for row in rows:
        table.add_row(*row)
    return table


class Output:
    """Where everything the CLI shows goes."""

    def __init__(
        self,
        *,
        json_mode: bool,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        label: str | None = None,
    ) -> None:
        self.json_mode = json_mode
        self.stdout = stdout or sys.stdout
        self.err = Console(file=stderr or sys.stderr, highlight=False, soft_wrap=True)
        self.out = Console(file=self.stdout, highlight=False, soft_wrap=True)
        self.label = label
        self._t0 = time.monotonic()
        # while a picture owns the terminal: what would have been printed, in order
        # (one list shared with the labelled twins: they print on the same terminal)
        self._held: list[list[tuple[Console | None, Any]] | None] = [None]
        self._notices: set[str] = set()  # said once in a process (devices: every call)

    def with_label(self, label: str) -> Output:
        twin = Output(json_mode=self.json_mode, stdout=self.stdout, label=label)
        twin.err, twin.out, twin._t0 = self.err, self.out, self._t0
        twin._held = self._held
        twin._notices = self._notices
        return twin

    def hold(self) -> None:
        """Keep everything back (the terminal shows a picture) until `release()`."""
        if self._held[0] is None:
            self._held[0] = []

    def release(self) -> None:
        """Print what was held back, in order, and print directly again."""
        held, self._held[0] = self._held[0], None
        for console, item in held or ():
            if console is None:
                self._write_json(item)
            else:
                console.print(item)

    def _print(self, console: Console, item: Any) -> None:
        held = self._held[0]
        if held is not None:
            held.append((console, item))
        else:
            console.print(item)

    def json(self, obj: dict[str, Any]) -> None:
        if self.label:
            obj = {"who": self.label, **obj}
        held = self._held[0]
        if held is not None:
            held.append((None, obj))
        else:
            self._write_json(obj)

    def _write_json(self, obj: dict[str, Any]) -> None:
        self.stdout.write(json.dumps(obj, default=str) + "\n")
        self.stdout.flush()

    def event(self, event: ev.CallEvent) -> None:
        if self.json_mode:
            self.json(event.as_dict())
            return
        if isinstance(event, ev.Notice):
            if event.text in self._notices:
                return  # the same fallback every call is noise: once is enough
            self._notices.add(event.text)
        stamp = f"{time.monotonic() - self._t0:6.1f}s"
        who = f"{self.label:>6} " if self.label else ""
        style = STYLES.get(event.name, "dim")
        line = Text.assemble(
            (stamp + " ", "dim"), who, (f"{event.name:<10}", style), " ", describe(event)
        )
        self._print(self.err, line)
        if isinstance(event, ev.Leave) and event.summary.get("duration_s"):
            self.summary(event.summary)

    def summary(self, summary: dict[str, Any]) -> None:
        who = f"{self.label}: " if self.label else ""
        self._print(self.out, Text(f"{who}call summary: {one_line(summary)}", style="bold"))

    def status(self, text: str, style: str = "dim") -> None:
        if not self.json_mode:
            self._print(self.err, Text(text, style=style))

    def show(self, renderable: Any) -> None:
        self._print(self.out, renderable)
