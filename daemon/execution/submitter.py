"""The submitter: drives outbox records to a final state, exactly once per intent.

Order/place is never resent blindly. Per record (see daemon/execution/order_states.py):
- PENDING: wait for the rate limits' slot, then place. Everything in the request that can
  wait (the slot, the tick size, a token refresh or login, a re-login after a 401) comes
  before the last check, which the client runs as the last statement before it writes the
  request (`last_check`): the kill switch on → BLOCKED and nothing goes out; stopping → left
  PENDING for the next start; else the record is marked SENT (written with the outcome, in one
  commit: see daemon/execution/outbox.py). An order id → ACCEPTED; a rejection → REJECTED; a
  timeout, 5xx, dropped connection, 429 or "custom tag already in use" → UNKNOWN.
- UNKNOWN: after a settle delay, look the tag up (Order/search over the order's time window);
  found → RESOLVED. A lookup that fails is not counted; after `unknown_checks` successful
  lookups without the tag the order is resent with the same tag (the venue refuses a second
  order with one tag, so this is safe), again right after a kill-switch check.

Records are driven one at a time, in the order their intents were added, by one worker task;
`wait_final` lets a replay with `pace = 0` hold the next bar until this bar's orders are final.
The outbox's `on_final` hooks run once per record, when it becomes final. An order accepted
while the kill switch is on is cancelled at once when `cancel_on_kill` says so (it was in
flight when the switch was engaged).
Stopping (SIGTERM) never waits on the network: waiters are released and the in-flight record
is left for start-up reconciliation.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

import anyio

from daemon.clock import Clock
from daemon.execution import order_states as states
from daemon.execution.errors import (
    AuthError,
    BadRequest,
    EnvelopeError,
    GatewayError,
    OrderNotSent,
    OrderOutcomeUnknown,
    OrderRejected,
    RateLimited,
    TagInUse,
)
from daemon.execution.order_states import OutboxRecord, State
from daemon.execution.outbox import Outbox
from daemon.intent import OrderIntent
from daemon.risk import RiskState

MARKET, LIMIT = 2, 1
REJECTED_STATUS = 5
LOOKUP_MARGIN = timedelta(minutes=10)  # clock skew between us and the venue


def field_of(obj: Any, *names: str) -> Any:
    """A field of a Gateway record, whether the client hands out dicts or objects."""
    for name in names:
        if isinstance(obj, dict):
            if name in obj:
                return obj[name]
        elif hasattr(obj, name):
            return getattr(obj, name)
    return None


def order_tag(order: Any) -> str | None:
    return field_of(order, "customTag", "custom_tag")


def order_id(order: Any) -> int:
    return int(field_of(order, "id", "order_id"))


def order_status(order: Any) -> int:
    return int(field_of(order, "status") or 0)


@dataclass
class SubmitSettings:
    """The [execution] keys the submitter reads (re-read on every use: reloadable)."""

    settle_s: float = 0.5
    unknown_checks: int = 3
    lookup_retry_s: float = 1.0


class Submitter:
    """Owns the outbox's in-flight records and the Order/place calls."""

    def __init__(self, *, client: Any, outbox: Outbox, risk: RiskState, clock: Clock,
                 log: Any, settings: Callable[[], SubmitSettings],
                 account_id: Callable[[], int]) -> None:
        self.client = client
        self.outbox = outbox
        self.risk = risk
        self.clock = clock
        self.log = log
        self.settings = settings
        self.account_id = account_id
        self.queue: deque[str] = deque()
        self._queued: set[str] = set()
        self._wake = anyio.Event()
        # fast_acquire: taking a free lock does not yield to the event loop (anyio's default
        # does, which cost an order a loop iteration and let other tasks run mid-order)
        self._lock = anyio.Lock(fast_acquire=True)
        self._final: dict[str, anyio.Event] = {}
        self.stopping = False
        self.errors = 0  # definitive submit errors (rejections)
        self.timing_errors = 0  # lost answers (timeouts, 5xx, resets, 429, tag in use)
        self.place_latency_us: deque[float] = deque(maxlen=10_000)
        self.cancel_on_kill: Callable[[], bool] = lambda: True
        outbox.on_final.append(self._finished)

    # -- intake ---------------------------------------------------------------------------
    def enqueue(self, intent: OrderIntent, tag: str, epoch: int) -> OutboxRecord:
        """Write the intent to the outbox (PENDING, before any network call) and queue it.
        The same intent again returns its existing record and queues it only if in flight."""
        rec = self.outbox.add(intent, tag, epoch, self.clock.now())
        if not rec.final:
            self._queue(rec.tag)
        return rec

    def requeue_in_flight(self) -> int:
        """Queue every in-flight record of the outbox (start-up, periodic check)."""
        n = 0
        for rec in self.outbox.in_flight():
            if rec.state != State.SENT and rec.tag not in self._queued:
                self._queue(rec.tag)
                n += 1
        return n

    def _queue(self, tag: str) -> None:
        if tag not in self._queued:
            self._queued.add(tag)
            self.queue.append(tag)
            self._wake.set()

    async def wait_final(self, tag: str) -> OutboxRecord | None:
        """Wait until the record of `tag` is final; None if the submitter is stopping."""
        while not self.stopping:
            rec = self.outbox.get(tag)
            if rec is None or rec.final:
                return rec
            event = self._final.setdefault(tag, anyio.Event())
            await event.wait()
        return None

    def stop(self) -> None:
        """Release every waiter; in-flight requests are left to start-up reconciliation."""
        self.stopping = True
        for event in self._final.values():
            event.set()
        self._wake.set()

    # -- the worker -------------------------------------------------------------------------
    async def run(self) -> None:
        """Drive queued records one at a time, in order, until cancelled or stopped."""
        while not self.stopping:
            if not self.queue:
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            await self._drive_head()

    async def drain(self) -> None:
        """Drive every queued record to a final state (safe beside the worker: records are
        driven under one lock and re-read from the outbox each time)."""
        while self.queue and not self.stopping:
            await self._drive_head()

    async def _drive_head(self) -> None:
        tag = self.queue[0]
        await self.drive(tag)
        if self.queue and self.queue[0] == tag:
            self.queue.popleft()
            self._queued.discard(tag)

    async def drive(self, tag: str) -> OutboxRecord | None:
        """Take one record from wherever it stands to a final state (one record at a time)."""
        async with self._lock:
            return await self._drive(tag)

    async def _drive(self, tag: str) -> OutboxRecord | None:
        rec = self.outbox.get(tag)
        while rec is not None and not rec.final and not self.stopping:
            action = states.next_action(rec)
            if action in ("send", "resend"):
                before = rec.state
                rec = await self._send(rec)
                if rec.state == before and not rec.final and not self.stopping:
                    # nothing went out (a login or tick-size lookup failed): try again later
                    await self.clock.sleep(self.settings().lookup_retry_s)
            elif action == "lookup":
                rec = await self._lookup(rec)
            else:  # SENT with nobody sending (a send cut short by an error): it may have landed
                rec = self.outbox.apply(tag, states.Restarted(self.clock.now()))
        return rec

    def _finished(self, rec: OutboxRecord) -> None:
        event = self._final.pop(rec.tag, None)
        if event is not None:
            event.set()

    def last_check(self, tag: str) -> str | None:
        """Run by the client as the last statement before an Order/place is written: the
        reason it must not go out ("kill_switch", "stopping"), or None after marking the
        record SENT."""
        if self.stopping:
            return "stopping"
        if self.risk.kill_switch:
            return "kill_switch"
        rec = self.outbox.get(tag)
        if rec is not None and rec.state != State.SENT:  # a resend after a 401 is one attempt
            self.outbox.mark_sent(tag, self.clock.now())
        return None

    async def _send(self, rec: OutboxRecord) -> OutboxRecord:
        await self.client.wait_for_order_slot()
        t0 = time.perf_counter_ns()
        try:
            oid = await self.client.place_order(
                account_id=self.account_id(), contract_id=rec.contract,
                type=LIMIT if rec.limit_price is not None else MARKET, side=int(rec.side),
                size=rec.size, limit_price=rec.limit_price, custom_tag=rec.tag,
                last_check=partial(self.last_check, rec.tag))
        except OrderNotSent as err:
            return self._not_sent(rec.tag, err.reason)
        except TagInUse as err:
            return self._unknown(rec.tag, f"tag in use: {err.message}")
        except OrderRejected as err:
            self.errors += 1
            self.log.warning("order_rejected", tag=rec.tag, error_code=err.error_code,
                             reason=err.message, order_id=err.order_id)
            return self.outbox.apply(rec.tag, states.Rejected(
                f"{err.error_code}: {err.message}", self.clock.now(), err.order_id))
        except BadRequest as err:  # refused as sent (HTTP 4xx): nothing was placed
            self.errors += 1
            self.log.warning("order_rejected", tag=rec.tag, reason=str(err))
            return self.outbox.apply(rec.tag, states.Rejected(str(err), self.clock.now()))
        except (OrderOutcomeUnknown, RateLimited, AuthError, GatewayError) as err:
            return self._unknown(rec.tag, str(err))
        except (OSError, anyio.BrokenResourceError) as err:
            return self._unknown(rec.tag, repr(err))
        self.place_latency_us.append((time.perf_counter_ns() - t0) / 1000)
        self.log.info("order_accepted", tag=rec.tag, order_id=oid, side=int(rec.side),
                      size=rec.size, attempt=self.outbox.get(rec.tag).attempts)
        rec = self.outbox.apply(rec.tag, states.Accepted(int(oid), self.clock.now()))
        await self._cancel_if_killed(rec)
        return rec

    def _not_sent(self, tag: str, reason: str) -> OutboxRecord:
        """The last check stopped the request: under the kill switch the record is BLOCKED
        (never sent); when stopping it stays as it is on disk, for the next start."""
        rec = self.outbox.get(tag)
        assert rec is not None
        if rec.state == State.SENT:  # a 401 answered the first request: look it up anyway
            return self._unknown(tag, f"not resent after HTTP 401 ({reason})")
        if reason != "kill_switch":
            return rec
        self.log.warning("order_blocked", tag=tag, intent_id=rec.intent_id, reason=reason)
        return self.outbox.apply(tag, states.Blocked(reason, self.clock.now()))

    def _unknown(self, tag: str, reason: str) -> OutboxRecord:
        """The outcome of the request is not known (or, if the record never got past the
        last check, nothing went out and it stays as it was)."""
        rec = self.outbox.get(tag)
        assert rec is not None
        if rec.state != State.SENT:  # failed before the last check: nothing went out
            self.log.warning("order_not_sent", tag=rec.tag, reason=reason)
            return rec
        self.timing_errors += 1
        self.log.warning("order_outcome_unknown", tag=rec.tag, reason=reason,
                         attempt=rec.attempts)
        return self.outbox.apply(rec.tag, states.Unknown(reason, self.clock.now()))

    async def _lookup(self, rec: OutboxRecord) -> OutboxRecord:
        s = self.settings()
        await self.clock.sleep(s.settle_s)
        found = await self.find_orders([rec])
        if found is None:
            await self.clock.sleep(s.lookup_retry_s)
            return self.outbox.get(rec.tag) or rec
        rec = self.resolve(rec, found.get(rec.tag), s.unknown_checks)
        await self._cancel_if_killed(rec)
        return rec

    def resolve(self, rec: OutboxRecord, order: Any, limit: int) -> OutboxRecord:
        """Apply one successful lookup's answer for `rec` (order None = tag not found)."""
        now = self.clock.now()
        if order is None:
            rec = self.outbox.apply(rec.tag, states.Absent(limit, now))
            self.log.info("order_lookup_absent", tag=rec.tag, checks=rec.checks,
                          resend_due=rec.resend_due)
            return rec
        rejected = order_status(order) == REJECTED_STATUS
        self.log.info("order_resolved", tag=rec.tag, order_id=order_id(order),
                      outcome="rejected" if rejected else "accepted")
        if rejected:
            self.errors += 1
        return self.outbox.apply(rec.tag, states.Found(order_id(order), rejected, now))

    async def find_orders(self, recs: list[OutboxRecord]) -> dict[str, Any] | None:
        """Orders at the venue by customTag over the records' time window; None when the
        lookup itself failed (which says nothing about the orders)."""
        times = [r.created_at for r in recs] + [r.sent_at for r in recs if r.sent_at]
        start = min(times) - LOOKUP_MARGIN
        end = self.clock.now() + LOOKUP_MARGIN
        try:
            orders = await self.client.search_orders(self.account_id(), start, end)
        except (GatewayError, OSError) as err:
            self.log.warning("order_lookup_failed", error=str(err))
            return None
        return {t: o for o in orders if (t := order_tag(o))}

    # -- fills and kill-switch cancels --------------------------------------------------------
    async def _cancel_if_killed(self, rec: OutboxRecord) -> None:
        """An order acknowledged while the kill switch is on was in flight when it engaged:
        cancel it now (if `cancel_on_kill`), so no order of ours rests after a kill."""
        if self.risk.kill_switch and rec.accepted and rec.filled < rec.size \
                and self.cancel_on_kill():
            await self.cancel(rec, "kill_switch")

    async def cancel(self, rec: OutboxRecord, reason: str) -> bool:
        """Order/cancel for our accepted record `rec` (its end is recorded when the venue's
        order says so); True when the venue took the cancel. Failures are logged."""
        if rec.order_id is None:
            return False
        try:
            await self.client.cancel_order(self.account_id(), int(rec.order_id))
        except EnvelopeError as err:  # the venue answered: typically filled or ended already
            self.log.info("order_cancel_refused", tag=rec.tag, order_id=rec.order_id,
                          reason=reason, error=str(err))
            return False
        except (GatewayError, OSError) as err:
            self.log.warning("order_cancel_failed", tag=rec.tag, order_id=rec.order_id,
                             reason=reason, error=str(err))
            return False
        self.log.warning("order_cancel_requested", tag=rec.tag, order_id=rec.order_id,
                         reason=reason)
        return True

    async def cancel_open_orders(self, prefix: str) -> int:
        """Cancel this installation's open orders (tags starting with `prefix`)."""
        try:
            orders = await self.client.search_open_orders(self.account_id())
        except (GatewayError, OSError) as err:
            self.log.warning("cancel_on_kill_failed", error=str(err))
            return 0
        n = 0
        for o in orders:
            tag = order_tag(o) or ""
            if not tag.startswith(prefix):
                continue
            try:
                await self.client.cancel_order(self.account_id(), order_id(o))
                n += 1
                self.log.warning("order_cancelled_on_kill", tag=tag, order_id=order_id(o))
            except (GatewayError, OSError) as err:
                self.log.warning("cancel_on_kill_failed", tag=tag, error=str(err))
        return n

    def place_latency_p99_ms(self) -> float | None:
        """p99 of Order/place round trips (ms), or None before the first accepted order."""
        if not self.place_latency_us:
            return None
        ordered = sorted(self.place_latency_us)
        return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] / 1000
