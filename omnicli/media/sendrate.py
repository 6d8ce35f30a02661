"""How fast we send video: a loss-based rate control on top of aiortc's REMB handling.

What aiortc does by itself (1.x): the video receiver runs a delay-based estimator
(`aiortc.rate.RemoteBitrateEstimator`, Google Congestion Control's receive side on the
abs-send-time extension) and sends REMB; the sender sets the VP8/H.264 encoder's
target bitrate to it, clamped to 250 kbit/s - 1.5 Mbit/s (VP8). That follows a link
that *queues* (delay grows), but a link that *drops* what exceeds its rate (a policer,
a token bucket, a full modem buffer) adds no delay: the estimate stays high, video
keeps sending above the cap and the drops hit the audio as much as the video. The
250 kbit/s floor alone is already most of a 300 kbit/s link, with Opus at 96 kbit/s.

`SendRate` is the sender-side loss controller that GCC pairs with the delay-based one,
pure (reports and times in, a target out):

- every RTCP receiver report about our video or audio carries the fraction lost since
  the previous one; the worst of the two drives the rate;
- loss above 10 % (in the report and smoothed over reports, so one unlucky report of
  random loss does not count): the target drops at once to what got through
  (rate * (1 - loss)) times 0.85, then holds for one report interval (the next report
  still counts packets sent before the cut);
- loss below 2 %: the target grows by 10 % per report, at most once a second, and by
  25 % after three clean reports in a row (a lifted cap is found again in seconds, a
  cap still there costs one cut); but only 3 % within 10 % of what got through at the
  last cut (GCC's additive increase near the known maximum), so a steady cap is
  approached, not overshot again and again;
- REMB is a ceiling, never a floor, but alone it goes no lower than aiortc's 250 kbit/s
  (a busy receiver's delay spikes are not a thin link);
- the user's `--max-bitrate` (`set_ceiling`) is the ceiling of the target and of the
  rate the level is picked from, so the frame rate and size follow a low ceiling as they
  follow a thin link; the loss controller's own estimate of the link (`loss_bps`) goes
  on under it (a cut counts from what was sent), so a lifted ceiling gives back the rate
  the link was known to carry, and Opus follows the link, not the ceiling;
- the loss controller's rate picks a level: full size and frame rate above 350 kbit/s; half the
  frame rate below it; half the width and height too below 200 kbit/s (and back up
  only 35 % above those). Lower bitrate first, then frame rate, then resolution. Those
  thresholds are for 640x480 at 30 fps (where VP8 at aiortc's coarsest quantizer needs
  about 280 kbit/s); for other sources they scale with the pixel rate to the power
  0.75 (`FrameShaper` measures it): 320x240 at 15 fps halves below 74 kbit/s.

The encoder gets the target in steps (`encoder_step`) and with hysteresis (`EncoderTarget`:
aiortc rebuilds its VP8 encoder, a keyframe, on every change over 10 %, so it follows a
loss cut at once and anything else only once it has held for seconds) and Opus follows
the link (`audio_bitrate`). What guards the sender's packets is `sendguards.py`; the hooks that
put all this into aiortc's `RTCRtpSender` are `sendhooks.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

# A call starts here, not at aiortc's 500 kbit/s (VP8) and 96 kbit/s (Opus), which a thin
# link drops for its first seconds; browsers start near 300 kbit/s too. While the call
# ramps up (`SendRate(ramp=True)`), the target grows by START_GROWTH a clean report, the
# frame rate and size stay full, and REMB neither stops the growth nor pulls the target
# down: aiortc's receiver starts its estimate below what it gets (measured: 413 kbit/s
# while 675 went through cleanly; its first REMB 3.5-4 s into the call) and climbs 8 % a
# second. The ramp ends at the first report with any loss (with 2 % or more right after a
# step up: back to the step before, at once) or the first REMB below RAMP_REMB_DROP of its
# highest (the receiver saw delay grow: a link that queues, or a busy receiver); from then
# on REMB is the ceiling.
#
# The ramp grows from what the encoder *sent* (`sending`), not from its own target: a
# clean report says the link carried the encoder's rate, not a target the encoder has not
# reached yet (it follows a ramp every RAMP_GAP_S). Growing the target x1.5 a report while
# the encoder still sent 270k took it to 675k on reports that had only tested 270k; the
# encoder then jumped to 630k on a 300 kbit/s link, half of it was dropped, and the picture
# froze for 0.5-1.2 s four to five seconds into the call (bench_network.py --trace, cap300).
# Bounded, the encoder climbs one step (270k, 350k, 470k...) per tested step, every 2 s.
START_BPS = 300_000
START_GROWTH = 1.5
RAMP_REMB_DROP = 0.85
MIN_BPS = 60_000
MAX_BPS = 1_500_000
HIGH_LOSS = 0.10
LOW_LOSS = 0.02
CUT_MARGIN = 0.85
LOSS_SMOOTHING = 0.5  # a cut needs the smoothed loss above HIGH_LOSS too, not one bad report
GROWTH = 1.10
FAST_GROWTH = 1.25  # after CLEAN_STREAK clean reports in a row: the link is not the limit
CLEAN_STREAK = 3
# Within 0.9-1.1 times what got through at the last cut the target grows 3 % a report,
# not 10-25 %: a policer then drops a few % (inside the hold band, recovered by NACK)
# instead of the 10 %+ that cut the rate again and froze the picture every few seconds.
NEAR_MAX = (0.9, 1.1)
NEAR_GROWTH = 1.03
HALF_FPS_BELOW = 350_000
HALF_SIZE_BELOW = 200_000
REMB_FLOOR_BPS = 250_000  # aiortc's VP8 floor: REMB alone goes no lower


@dataclass(frozen=True)
class Level:
    """What the video sender does at a target: every `keep_every`-th frame, at `scale`."""

    keep_every: int = 1
    scale: int = 1  # 2: half the width and height


FULL = Level()


UP_MARGIN = 1.35  # a level comes back only when the target is this far above its threshold


REF_PIXEL_RATE = 640 * 480 * 30  # the source the thresholds are for (pixels/s)


def threshold_scale(pixel_rate: float) -> float:
    """How the level thresholds scale for a source of `pixel_rate` pixels/s."""
    return float((max(pixel_rate, 1.0) / REF_PIXEL_RATE) ** 0.75)


def level_for(target_bps: int, current: Level = FULL, pixel_rate: float = REF_PIXEL_RATE) -> Level:
    """The level for a target; coming back up needs UP_MARGIN above the threshold, so a
    target probing around a threshold does not switch sizes (a keyframe each time)."""
    half_size = Level(keep_every=2, scale=2)
    half_fps = Level(keep_every=2)
    scale = threshold_scale(pixel_rate)
    size_below, fps_below = HALF_SIZE_BELOW * scale, HALF_FPS_BELOW * scale
    if target_bps < size_below:
        return half_size
    if current == half_size and target_bps < size_below * UP_MARGIN:
        return half_size
    if target_bps < fps_below:
        return half_fps
    if current != FULL and target_bps < fps_below * UP_MARGIN:
        return half_fps
    return FULL


class SendRate:
    """The video send target from receiver reports and REMB; pure.

    Two estimates: `loss_bps`, the loss controller's (what the link carries), and
    `remb_bps`, the peer's delay-based estimate. The encoder gets the lower of the two,
    but REMB alone never takes it below aiortc's own floor (REMB_FLOOR_BPS), and only the
    loss controller changes the level (frame rate, size) and the Opus bitrate: a CPU-busy
    receiver's delay spikes lower the bitrate as in aiortc, they do not halve the video.
    """

    def __init__(self, start_bps: int = START_BPS, *, ramp: bool = False) -> None:
        self.loss_bps = start_bps
        self.remb_bps: int | None = None
        self.target_bps = start_bps
        self.ramping = ramp  # the call's start: no loss seen yet (see START_GROWTH)
        self.remb_high = 0  # the highest REMB while ramping
        self.hold_until = 0.0
        self.last_growth = float("-inf")
        self.loss = 0.0  # reported loss, smoothed over reports
        self.clean = 0  # clean reports in a row
        self.known_max: int | None = None  # what got through at the last cut
        self.cuts = 0  # loss cuts so far (the encoder follows a cut at once)
        # what the encoder has been given (`sending`): now, since when, and before that
        self.sending_bps: int | None = None
        self.sending_since = float("-inf")
        self.sent_before: int | None = None
        self.ceiling_bps: int | None = None  # the user's --max-bitrate (None: none)
        self.pixel_rate: float = REF_PIXEL_RATE  # of the video source (FrameShaper measures)
        self.changes: list[tuple[float, int]] = []  # (time, new target), for figures
        # what the peer asked of the sender, for figures: keyframe requests (PLI/FIR) and
        # the keyframes they got, packets named in NACKs, encoder retargets (each one
        # rebuilds aiortc's VP8 encoder: a keyframe too)
        self.counts = {"keyframe_requests": 0, "keyframes": 0, "nacked": 0, "retargets": 0}
        self.level = level_for(self.level_bps)

    def on_remb(self, bitrate_bps: int, now: float) -> int:
        self.remb_bps = bitrate_bps
        if self.ramping:
            self.remb_high = max(self.remb_high, bitrate_bps)
            self.ramping = bitrate_bps >= RAMP_REMB_DROP * self.remb_high
        return self._update(now)

    def on_report(self, fraction_lost: float, now: float, interval: float = 1.0) -> int:
        """One receiver report's loss (0..1); the new target."""
        self.loss = LOSS_SMOOTHING * self.loss + (1 - LOSS_SMOOTHING) * fraction_lost
        if now < self.hold_until:
            return self.target_bps
        ramp_ends = self.ramping and fraction_lost > 0
        if ramp_ends:
            self.ramping = False  # any loss: the link is not known to be wide
        if self.loss > HIGH_LOSS and fraction_lost > HIGH_LOSS:
            self.hold_until = now + interval
            self.clean = 0
            carried = min(self.loss_bps, self.target_bps) * (1 - fraction_lost)
            if ramp_ends:  # the target ran ahead of the encoder: count what it sent
                carried = min(carried, self._tested(now, interval) * (1 - fraction_lost))
            self.known_max = int(carried)
            self.cuts += 1
            self.loss_bps = self._bound(int(carried * CUT_MARGIN))
        elif ramp_ends and fraction_lost >= LOW_LOSS and (back := self._step_before()):
            # Less loss than a cut, but the ramp's last step was too much: back at once to
            # the step before it (the last rate the link carried cleanly). Kept sending,
            # 350k of video on a 300 kbit/s link lost 5-10 % a report for the 4 s the
            # encoder's hysteresis held it, one stall and keyframe after another (measured).
            # A packet or two (under 2 %: a busy host's socket), or loss at the start rate
            # (no step to undo; random loss looks the same), only ends the ramp.
            self.hold_until = now + interval
            self.clean = 0
            self.known_max = int((self.sending_bps or back) * (1 - fraction_lost))
            self.cuts += 1
            self.loss_bps = self._bound(min(self.loss_bps, back))
        elif fraction_lost >= LOW_LOSS:
            self.clean = 0
        elif now - self.last_growth >= 0.8 * interval:
            self.last_growth = now
            self.clean += 1
            factor = FAST_GROWTH if self.clean > CLEAN_STREAK else GROWTH
            grown = int(self.loss_bps * factor)
            if self.ramping:  # from what the report tested (see START_GROWTH)
                tested = min(self.loss_bps, self._tested(now, interval))
                grown = max(self.loss_bps, int(tested * START_GROWTH))
            known = self.known_max
            if known is not None and self.loss_bps > NEAR_MAX[1] * known:
                self.known_max = known = None  # well past it without loss: the link grew
            if known is not None and self.loss_bps >= NEAR_MAX[0] * known:
                grown = int(self.loss_bps * NEAR_GROWTH)  # close to where loss came: creep
            if self.remb_bps is not None and not self.ramping:  # no point growing far
                # past what REMB allows, but REMB alone holds nothing below its floor
                # (REMB_FLOOR_BPS): a receiver getting 60 kbit/s estimates about that, and
                # once kept a lifted cap's target there for 12 s (measured). While the call
                # ramps, REMB is aiortc's estimate climbing 8 % a second from what it got
                # (see START_BPS); a REMB that falls ends the ramp.
                grown = min(grown, max(self.remb_bps, REMB_FLOOR_BPS, self.loss_bps))
            self.loss_bps = self._bound(grown)
        return self._update(now)

    def sending(self, bps: int, now: float) -> None:
        """The encoder's target is `bps` from `now` on (the hook tells after each change)."""
        if bps != self.sending_bps:
            self.sent_before, self.sending_bps, self.sending_since = self.sending_bps, bps, now

    def _step_before(self) -> int | None:
        """The encoder's rate before its last change if that change was up (while ramping:
        the ramp's last step), else None."""
        before, now = self.sent_before, self.sending_bps
        return before if before is not None and now is not None and before < now else None

    def _tested(self, now: float, interval: float) -> int:
        """The encoder rate a report at `now` speaks for: the current one once it has been
        sent for a report interval, else the one before it (none known: no bound)."""
        if self.sending_bps is None:
            return MAX_BPS
        if now - self.sending_since >= interval or self.sent_before is None:
            return self.sending_bps
        return min(self.sending_bps, self.sent_before)

    def set_ceiling(self, ceiling_bps: int | None, now: float) -> int:
        """The user's ceiling (None: none) on the target from now on; the new target."""
        self.ceiling_bps = ceiling_bps
        return self._update(now)

    def encoder_bps(self) -> int:
        """What the video encoder is given: the step at or below the target (see
        `encoder_step`), or the user's ceiling itself when that is what holds it."""
        if self.ceiling_bps is not None and self.target_bps >= self.ceiling_bps:
            return self.ceiling_bps
        return encoder_step(self.target_bps)

    @property
    def video_bps(self) -> int:
        """The loss controller's rate under the user's ceiling: what the level follows."""
        if self.ceiling_bps is None:
            return self.loss_bps
        return min(self.loss_bps, self.ceiling_bps)

    @property
    def level_bps(self) -> int:
        """The rate the level is picked from: `video_bps`, but while the call starts
        (`ramping`) only the user's ceiling, as no loss has shown the link to be thin."""
        if self.ramping:
            return MAX_BPS if self.ceiling_bps is None else self.ceiling_bps
        return self.video_bps

    @staticmethod
    def _bound(bps: int) -> int:
        return max(MIN_BPS, min(MAX_BPS, bps))

    def _update(self, now: float) -> int:
        bps = self.video_bps
        if self.remb_bps is not None and not self.ramping:
            bps = min(bps, max(self.remb_bps, REMB_FLOOR_BPS))
        self.level = level_for(self.level_bps, self.level, self.pixel_rate)
        if bps != self.target_bps:
            self.target_bps = bps
            self.changes.append((now, bps))
            del self.changes[:-200]
        return bps


