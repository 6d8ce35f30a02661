"""A timeline of one omnicli endpoint's video send control, for `bench_network.py --trace`.

`Trace(link)` wraps the hooks `omnicli.media.sendhooks` put on the link's video sender
(from outside: nothing in omnicli changes when tracing is off) and records, with
`time.monotonic()` times (the same clock in every process of the lab):

- each RTCP packet about our video: receiver reports (fraction lost), REMB, keyframe
  requests (PLI/FIR), NACKs (how many packets named); after it, the controller's target
  and the encoder's target when they moved, and the level (frame rate, size);
- each keyframe the gate lets through, each retransmission sent or turned down;
- on the receiving side, each gap of over 150 ms between two decoded frames (`gap`),
  and every `sample()` (called by the endpoint) the jitter buffer's stalls.

`timeline()` is the list of (time, what, detail) the endpoint reports.
"""

from __future__ import annotations

import time
from typing import Any

GAP_S = 0.15  # a gap between decoded frames this long is on the timeline


class Trace:
    def __init__(self, link: Any) -> None:
        self.link = link
        self.events: list[tuple[float, str, Any]] = []
        self.control = link.send_rate
        self._stalls = 0
        self._last_frame: float | None = None
        video = next((s for s in link.pc.getSenders() if s.track and s.track.kind == "video"), None)
        if video is not None and getattr(video, "omnicli_sendrate", None) is not None:
            self._wrap_sender(video)
        decoded = link.video_in._handle

        def handle(frame: Any) -> None:
            self.frame()
            decoded(frame)

        link.video_in._handle = handle

    def add(self, what: str, detail: Any = None) -> None:
        self.events.append((round(time.monotonic(), 3), what, detail))

    def _wrap_sender(self, sender: Any) -> None:
        from omnicli.media.sendhooks import feedback

        control = self.control
        handle = sender._handle_rtcp_packet
        state = {"target": control.target_bps, "encoder": None, "level": control.level}

        async def traced(packet: Any) -> None:
            for kind, value in feedback(packet, sender._ssrc):
                if kind == "report":
                    self.add("report", round(value, 3))
                elif kind == "remb":
                    self.add("remb", value[0] // 1000)
                else:
                    self.add(kind, value)
            await handle(packet)
            if control.target_bps != state["target"]:
                state["target"] = control.target_bps
                self.add("target", control.target_bps // 1000)
            encoder = sender._RTCRtpSender__encoder
            bitrate = getattr(encoder, "target_bitrate", None)
            if bitrate is not None and bitrate != state["encoder"]:
                state["encoder"] = bitrate
                self.add("encoder", bitrate // 1000)
            if control.level != state["level"]:
                state["level"] = control.level
                level = control.level
                self.add("level", f"1/{level.keep_every} fps, 1/{level.scale} size")

        sender._handle_rtcp_packet = traced
        gate = getattr(sender._send_keyframe, "__self__", None)
        if gate is not None and hasattr(gate, "_send"):
            send = gate._send

            def keyframe() -> None:
                self.add("keyframe")
                send()

            gate._send = keyframe
        retransmit = sender._retransmit
        budget = getattr(sender, "omnicli_rtx_budget", None)

        async def traced_retransmit(sequence_number: int) -> None:
            sent = budget.sent if budget is not None else 0
            await retransmit(sequence_number)
            if budget is not None:
                self.add("rtx" if budget.sent > sent else "rtx_no", sequence_number)

        sender._retransmit = traced_retransmit

    def frame(self) -> None:
        """A decoded frame arrived (the receiving side)."""
        now = time.monotonic()
        if self._last_frame is not None and now - self._last_frame >= GAP_S:
            self.add("gap", round(1000 * (now - self._last_frame)))
        self._last_frame = now

    def sample(self) -> None:
        """The receiver's jitter-buffer stalls since the last sample."""
        for receiver in self.link.pc.getReceivers():
            hook = getattr(receiver, "omnicli_recovery", None)
            if receiver.track is None or receiver.track.kind != "video" or hook is None:
                continue
            stalls = getattr(hook, "stalls", 0)
            if stalls > self._stalls:
                self.add("stall", stalls - self._stalls)
            self._stalls = stalls

    async def run(self, every: float = 0.1) -> None:
        """`sample()` every `every` s until cancelled."""
        import asyncio

        while True:
            self.sample()
            await asyncio.sleep(every)

    def timeline(self) -> list[tuple[float, str, Any]]:
        return self.events
