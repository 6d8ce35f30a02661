"""Pure hardening pieces: HS256 tokens, TURN REST credentials, the rate limiter, the backoff."""

from __future__ import annotations

import base64
import json
import random
import shutil
import subprocess

import pytest

from omnicli.phone.backoff import Backoff
from omnicli.server.ratelimit import TokenBucket
from omnicli.server.turn import TurnConfig, ice_server, rest_credentials
from omnicli.wire import tokens
from omnicli.wire.tokens import TokenError

NOW = 1_800_000_000.0
KEY = "s3cret-key"


def mint(**kw: object) -> str:
    args = {"service_id": "acme", "user_id": "bob", "ttl": 3600.0, "now": NOW, **kw}
    return tokens.mint_user_token(KEY, **args)  # type: ignore[arg-type]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- tokens ----------------------------------------------------------------------------------


def test_user_token_round_trip() -> None:
    """A minted token verifies for its service and names its user and expiry."""
    claims = tokens.check_user_token(mint(), KEY, service_id="acme", now=NOW + 10)
    assert claims == tokens.UserClaims("acme", "bob", int(NOW) + 3600)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_token_signature_matches_openssl() -> None:
    """The signature is standard HS256: openssl's HMAC-SHA256 of 'header.claims' gives it too."""
    token = mint()
    head, body, signature = token.split(".")
    assert json.loads(base64.urlsafe_b64decode(head + "==")) == {"alg": "HS256", "typ": "JWT"}
    digest = subprocess.run(
        ["openssl", "dgst", "-sha256", "-hmac", KEY, "-binary"],
        input=f"{head}.{body}".encode(),
        capture_output=True,
        check=True,
    ).stdout
    assert _b64(digest) == signature


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (lambda: mint().rsplit(".", 1)[0] + "." + _b64(b"x" * 32), "signature"),
        (
            lambda: tokens.encode(
                {"typ": "user", "svc": "acme", "sub": "bob", "iat": 0, "exp": 2 * int(NOW)},
                "other-key",
            ),
            "signature",
        ),
        (lambda: mint(ttl=60.0), "expired"),
        (lambda: mint(now=NOW + 3600), "not valid yet"),
        (lambda: mint(service_id="other"), "service"),
        (lambda: "a.b", "JWT"),
        (lambda: "!!.??.**", "base64url"),
        (
            lambda: tokens.encode(
                {"typ": "resume", "svc": "acme", "sub": "bob", "iat": 0, "exp": 2 * int(NOW)}, KEY
            ),
            "user token",
        ),
        (
            lambda: tokens.encode(
                {"typ": "user", "svc": "acme", "iat": 0, "exp": 2 * int(NOW)}, KEY
            ),
            "'sub'",
        ),
    ],
    ids=[
        "forged",
        "other-key",
        "expired",
        "future",
        "service",
        "parts",
        "garbage",
        "kind",
        "no-sub",
    ],
)
def test_bad_tokens_are_refused(token, why: str) -> None:
    """Forged, foreign, expired, early, malformed or wrong-kind tokens raise TokenError."""
    with pytest.raises(TokenError, match=why):
        tokens.check_user_token(token(), KEY, service_id="acme", now=NOW + 200)


def test_alg_none_is_refused() -> None:
    """A token claiming alg 'none' with no signature is refused before anything else."""
    head = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = _b64(
        json.dumps(
            {"typ": "user", "svc": "acme", "sub": "bob", "iat": 0, "exp": 2 * int(NOW)}
        ).encode()
    )
    with pytest.raises(TokenError, match="HS256"):
        tokens.check_user_token(f"{head}.{body}.", KEY, service_id="acme", now=NOW)