# The encoder gets the highest step at or below the target: aiortc rebuilds its VP8
# encoder (and so sends a keyframe) whenever the target moves by more than 10 %, so a
# target that moves every second must not reach it every second.
STEPS_BPS = (60, 80, 110, 150, 200, 270, 350, 470, 630, 850, 1150, 1500)
# Opus gets 96 kbit/s from aiortc; on a thin link (video target below HALF_FPS_BELOW)
# voice keeps 32 kbit/s and gives the rest to video, until the target passes THICK_BPS.
AUDIO_FULL_BPS = 96_000
AUDIO_THIN_BPS = 32_000
THICK_BPS = 470_000


# When the encoder's target changes (`EncoderTarget`). aiortc rebuilds its VP8 encoder on
# every change over 10 % (a keyframe and a fresh 16 MiB context), and every step is more
# than 10 % from the next: a long call at load 17-27 rebuilt it every 3.3 s following a
# target that moves every second (docs/performance.md).
HOLD_S = 4.0  # up (or one step down) only after the target has stayed there this long
CHANGE_GAP_S = 6.0  # at most one change this often, but for a cut
UP_AFTER_DOWN_S = 12.0  # up no sooner than this after going down: a target that went
# down is likely to again; going straight back up was half the changes (measured at load 9:
# 1500 -> 630 -> 1500 -> 850 -> 470 -> 630 kbit/s, 6 s apart)
RAMP_GAP_S = 2.0  # while the call ramps up (no loss seen yet): up this often, no hold


