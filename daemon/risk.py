"""RiskState (kill switch, news embargo) and the pure pre-trade gate over its snapshot.

RiskState is plain data plus the rules that change it; persistence goes through the store, so a
kill switch engaged by signal, ctl or config survives a restart and only `resume` releases it.
`gate(intent, snapshot, limits, market)` is a pure function returning a `Verdict` with a reason
code; the pipeline logs and counts every denial.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from daemon.intent import OrderIntent
from daemon.store import Store
from daemon.timeutil import iso, parse_utc


@dataclass(frozen=True)
class RiskSnapshot:
    """An immutable view of RiskState for one decision (what the gate sees)."""

    kill_switch: bool
    kill_reason: str
    news_marks: tuple[datetime, ...]
    embargo_before: timedelta
    embargo_after: timedelta
    # Scheduled events from the calendar file (same embargo window as news marks).
    scheduled: tuple[datetime, ...] = ()

    def in_embargo(self, at: datetime) -> bool:
        """True when `at` lies within [event - before, event + after] of any news mark or
        scheduled calendar event."""
        if not self.news_marks and not self.scheduled:
            return False
        lo, hi = at - self.embargo_after, at + self.embargo_before
        return (any(lo <= m <= hi for m in self.news_marks)
                or any(lo <= m <= hi for m in self.scheduled))


NO_RISK = RiskSnapshot(False, "", (), timedelta(0), timedelta(0))  # no switch, no embargo


@dataclass
class RiskState:
    """The live risk state. A change is in force in memory first and then persisted when a
    store is attached; a write the store cannot take now (locked, full disk) is kept and
    retried (`retry_persist`), and said loudly (`persist_error`, `on_persist_error`), but a
    kill switch or news mark in force is never undone by it."""

    kill_switch: bool = False
    kill_reason: str = ""
    news: list[datetime] = field(default_factory=list)
    embargo_before: timedelta = timedelta(minutes=15)
    embargo_after: timedelta = timedelta(minutes=15)
    store: Store | None = None
    calendar: list[datetime] = field(default_factory=list)
    persist_error: str = ""  # why the last risk write failed ("" = everything persisted)
    on_persist_error: Callable[[str, str], None] | None = None  # (what, error)
    _unsaved: dict[str, Callable[[], None]] = field(default_factory=dict)

    @classmethod
    def load(cls, store: Store, before_min: float, after_min: float) -> RiskState:
        """The persisted state (kill switch, news marks) with the configured embargo window."""
        on, reason = store.load_kill_switch()
        return cls(kill_switch=on, kill_reason=reason, news=store.news_marks(),
                   embargo_before=timedelta(minutes=before_min),
                   embargo_after=timedelta(minutes=after_min), store=store)

    def engage_kill(self, reason: str, at: datetime) -> bool:
        """Engage the kill switch: in force at once, then persisted (or kept for a retry; never
        raises). True if it was off before."""
        was_off = not self.kill_switch
        self.kill_switch, self.kill_reason = True, reason
        self._persist("kill_switch", lambda: self._store().save_kill_switch(True, reason, at))
        return was_off

    def release_kill(self, at: datetime) -> bool:
        """Release the kill switch (only `anchord ctl resume` calls this): persisted first, so
        that a store that cannot take the write leaves the switch on (sqlite3.Error raised).
        True if it was on."""
        was_on = self.kill_switch
        if self.store is not None:
            self.store.save_kill_switch(False, "", at)
        self._unsaved.pop("kill_switch", None)
        self.kill_switch, self.kill_reason = False, ""
        return was_on

    def mark_news(self, ts: datetime, source: str = "ctl") -> None:
        """Record a news event: orders are embargoed around `ts` from now on (then persisted,
        or kept for a retry; never raises)."""
        if ts not in self.news:
            self.news.append(ts)
            self.news.sort()
        self._persist(f"news {iso(ts)}", lambda: self._store().add_news_mark(ts, source))

    def _store(self) -> Store:
        assert self.store is not None
        return self.store

    def _persist(self, what: str, write: Callable[[], None]) -> None:
        if self.store is None:
            return
        self._unsaved[what] = write
        self.retry_persist()

    def retry_persist(self) -> bool:
        """Write what could not be written before, in order; True when nothing is left."""
        for what, write in list(self._unsaved.items()):
            try:
                write()
            except sqlite3.Error as err:
                self.persist_error = f"{what}: {err}"
                if self.on_persist_error is not None:
                    self.on_persist_error(what, str(err))
                return False
            self._unsaved.pop(what, None)
        self.persist_error = ""
        return True

    @property
    def unsaved(self) -> list[str]:
        """What is in force but not yet persisted (empty when all is on disk)."""
        return list(self._unsaved)

    def set_embargo(self, before_min: float, after_min: float) -> None:
        self.embargo_before = timedelta(minutes=before_min)
        self.embargo_after = timedelta(minutes=after_min)

    def snapshot(self) -> RiskSnapshot:
        return RiskSnapshot(self.kill_switch, self.kill_reason, tuple(self.news),
                            self.embargo_before, self.embargo_after, tuple(self.calendar))

    def set_calendar(self, events: list[datetime]) -> None:
        """Replace the scheduled events (from the calendar file)."""
        self.calendar = sorted(events)

    def embargo_active(self, at: datetime) -> bool:
        return self.snapshot().in_embargo(at)


# -- the pre-trade gate ---------------------------------------------------------------
# Reason codes, in the order the gate checks them.
ACCEPTED = "ok"
KILL_SWITCH = "kill_switch"
NEWS_EMBARGO = "news_embargo"
BAD_INTENT = "bad_intent"
OUTSIDE_SESSION = "outside_session"
STALE_BAR = "stale_bar"
PRICE_DEVIATION = "price_deviation"
MARKET_CLOSED = "market_closed"
POSITION_MISMATCH = "position_mismatch"
MAX_ORDER_SIZE = "max_order_size"
MAX_POSITION = "max_position"
MAX_DAILY_LOSS = "max_daily_loss"
ORDERS_PER_MINUTE = "orders_per_minute"
REASONS: tuple[str, ...] = (KILL_SWITCH, POSITION_MISMATCH, NEWS_EMBARGO, BAD_INTENT,
                            MARKET_CLOSED, OUTSIDE_SESSION, STALE_BAR, PRICE_DEVIATION,
                            MAX_ORDER_SIZE, MAX_POSITION, MAX_DAILY_LOSS, ORDERS_PER_MINUTE)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The gate's answer: accepted, or denied with a reason code from `REASONS`."""

    accepted: bool
    reason: str


