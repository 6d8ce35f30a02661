"""What a phone changes during a call: mutes, sources, speaker, video quality,
recording, touch tones, and the live figures.

`CallControls` is the part of `Phone` (`phone.core`) behind `set_mute`,
`set_video_device`, `set_video_quality`, `recording_start`, `send_dtmf`, `stats` and
the like. A change of source or quality is kept in the phone's config for later calls
and applied to the call in progress without renegotiating.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from omnicli.errors import OmniError, UsageError
from omnicli.phone import events as ev
from omnicli.phone.callrun import CallRun
from omnicli.phone.callstate import CallMachine, CallState
from omnicli.phone.config import PhoneConfig, check_quality
from omnicli.phone.figures import CallFigures
from omnicli.phone.signaling import SignalingClient
from omnicli.wire.protocol import DTMF_RE, MAX_DTMF, CallType, Track

if TYPE_CHECKING:
    from omnicli.phone.callmedia import CallMedia


class CallControls:
    """The controls of the call in progress: a part of `Phone`, on its state."""

    config: PhoneConfig
    machine: CallMachine
    signaling: SignalingClient
    _run: CallRun | None

    if TYPE_CHECKING:

        @property
        def media(self) -> CallMedia | None: ...
        def _emit(self, event: ev.CallEvent) -> None: ...

    async def set_mute(self, track: str | Track) -> None:
        await self._set_muted(Track(track), True)

    async def set_unmute(self, track: str | Track) -> None:
        await self._set_muted(Track(track), False)

    async def _set_muted(self, track: Track, muted: bool) -> None:
        call = self.machine.need_call()
        media = self.media
        if media is None or not media.link.sends(track.value):
            raise UsageError(f"this call sends no {track.value}")
        out = media.link.video_out if track is Track.VIDEO else media.link.audio_out
        out.set_muted(muted)
        if call.call_type is CallType.SIP:
            state = "muted" if muted else "unmuted"
            self._emit(ev.Notice(f"{track.value} {state} here only: SIP cannot tell the phone"))
        if self.machine.set_muted(track, muted):
            await self.signaling.request(
                "mute" if muted else "unmute", track=track.value, call_id=call.call_id
            )

    async def set_video_device(self, device_id: str) -> None:
        """Switch the camera (or any video source spec) mid-call, without renegotiating."""
        await self._switch_source(Track.VIDEO, device_id)

    async def set_audio_device(self, device_id: str) -> None:
        """Switch the microphone (or any audio source spec) mid-call."""
        await self._switch_source(Track.AUDIO, device_id)

    async def set_speaker_device(self, device_id: str) -> None:
        """Play remote audio on another output (``none``: not at all), mid-call too."""
        self.config = replace(self.config, media=replace(self.config.media, speaker=device_id))
        media = self.media
        if media is None:
            return
        note = await media.switch_speaker()
        if note:
            self._emit(ev.Notice(note))

    async def _switch_source(self, track: Track, spec: str) -> None:
        """Later calls use `spec` too; a call in progress switches now."""
        m_ = self.config.media
        media = self.media
        if media is not None and not media.link.sends(track.value):
            raise UsageError(f"this call sends no {track.value}")
        source = None if media is None else await media.open_source(track.value, spec)
        key = "video_source" if track is Track.VIDEO else "audio_source"
        self.config = replace(self.config, media=replace(m_, **{key: spec}))  # type: ignore[arg-type]  # key names a str field
        if media is not None:
            media.use_source(track.value, source)  # stops it if the call ended

    def get_device_list(self) -> dict[str, list[dict[str, Any]]]:
        """Audio inputs, audio outputs and video inputs, each with id and name."""
        from omnicli.media.devices import list_devices

        return list_devices()

    async def set_video_quality(
        self,
        *,
        size: tuple[int, int] | None = None,
        fps: int | None = None,
        max_bitrate: int | None = None,
    ) -> None:
        """Change what video is sent (None: keep): capture size, frame rate, and the video
        bitrate ceiling in bit/s (0: no ceiling); now and for later calls, mid-call without
        renegotiating. A new size or frame rate reopens the video source with them (through
        the source switch); the ceiling applies to the encoder at once."""
        check_quality(size, fps, max_bitrate)
        m_ = self.config.media
        width, height = size or (m_.width, m_.height)
        rate = m_.fps if fps is None else fps
        cap = m_.max_bitrate if max_bitrate is None else max_bitrate
        new = replace(m_, width=width, height=height, fps=rate, max_bitrate=cap)
        self.config = replace(self.config, media=new)
        media = self.media
        if media is None:
            return
        if max_bitrate is not None:
            media.link.set_max_bitrate(max_bitrate or None)
        reshaped = (width, height, rate) != (m_.width, m_.height, m_.fps)
        if reshaped and media.link.sends("video"):
            media.use_source("video", await media.reopen_source("video"))

    async def recording_start(self, path: str | None = None) -> str:
        """Record the call here (remote video, both parties' audio) and tell the peer.

        Returns the file's path: `path`, else the configured `record_file`, else
        ``omni-ME-PEER-TIME.mp4``. Needs a connected call.
        """
        from omnicli.media.recorder import default_path

        call = self.machine.need_call()
        media = self.media
        if call.state is not CallState.CONNECTED or media is None:
            raise UsageError("recording starts once the call is connected")
        if media.recorder is not None:
            return str(media.recorder.path)
        me = self.machine.me or "me"
        target = path or self.config.media.record_file or default_path(me, call.peer)
        video = call.call_type is CallType.VIDEO
        if not await media.start_recording(target, video=video, me=me, call_id=call.call_id or ""):
            # raced with another start: that one records
            return str(media.recorder.path) if media.recorder is not None else target
        with contextlib.suppress(OmniError):
            await self.signaling.request("recording", on=True)
        return target

    async def recording_stop(self) -> str | None:
        """Finish the recording file and tell the peer; its path (None if none ran)."""
        run = self._run
        if run is None or self.media is None or run.media.recorder is None:
            return None
        path = await self._stop_recording(run)
        with contextlib.suppress(OmniError):
            await self.signaling.request("recording", on=False)
        return path

    async def _stop_recording(self, run: CallRun) -> str:
        return await run.media.stop_recording(self.machine.me or "me", run.call.call_id or "")

    async def _auto_record(self) -> None:
        try:
            await self.recording_start()
        except OmniError as exc:
            self._emit(ev.Notice(f"cannot record: {exc}"))

    async def send_dtmf(self, digits: str) -> None:
        """Touch tones (0-9 * # A-D) to the SIP phone of this answered sipcall."""
        call = self.machine.need_call()
        if call.call_type is not CallType.SIP:
            raise UsageError("touch tones go to SIP calls only (call sip:...)")
        if not DTMF_RE.fullmatch(digits) or len(digits) > MAX_DTMF:
            raise UsageError(f"touch tones are 1 to {MAX_DTMF} of 0-9 * # A-D, not '{digits[:40]}'")
        if call.state not in (CallState.CONNECTING, CallState.CONNECTED):
            raise UsageError("the call is not answered yet")
        await self.signaling.request("dtmf", digits=digits, call_id=call.call_id)

    async def stats(self) -> CallFigures | None:
        """The current call's figures now (None unless connected)."""
        run = self._run
        if run is None or run.call.connected_at is None or self.media is None:
            return None
        return await run.figures()
