"""`PeerLink`: the one wrapper around aiortc's RTCPeerConnection that call-core uses.

Negotiation is one offer and one answer, no trickle ICE: aiortc gathers every candidate
inside setLocalDescription, so the SDP returned already carries them.

m-lines: the offerer always offers audio, plus video for a "videocall". A kind is
sendrecv when its local `SwitchableTrack` (`audio_out` / `video_out`) has a source at
negotiation time and recvonly otherwise, so the peer can still send it to us. Both
`*_out` tracks always exist; giving a recvonly track a source later does not put it
on the wire (that would need a renegotiation). Remote tracks feed `video_in` and
`audio_in`, which always exist (empty until a track arrives).
"""

from __future__ import annotations

import cv2  # noqa: F401  (must precede av and aiortc: see "Known traps" in docs/architecture.md)

# isort: split
import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)

from omnicli.errors import MediaFailed
from omnicli.media import recovery, sendguards, sendhooks, sendrate, x264
from omnicli.media.bitcap import BitrateCap
from omnicli.media.probes import AudioProbe, VideoProbe
from omnicli.media.quality import Counters, QualityMeter, QualitySample
from omnicli.media.tracks import SwitchableTrack

logger = logging.getLogger(__name__)

CALL_TYPES = ("videocall", "audiocall", "sipcall")  # sipcall: audio only
RTP_CLOCK = {"audio": 48_000, "video": 90_000}


def ensure_host_candidates() -> bool:
    """Let aioice use 127.0.0.1 when the machine has no other address; True if patched.

    aioice leaves 127.0.0.1 out of its host candidates, so on a machine with only the
    loopback interface no candidate pair exists. Only in that case its module-level
    `get_host_addresses` is wrapped to fall back to 127.0.0.1.
    """
    from aioice import ice

    if getattr(ice.get_host_addresses, "omnicli_loopback", False):
        return True
    if ice.get_host_addresses(use_ipv4=True, use_ipv6=False):
        return False
    original = ice.get_host_addresses

    def with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        addresses = original(use_ipv4, use_ipv6)
        return addresses or (["127.0.0.1"] if use_ipv4 else [])

    with_loopback.omnicli_loopback = True  # type: ignore[attr-defined]
    ice.get_host_addresses = with_loopback
    logger.info("no non-loopback address: ICE will use 127.0.0.1")
    return True


def ice_configuration(
    ice_servers: list[dict[str, Any]], *, relay_only: bool = False
) -> RTCConfiguration:
    """An explicit configuration: an empty list means no STUN (aiortc's default is public).

    `relay_only` gathers TURN relay candidates only (media always goes through TURN).
    """
    servers = []
    for entry in ice_servers:
        urls = entry.get("urls") or entry.get("url")
        if not urls:
            raise ValueError(f"ICE server entry without urls: {entry!r}")
        servers.append(
            RTCIceServer(
                urls=urls, username=entry.get("username"), credential=entry.get("credential")
            )
        )
    if relay_only:
        return RTCConfiguration(iceServers=servers, iceTransportPolicy=RTCIceTransportPolicy.RELAY)
    return RTCConfiguration(iceServers=servers)


