"""The client's token buckets, pure, on a manual clock: budgets per window, order pacing,
run-time QPS changes, and orders drawing on the general budget."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.clock import ManualClock
from daemon.execution.ratelimit import (
    LimitSpec,
    RateLimiter,
    RateLimitError,
    TokenBucket,
    check_order_qps,
    parse_window,
)


def max_in_window(times: list[float], window: float) -> int:
    """The most events in any half-open window of `window` seconds."""
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


async def greedy(limiter: RateLimiter, clock: ManualClock, klass: str, until: float) -> list[float]:
    """Acquire as fast as the limiter allows until `until` seconds of clock time."""
    times = []
    while clock.monotonic() < until:
        await limiter.acquire(klass)
        times.append(clock.monotonic())
    return times


@pytest.mark.parametrize(("klass", "limit", "window"), [("history", 50, 30.0),
                                                         ("general", 200, 60.0)])
async def test_class_budgets_never_exceed_the_gateway_window(klass, limit, window):
    clock = ManualClock()
    limiter = RateLimiter(clock)
    times = await greedy(limiter, clock, klass, until=4 * window)
    assert max_in_window(times, window) <= limit
    # ... while using most of it (95 % margin, 10 % of it as a burst)
    assert len(times) >= 0.85 * 4 * limit


def test_bucket_for_window_sizes():
    clock = ManualClock()
    b = TokenBucket.for_window(50, 30.0, clock)
    assert b.capacity + b.rate * 30 <= 50
    assert b.capacity >= 1
    assert parse_window("200/60") == (200, 60.0)
    for bad in ("200", "x/60", "0/60", "10/0"):
        with pytest.raises(RateLimitError):
            parse_window(bad)


async def test_orders_are_paced_at_the_qps_and_a_change_applies_to_the_next_order():
    clock = ManualClock()
    limiter = RateLimiter(clock, LimitSpec(order_qps=2.0))
    await limiter.acquire("orders")
    times = [clock.monotonic()]
    for _ in range(10):
        await limiter.acquire("orders")
        times.append(clock.monotonic())
    gaps = [b - a for a, b in zip(times[1:], times[2:], strict=False)]
    assert all(abs(g - 0.5) < 1e-6 for g in gaps), gaps
    limiter.set_order_qps(4.0)
    t0 = clock.monotonic()
    await limiter.acquire("orders")
    assert clock.monotonic() - t0 <= 0.25 + 1e-6
    t1 = clock.monotonic()
    await limiter.acquire("orders")
    assert abs(clock.monotonic() - t1 - 0.25) < 1e-6
    # slow → fast while an order is due far in the future: the next one needs at most 1/5 s
    limiter.set_order_qps(0.1)
    await limiter.acquire("orders")
    assert limiter.wait_time("orders") > 9
    limiter.set_order_qps(5)
    assert limiter.wait_time("orders") <= 0.2 + 1e-9
    assert limiter.snapshot()["order_qps"] == 5.0


def test_order_qps_is_bounded_by_the_runbook():
    for bad in (0, -1, 5.01, 6, float("nan"), "fast"):
        with pytest.raises(RateLimitError):
            check_order_qps(bad)
    assert check_order_qps(5) == 5.0
    limiter = RateLimiter(ManualClock())
    with pytest.raises(RateLimitError):
        limiter.set_order_qps(7)
    assert limiter.order_qps == 2.0
    with pytest.raises(RateLimitError):
        RateLimiter(ManualClock(), LimitSpec(order_qps=10))


async def test_orders_draw_on_the_general_budget():
    clock = ManualClock()
    limiter = RateLimiter(clock, LimitSpec(order_qps=5.0, general="20/60"))
    times = await greedy(limiter, clock, "orders", until=180.0)
    assert max_in_window(times, 60.0) <= 20  # the general budget binds, not the 5 qps
    assert limiter.taken["orders"] == len(times)
    assert limiter.buckets["general"].tokens < 1
    # a general request now has to wait too: orders used the shared budget
    assert limiter.wait_time("general") > 0
    # and general requests slow orders down
    clock2 = ManualClock()
    lim2 = RateLimiter(clock2, LimitSpec(order_qps=5.0, general="20/60"))
    for _ in range(int(lim2.buckets["general"].capacity)):
        assert lim2.try_acquire("general")
    assert not lim2.try_acquire("orders")


async def test_try_acquire_is_all_or_nothing():
    clock = ManualClock()
    limiter = RateLimiter(clock, LimitSpec(order_qps=1.0))
    assert limiter.try_acquire("orders")
    general_before = limiter.buckets["general"].tokens
    assert not limiter.try_acquire("orders")  # orders bucket empty: general untouched
    assert limiter.buckets["general"].tokens == pytest.approx(general_before)
    with pytest.raises(RateLimitError):
        limiter.wait_time("bogus")


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.tuples(st.sampled_from(["history", "general", "orders", "idle",
                                                 "qps"]),
                                st.floats(min_value=0.0, max_value=3.0),
                                st.floats(min_value=0.1, max_value=5.0)),
                      min_size=1, max_size=120))
def test_no_window_is_ever_over_budget_whatever_the_traffic(steps):
    """Random traffic, idle times and QPS changes: in every window the Gateway counts in, the
    client sends no more than the budget (history 50/30 s, general incl. orders 200/60 s), and
    orders never come closer than the QPS in force allows."""
    clock = ManualClock()
    limiter = RateLimiter(clock)
    sent: dict[str, list[float]] = {"history": [], "general": [], "orders": []}

    async def drive() -> None:
        for kind, pause, qps in steps:
            if kind == "idle":
                clock.advance(pause * 20)
            elif kind == "qps":
                limiter.set_order_qps(qps)
            else:
                await limiter.acquire(kind)
                sent[kind].append(clock.monotonic())
                if kind == "orders":
                    sent["general"].append(clock.monotonic())

    anyio.run(drive)
    assert max_in_window(sorted(sent["history"]), 30.0) <= 50
    assert max_in_window(sorted(sent["general"]), 60.0) <= 200
    assert max_in_window(sent["orders"], 1.0) <= 1 + 5  # at most 5/s after the first
