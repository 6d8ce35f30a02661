"""Signed tokens: per-user access tokens and session resume tokens (HS256 JWTs).

Pure: stdlib only, the time is passed in. A token is the compact JWT form
``base64url(header).base64url(claims).base64url(HMAC-SHA256(secret, first two parts))``
with header ``{"alg": "HS256", "typ": "JWT"}``. Only HS256 is accepted, so a token
claiming ``"alg": "none"`` (or anything else) is refused before its signature is looked at.

Claims used by omnicli:

* ``typ`` ``"user"`` (an access token, minted from a service key by `omni token
  create`) or ``"resume"`` (minted by the server with its resume secret)
* ``svc`` the service id, ``sub`` the user id, ``iat`` and ``exp`` in Unix seconds
* resume tokens also carry ``sid`` (the session id) and ``boot`` (the server run
  that issued it, so a restarted server can tell that its state was lost)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

from omnicli.wire.protocol import check_user_id

LEEWAY = 30  # seconds of clock difference tolerated on iat/exp
MAX_TTL = 366 * 24 * 3600
_TTL_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_HEADER = {"alg": "HS256", "typ": "JWT"}


class TokenError(Exception):
    """A token that is malformed, badly signed, expired or for something else."""


@dataclass(frozen=True)
class UserClaims:
    service_id: str
    user_id: str
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """Strict base64url without padding: one text for one value, so a token that differs
    only in the unused low bits of its last character is refused, not read the same."""
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text) or len(text) % 4 == 1:
        raise TokenError("token is not base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise TokenError("token is not base64url") from None
    if _b64(data) != text:
        raise TokenError("token is not canonical base64url")
    return data


def _sign(secret: str | bytes, signing_input: str) -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()


def encode(claims: dict[str, Any], secret: str | bytes) -> str:
    """A signed HS256 JWT carrying `claims`."""
    head = _b64(json.dumps(_HEADER, separators=(",", ":")).encode())
    body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    signing_input = f"{head}.{body}"
    return f"{signing_input}.{_b64(_sign(secret, signing_input))}"


def decode(token: str, secret: str | bytes, *, now: float, kind: str) -> dict[str, Any]:
    """The claims of a valid, unexpired token of type `kind`, or TokenError."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("token is not a JWT (three dot-separated parts)")
    head, body, signature = parts
    try:
        header = json.loads(_unb64(head))
    except ValueError:
        raise TokenError("token header is not JSON") from None
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise TokenError("token must be signed with HS256")
    if not hmac.compare_digest(_unb64(signature), _sign(secret, f"{head}.{body}")):
        raise TokenError("token signature does not match")
    try:
        claims = json.loads(_unb64(body))
    except ValueError:
        raise TokenError("token claims are not JSON") from None
    if not isinstance(claims, dict):
        raise TokenError("token claims are not an object")
    if claims.get("typ") != kind:
        raise TokenError(f"not a {kind} token")
    exp, iat = claims.get("exp"), claims.get("iat", 0)
    if not _is_int(exp) or not _is_int(iat):
        raise TokenError("token exp/iat must be integers")
    assert isinstance(exp, int) and isinstance(iat, int)
    if now >= exp + LEEWAY:
        raise TokenError("token has expired")
    if iat > now + LEEWAY:
        raise TokenError("token is not valid yet")
    for name in ("svc", "sub"):
        if not isinstance(claims.get(name), str) or not claims[name]:
            raise TokenError(f"token has no '{name}'")
    return claims


def service_of(token: str) -> str | None:
    """The service a token names, read WITHOUT checking it (only to pick a default)."""
    parts = token.split(".")
    try:
        claims = json.loads(_unb64(parts[1])) if len(parts) == 3 else None
    except (TokenError, ValueError):
        return None
    svc = claims.get("svc") if isinstance(claims, dict) else None
    return svc if isinstance(svc, str) and svc else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def mint_user_token(secret: str, *, service_id: str, user_id: str, ttl: float, now: float) -> str:
    """An access token letting its holder register as `user_id` in `service_id`."""
    if not 0 < ttl <= MAX_TTL:
        raise ValueError(f"ttl must be between 1 s and {MAX_TTL} s")
    iat = int(now)
    claims = {
        "typ": "user",
        "svc": service_id,
        "sub": user_id,
        "iat": iat,
        "exp": iat + max(1, round(ttl)),
    }
    return encode(claims, secret)


def check_user_token(token: str, secret: str, *, service_id: str, now: float) -> UserClaims:
    """The claims of a valid access token for `service_id`, or TokenError."""
    claims = decode(token, secret, now=now, kind="user")
    if claims["svc"] != service_id:
        raise TokenError(f"token is for service '{claims['svc'][:64]}'")
    if why := check_user_id(claims["sub"]):
        raise TokenError(f"token names a bad user id: {why}")
    return UserClaims(claims["svc"], claims["sub"], claims["exp"])


def parse_ttl(text: str) -> float:
    """Seconds from '90', '90s', '15m', '1h' or '7d'; ValueError otherwise."""
    match = _TTL_RE.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"'{text}' is not a duration like 90s, 15m, 1h or 7d")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not 1 <= seconds <= MAX_TTL:
        raise ValueError(f"a token lives between 1 s and {MAX_TTL // 86400} days, not '{text}'")
    return seconds
