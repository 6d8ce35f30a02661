"""Who may connect as whom: service keys, per-user tokens and resume tokens.

Pure: the wall-clock time is passed in. `admit` decides a `hello`; `ResumeTokens` signs
the token every session result carries and checks the one a `resume` brings back. The
`boot` id in a resume token names the server run that issued it, so a restarted server
(same secret, new boot) knows its state was lost.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from omnicli.server.records import Refusal
from omnicli.wire import protocol as p
from omnicli.wire import requests as rq
from omnicli.wire import tokens
from omnicli.wire.protocol import ErrorCode

RESUME_TOKEN_TTL = 24 * 3600


@dataclass(frozen=True)
class Service:
    service_id: str
    key: str | None  # None: open service, no key needed
    max_sessions: int = 100_000


def admit(service: Service, hello: rq.Hello, *, require_tokens: bool, now: float) -> str | None:
    """Check a hello's key or token; the user id a token pins, if any."""
    if hello.token is not None and service.key is not None:
        # a token alone authenticates: it was minted from the service key
        try:
            claims = tokens.check_user_token(
                hello.token, service.key, service_id=service.service_id, now=now
            )
        except tokens.TokenError as exc:
            raise Refusal(ErrorCode.UNAUTHORIZED, f"bad token: {exc}") from None
        return claims.user_id
    if require_tokens:
        raise Refusal(ErrorCode.UNAUTHORIZED, "this server needs a token (omni token create)")
    if service.key is not None and not hello.service_key:
        raise Refusal(
            ErrorCode.UNAUTHORIZED,
            f"service '{service.service_id}' needs a service key and none was given",
        )
    if service.key is not None and not hmac.compare_digest(
        (hello.service_key or "").encode(), service.key.encode()
    ):
        raise Refusal(ErrorCode.UNAUTHORIZED, "wrong service key")
    return None


@dataclass(frozen=True)
class ResumeClaims:
    user_id: str
    session: str
    boot: str | None  # the server run that issued the token


@dataclass(frozen=True)
class ResumeTokens:
    secret: bytes
    boot: str

    def mint(self, service_id: str, user_id: str, session: str, *, now: float) -> str:
        wall = int(now)
        claims = {
            "typ": "resume",
            "svc": service_id,
            "sub": user_id,
            "sid": session,
            "boot": self.boot,
            "iat": wall,
            "exp": wall + RESUME_TOKEN_TTL,
        }
        return tokens.encode(claims, self.secret)

    def check(self, token: str, service_id: str, *, now: float) -> ResumeClaims:
        try:
            claims = tokens.decode(token, self.secret, now=now, kind="resume")
        except tokens.TokenError as exc:
            raise Refusal(ErrorCode.UNAUTHORIZED, f"cannot resume: {exc}") from None
        user_id, session = claims["sub"], claims.get("sid")
        if claims["svc"] != service_id or not isinstance(session, str) or not session:
            raise Refusal(ErrorCode.UNAUTHORIZED, "cannot resume: token is for another service")
        if why := p.check_user_id(user_id):
            raise Refusal(ErrorCode.UNAUTHORIZED, f"cannot resume: {why}")
        boot = claims.get("boot")
        return ResumeClaims(user_id, session, boot if isinstance(boot, str) else None)
