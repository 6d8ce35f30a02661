"""One call's media: its PeerLink, local sources, speaker, recorder and sinks.

`CallMedia` opens the local sources and the speaker, routes remote media to whoever
wants it (the phone's sinks, the speaker, the recorder), taps local frames for the
preview and the recording, carries on with a synthetic source when a device is lost,
and starts and stops the recording. `omnicli.phone.core.Phone` owns one per call and keeps
the signaling; it reaches the phone only through the small `MediaHost` interface (the
options, the sinks, emitting events and running tasks). This module never prints and
imports aiortc only when a call opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from omnicli.phone import events as ev
from omnicli.wire.protocol import CallType, Track

if TYPE_CHECKING:
    from omnicli.media.peer import PeerLink

log = logging.getLogger("omnicli.phone.callmedia")

PREVIEW_FPS = 15


def offers_media(sdp: str) -> bool:
    """Whether an SDP has a media section (an `m=` line): one without has nothing to connect."""
    return any(line.startswith("m=") for line in sdp.splitlines())


class MediaSettings(Protocol):
    """The media options a call reads (the phone's `MediaOptions`)."""

    @property
    def video_source(self) -> str: ...
    @property
    def audio_source(self) -> str: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def fps(self) -> int: ...
    @property
    def speaker(self) -> str: ...
    @property
    def require_devices(self) -> bool: ...
    @property
    def ice_relay_only(self) -> bool: ...
    @property
    def max_bitrate(self) -> int: ...


class MediaHost(Protocol):
    """What a call's media needs from its phone."""

    @property
    def media_options(self) -> MediaSettings: ...  # read afresh: a switch changes them
    @property
    def ice_servers(self) -> list[dict[str, Any]]: ...
    @property
    def video_sink(self) -> Callable[[Any], None] | None: ...  # remote video, BGR
    @property
    def preview_sink(self) -> Callable[[Any], None] | None: ...  # local video, BGR

    def emit(self, event: ev.CallEvent) -> None: ...
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None: ...


class CallMedia:
    """The media of one call; `open()` makes one with its sources open."""

    def __init__(self, host: MediaHost) -> None:
        self.host = host
        self.current = True  # the phone's current call; `retire()` when it ends
        self._preview_at = 0.0
        self._link: PeerLink = None  # type: ignore[assignment]  # set by open()
        self.speaker: Any = None  # audio_io.SpeakerSink
        self.recorder: Any = None  # recorder.CallRecorder
        self.sources: dict[str, Any] = {}  # kind -> the local track it sends
        self.muted: set[Track] = set()  # the call's muted tracks (the call state's own set)
        self.closed = False

    @classmethod
    async def open(cls, host: MediaHost, call_type: str) -> tuple[CallMedia, list[str]]:
        """A call's media with its sources open, and notes on devices that fell back."""
        from omnicli.media.peer import PeerLink  # heavy: aiortc, av, cv2

        media = cls(host)
        kinds = ["audio"] + (["video"] if call_type == CallType.VIDEO.value else [])
        tracks: dict[str, Any] = {}
        notes: list[str] = []
        loop = asyncio.get_running_loop()
        try:
            for kind in kinds:  # a camera or microphone may take a while to open
                tracks[kind], note = await _off_loop(
                    media._open_local, kind, media._spec(kind), loop=loop
                )
                if note:
                    notes.append(note)
        except BaseException:
            for track in tracks.values():
                if track is not None:
                    track.stop()
            raise
        media.link = PeerLink(
            host.ice_servers,
            video=tracks.get("video"),
            audio=tracks.get("audio"),
            relay_only=host.media_options.ice_relay_only,
        )
        for kind, out in (("video", media.link.video_out), ("audio", media.link.audio_out)):
            if out.source is not None:
                media.sources[kind] = out.source
        return media, notes

    @property
    def link(self) -> PeerLink:
        """The call's peer connection; a new one (a media restart) gets the bitrate cap too."""
        return self._link

    @link.setter
    def link(self, link: PeerLink) -> None:
        self._link = link
        link.set_max_bitrate(self.host.media_options.max_bitrate or None)

    @property
    def active(self) -> bool:
        """This is the media of the phone's current call."""
        return self.current and not self.closed

    def retire(self) -> None:
        """The call is over: from now on late sources and devices are let go."""
        self.current = False

    def _spec(self, kind: str) -> str:
        m = self.host.media_options
        return m.video_source if kind == "video" else m.audio_source

    def _open_local(
        self, kind: str, spec: str, *, loop: asyncio.AbstractEventLoop, strict: bool = False
    ) -> tuple[Any, str | None]:
        """A tapped local source for `spec` (falling back unless strict) and a note if it did.

        Any thread. A device lost later names the tapped track, so that a late report
        from a source the call no longer uses is ignored.
        """
        from omnicli.media.handoff import TapTrack
        from omnicli.media.sourcespec import open_source, open_with_fallback

        m = self.host.media_options
        opened_track: list[Any] = []

        def lost(reason: str) -> None:  # any thread
            loop.call_soon_threadsafe(
                lambda: self.device_lost(kind, reason, opened_track[0] if opened_track else None)
            )

        if strict:
            track = open_source(kind, spec, width=m.width, height=m.height, fps=m.fps, on_lost=lost)
            note = None
        else:
            opened = open_with_fallback(
                kind,
                spec,
                width=m.width,
                height=m.height,
                fps=m.fps,
                require=m.require_devices,
                on_lost=lost,
            )
            track, note = opened.track, opened.fallback
        if track is None:
            return None, note
        tapped = TapTrack(track, lambda frame: self._local_frame(kind, frame))
        opened_track.append(tapped)
        return tapped, note

    async def open_source(self, kind: str, spec: str) -> Any:
        """A new local source for `spec` (strict), opened in a thread; not yet sent."""
        source, _ = await _off_loop(
            self._open_local, kind, spec, loop=asyncio.get_running_loop(), strict=True
        )
        return source

    async def reopen_source(self, kind: str) -> Any:
        """The call's `kind` source opened afresh from the options (a new size or frame
        rate), falling back as at the start of a call; not yet sent."""
        loop = asyncio.get_running_loop()
        source, note = await _off_loop(self._open_local, kind, self._spec(kind), loop=loop)
        if note:
            self.host.emit(ev.Notice(note))
        return source

    def use_source(self, kind: str, source: Any) -> None:
        """Send `source` as this call's `kind` from now on, without renegotiating.

        If the call ended meanwhile (the source opened in a thread), `source` is stopped.
        """
        if not self.active:
            if source is not None:
                source.stop()
            return
        self.sources[kind] = source
        out = self.link.video_out if kind == "video" else self.link.audio_out
        out.set_source(source)

    async def open_speaker(self, *, strict: bool = False) -> tuple[Any, str | None]:
        """The speaker sink the config names (None for ``none``) and a note if it fell back."""
        spec = self.host.media_options.speaker.strip()
        if spec in ("none", ""):
            return None, None
        from omnicli.errors import DeviceMissing
        from omnicli.media.audio_io import SpeakerSink

        loop = asyncio.get_running_loop()
        opened: list[Any] = []

        def lost(reason: str) -> None:  # a PortAudio thread
            loop.call_soon_threadsafe(
                lambda: self.device_lost("speaker", reason, opened[0] if opened else None)
            )

        try:
            device = None if spec in ("auto", "default") else spec
            sink = await asyncio.to_thread(SpeakerSink, device, on_lost=lost)
        except DeviceMissing as exc:
            if strict or self.host.media_options.require_devices:
                raise
            if spec == "auto":  # no speaker was asked for: say it short
                log.info("%s; remote audio is not played", exc)
                return None, "no speaker: sound not played"
            return None, f"{exc}; remote audio is not played"
        opened.append(sink)
        return sink, None

    async def attach(self, notes: list[str]) -> None:
        """Open the speaker, route remote media, and say in one line what fell back."""
        self.speaker, note = await self.open_speaker()
        if note:
            notes = [*notes, note]
        self.route()
        if notes:
            self.host.emit(ev.Notice(" · ".join(notes)))

    async def switch_speaker(self) -> str | None:
        """Play remote audio on the speaker the config names now; a note if it fell back."""
        old, self.speaker = self.speaker, None
        if old is not None:
            await asyncio.to_thread(old.close)
        speaker, note = await self.open_speaker(strict=True)
        if not self.active:  # the call ended while the device opened
            if speaker is not None:
                await asyncio.to_thread(speaker.close)
            return None
        self.speaker = speaker
        self.route()
        return note

    def route(self) -> None:
        """Point the remote probes at whoever wants their media (nobody: no conversion)."""
        video_in, audio_in = self.link.video_in, self.link.audio_in
        wants_video = self.host.video_sink is not None or self.recorder is not None
        video_in.on_frame = self._remote_video if wants_video else None
        wants_audio = self.speaker is not None or self.recorder is not None
        audio_in.on_audio = self._remote_audio if wants_audio else None

    def _remote_video(self, bgr: Any) -> None:
        sink = self.host.video_sink
        if sink is not None:
            sink(bgr)
        if self.recorder is not None:
            self.recorder.add_video(bgr)

    def _remote_audio(self, frame: Any) -> None:
        if self.speaker is not None:
            self.speaker.feed(frame)
        if self.recorder is not None:
            self.recorder.add_audio("remote", frame)

    def _local_frame(self, kind: str, frame: Any) -> None:
        """Every frame of a local source, before it is sent (or dropped while muted)."""
        current = self.active
        if kind == "audio":
            if current and self.recorder is not None and Track.AUDIO not in self.muted:
                self.recorder.add_audio("local", frame)
            return
        preview = self.host.preview_sink
        if preview is None:
            return
        now = time.monotonic()
        if now - self._preview_at >= 1 / PREVIEW_FPS:
            self._preview_at = now
            muted = current and Track.VIDEO in self.muted
            preview(None if muted else frame.to_ndarray(format="bgr24"))

    def device_lost(self, kind: str, reason: str, device: Any) -> None:
        """A device of this call stopped: say so and carry on with the synthetic source.

        `device` is the speaker sink or tapped source that reported; a report from one the
        call does not use (a previous call's, a replaced one) is ignored.
        """
        from omnicli.media.sourcespec import SYNTHETIC, fallback_text

        host = self.host
        if kind == "speaker":
            if not self.active or device is None or self.speaker is not device:
                log.debug("ignored a lost speaker the call does not use: %s", reason)
                return
            self.speaker = None
            self.route()
            host.spawn(asyncio.to_thread(device.close))
            host.emit(ev.Notice(f"{reason}; remote audio is not played"))
            return
        if not self.active or device is None or self.sources.get(kind) is not device:
            log.debug("ignored a lost %s source the call does not use: %s", kind, reason)
            return
        host.emit(ev.Notice(f"{reason}; {fallback_text(kind)}"))
        if not self.link.sends(kind):
            return
        track, _ = self._open_local(
            kind, SYNTHETIC[kind], loop=asyncio.get_running_loop(), strict=True
        )
        self.use_source(kind, track)

    async def start_recording(
        self, target: str, *, video: bool, me: str, call_id: str = ""
    ) -> bool:
        """Record to `target` (remote video, both parties' audio); False if another
        start won the race (its recorder runs)."""
        from omnicli.errors import UsageError
        from omnicli.media.recorder import CallRecorder

        m = self.host.media_options
        probe = self.link.video_in
        size = (probe.width or m.width, probe.height or m.height)
        recorder = await asyncio.to_thread(  # opens the file and the encoder: blocking
            CallRecorder, target, video=video, size=size
        )
        if not self.active or self.recorder is not None:  # ended, or raced: drop it
            await asyncio.to_thread(recorder.stop)
            if self.recorder is not None:
                return False
            raise UsageError("not in a call")
        self.recorder = recorder
        self.route()
        self.host.emit(ev.Recording(me, True, call_id))
        self.host.emit(ev.Notice(f"recording to {target}"))
        return True

    async def stop_recording(self, me: str, call_id: str = "") -> str:
        """Finish the recording file; its path."""
        recorder, self.recorder = self.recorder, None
        self.route()
        recorder.finish()
        done = await asyncio.to_thread(recorder.stop)
        self.host.emit(ev.Recording(me, False, call_id))
        self.host.emit(ev.Notice(f"recording saved: {done.path} ({done.duration_s:.1f} s)"))
        return str(done.path)

    async def close(self) -> None:
        """Close the speaker and any unfinished recording, then the link."""
        self.closed = True
        try:
            if self.speaker is not None:
                speaker, self.speaker = self.speaker, None
                await asyncio.to_thread(speaker.close)
            if self.recorder is not None:  # not finished cleanly: still close the file
                recorder, self.recorder = self.recorder, None
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(recorder.stop)
        finally:
            await self.link.close()


async def _off_loop(
    opener: Callable[..., tuple[Any, Any]], *args: Any, **kwargs: Any
) -> tuple[Any, Any]:
    """`opener(...)` in a thread; if cancelled meanwhile, the track it opens is stopped."""
    job = asyncio.ensure_future(asyncio.to_thread(opener, *args, **kwargs))
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:

        def stop_it(done: asyncio.Future[tuple[Any, Any]]) -> None:
            if not done.cancelled() and done.exception() is None and done.result()[0]:
                done.result()[0].stop()

        job.add_done_callback(stop_it)
        raise


__all__ = ["PREVIEW_FPS", "CallMedia"]
