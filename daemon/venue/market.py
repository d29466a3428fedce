"""The venue's market: the replayed bars, the current bar (the venue's replay clock), and
History/retrieveBars over the bars seen so far.

The current bar is the last bar that has happened; nothing after it is visible. Bars are
served newest-first, `limit` keeps the newest of the window and is capped at 20,000. A request
at the data's own resolution returns the bars unchanged (`t` = the bar's time); a coarser one
aggregates into buckets aligned to the unit (epoch-aligned seconds/minutes/hours/days, weeks
from Monday, calendar months) with `t` = bucket start. A bucket is partial while a later bar of
the data still falls into it; it is returned only with `includePartialBar`. A request finer
than the data is answered with errorCode 2 (UnitInvalid): the venue cannot invent bars.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from daemon.bars.model import Bar
from daemon.venue.wire import dec

BAR_LIMIT_CAP = 20_000
UNIT_SECONDS = {1: 1, 2: 60, 3: 3600, 4: 86400, 5: 7 * 86400, 6: 28 * 86400}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MONDAY = datetime(1970, 1, 5, tzinfo=UTC)


@dataclass(frozen=True)
class BarsAnswer:
    code: int
    message: str | None
    bars: list[dict[str, Any]]


def infer_step(bars: list[Bar]) -> float:
    """The data's resolution in seconds: the smallest gap between consecutive bars."""
    gaps = [(b.ts - a.ts).total_seconds() for a, b in zip(bars, bars[1:], strict=False)]
    gaps = [g for g in gaps if g > 0]
    return min(gaps) if gaps else 86400.0


def bucket_start(ts: datetime, unit: int, n: int) -> datetime:
    """Start of the unit×n bucket that holds `ts`."""
    if unit == 6:
        months = ts.year * 12 + ts.month - 1
        months -= months % n
        return datetime(months // 12, months % 12 + 1, 1, tzinfo=UTC)
    if unit == 5:
        weeks = (ts - _MONDAY) // timedelta(weeks=1)
        return _MONDAY + timedelta(weeks=weeks - weeks % n)
    size = UNIT_SECONDS[unit] * n
    secs = int((ts - _EPOCH).total_seconds())
    return _EPOCH + timedelta(seconds=secs - secs % size)


def bar_wire(t: datetime, o: float, h: float, lo: float, c: float, v: float) -> dict[str, Any]:
    return {"t": t, "o": dec(o), "h": dec(h), "l": dec(lo), "c": dec(c), "v": int(v)}


class Market:
    """The bars of the traded contract and the venue's position in them."""

    def __init__(self, contract_id: str, bars: list[Bar]) -> None:
        self.contract_id = contract_id
        self.bars = bars
        self.times = [b.ts for b in bars]
        self.step = infer_step(bars)
        self.index = -1  # index of the current bar in `bars`; -1 = before the first
        self.current: Bar | None = None  # may be a bar not in `bars` (fed from outside)

    @property
    def now_ts(self) -> datetime | None:
        return self.current.ts if self.current else None

    def index_at(self, ts: datetime) -> int:
        """Index of the last data bar at or before `ts` (-1 if none)."""
        return bisect.bisect_right(self.times, ts) - 1

    def retrieve(self, *, start: datetime, end: datetime, unit: int, unit_number: int,
                 limit: int, include_partial: bool) -> BarsAnswer:
        """History/retrieveBars over the bars visible now; codes as the Gateway's."""
        if unit not in UNIT_SECONDS:
            return BarsAnswer(2, f"Unit {unit} is not supported.", [])
        if unit_number < 1:
            return BarsAnswer(3, "Unit number must be at least 1.", [])
        if limit < 1:
            return BarsAnswer(4, "Limit must be at least 1.", [])
        limit = min(limit, BAR_LIMIT_CAP)
        period = UNIT_SECONDS[unit] * unit_number
        if period < self.step:
            return BarsAnswer(2, f"Unit {unit}x{unit_number} is finer than the paper venue's "
                                 f"data ({int(self.step)} s bars).", [])
        visible = self.index + 1 if self.current else 0
        if period == self.step:
            lo = bisect.bisect_left(self.times, start, 0, visible)
            hi = bisect.bisect_right(self.times, end, 0, visible)
            chosen = self.bars[max(lo, hi - limit):hi]
            return BarsAnswer(0, None, [bar_wire(b.ts, b.open, b.high, b.low, b.close, b.volume)
                                        for b in reversed(chosen)])
        return BarsAnswer(0, None, self._aggregate(start, end, unit, unit_number, limit,
                                                   include_partial, visible))

    def _aggregate(self, start: datetime, end: datetime, unit: int, n: int, limit: int,
                   include_partial: bool, visible: int) -> list[dict[str, Any]]:
        # Buckets can start before `start`, so begin one period early and filter on t.
        lo = bisect.bisect_left(self.times, bucket_start(start, unit, n), 0, visible)
        buckets: list[list[Any]] = []
        for b in self.bars[lo:visible]:
            key = bucket_start(b.ts, unit, n)
            if buckets and buckets[-1][0] == key:
                agg = buckets[-1]
                agg[2], agg[3] = max(agg[2], b.high), min(agg[3], b.low)
                agg[4], agg[5] = b.close, agg[5] + b.volume
            else:
                buckets.append([key, b.open, b.high, b.low, b.close, b.volume])
        # The next data bar still belongs to the last bucket: it is in progress.
        if (buckets and not include_partial and visible < len(self.bars)
                and bucket_start(self.bars[visible].ts, unit, n) == buckets[-1][0]):
            buckets.pop()
        kept = [bk for bk in buckets if start <= bk[0] <= end][-limit:]
        return [bar_wire(*bk) for bk in reversed(kept)]
