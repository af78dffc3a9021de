"""Retries for transient provider failures with exponential backoff and deterministic jitter.

Jitter comes from a hash of `call_key` and the attempt number rather than `random`, so a
replayed request waits exactly as long as the original did, while different calls still
spread out instead of retrying in lockstep.

Two entry points share one loop:

* `call_with_retries(...) -> ChatResponse` for callers that only want the answer;
* `call_with_retries_outcome(...) -> CallOutcome` which also reports how many attempts were made
  and the error kinds of the failed ones (for spans and events).

When all attempts fail, the last error is re-raised; its notes (`add_note`) record how many
attempts were made.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from streams.llm.base import ChatRequest, ChatResponse, LLMError, Provider

__all__ = ["CallOutcome", "backoff_delay", "call_with_retries", "call_with_retries_outcome"]

Sleep = Callable[[float], Awaitable[object]]


@dataclass(frozen=True)
class CallOutcome:
    """A successful call plus what it took: `attempts` >= 1, `errors` = kinds of failed tries."""

    response: ChatResponse
    attempts: int
    errors: tuple[str, ...] = ()


def backoff_delay(call_key: str, attempt: int, base_delay_s: float, max_delay_s: float) -> float:
    """Delay before retry number `attempt` (1 = after the first failure).

    Exponential (`base * 2**(attempt-1)`, capped at `max_delay_s`), scaled by a deterministic
    factor in [0.5, 1.0) derived from `call_key`.
    """
    ceiling = min(max_delay_s, base_delay_s * 2 ** (attempt - 1))
    digest = hashlib.blake2b(f"retry|{call_key}|{attempt}".encode(), digest_size=8).digest()
    fraction = int.from_bytes(digest, "big") / 2**64
    return float(ceiling) * (0.5 + 0.5 * fraction)


async def call_with_retries_outcome(
    provider: Provider,
    request: ChatRequest,
    *,
    attempts: int = 3,
    base_delay_s: float = 0.2,
    max_delay_s: float = 2.0,
    sleep: Sleep = asyncio.sleep,
) -> CallOutcome:
    """Call `provider.chat`, retrying retryable `LLMError`s (rate limit, timeout, unavailable).

    Non-retryable errors (and any non-`LLMError` exception) propagate at once.
    """
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    errors: list[str] = []
    for attempt in range(1, attempts + 1):
        try:
            response = await provider.chat(request)
        except LLMError as exc:
            errors.append(exc.kind)
            if not exc.retryable or attempt == attempts:
                exc.add_note(f"{provider.name}: gave up after {attempt} attempt(s): {errors}")
                raise
            await sleep(backoff_delay(request.call_key, attempt, base_delay_s, max_delay_s))
            continue
        return CallOutcome(response=response, attempts=attempt, errors=tuple(errors))
    raise AssertionError("unreachable")  # pragma: no cover


async def call_with_retries(
    provider: Provider,
    request: ChatRequest,
    *,
    attempts: int = 3,
    base_delay_s: float = 0.2,
    max_delay_s: float = 2.0,
    sleep: Sleep = asyncio.sleep,
) -> ChatResponse:
    """Like `call_with_retries_outcome` but returns only the response."""
    outcome = await call_with_retries_outcome(
        provider,
        request,
        attempts=attempts,
        base_delay_s=base_delay_s,
        max_delay_s=max_delay_s,
        sleep=sleep,
    )
    return outcome.response