class EncoderTarget:
    """When the encoder's target changes, with hysteresis: the controller's target (and the
    frame-rate and size levels) moves every report, the encoder's only on a real change.

    - down at once on a cut (`cut`: the loss controller cut the rate) or when the target
      drops more than one step below the encoder's (`encoder_step`);
    - down one step, or up, only after the target has stayed there (below, or at least
      one step above) for HOLD_S, and at most once every CHANGE_GAP_S; up no sooner than
      UP_AFTER_DOWN_S after going down;
    - while the call ramps up (`ramping`), up every RAMP_GAP_S without the hold.

    A target within 10 % of the encoder's never changes it (aiortc would not rebuild). REMB
    from a busy receiver moves every few packets (measured: 250 -> 358 -> 250 kbit/s within
    a second at load 18, across three encoder steps): that alone must not rebuild."""

    def __init__(self) -> None:
        self.value: int | None = None
        self.changed_at = float("-inf")
        self.went_down = False  # the last change was down
        self.above_since: float | None = None  # the target went above `value` then
        self.below_since: float | None = None  # ... one step below it then

    def next(self, want: int, now: float, *, cut: bool = False, ramping: bool = False) -> int:
        """The target to give the encoder now, for the one `want`ed."""
        value = self.value
        if value is None or self._moves(value, want, now, cut, ramping):
            self.went_down = value is not None and want < value
            self.value, self.changed_at = want, now
            self.above_since = self.below_since = None
            return want
        return value

    def _moves(self, value: int, want: int, now: float, cut: bool, ramping: bool) -> bool:
        if want < 0.9 * value:
            self.above_since = None
            if cut or want < encoder_step(int(0.9 * value)):  # a cut, or more than a step
                return True
            if self.below_since is None:
                self.below_since = now
            return self._settled(self.below_since, now)
        self.below_since = None
        if want <= value:
            self.above_since = None
            return False
        if self.above_since is None:
            self.above_since = now
        if ramping:
            return now - self.changed_at >= RAMP_GAP_S
        if self.went_down and now - self.changed_at < UP_AFTER_DOWN_S:
            return False
        return self._settled(self.above_since, now)

    def _settled(self, since: float, now: float) -> bool:
        return now - since >= HOLD_S and now - self.changed_at >= CHANGE_GAP_S


def encoder_step(target_bps: int) -> int:
    """The step (bps) the encoder is set to for `target_bps`."""
    return 1000 * max([STEPS_BPS[0], *(s for s in STEPS_BPS if 1000 * s <= target_bps)])


def audio_bitrate(target_bps: int, current_bps: int) -> int:
    """Opus bitrate for a video target, with hysteresis between thin and full."""
    if target_bps < HALF_FPS_BELOW:
        return AUDIO_THIN_BPS
    if target_bps >= THICK_BPS:
        return AUDIO_FULL_BPS
    return current_bps
