"""The hooks that put the send-rate control (`sendrate.py`, `sendguards.py`) into aiortc.

`install(sender, control, clock)` puts it into one aiortc `RTCRtpSender`: it wraps the
sender's RTCP handler (after aiortc has applied REMB it overrides the encoder's target
with the controller's), its keyframe requests and its retransmission, and lowers
VP8's bitrate floor so the target can go below 250 kbit/s.

These are aiortc privates (the sender's RTCP handler, its name-mangled encoder and RTP
history, its keyframe and retransmit methods, VP8's floor), touched by this module only
on the send side (see docs/architecture.md, "aiortc privates").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from omnicli.media.sendguards import (
    MAX_RESEND_AGE_S,
    KeyframeGate,
    RetransmitBudget,
    TimedHistory,
)
from omnicli.media.sendrate import MIN_BPS, EncoderTarget, SendRate, audio_bitrate

logger = logging.getLogger(__name__)


def lower_vp8_floor(bps: int = MIN_BPS) -> None:
    """aiortc clamps VP8 targets to 250 kbit/s and up; let them go down to `bps`."""
    from aiortc.codecs import vpx

    vpx.MIN_BITRATE = min(vpx.MIN_BITRATE, bps)


def install(
    sender: Any, control: SendRate, clock: Callable[[], float], audio_sender: Any = None
) -> bool:
    """Let `control` set the video encoder's target of aiortc `sender` (and the Opus bitrate
    of `audio_sender`, if given); False if it cannot."""
    if getattr(sender, "omnicli_sendrate", None) is not None:
        return True
    original = getattr(sender, "_handle_rtcp_packet", None)
    if original is None or not hasattr(sender, "_RTCRtpSender__encoder"):
        logger.warning("this aiortc version has no sender hooks: send-rate control is off")
        return False
    lower_vp8_floor()

    counts = control.counts
    target = EncoderTarget()

    async def handle(packet: Any) -> None:
        await original(packet)
        now = clock()
        before, cuts = control.target_bps, control.cuts
        for kind, value in feedback(packet, sender._ssrc):
            if kind == "nack":
                counts["nacked"] += value
            elif kind == "keyframe_request":
                counts["keyframe_requests"] += 1
            elif kind == "report":
                control.on_report(value, now)
            elif kind == "remb" and value[1]:  # REMB naming this sender
                control.on_remb(value[0], now)
        encoder = sender._RTCRtpSender__encoder
        if encoder is not None and hasattr(encoder, "target_bitrate"):
            was = target.value
            want = control.encoder_bps()
            cut = control.cuts != cuts
            encoder.target_bitrate = target.next(want, now, cut=cut, ramping=control.ramping)
            control.sending(encoder.target_bitrate, now)
            if was is not None and target.value != was:
                counts["retargets"] += 1
        if audio_sender is not None:
            set_opus_bitrate(audio_sender, control.loss_bps)
        if control.target_bps != before:
            logger.debug("video send target %d -> %d bps", before, control.target_bps)

    def start_video() -> None:
        encoder = sender._RTCRtpSender__encoder
        if hasattr(encoder, "target_bitrate"):
            now = clock()
            encoder.target_bitrate = target.next(control.encoder_bps(), now)
            control.sending(encoder.target_bitrate, now)

    start_encoder(sender, start_video)
    if audio_sender is not None:
        start_encoder(audio_sender, lambda: set_opus_bitrate(audio_sender, control.loss_bps))
    sender._handle_rtcp_packet = handle
    sender._send_keyframe = KeyframeGate(control, sender._send_keyframe, clock).request
    budget_retransmissions(sender, RetransmitBudget(control), clock)
    sender.omnicli_sendrate = control
    return True


def feedback(packet: Any, ssrc: int) -> list[tuple[str, Any]]:
    """What an RTCP packet tells the sender of stream `ssrc`: ("report", fraction lost) for
    each receiver report about it, ("nack", packets named), ("keyframe_request", None) for a
    PLI or FIR, ("remb", (bitrate, whether it names `ssrc`)); nothing for the rest."""
    from aiortc.rtp import (
        RTCP_PSFB_APP,
        RTCP_PSFB_FIR,
        RTCP_PSFB_PLI,
        RTCP_RTPFB_NACK,
        RtcpPsfbPacket,
        RtcpRrPacket,
        RtcpRtpfbPacket,
        RtcpSrPacket,
        unpack_remb_fci,
    )

    if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
        return [("report", r.fraction_lost / 256) for r in packet.reports if r.ssrc == ssrc]
    if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
        return [("nack", len(packet.lost))]
    if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
        return [("keyframe_request", None)]
    if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
        try:
            bitrate, ssrcs = unpack_remb_fci(packet.fci)
        except ValueError:  # a malformed REMB tells nothing
            return []
        return [("remb", (bitrate, ssrc in ssrcs))]
    return []


def start_encoder(sender: Any, setup: Callable[[], None]) -> None:
    """Create aiortc `sender`'s encoder for the first frame (as aiortc would) and `setup`
    it before it encodes anything: the call starts at the controller's rate, not at the
    encoder's default (VP8 500 kbit/s, Opus 96 kbit/s) until the first RTCP report."""
    from aiortc.codecs import get_encoder

    original = sender._next_encoded_frame

    async def next_encoded_frame(codec: Any) -> Any:
        if sender._RTCRtpSender__encoder is None:
            sender._RTCRtpSender__encoder = get_encoder(codec)
            setup()
        return await original(codec)

    sender._next_encoded_frame = next_encoded_frame


def set_opus_bitrate(sender: Any, target_bps: int) -> None:
    """Give aiortc's Opus encoder in `sender` the bitrate `audio_bitrate()` picks."""
    encoder = getattr(sender, "_RTCRtpSender__encoder", None)
    codec = getattr(encoder, "codec", None)
    if codec is None or getattr(codec, "name", "") != "libopus":
        return
    want = audio_bitrate(target_bps, codec.bit_rate)
    if want == codec.bit_rate:
        return
    from av import CodecContext

    fresh = CodecContext.create("libopus", "w")
    for name in ("format", "layout", "sample_rate", "time_base"):
        setattr(fresh, name, getattr(codec, name))
    fresh.options = {"application": "voip"}
    fresh.bit_rate = want
    assert encoder is not None
    encoder.codec = fresh
    logger.debug("audio send bitrate %d -> %d bps", codec.bit_rate, want)


def budget_retransmissions(
    sender: Any, budget: RetransmitBudget, clock: Callable[[], float]
) -> None:
    """Resend what a NACK names only while `budget` allows (aiortc `sender`)."""
    from aiortc.rtp import RTP_HISTORY_SIZE

    original = sender._retransmit
    history = TimedHistory(clock, sender._RTCRtpSender__rtp_history)
    sender._RTCRtpSender__rtp_history = history
    counts = budget.control.counts

    async def retransmit(sequence_number: int) -> None:
        key = sequence_number % RTP_HISTORY_SIZE
        packet = history.get(key)
        if packet is None or packet.sequence_number != sequence_number:
            return
        if clock() - history.sent_at.get(key, float("inf")) > MAX_RESEND_AGE_S:
            counts["rtx_stale"] = counts.get("rtx_stale", 0) + 1
            return
        if budget.allow(len(packet.payload) + 40, clock(), sequence_number):  # + RTP, UDP..
            await original(sequence_number)

    sender._retransmit = retransmit
    sender.omnicli_rtx_budget = budget
