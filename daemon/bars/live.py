"""Live bars: poll History/retrieveBars and hand out each completed bar once, in time order.

What it promises:
- Order: the Gateway answers newest-first and `limit` keeps the newest bars of the window, so a
  poll pages backwards (endTime = just before the oldest bar received) until it reaches the
  last bar already emitted; bars are then emitted oldest-first, each time at most once.
- Completeness: a bar is emitted only once it is complete — its period has ended on the
  injected clock (start + period <= now) — whether or not the Gateway included the in-progress
  bar. A bar seen while still forming is fetched again later, with its final values.
- Gaps: time without bars (a closed market, a halt) produces no invented bars; a gap longer than
  one period is logged and counted.
- Restarts: the start time of the last bar handed out and processed is kept in the state store
  (meta key `live_bars:<contract>:<unit>x<n>`). A bar counts as processed when the consumer
  asks for the next one, or at `checkpoint()` (call it on a clean stop), so a restart resumes
  right after it: no duplicates, no holes. A crash while a bar was being processed hands that
  one bar out again (like the replay cursor).
- Rate: every poll goes through the client, hence the `history` bucket (50 / 30 s); between
  polls it sleeps on the injected clock until the next bar should be complete plus `settle_s`.

Rows are raw dicts, as the ingest loop takes them: `ts` (ISO, the bar's close time = start +
period, which is what `Bar.ts` means), `bar_start`, `open`, `high`, `low`, `close` (Decimal),
`volume` (int). `bars()` validates them into `Bar`s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

from daemon.bars.model import Bar, BarRejected, BarValidator
from daemon.clock import Clock
from daemon.execution.client import ProjectXClient
from daemon.execution.models import UNIT_SECONDS
from daemon.logs import get_logger
from daemon.store import Store
from daemon.timeutil import iso, parse_utc

EPS = timedelta(microseconds=1)
PAGE_LIMIT = 20_000  # the Gateway's cap per request


class LiveBarSource:
    """Completed bars of one contract at one resolution, from History/retrieveBars."""

    def __init__(self, client: ProjectXClient, contract_id: str, *, store: Store, clock: Clock,
                 unit: int = 2, unit_number: int = 1, settle_s: float = 2.0,
                 lookback: int = 500, page_limit: int = PAGE_LIMIT,
                 include_partial: bool = False) -> None:
        if unit not in UNIT_SECONDS:
            raise ValueError(f"live bars need a fixed-length unit (1-5), got {unit}")
        self.client = client
        self.contract_id = contract_id
        self.store = store
        self.clock = clock
        self.unit, self.unit_number = unit, unit_number
        self.period = timedelta(seconds=UNIT_SECONDS[unit] * unit_number)
        self.settle = timedelta(seconds=settle_s)
        self.lookback = lookback
        self.page_limit = page_limit
        self.include_partial = include_partial
        self.key = f"live_bars:{contract_id}:{unit}x{unit_number}"
        saved = store.get_meta(self.key)
        self.last_start: datetime | None = parse_utc(saved) if saved else None
        self._handed_out: datetime | None = None  # given to the consumer, not yet processed
        self.gaps = 0
        self.polls = 0
        self.requests = 0
        self.log = get_logger("live_bars")

    # ---- one poll ---------------------------------------------------------------------------
    async def poll(self) -> list[dict[str, Any]]:
        """The complete bars after the last processed one, oldest first (does not commit)."""
        now = self.clock.now()
        after = self._handed_out or self.last_start
        start = after + EPS if after else now - self.period * (self.lookback + 1)
        seen: dict[datetime, dict[str, Any]] = {}
        page_end = now
        while True:
            page = await self.client.retrieve_bars(
                self.contract_id, start=start, end=page_end, unit=self.unit,
                unit_number=self.unit_number, limit=self.page_limit,
                include_partial=self.include_partial)
            self.requests += 1
            for bar in page:
                seen.setdefault(bar["t"], bar)
            if len(page) < self.page_limit:
                break
            oldest = min(b["t"] for b in page)
            if oldest <= start:
                break
            page_end = oldest - EPS
        self.polls += 1
        fresh = sorted(t for t in seen if after is None or t > after)
        rows = []
        for t in fresh:
            if t + self.period > now:
                break  # still forming (and so is everything after it)
            rows.append(self._row(seen[t]))
        return rows

    def _row(self, bar: dict[str, Any]) -> dict[str, Any]:
        return {"ts": iso(bar["t"] + self.period), "bar_start": iso(bar["t"]), "open": bar["o"],
                "high": bar["h"], "low": bar["l"], "close": bar["c"], "volume": bar["v"]}

    # ---- progress ---------------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Record the bar last handed out as processed (call on a clean stop)."""
        if self._handed_out is not None and self._handed_out != self.last_start:
            self.last_start = self._handed_out
            self.store.set_meta(self.key, iso(self.last_start))

    def _hand_out(self, row: dict[str, Any]) -> None:
        start = parse_utc(row["bar_start"])
        prev = self._handed_out or self.last_start
        if prev is not None and start - prev > self.period:
            self.gaps += 1
            missing = int((start - prev) / self.period) - 1
            self.log.info("live_bars_gap", contract=self.contract_id, after=iso(prev),
                          next=iso(start), periods_without_bars=missing)
        self._handed_out = start

    def next_poll_delay(self) -> float:
        """Seconds until the next bar should be complete and settled; when it is overdue (a
        closed market), a quarter period, between 1 s and 60 s."""
        now = self.clock.now()
        last = self._handed_out or self.last_start
        if last is not None:
            due = last + 2 * self.period + self.settle
            if due > now:
                return (due - now).total_seconds()
        return min(60.0, max(1.0, self.period.total_seconds() / 4))

    # ---- iteration ------------------------------------------------------------------------
    async def rows(self) -> AsyncIterator[dict[str, Any]]:
        """Raw rows of completed bars, oldest first, forever (poll, hand out, sleep)."""
        while True:
            for row in await self.poll():
                self._hand_out(row)
                yield row
                self.checkpoint()  # the consumer asked for more: that row is processed
            await self.clock.sleep(self.next_poll_delay())

    async def bars(self, on_reject: Callable[[dict[str, Any], BarRejected], Any] | None = None
                   ) -> AsyncIterator[Bar]:
        """`rows()` validated into Bars (finite, positive, low <= open/close <= high, time
        strictly increasing); a refused row goes to `on_reject` (logged by default)."""
        validator = BarValidator()
        async for row in self.rows():
            try:
                yield validator.check(row, self.contract_id)
            except BarRejected as rej:
                if on_reject is not None:
                    on_reject(row, rej)
                else:
                    self.log.warning("live_bar_rejected", reason=rej.reason, ts=row["ts"])

    def status(self) -> dict[str, Any]:
        return {"contract": self.contract_id, "period_s": self.period.total_seconds(),
                "last_bar_start": iso(self.last_start) if self.last_start else None,
                "polls": self.polls, "requests": self.requests, "gaps": self.gaps}


def attach_live_bars(daemon: Any) -> LiveBarSource:
    """The live bar source of `[data].source = "projectx:live"`: `[data].contract` at the
    `[projectx].bar_*` resolution, through the daemon's shared Gateway client; adds a
    `live_bars` status entry. MissingCredential when there is no API key."""
    from daemon.execution.attach_client import get_client

    px = daemon.cfg.projectx
    source = LiveBarSource(get_client(daemon), daemon.cfg.data.contract, store=daemon.store,
                           clock=daemon.clock, unit=px.bar_unit, unit_number=px.bar_unit_number,
                           settle_s=px.bar_poll_s, lookback=px.bar_lookback)
    daemon.status_providers["live_bars"] = source.status
    return source
