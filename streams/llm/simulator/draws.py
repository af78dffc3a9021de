"""Determinism for the simulator: every draw is a hash of the seed, the call and the request
content, never `random` or `hash()`, so a replay answers the same on any machine."""

from __future__ import annotations

import hashlib
import json

from streams.llm.base import (
    ChatRequest,
)


class Draws:
    """Deterministic pseudo-random draws for one request, keyed by a purpose string."""

    def __init__(self, seed: int, call_key: str, fingerprint: str) -> None:
        self._prefix = f"{seed}|{call_key}|{fingerprint}"

    def digest(self, purpose: str) -> bytes:
        return hashlib.blake2b(f"{self._prefix}|{purpose}".encode(), digest_size=16).digest()

    def unit(self, purpose: str) -> float:
        """A float in [0, 1)."""
        return int.from_bytes(self.digest(purpose)[:8], "big") / 2**64

    def pick(self, purpose: str, options: list[str] | tuple[str, ...]) -> str:
        return options[int.from_bytes(self.digest(purpose)[:8], "big") % len(options)]

    def hex(self, purpose: str, length: int = 24) -> str:
        return self.digest(purpose).hex()[:length]


def request_fingerprint(request: ChatRequest) -> str:
    """Attempt-free digest of what the model 'sees'.

    max_tokens and timeout_s are left out: a capped answer is a prefix of the uncapped one.
    """
    payload = {
        "model": request.model,
        "messages": request.messages,
        "tools": [t.name for t in request.tools],
    }
    raw = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()
