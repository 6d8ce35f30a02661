"""What each REPL command does: one small coroutine per command, on the REPL's phone.

Each takes the `Repl` and the parsed `Command`, calls the call-core, and says what
happened in one line (events themselves are shown by the REPL's event pump). Errors
are raised, never printed: the REPL turns them into one line.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from rich.text import Text

from omnicli.errors import DeviceMissing, UsageError
from omnicli.phone.callstate import CallState
from omnicli.ui.commands import Command, help_lines, quality_value
from omnicli.ui.render import sessions_table, stats_table
from omnicli.ui.statusline import status_lines
from omnicli.wire.protocol import CallType

if TYPE_CHECKING:
    from omnicli.ui.repl import Repl

Action = Callable[["Repl", Command], Awaitable[None]]
NO_DEVICE_LIST = (
    "the device list is not available here ({why}); sources still work: "
    "device camera test, device mic tone:880, a media file"
)


async def call(repl: Repl, cmd: Command) -> None:
    phone = repl.need_phone()
    kind = CallType.AUDIO if "--audio" in cmd.flags else CallType.VIDEO
    await phone.offer_call(kind, cmd.args[0], "--record" in cmd.flags)


async def answer(repl: Repl, cmd: Command) -> None:
    phone = repl.need_phone()
    await phone.answer_call(None, cmd.args[0] if cmd.args else None, wait=0)


async def reject(repl: Repl, cmd: Command) -> None:
    repl.need_phone()
    if not repl.ringing_here():
        raise UsageError("no call is ringing")
    await repl.leave()


async def hangup(repl: Repl, cmd: Command) -> None:
    phone = repl.need_phone()
    if phone.call_state in (CallState.IDLE, CallState.RINGING):
        raise UsageError(
            "not in a call"
            + ("; reject declines a ringing one" if phone.call_state is CallState.RINGING else "")
        )
    await repl.leave()


async def mute(repl: Repl, cmd: Command) -> None:
    track = cmd.args[0]
    phone = repl.need_phone()
    if cmd.name == "mute":
        await phone.set_mute(track)
        repl.say(f"your {track} is muted")
    else:
        await phone.set_unmute(track)
        repl.say(f"your {track} is on again")


async def probe_devices(repl: Repl) -> Any:
    """A fresh `DeviceReport`, probed off the event loop, kept for completion.

    During a call the cameras are not opened (one of them is in use): the last list of
    cameras is kept, and the audio devices are listed afresh.
    """
    from omnicli.media.devices import DeviceReport, audio_devices, probe

    idle = (CallState.IDLE, CallState.OFFLINE, CallState.RINGING)
    if repl.phone is None or repl.phone.call_state in idle:
        report = await asyncio.to_thread(probe)
    else:
        old = repl.completion.device_report
        report = DeviceReport(video_inputs=list(old.video_inputs) if old else [])
        report.problems.append(
            "in a call: cameras are not probed now "
            + ("(the list is from before)" if old else "(none listed yet)")
        )
        try:
            report.audio_inputs, report.audio_outputs = await asyncio.to_thread(audio_devices)
        except DeviceMissing as exc:
            report.problems.append(str(exc))
    repl.completion.device_report = report
    return report


async def devices(repl: Repl, cmd: Command) -> None:
    try:
        from omnicli.ui.render import devices_table

        report = await probe_devices(repl)
    except ImportError as exc:  # an omnicli without device support
        repl.say(NO_DEVICE_LIST.format(why=exc), "yellow")
        return
    repl.out.show(devices_table(report.as_dict()))
    for problem in report.problems:
        repl.say(problem, "yellow")


async def device(repl: Repl, cmd: Command) -> None:
    kind, spec = cmd.args
    phone = repl.need_phone()
    if kind == "camera":
        await phone.set_video_device(spec)
    elif kind == "mic":
        await phone.set_audio_device(spec)
    else:
        await phone.set_speaker_device(spec)
    when = "now and for the next calls" if phone.call is not None else "for the next calls"
    repl.say(f"{kind}: {spec} ({when})")


async def quality(repl: Repl, cmd: Command) -> None:
    from omnicli.media.bitcap import describe

    phone = repl.need_phone()
    if cmd.args:
        knob, value = cmd.args
        parsed = quality_value(knob, value)  # checked by the parser already
        if isinstance(parsed, tuple):
            await phone.set_video_quality(size=parsed)
        elif knob == "fps":
            await phone.set_video_quality(fps=parsed)
        else:
            await phone.set_video_quality(max_bitrate=parsed)
    m = phone.config.media
    when = "now and for the next calls" if phone.call is not None else "for the next calls"
    repl.say(
        f"video {m.width}x{m.height} at {m.fps} fps, bitrate cap: "
        f"{describe(m.max_bitrate or None)} ({when})"
    )


async def stats(repl: Repl, cmd: Command) -> None:
    phone = repl.need_phone()
    figures = repl.seen.figures if phone.call is not None else None
    if figures is None:
        figures = await phone.stats()
    if figures is None:
        raise UsageError("no figures: not in a connected call")
    repl.out.show(stats_table(figures, phone.call.peer if phone.call else None))


async def record(repl: Repl, cmd: Command) -> None:
    phone = repl.need_phone()
    if cmd.args[0] == "start":
        await phone.recording_start()  # RECORDING and a NOTICE with the file follow
    elif await phone.recording_stop() is None:
        raise UsageError("nothing is being recorded here")


async def sessions(repl: Repl, cmd: Command) -> None:
    page = await repl.completion.list_page()
    repl.out.show(sessions_table(page.peers))
    if page.truncated:
        repl.out.status(
            f"showing the first {len(page.peers)} of {page.total} sessions "
            "(`omni sessions --all` lists every one)",
            style="yellow",
        )


async def dtmf(repl: Repl, cmd: Command) -> None:
    phone = repl.need_phone()
    await phone.send_dtmf(cmd.args[0])
    repl.out.status(f"sent touch tones {cmd.args[0].upper()}")


async def view(repl: Repl, cmd: Command) -> None:
    """The call full-screen in the terminal until a key is pressed or the call ends."""
    phone = repl.need_phone()
    if phone.call is None:
        raise UsageError("no call to view")
    if repl.options.settings.json:
        raise UsageError("view draws on stdout: not with --json")
    if repl.video.where() == "none":
        raise UsageError("video is off here (--no-window or --video-out none)")
    from omnicli.ui.termsink import TerminalVideo

    if not TerminalVideo.available():
        raise UsageError("view needs a colour terminal on stdin and stdout")
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def any_key(key: str) -> None:  # the picture's thread
        loop.call_soon_threadsafe(done.set)

    picture = TerminalVideo("omni", any_key)
    from prompt_toolkit.application import in_terminal

    async with in_terminal():  # a prompt being typed at steps aside (and comes back after)
        repl.out.hold()  # lines printed now would land in the picture: they wait
        try:
            await asyncio.to_thread(picture.start)
            repl.video.view = picture
            repl.route_video(True)
            while phone.call is not None and not done.is_set():
                picture.set_status(" · ".join(status_lines(repl.status())) + " · any key: prompt")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), 0.5)
        finally:
            repl.video.view = None
            repl.route_video(False)
            await asyncio.to_thread(picture.close)
            repl.out.release()


async def session(repl: Repl, cmd: Command) -> None:
    await repl.new_session(cmd.args[0] if cmd.args else None)


async def help_(repl: Repl, cmd: Command) -> None:
    repl.out.show(Text("\n".join(help_lines(cmd.args[0] if cmd.args else None))))


async def clear(repl: Repl, cmd: Command) -> None:
    repl.clear_screen()


async def quit_(repl: Repl, cmd: Command) -> None:
    repl.request_quit()


ACTIONS: dict[str, Action] = {
    "call": call,
    "answer": answer,
    "reject": reject,
    "hangup": hangup,
    "mute": mute,
    "unmute": mute,
    "devices": devices,
    "device": device,
    "quality": quality,
    "stats": stats,
    "dtmf": dtmf,
    "view": view,
    "record": record,
    "sessions": sessions,
    "session": session,
    "help": help_,
    "clear": clear,
    "quit": quit_,
}


async def run(repl: Repl, cmd: Command) -> Any:
    await ACTIONS[cmd.name](repl, cmd)
