"""A circuit breaker per backend: a dead backend must not slow every request down.

closed --N consecutive failures--> open --pause--> half-open (one probe at a time)
half-open --probe succeeds--> closed; --probe fails--> open again (pause restarts).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Thread-safe; ``clock`` is injectable so tests need not sleep."""

    def __init__(
        self, failure_threshold: int, reset_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def state(self) -> BreakerState:
        """The state now (an open circuit whose pause is over reads as half-open)."""
        with self._lock:
            return self._state_locked()

    def _state_locked(self) -> BreakerState:
        if self._state == BreakerState.OPEN and self._clock() - self._opened_at >= self.reset_seconds:
            self._state = BreakerState.HALF_OPEN
            self._probing = False
        return self._state

    def seconds_until_probe(self) -> float:
        with self._lock:
            if self._state_locked() != BreakerState.OPEN:
                return 0.0
            return max(0.0, self.reset_seconds - (self._clock() - self._opened_at))

    def allow(self) -> bool:
        """May a call go through now? In half-open, only one probe at a time."""
        with self._lock:
            state = self._state_locked()
            if state == BreakerState.CLOSED:
                return True
            if state == BreakerState.HALF_OPEN and not self._probing:
                self._probing = True
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self._state = BreakerState.CLOSED
            self._failures = 0
            self._probing = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            state = self._state_locked()
            if state == BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
                self._state = BreakerState.OPEN
                self._opened_at = self._clock()
            self._probing = False

    def release(self) -> None:
        """A probe ended without telling health either way (e.g. a schema failure)."""
        with self._lock:
            self._probing = False