def test_a_signature_differing_in_unused_bits_is_refused() -> None:
    """The HMAC is 32 bytes: 43 base64url characters, the last carrying 4 unused bits.
    Changing only those bits decodes to the same bytes, so a lax decoder accepted the
    altered token; the strict one refuses it (one text per token)."""
    token = mint()
    head, body, sig = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(sig[-1])
    twins = [c for i, c in enumerate(alphabet) if i >> 2 == last >> 2 and i != last]
    assert len(twins) == 3
    for twin in twins:
        altered = f"{head}.{body}.{sig[:-1]}{twin}"
        assert base64.urlsafe_b64decode(altered.split(".")[2] + "=") == base64.urlsafe_b64decode(
            sig + "="
        )
        with pytest.raises(TokenError, match="base64url"):
            tokens.check_user_token(altered, KEY, service_id="acme", now=NOW + 10)
    with pytest.raises(TokenError, match="base64url"):  # impossible length, and padding
        tokens.check_user_token(f"{head}.{body}.{sig}AA", KEY, service_id="acme", now=NOW + 10)
    with pytest.raises(TokenError, match="base64url"):
        tokens.check_user_token(f"{head}.{body}.{sig}=", KEY, service_id="acme", now=NOW + 10)
    assert tokens.check_user_token(token, KEY, service_id="acme", now=NOW + 10).user_id == "bob"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("15m", 900), ("1h", 3600), ("7d", 604800), ("1.5h", 5400)],
)
def test_parse_ttl(text: str, seconds: float) -> None:
    """Durations take s, m, h and d suffixes."""
    assert tokens.parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "1w", "-5m", "0", "400d", "h"])
def test_parse_ttl_refuses(text: str) -> None:
    """Unknown units, zero, negative and over-long durations are ValueError."""
    with pytest.raises(ValueError):
        tokens.parse_ttl(text)


# -- TURN ------------------------------------------------------------------------------------


def test_turn_rest_credentials_follow_coturn() -> None:
    """username is 'expiry:user', password base64(HMAC-SHA1(secret, username))."""
    username, password = rest_credentials("turnsecret", "bob", ttl=600, now=NOW)
    assert username == f"{int(NOW) + 600}:bob"
    if shutil.which("openssl"):
        digest = subprocess.run(
            ["openssl", "dgst", "-sha1", "-hmac", "turnsecret", "-binary"],
            input=username.encode(),
            capture_output=True,
            check=True,
        ).stdout
        assert password == base64.b64encode(digest).decode()
    entry = ice_server(TurnConfig(("turn:t.example:3478",), "turnsecret", 600), "bob", NOW)
    assert entry == {"urls": ["turn:t.example:3478"], "username": username, "credential": password}


# -- rate limit ------------------------------------------------------------------------------


def test_bucket_allows_a_burst_then_refuses() -> None:
    """A full bucket gives `burst` requests at once and refuses the next one."""
    bucket = TokenBucket(rate=10, burst=5)
    assert [bucket.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.retry_after() == pytest.approx(0.1)


def test_bucket_refills_at_its_rate() -> None:
    """After the burst, requests pass at `rate` per second and the bucket caps at `burst`."""
    bucket = TokenBucket(rate=10, burst=5)
    for _ in range(5):
        bucket.take(0.0)
    assert bucket.take(0.05) is False
    assert bucket.take(0.1) is True and bucket.take(0.1) is False
    granted = sum(bucket.take(0.1 + i * 0.01) for i in range(1, 101))  # one second at 100/s
    assert 9 <= granted <= 11
    assert [bucket.take(100.0) for _ in range(6)].count(True) == 5


def test_bucket_ignores_a_clock_going_back() -> None:
    """A clock that steps backwards neither refills nor breaks the bucket."""
    bucket = TokenBucket(rate=1, burst=1)
    assert bucket.take(10.0) is True
    assert bucket.take(5.0) is False
    assert bucket.take(10.5) is False and bucket.take(11.0) is True


# -- backoff ---------------------------------------------------------------------------------


def test_backoff_grows_with_jitter_up_to_the_cap() -> None:
    """Delays double from base/2..base up to cap/2..cap, and differ between clients."""
    first = Backoff(base=0.25, cap=4.0, rng=random.Random(1))
    delays = [first.next() for _ in range(8)]
    for n, delay in enumerate(delays):
        ceiling = min(4.0, 0.25 * 2**n)
        assert ceiling / 2 <= delay <= ceiling
    other = Backoff(base=0.25, cap=4.0, rng=random.Random(2))
    assert [other.next() for _ in range(8)] != delays
    first.reset()
    assert first.next() <= 0.25
