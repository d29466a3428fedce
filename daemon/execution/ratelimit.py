"""Client-side rate limits of the Gateway: token buckets per endpoint class, on the injected clock.

Classes: `history` (History/retrieveBars, the Gateway's 50 requests / 30 s), `general` (every
other endpoint, login included: 200 / 60 s) and `orders` (Order/place at
`[projectx].rate_limit_qps`, never above MAX_ORDER_QPS, and also drawing one token from
`general`, because the Gateway counts orders in that budget too).

A window limit "N per W seconds" becomes a bucket of capacity C refilled at (N - C) / W per
second: at most C + (N - C) = N requests can then pass in ANY window of W seconds, so the client
never trips the server's limit whether the server counts in fixed or sliding windows. A `margin`
(default 95 %) leaves room for requests that reach the server late. The orders bucket holds
about one token, so submissions are paced evenly at the QPS rather than sent in bursts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import anyio

from daemon.clock import Clock
from daemon.errors import AnchordError

MAX_ORDER_QPS = 5.0  # the runbook's ceiling; config and ctl refuse more
HISTORY_LIMIT = (50, 30.0)
GENERAL_LIMIT = (200, 60.0)
CLASSES = ("history", "general", "orders")
_MAX_NAP_S = 0.25  # a waiter re-checks at least this often, so a rate change applies at once
# The orders bucket holds 1.1 tokens: an order needs 1, so there are no bursts, and a waiter
# that wakes late (by up to 10 % of an interval) does not lose that time from the long-run rate.
ORDER_BUCKET_CAPACITY = 1.1


class RateLimitError(AnchordError):
    """A rate limit setting out of range (e.g. an order QPS above the runbook's 5)."""


def check_order_qps(qps: float) -> float:
    """`qps` as a float if 0 < qps <= MAX_ORDER_QPS; RateLimitError otherwise."""
    try:
        value = float(qps)
    except (TypeError, ValueError):
        raise RateLimitError(f"order rate {qps!r} is not a number") from None
    if not math.isfinite(value) or not 0 < value <= MAX_ORDER_QPS:
        raise RateLimitError(f"order rate must be > 0 and <= {MAX_ORDER_QPS:g} per second, "
                             f"got {qps!r}")
    return value


def parse_window(text: str) -> tuple[int, float]:
    """(requests, seconds) for a limit written "N/SECONDS"; RateLimitError otherwise."""
    try:
        n, s = str(text).split("/")
        limit, window = int(n), float(s)
    except ValueError:
        raise RateLimitError(f"rate limit {text!r}: expected N/SECONDS, e.g. 200/60") from None
    if limit < 1 or not window > 0:
        raise RateLimitError(f"rate limit {text!r}: N and SECONDS must be positive")
    return limit, window


class TokenBucket:
    """`capacity` tokens, refilled continuously at `rate` per second of the clock's monotonic
    time. Pure bookkeeping: `wait_time` and `take` never sleep."""

    def __init__(self, capacity: float, rate: float, clock: Clock,
                 initial: float | None = None) -> None:
        if capacity < 1 or rate <= 0:
            raise RateLimitError(f"bucket needs capacity >= 1 and rate > 0, got {capacity}, "
                                 f"{rate}")
        self.capacity = float(capacity)
        self.rate = float(rate)
        self.clock = clock
        self.tokens = float(capacity if initial is None else min(initial, capacity))
        self._stamp = clock.monotonic()

    @classmethod
    def for_window(cls, limit: int, window_s: float, clock: Clock, *, burst: float = 0.1,
                   margin: float = 0.95) -> TokenBucket:
        """A bucket that admits at most `margin * limit` requests in any `window_s` seconds,
        with a burst of about `burst` of them."""
        total = max(2.0, math.floor(limit * margin))
        capacity = max(1.0, math.floor(total * burst))
        return cls(capacity, (total - capacity) / window_s, clock)

    def _refill(self) -> None:
        now = self.clock.monotonic()
        if now > self._stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def wait_time(self, n: float = 1.0) -> float:
        """Seconds until `n` tokens are available (0 if they are now)."""
        self._refill()
        missing = n - self.tokens
        return 0.0 if missing <= 1e-12 else missing / self.rate

    def take(self, n: float = 1.0) -> None:
        """Remove `n` tokens (call only when `wait_time(n)` is 0)."""
        self._refill()
        self.tokens -= n

    def set_rate(self, rate: float, capacity: float | None = None) -> None:
        """Change the refill rate (and capacity) from now on; tokens already earned are kept
        up to the new capacity."""
        if rate <= 0:
            raise RateLimitError(f"bucket rate must be > 0, got {rate}")
        self._refill()
        self.rate = float(rate)
        if capacity is not None:
            self.capacity = float(capacity)
        self.tokens = min(self.tokens, self.capacity)

    def snapshot(self) -> dict[str, float]:
        self._refill()
        return {"capacity": self.capacity, "rate_per_s": round(self.rate, 6),
                "tokens": round(self.tokens, 3)}


@dataclass(frozen=True)
class LimitSpec:
    """The budgets of a RateLimiter: "N/SECONDS" for the two classes and the order QPS."""

    order_qps: float = 2.0
    history: str = "50/30"
    general: str = "200/60"
    margin: float = 0.95


class RateLimiter:
    """The three buckets and the waiting on them. One instance per Gateway session."""

    def __init__(self, clock: Clock, spec: LimitSpec | None = None) -> None:
        spec = spec or LimitSpec()
        self.clock = clock
        h_n, h_w = parse_window(spec.history)
        g_n, g_w = parse_window(spec.general)
        self.buckets = {
            "history": TokenBucket.for_window(h_n, h_w, clock, margin=spec.margin),
            "general": TokenBucket.for_window(g_n, g_w, clock, margin=spec.margin),
            "orders": TokenBucket(ORDER_BUCKET_CAPACITY, check_order_qps(spec.order_qps), clock,
                                  initial=1.0),
        }
        self.order_qps = check_order_qps(spec.order_qps)
        # fast_acquire: a free lock is taken without a trip through the event loop
        self._locks = {name: anyio.Lock(fast_acquire=True) for name in CLASSES}
        self.waited_s = {name: 0.0 for name in CLASSES}
        self.taken = {name: 0 for name in CLASSES}

    def _needs(self, klass: str) -> tuple[TokenBucket, ...]:
        if klass == "orders":
            return self.buckets["orders"], self.buckets["general"]
        if klass not in self.buckets:
            raise RateLimitError(f"unknown rate class {klass!r} (known: {', '.join(CLASSES)})")
        return (self.buckets[klass],)

    def wait_time(self, klass: str) -> float:
        """Seconds before a request of `klass` may go (0 = now); takes nothing."""
        return max(b.wait_time() for b in self._needs(klass))

    def try_acquire(self, klass: str) -> bool:
        """Take the tokens for one request of `klass` if all are available now."""
        buckets = self._needs(klass)
        if any(b.wait_time() > 0 for b in buckets):
            return False
        for b in buckets:
            b.take()
        self.taken[klass] += 1
        return True

    async def acquire(self, klass: str) -> float:
        """Wait (on the injected clock) until one request of `klass` may go, take its tokens
        and return the seconds waited. Waiters of one class go first come, first served; an
        order takes its `orders` and its `general` token together or not at all."""
        waited = 0.0
        async with self._locks[klass]:
            while True:
                wait = self.wait_time(klass)
                if wait <= 0:
                    break
                nap = min(wait, _MAX_NAP_S)
                t0 = self.clock.monotonic()
                await self.clock.sleep(nap)
                waited += max(0.0, self.clock.monotonic() - t0)
            for b in self._needs(klass):
                b.take()
            self.taken[klass] += 1
        self.waited_s[klass] += waited
        return waited

    def set_order_qps(self, qps: float) -> float:
        """Change the order rate at run time (ctl rate-limit, SIGHUP); effective for the next
        order, including one already waiting. RateLimitError if out of range."""
        value = check_order_qps(qps)
        self.buckets["orders"].set_rate(value)
        self.order_qps = value
        return value

    def snapshot(self) -> dict[str, object]:
        """What `ctl status` shows: the order QPS and each bucket's state."""
        return {"order_qps": self.order_qps,
                **{name: {**b.snapshot(), "taken": self.taken[name],
                          "waited_s": round(self.waited_s[name], 3)}
                   for name, b in self.buckets.items()}}
