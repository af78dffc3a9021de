"""Who may look and act: one secret token per console, a cookie after login, CSRF on actions.

The console shows prompts and lets a reviewer release a held refund, so "it listens on
127.0.0.1" is not enough: any local process or any web page the reviewer visits could call it.
So:
- the token (printed at start, or AGENTSTREAM_CONSOLE_TOKEN) is needed once, as `?token=`; it
  buys an HttpOnly, SameSite=Strict cookie derived from it (the token itself is never stored
  in the browser, and the login redirect drops it from the address bar and history);
- every action is a POST carrying a CSRF token derived from the same secret, and a POST whose
  `Origin` is not this console is refused;
- the `Host` must name the loopback (no DNS rebinding of a public name onto 127.0.0.1).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

__all__ = ["COOKIE", "LOOPBACK_NAMES", "Auth", "host_name", "origin_allowed"]

COOKIE = "agentstream_console"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def host_name(header: str) -> str:
    """The name part of a `Host` header (`[::1]:8123` -> `[::1]`, `localhost:80` -> `localhost`)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header.split("]", 1)[0] + "]"
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def origin_allowed(origin: str | None, host: str) -> bool:
    """True when a POST's `Origin` is this console (or absent, as from non-browser clients,
    which cannot carry the cookie and CSRF token unless they hold the secret anyway)."""
    if not origin:
        return True
    for scheme in ("http://", "https://"):
        if origin.lower().startswith(scheme):
            return origin[len(scheme):].lower().rstrip("/") == host.strip().lower()
    return False


@dataclass(frozen=True)
class Auth:
    """Checks for one console run; every value is derived from `token` with HMAC-SHA256."""

    token: str

    @classmethod
    def create(cls, token: str | None = None) -> Auth:
        """With the given token (at least 16 characters), or a fresh random one."""
        if token is not None and len(token) < 16:
            raise ValueError("the console token must be at least 16 characters")
        return cls(token or secrets.token_urlsafe(24))

    def _derive(self, purpose: str) -> str:
        return hmac.new(self.token.encode(), purpose.encode(), hashlib.sha256).hexdigest()

    @property
    def cookie_value(self) -> str:
        return self._derive("session")

    @property
    def csrf_token(self) -> str:
        return self._derive("csrf")

    @staticmethod
    def _same(given: str | None, expected: str) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), expected.encode())

    def token_ok(self, given: str | None) -> bool:
        return self._same(given, self.token)

    def cookie_ok(self, given: str | None) -> bool:
        return self._same(given, self.cookie_value)

    def csrf_ok(self, given: str | None) -> bool:
        return self._same(given, self.csrf_token)
