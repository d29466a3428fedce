"""Per-endpoint-class rate limits of the Gateway: sliding windows that answer HTTP 429.

History/retrieveBars has its own budget (50 requests / 30 s); every other endpoint, login
included, shares one (200 / 60 s). Limits are configurable as "N/SECONDS" or "unlimited"
(benchmarks). The window is kept per venue (the real key — token, user or IP — is not
documented; per venue is the strictest reading for a single client).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from daemon.errors import AnchordError

DEFAULT_HISTORY = "50/30"
DEFAULT_OTHER = "200/60"


class RateSpecError(AnchordError):
    """A rate limit that is neither "N/SECONDS" nor "unlimited"."""


def parse_rate(text: str) -> tuple[int, float] | None:
    """(requests, window seconds) for "N/S"; None for "unlimited"."""
    if text.strip().lower() in ("unlimited", "none", "0"):
        return None
    try:
        n, s = text.split("/")
        limit, window = int(n), float(s)
    except ValueError:
        raise RateSpecError(f"rate limit {text!r}: expected N/SECONDS or unlimited") from None
    if limit < 1 or window <= 0:
        raise RateSpecError(f"rate limit {text!r}: N and SECONDS must be positive")
    return limit, window


class SlidingWindow:
    """At most `limit` admitted requests in any `window` seconds."""

    def __init__(self, rate: tuple[int, float] | None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.monotonic = monotonic
        self.hits: deque[float] = deque()
        self.refused = 0

    def admit(self) -> tuple[bool, int]:
        """(admitted, seconds to wait before the next one would be admitted)."""
        if self.rate is None:
            return True, 0
        limit, window = self.rate
        now = self.monotonic()
        while self.hits and self.hits[0] <= now - window:
            self.hits.popleft()
        if len(self.hits) >= limit:
            self.refused += 1
            return False, max(1, math.ceil(self.hits[0] + window - now))
        self.hits.append(now)
        return True, 0


class RateLimits:
    """The two budgets: `history` (History/*) and `other` (everything else)."""

    def __init__(self, history: str = DEFAULT_HISTORY, other: str = DEFAULT_OTHER) -> None:
        self.set(history, other)

    def set(self, history: str | None = None, other: str | None = None) -> None:
        """Change a budget; a changed budget starts with an empty window."""
        if history is not None:
            self.history = SlidingWindow(parse_rate(history))
        if other is not None:
            self.other = SlidingWindow(parse_rate(other))

    def admit(self, endpoint: str) -> tuple[bool, int]:
        return (self.history if endpoint == "bars" else self.other).admit()