@dataclass(frozen=True)
class Session:
    """A trading window in UTC on the given weekdays (0 = Monday); end may be 24:00."""

    days: frozenset[int]
    start_min: int
    end_min: int

    def contains(self, at: datetime) -> bool:
        """True when `at` (UTC) falls on one of the days inside [start, end)."""
        minute = at.hour * 60 + at.minute
        return at.weekday() in self.days and self.start_min <= minute < self.end_min


_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_session(text: str) -> Session:
    """Parse "Mon-Fri 13:30-20:00" (UTC; days optional, default Mon-Fri). ValueError if bad."""
    parts = text.strip().split()
    if len(parts) == 1:
        days_txt, hours_txt = "mon-fri", parts[0]
    elif len(parts) == 2:
        days_txt, hours_txt = parts[0].lower(), parts[1]
    else:
        raise ValueError(f"session {text!r}: expected 'Mon-Fri HH:MM-HH:MM'")
    days: set[int] = set()
    for chunk in days_txt.split(","):
        a, _, b = chunk.partition("-")
        if a not in _DAY_NAMES or (b and b not in _DAY_NAMES):
            raise ValueError(f"session {text!r}: unknown day in {chunk!r}")
        i, j = _DAY_NAMES.index(a), _DAY_NAMES.index(b or a)
        days.update(range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)])

    def minutes(hhmm: str) -> int:
        h, _, m = hhmm.partition(":")
        if not (h.isdigit() and m.isdigit()):
            raise ValueError(f"session {text!r}: bad time {hhmm!r}")
        value = int(h) * 60 + int(m)
        if not 0 <= value <= 24 * 60 or int(m) >= 60:
            raise ValueError(f"session {text!r}: bad time {hhmm!r}")
        return value

    start_txt, sep, end_txt = hours_txt.partition("-")
    if not sep:
        raise ValueError(f"session {text!r}: expected HH:MM-HH:MM")
    start, end = minutes(start_txt), minutes(end_txt)
    if start >= end:
        raise ValueError(f"session {text!r}: start must be before end")
    return Session(frozenset(days), start, end)


@dataclass(frozen=True)
class RiskLimits:
    """The gate's limits (from `[limits]`). A limit <= 0 is off, except max_position (0 means
    flat only) and the sessions (empty means always open)."""

    max_order_size: int = 2
    max_position: int = 4
    max_daily_loss: float = 5000.0
    sessions: tuple[Session, ...] = ()
    stale_bar_s: float = 0.0
    max_price_deviation: float = 0.0
    max_orders_per_minute: int = 0


