"""Every error omnicli raises on purpose, and the exit code each one maps to.

The tree::

    OmniError                      base; `exit_code` and a one-line `str()`
    ├── UsageError             2   the user asked for something malformed
    │   └── SourceError        2   a media source spec or file cannot be opened
    ├── ServerUnreachable      3   no signaling server at the URL, or it went away
    ├── ServerRefused          4   the server answered a request with an error code
    ├── CallRejected           5   the call ended before it connected: busy,
    │                              declined, no answer, unavailable, cancelled
    ├── MediaFailed            6   ICE/DTLS never connected, or media broke mid-call
    └── DeviceMissing          7   a real device was demanded and is not there

Exceptions become exit codes and one-line messages in exactly one place: the
`run()` wrapper in `omnicli.ui.cliapp`. Core code raises, never prints. Which call end
reason (`wire.protocol.EndReason`) becomes which of these is `omnicli.phone.endings`.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    UNREACHABLE = 3
    REFUSED = 4
    REJECTED = 5
    MEDIA = 6
    DEVICE = 7
    INTERRUPTED = 130


class OmniError(Exception):
    """Base of every deliberate omnicli error."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(OmniError):
    exit_code = ExitCode.USAGE


class SourceError(UsageError):
    """A --video-source/--audio-source value that cannot be opened."""


class ServerUnreachable(OmniError):
    exit_code = ExitCode.UNREACHABLE


class ServerRefused(OmniError):
    """The server answered with an error response (see protocol.ErrorCode)."""

    exit_code = ExitCode.REFUSED

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{message} ({reason}, {code})")
        self.code = code
        self.reason = reason


class CallRejected(OmniError):
    """The call ended before media connected, for a named reason."""

    exit_code = ExitCode.REJECTED

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or f"call ended: {reason.replace('_', ' ')}")
        self.reason = reason


class MediaFailed(OmniError):
    exit_code = ExitCode.MEDIA


class DeviceMissing(OmniError):
    exit_code = ExitCode.DEVICE
