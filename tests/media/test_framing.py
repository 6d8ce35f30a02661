"""Video frames leave the receiver on their last packet (framing.py, recovery.VideoRecovery)."""

from __future__ import annotations

from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtpPacket

from omnicli.media import recovery
from omnicli.media.framing import Complete, begins_frame, complete_frame


def packet(seq: int, ts: int, marker: bool = False, payload: bytes = b"\x10p") -> RtpPacket:
    p = RtpPacket(payload_type=96, sequence_number=seq, timestamp=ts, marker=int(marker))
    p.payload = payload
    p._data = bytes([seq % 256])
    return p


class Sink:
    def __init__(self) -> None:
        self.frames: list[JitterFrame] = []

    def __call__(self, payload_type: int, frame: JitterFrame) -> None:
        self.frames.append(frame)


def vp8_buffer(sink: Sink) -> recovery.VideoRecovery:
    return recovery.VideoRecovery(sink, lambda pt: "video/VP8" if pt == 96 else None)


def test_complete_frame_on_marker_only_when_the_start_is_known():
    """A marker completes the run from a known first packet; else the next frame must begin."""
    assert complete_frame([(0, False), (0, True)], start_known=True) == Complete(2, True)
    assert complete_frame([(0, False), (0, True)], start_known=False) is None
    assert complete_frame([(0, False), (0, True), (90, False)], False) == Complete(2, False)
    assert complete_frame([(0, False), (0, False)], start_known=True) is None
    assert complete_frame([], start_known=True) is None


def test_begins_frame_reads_vp8_and_h264_payload_headers():
    """VP8 S bit with partition 0, H.264 single NAL, STAP-A, FU-A start: a first packet."""
    assert begins_frame("video/VP8", b"\x90\x80\x01")  # X + S, PID 0
    assert not begins_frame("video/VP8", b"\x80\x80\x01")  # S clear: a continuation
    assert not begins_frame("video/VP8", b"\x11")  # S set but partition 1
    assert begins_frame("video/H264", bytes([0x65]))  # IDR slice, single NAL unit
    assert begins_frame("video/H264", bytes([24, 0]))  # STAP-A
    assert begins_frame("video/H264", bytes([28, 0x85]))  # FU-A, start bit
    assert not begins_frame("video/H264", bytes([28, 0x05]))  # FU-A, middle
    assert not begins_frame("video/opus", b"\x10") and not begins_frame("video/VP8", b"")


def test_a_frame_whose_marker_arrived_is_released_without_any_later_packet():
    """Three packets, the last with the marker: the frame is out at once, no next frame needed."""
    sink = Sink()
    buf = vp8_buffer(sink)
    buf.add(packet(10, 0))
    buf.add(packet(11, 0, payload=b"\x00p"))
    assert sink.frames == []
    buf.add(packet(12, 0, marker=True, payload=b"\x00p"))
    assert [f.data for f in sink.frames] == [bytes([10, 11, 12])]
    assert buf.on_marker == 1 and buf.on_next == 0
    # the next frame follows the released one: its start is known without a payload check
    buf.add(packet(13, 3000, payload=b"\x00p"))
    buf.add(packet(14, 3000, marker=True, payload=b"\x00p"))
    assert [f.data for f in sink.frames][1:] == [bytes([13, 14])]


def test_a_frame_missing_a_packet_waits_for_it_then_leaves_with_the_frames_behind_it():
    """A gap holds the frame (no partial frame reaches the decoder); the retransmission
    releases it and every complete frame behind it, in order."""
    sink = Sink()
    buf = vp8_buffer(sink)
    buf.add(packet(0, 0, marker=True))
    buf.add(packet(1, 3000))
    buf.add(packet(3, 3000, marker=True, payload=b"\x00p"))  # seq 2 lost
    buf.add(packet(4, 6000, marker=True))
    buf.add(packet(5, 9000, marker=True))
    assert [f.timestamp for f in sink.frames] == [0]
    buf.add(packet(2, 3000, payload=b"\x00p"))  # the retransmission
    assert [f.timestamp for f in sink.frames] == [0, 3000, 6000, 9000]
    assert sink.frames[1].data == bytes([1, 2, 3])


def test_without_a_marker_the_next_frame_still_releases_a_frame():
    """A sender that sets no marker gets aiortc's rule: the next frame's first packet."""
    sink = Sink()
    buf = vp8_buffer(sink)
    buf.add(packet(0, 0))
    buf.add(packet(1, 0, payload=b"\x00p"))
    assert sink.frames == []
    buf.add(packet(2, 3000))
    assert [f.data for f in sink.frames] == [bytes([0, 1])]
    assert buf.on_next == 1


def test_a_marker_after_a_mid_frame_start_is_not_trusted():
    """The first packet seen is not a frame start (VP8 S bit clear): wait for the next frame."""
    sink = Sink()
    buf = vp8_buffer(sink)
    buf.add(packet(7, 0, payload=b"\x00p"))
    buf.add(packet(8, 0, marker=True, payload=b"\x00p"))
    assert sink.frames == []
    buf.add(packet(9, 3000, marker=True))
    assert [f.timestamp for f in sink.frames] == [0, 3000]


async def test_hooks_install_on_the_pinned_aiortc():
    """Every aiortc private the hooks use exists in the installed (pinned) aiortc."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        for kind, hook in (("audio", recovery.AudioRecovery), ("video", recovery.VideoRecovery)):
            receiver = pc.addTransceiver(kind).receiver
            assert recovery.missing_privates(receiver) == []
            assert recovery.install(receiver)
            assert isinstance(receiver.omnicli_recovery, hook)
    finally:
        await pc.close()


async def test_hooks_stay_out_when_a_private_is_missing(caplog):
    """Another aiortc without one of the privates: nothing installed, a warning names it."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        receiver = pc.addTransceiver("audio").receiver
        del receiver._RTCRtpReceiver__timestamp_mapper
        assert recovery.missing_privates(receiver) == ["RTCRtpReceiver.__timestamp_mapper"]
        assert not recovery.install(receiver)
        assert "__timestamp_mapper" in caplog.text
    finally:
        await pc.close()