class PeerLink:
    """One call's media: local tracks out, probes on the remote tracks, quality figures."""

    def __init__(
        self,
        ice_servers: list[dict[str, Any]],
        *,
        video: MediaStreamTrack | None,
        audio: MediaStreamTrack | None,
        on_state: Callable[[str], None] | None = None,
        relay_only: bool = False,
    ) -> None:
        ensure_host_candidates()
        x264.install()  # H.264 at x264's superfast preset (see x264.py)
        self.on_state = on_state
        self.video_out = SwitchableTrack("video", video)
        self.audio_out = SwitchableTrack("audio", audio)
        for out in (self.video_out, self.audio_out):
            out.stops_source = False  # close() stops them (see SwitchableTrack.stops_source)
        self.video_in = VideoProbe()
        self.audio_in = AudioProbe()
        self._pc = RTCPeerConnection(ice_configuration(ice_servers, relay_only=relay_only))
        self._state_changed = asyncio.Event()
        self.video_cap = BitrateCap()  # --max-bitrate: installed once connected
        self._closed = False
        self._meter = QualityMeter()
        self._sent_mark: tuple[float, int] | None = None  # (time, video frames sent)
        self.send_rate = sendrate.SendRate(ramp=True)  # the video send target (sendrate.py)
        self._pc.on("connectionstatechange", self._on_connection_state)
        self._pc.on("track", self._on_track)

    @property
    def pc(self) -> RTCPeerConnection:
        return self._pc

    @property
    def state(self) -> str:
        return self._pc.connectionState

    # negotiation ---------------------------------------------------------------------

    async def create_offer(self, call_type: str) -> str:
        """Offerer: the SDP offer (all candidates included) for a video or audio call."""
        if call_type not in CALL_TYPES:
            raise ValueError(f"call_type must be one of {CALL_TYPES}, not {call_type!r}")
        kinds = ("audio", "video") if call_type == "videocall" else ("audio",)
        for kind in kinds:
            out = self._out(kind)
            if out.source is not None:
                self._pc.addTransceiver(out, direction="sendrecv")
            else:
                self._pc.addTransceiver(kind, direction="recvonly")
        await self._pc.setLocalDescription(await self._pc.createOffer())
        self._control_send_rate()
        return self._pc.localDescription.sdp

    async def accept_offer(self, sdp: str) -> str:
        """Answerer: apply the offer, attach local tracks, return the SDP answer."""
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        kinds = {t.kind for t in self._pc.getTransceivers()}
        for kind in ("audio", "video"):
            out = self._out(kind)
            if kind in kinds and out.source is not None:
                self._pc.addTrack(out)  # takes the transceiver the offer created
        await self._pc.setLocalDescription(await self._pc.createAnswer())
        self._control_send_rate()
        return self._pc.localDescription.sdp

    async def accept_answer(self, sdp: str) -> None:
        """Offerer: apply the peer's answer; ICE and DTLS start now."""
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    def sends(self, kind: str) -> bool:
        """True if our `kind` track was negotiated onto the wire (sendrecv or sendonly)."""
        out = self._out(kind)
        return any(t.sender.track is out for t in self._pc.getTransceivers())

    def _control_send_rate(self) -> None:
        """Put the loss-based send-rate control on our video sender (see sendhooks.py)."""
        senders = {t.sender.track: t.sender for t in self._pc.getTransceivers()}
        video, audio = senders.get(self.video_out), senders.get(self.audio_out)
        if video is not None and sendhooks.install(video, self.send_rate, time.monotonic, audio):
            self.video_out.shaper = sendguards.FrameShaper(self.send_rate)

    def _out(self, kind: str) -> SwitchableTrack:
        return self.video_out if kind == "video" else self.audio_out

    # connection state ------------------------------------------------------------------

    def packets_received(self) -> int:
        """Packets (RTP, RTCP, DTLS, STUN) received so far on this link's transport."""
        total, seen = 0, set()
        for transceiver in self._pc.getTransceivers():
            transport = transceiver.receiver.transport
            if transport is None or id(transport) in seen:
                continue
            seen.add(id(transport))
            total += int(getattr(transport, "_RTCDtlsTransport__rx_packets", 0))
        return total

    async def wait_connected(self, timeout: float) -> None:
        """Return once connected; MediaFailed if the connection fails, closes or times out."""
        state = self._pc.connectionState
        try:
            async with asyncio.timeout(timeout):
                while True:
                    state = self._pc.connectionState
                    if state == "connected":
                        return
                    if state in ("failed", "closed"):
                        raise MediaFailed(f"media connection {state}")
                    self._state_changed.clear()
                    await self._state_changed.wait()
        except TimeoutError:
            raise MediaFailed(
                f"media did not connect within {timeout:g} s (state {state})"
            ) from None

    def _on_connection_state(self) -> None:
        state = self._pc.connectionState
        logger.debug("connection state %s", state)
        self._state_changed.set()
        if state == "connected":
            self._cap_video()
        if self.on_state is not None:
            try:
                self.on_state(state)
            except Exception:
                logger.exception("on_state callback failed")

    def set_max_bitrate(self, bps: int | None) -> None:
        """Cap the video send rate at `bps` (None: no cap), mid-call too: the ceiling of the
        send-rate controller (its frame rate and size levels follow) and of the encoder."""
        self.send_rate.set_ceiling(bps, time.monotonic())
        self.video_cap.set(bps)
        if self._pc.connectionState == "connected":
            self._cap_video()

    def _cap_video(self) -> None:
        """Put the cap on our video sender, once (after any other sender hook, so the
        ceiling has the last word: see bitcap.py)."""
        if self.video_cap.installed:
            return
        sender = next(
            (t.sender for t in self._pc.getTransceivers() if t.sender.track is self.video_out), None
        )
        if sender is not None:
            self.video_cap.install(sender)

    def _on_track(self, track: MediaStreamTrack) -> None:
        logger.debug("remote %s track", track.kind)
        receiver = next(
            (t.receiver for t in self._pc.getTransceivers() if t.receiver.track is track), None
        )
        if receiver is not None and recovery.install(receiver):  # see recovery.py
            hook = receiver.omnicli_recovery  # type: ignore[attr-defined]
            if isinstance(hook, recovery.VideoRecovery):
                self.video_in.receive_stats = lambda: hook.stats
        probe = self.video_in if track.kind == "video" else self.audio_in
        probe.start(track)

    # quality ---------------------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        """Current quality figures (rates are over the time since the previous call)."""
        report = await self._pc.getStats()
        inbound: dict[str, dict[str, Any]] = {}
        outbound: dict[str, dict[str, Any]] = {}
        bytes_in = bytes_out = 0
        rtts: list[float] = []
        for entry in report.values():
            kind = str(getattr(entry, "kind", ""))
            if entry.type == "transport":
                bytes_in += entry.bytesReceived
                bytes_out += entry.bytesSent
            elif entry.type == "inbound-rtp":
                inbound[kind] = {
                    "packets": entry.packetsReceived,
                    "lost": entry.packetsLost,
                    "jitter_ms": 1000 * entry.jitter / RTP_CLOCK[kind],
                }
            elif entry.type == "outbound-rtp":
                outbound.setdefault(kind, {}).update(
                    packets=entry.packetsSent, bytes=entry.bytesSent
                )
            elif entry.type == "remote-inbound-rtp":
                rtt = entry.roundTripTime
                outbound.setdefault(kind, {}).update(
                    remote_lost=entry.packetsLost,
                    remote_jitter_ms=1000 * entry.jitter / RTP_CLOCK[kind],
                    rtt_ms=None if rtt is None else 1000 * rtt,
                )
                if rtt is not None:
                    rtts.append(rtt)
        jitter = inbound.get("audio", inbound.get("video", {})).get("jitter_ms")
        sample = self._meter.update(
            Counters(
                at=time.monotonic(),
                bytes_in=bytes_in,
                bytes_out=bytes_out,
                packets_in=sum(d["packets"] for d in inbound.values()),
                packets_lost_in=sum(d["lost"] for d in inbound.values()),
                packets_out=sum(d.get("packets", 0) for d in outbound.values()),
                rtt_s=sum(rtts) / len(rtts) if rtts else None,
                jitter_s=None if jitter is None else jitter / 1000,
                fps_in=self.video_in.fps() if self.video_in.track else None,
                width_in=self.video_in.width,
                height_in=self.video_in.height,
                audio_level=self.audio_in.rms() if self.audio_in.track else None,
            )
        )
        return (
            _figures(sample)
            | {
                "state": self._pc.connectionState,
                "inbound": inbound,
                "outbound": outbound,
                "video_in": self.video_in.snapshot(),
                "audio_in": self.audio_in.snapshot(),
                "muted": {"audio": self.audio_out.muted, "video": self.video_out.muted},
                "video_target_kbps": round(self.send_rate.target_bps / 1000),
            }
            | self._sent_video()
        )

    def _sent_video(self) -> dict[str, Any]:
        """Frame rate (since the previous call) and size of the video we send."""
        now, sent = time.monotonic(), self.video_out.frames_out
        fps = None
        if self._sent_mark is not None and now > self._sent_mark[0] and self.sends("video"):
            fps = round((sent - self._sent_mark[1]) / (now - self._sent_mark[0]), 1)
        self._sent_mark = (now, sent)
        width, height = self.video_out.frame_size or (None, None)
        return {"fps_out": fps, "width_out": width, "height_out": height}

    # shutdown --------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop the probes, the connection and the local tracks; idempotent."""
        if self._closed:
            return
        self._closed = True
        await self.video_in.stop()
        await self.audio_in.stop()
        await self._pc.close()
        for out in (self.video_out, self.audio_out):
            source = out.source
            out.stop()
            if source is not None:
                source.stop()


def _figures(sample: QualitySample) -> dict[str, Any]:
    def r(value: float | None, digits: int = 1) -> float | None:
        return None if value is None else round(value, digits)

    return {
        "rtt_ms": r(sample.rtt_ms),
        "jitter_ms": r(sample.jitter_ms),
        "packets_lost": sample.packets_lost,
        "loss_pct": r(sample.loss_pct_total, 2),
        "bitrate_in_kbps": r(sample.bitrate_in_kbps),
        "bitrate_out_kbps": r(sample.bitrate_out_kbps),
        "fps_in": r(sample.fps_in),
        "width_in": sample.width_in,
        "height_in": sample.height_in,
        "audio_level": r(sample.audio_level, 4),
        "sample": sample.as_dict(),
    }
