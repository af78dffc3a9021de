"""Circuit breaker per provider/model: stop calling a failing model, probe it again after a cool-down."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class CircuitBreaker:
    failure_threshold: int = 5
    cooldown_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    state: str = "closed"  # closed -> open -> half_open -> closed|open
    failures: int = 0
    opened_at: float = 0.0
    trips: int = 0

    def allow(self) -> bool:
        """True when a call may go out; an open breaker lets one probe through after the cool-down."""
        if self.state == "open":
            if self.clock() - self.opened_at >= self.cooldown_s:
                self.state = "half_open"
                return True
            return False
        return True

    def record_success(self) -> None:
        self.state = "closed"
        self.failures = 0

    def record_failure(self) -> bool:
        """Counts a failure; True when this one tripped the breaker open."""
        self.failures += 1
        if self.state == "half_open" or (self.state == "closed" and self.failures >= self.failure_threshold):
            self.state = "open"
            self.opened_at = self.clock()
            self.trips += 1
            return True
        return False


@dataclass
class BreakerBoard:
    """The worker's breakers, one per (provider, model), created on first use."""

    failure_threshold: int = 5
    cooldown_s: float = 30.0
    breakers: dict[tuple[str, str], CircuitBreaker] = field(default_factory=dict)

    def get(self, provider: str, model: str) -> CircuitBreaker:
        key = (provider, model)
        if key not in self.breakers:
            self.breakers[key] = CircuitBreaker(self.failure_threshold, self.cooldown_s)
        return self.breakers[key]

    def states(self) -> dict[str, str]:
        """`provider/model` -> state (and trips so far), for the worker's heartbeat."""
        return {f"{p}/{m}": f"{b.state} ({b.trips} trips)" for (p, m), b in self.breakers.items()}
