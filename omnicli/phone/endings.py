"""What the end of a call means for a one-shot command: its error and exit code. Pure.

A call ends for an `EndReason` (the wire's enum, which both parties are told). Ending a
call oneself is a success whatever the reason; otherwise a refused call (busy,
declined, no answer, cancelled, unavailable) is `CallRejected` (exit 5) and a lost one
(connection lost, media failed) is `MediaFailed` (exit 6). `omnicli.errors` holds the
exceptions and codes; this module holds which reason maps to which.
"""

from __future__ import annotations

from omnicli.errors import CallRejected, ExitCode, MediaFailed, OmniError
from omnicli.wire.protocol import EndReason

REJECTED = frozenset(
    {
        EndReason.BUSY,
        EndReason.DECLINED,
        EndReason.NO_ANSWER,
        EndReason.CANCELLED,
        EndReason.UNAVAILABLE,
    }
)
LOST = frozenset({EndReason.CONNECTION_LOST, EndReason.MEDIA_FAILED})


def call_ending_error(reason: EndReason, *, by_me: bool) -> OmniError | None:
    """The error a one-shot call that ended for `reason` exits with (None: success)."""
    if by_me and reason not in LOST:
        return None
    if reason in REJECTED:
        return CallRejected(reason)
    if reason in LOST:
        return MediaFailed(f"call ended: {reason.replace('_', ' ')}")
    return None


def exit_code_for_reason(reason: EndReason) -> int:
    """The exit code of a one-shot call that ended for `reason`."""
    if reason in REJECTED:
        return int(ExitCode.REJECTED)
    if reason in LOST:
        return int(ExitCode.MEDIA)
    return int(ExitCode.OK)


__all__ = ["LOST", "REJECTED", "call_ending_error", "exit_code_for_reason"]
