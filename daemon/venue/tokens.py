"""Session tokens: HS256 JWTs with `sub`, `iat`, `exp` and `jti`, as the Gateway issues.

Clients read `exp` to refresh before expiry (project-x-py does), so the token must be a real
JWT. Lifetime is configurable so token refresh can be tested in seconds instead of 24 h.
Issuing a new token does not revoke older ones (as on the real Gateway); logout revokes one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenIssuer:
    """Mints and checks tokens against a per-venue secret and an injected time source."""

    def __init__(self, lifetime_s: float, now: Callable[[], float]) -> None:
        self.lifetime_s = lifetime_s
        self.now = now
        self._key = secrets.token_bytes(32)
        self._revoked: set[str] = set()

    def issue(self, user: str) -> str:
        """A new signed token for `user` that expires `lifetime_s` from now."""
        now = self.now()
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
        claims = {"sub": user, "name": user, "iat": int(now),
                  "exp": int(now + self.lifetime_s), "jti": secrets.token_hex(8)}
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        sig = hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64(sig)}"

    def check(self, token: str) -> str | None:
        """The user a valid, unexpired, unrevoked token belongs to; None otherwise."""
        try:
            header, payload, sig = token.split(".")
            want = hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(want, _unb64(sig)):
                return None
            claims = json.loads(_unb64(payload))
        except (ValueError, TypeError):
            return None
        if claims.get("jti") in self._revoked or self.now() >= float(claims.get("exp", 0)):
            return None
        return str(claims.get("sub"))

    def revoke(self, token: str) -> None:
        """Make `token` invalid from now on (logout)."""
        try:
            claims = json.loads(_unb64(token.split(".")[1]))
            self._revoked.add(str(claims.get("jti")))
        except (ValueError, IndexError, TypeError):
            pass