@dataclass(frozen=True, slots=True)
class MarketView:
    """What the gate needs to know about the market and the book besides the intent.

    `now`: the decision time (bar time in replay, the clock live); `bar_ts`: the bar the intent
    came from; `last_close`: the previous bar's close (price-deviation reference; 0 = unknown);
    `daily_pnl`: the ledger's P&L of the trading day (realised + unrealised − fees, currency);
    `orders_last_minute`: orders accepted in the 60 s before `now`; `market_open`: the
    exchange calendar has a session open at `now`; `blocked`: a reason code that blocks new
    risk (e.g. a position mismatch), `block_all` when it blocks every intent.
    """

    now: datetime
    bar_ts: datetime
    last_close: float
    daily_pnl: float = 0.0
    orders_last_minute: int = 0
    market_open: bool = True
    blocked: str = ""
    block_all: bool = False


def reduces_exposure(position: int, target: int) -> bool:
    """True when moving from `position` to `target` only takes risk off: |target| smaller and
    on the same side (or flat). A flip (+3 → −1) is new risk for its new side."""
    return abs(target) < abs(position) and (target == 0 or (target > 0) == (position > 0))


def gate(intent: OrderIntent, snapshot: RiskSnapshot, limits: RiskLimits,
         market: MarketView) -> Verdict:
    """Accept or deny one order intent. Pure: same inputs, same verdict.

    Promises: never accepts under the kill switch, while a block says every intent is refused,
    inside a news/calendar embargo, while the exchange is closed, outside the sessions, on a
    stale bar, on a price that deviates from the last bar by more than the limit, over the
    order size, when the resulting |position| exceeds max_position, while a block refuses new
    risk (unless the order only reduces exposure), when the book has lost max_daily_loss or
    more today (unless the order only reduces exposure), or past the orders-per-minute limit.
    The first failing check names the reason.
    """
    if snapshot.kill_switch:
        return Verdict(False, KILL_SWITCH)
    if market.blocked and market.block_all:
        return Verdict(False, market.blocked)
    if snapshot.in_embargo(market.now) or snapshot.in_embargo(market.bar_ts):
        return Verdict(False, NEWS_EMBARGO)
    if intent.size <= 0 or not math.isfinite(intent.ref_price) or intent.ref_price <= 0:
        return Verdict(False, BAD_INTENT)
    if not market.market_open:
        return Verdict(False, MARKET_CLOSED)
    if limits.sessions and not any(s.contains(market.now) for s in limits.sessions):
        return Verdict(False, OUTSIDE_SESSION)
    if limits.stale_bar_s > 0 and (market.now - market.bar_ts).total_seconds() > limits.stale_bar_s:
        return Verdict(False, STALE_BAR)
    if limits.max_price_deviation > 0 and market.last_close > 0:
        prices = [intent.ref_price]
        if intent.limit_price is not None:
            prices.append(float(intent.limit_price))
        if any(abs(p / market.last_close - 1.0) > limits.max_price_deviation for p in prices):
            return Verdict(False, PRICE_DEVIATION)
    if limits.max_order_size > 0 and intent.size > limits.max_order_size:
        return Verdict(False, MAX_ORDER_SIZE)
    if abs(intent.target_position) > max(limits.max_position, 0):
        return Verdict(False, MAX_POSITION)
    reduces = reduces_exposure(intent.target_position - intent.signed_size,
                               intent.target_position)
    if market.blocked and not reduces:
        return Verdict(False, market.blocked)
    if (limits.max_daily_loss > 0 and market.daily_pnl <= -limits.max_daily_loss
            and not reduces):
        return Verdict(False, MAX_DAILY_LOSS)
    if 0 < limits.max_orders_per_minute <= market.orders_last_minute:
        return Verdict(False, ORDERS_PER_MINUTE)
    return Verdict(True, ACCEPTED)


def load_calendar(path: Path) -> list[datetime]:
    """Scheduled events from a calendar file: one per line, `ISO-timestamp[,name]`; blank lines
    and lines starting with '#' are skipped. Raises ValueError naming the line when bad."""
    events = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        ts_text = text.split(",", 1)[0].strip()
        if lineno == 1 and ts_text.lower() in ("ts", "time", "timestamp"):
            continue  # a CSV header
        try:
            events.append(parse_utc(ts_text))
        except ValueError as err:
            raise ValueError(f"{path}:{lineno}: {err}") from None
    return sorted(events)
