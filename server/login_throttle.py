"""Failed logins are limited per user name and address: after `max_failures` failures within `window`
seconds, that pair is refused (429 with Retry-After) until the oldest failure is `window` old.

Argon2 already makes each guess slow; this bounds how many one address gets per name and minute. It
lives in memory, in the one dashboard process: a restart forgets it, which gives a few more guesses at
most. A success clears the pair's failures.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

# Past this many tracked (name, address) pairs, pairs with no recent failure are dropped first.
MAX_TRACKED = 10_000


class LoginThrottle:
    def __init__(self, *, max_failures: int, window: float) -> None:
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()  # login requests run on the thread pool

    def retry_after(self, name: str, address: str, now: float | None = None) -> int | None:
        """Seconds until this pair may try again, or None if it may now."""
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = self._recent((name, address), now)
            if len(recent) < self.max_failures:
                return None
            return max(1, math.ceil(recent[0] + self.window - now))

    def failed(self, name: str, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if len(self._failures) >= MAX_TRACKED:
                self._forget_old(now)
            self._recent((name, address), now).append(now)

    def succeeded(self, name: str, address: str) -> None:
        with self._lock:
            self._failures.pop((name, address), None)

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def _forget_old(self, now: float) -> None:
        for key in [key for key, times in self._failures.items() if not times or times[-1] <= now - self.window]:
            del self._failures[key]
        if len(self._failures) >= MAX_TRACKED:  # a flood of fresh pairs: keep memory bounded anyway
            self._failures.clear()
