"""Short-lived TURN credentials, as coturn's REST API (``use-auth-secret``) expects.

Pure: stdlib only, the time is passed in. The server shares one secret with the TURN
server (coturn: ``use-auth-secret`` and ``static-auth-secret=SECRET``) and hands each
user a credential that expires by itself:

* username ``"<expiry unix time>:<user id>"``
* password ``base64(HMAC-SHA1(secret, username))``

coturn recomputes the password from the username and refuses it after the expiry, so
no static TURN password ever leaves the server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

DEFAULT_TTL = 3600.0


@dataclass(frozen=True)
class TurnConfig:
    urls: tuple[str, ...]  # e.g. ("turn:turn.example.org:3478?transport=udp",)
    secret: str
    ttl: float = DEFAULT_TTL


def rest_credentials(secret: str, user_id: str, *, ttl: float, now: float) -> tuple[str, str]:
    """(username, password) valid for `ttl` seconds from `now`."""
    username = f"{int(now + ttl)}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def ice_server(config: TurnConfig, user_id: str, now: float) -> dict[str, Any]:
    """One RTCIceServer-shaped entry with fresh credentials for `user_id`."""
    username, password = rest_credentials(config.secret, user_id, ttl=config.ttl, now=now)
    return {"urls": list(config.urls), "username": username, "credential": password}
