"""The exchange's trading calendar: which trading day a moment belongs to, and whether the market
is open then.

The sessions come from `pandas_market_calendars` (CME Globex equity futures for the shipped
contract: "CME_Equity"), in the exchange's own time zone, so daylight saving, weekends,
holidays, early closes and the daily halt are the exchange's. A trading day starts at its
session's open (17:00 America/Chicago the evening before, for CME) and lasts until the next
session opens: a moment in the halt or over a weekend belongs to the day whose session ended
last. `"24/7"` is a calendar that is always open, with UTC-midnight days (for markets without
sessions, and for tests that do not care).

Sessions are computed once for a span of years and kept as sorted epoch-second lists, so a
query on the bar path is a bisection (about a microsecond); a moment outside the span extends it.
"""

from __future__ import annotations

import bisect
from datetime import UTC, date, datetime, timedelta

from daemon.errors import AnchordError

ALWAYS_OPEN = "24/7"
DEFAULT_CALENDAR = "CME_Equity"
_SPAN_YEARS = 3  # how far a (re)build reaches beyond the moment that asked for it


class CalendarError(AnchordError):
    """An exchange calendar that the calendar library does not know."""


def calendar_names() -> list[str]:
    """Every calendar name `TradingCalendar` accepts."""
    import pandas_market_calendars as mcal

    return [ALWAYS_OPEN, *sorted(mcal.get_calendar_names())]


def check_calendar_name(name: str) -> str | None:
    """None when `name` is a known calendar, else why not (for config checks)."""
    if name in (ALWAYS_OPEN, DEFAULT_CALENDAR):
        return None  # known without importing the library (config checks run in every CLI)
    import pandas_market_calendars as mcal

    if name in mcal.get_calendar_names():
        return None
    return (f"unknown exchange calendar {name!r} (e.g. {DEFAULT_CALENDAR!r}, {ALWAYS_OPEN!r}; "
            "the names are pandas_market_calendars')")


class TradingCalendar:
    """The sessions of one exchange calendar (see the module docstring)."""

    def __init__(self, name: str = DEFAULT_CALENDAR) -> None:
        problem = check_calendar_name(name)
        if problem:
            raise CalendarError(problem)
        self.name = name
        self._cal = None
        if name != ALWAYS_OPEN:
            import pandas_market_calendars as mcal

            self._cal = mcal.get_calendar(name)
        self._lo = self._hi = 0  # epoch seconds covered by the lists below
        self._opens: list[int] = []
        self._closes: list[int] = []
        self._breaks: list[tuple[int, int] | None] = []
        self._days: list[date] = []

    # -- queries -------------------------------------------------------------------------------
    def trading_day(self, at: datetime) -> date:
        """The trading day `at` belongs to: the day of the last session that opened at or
        before `at` (UTC midnight days for "24/7")."""
        if self._cal is None:
            return at.astimezone(UTC).date()
        i = self._index(at)
        return self._days[i] if i >= 0 else self._days[0]

    def is_open(self, at: datetime) -> bool:
        """True while a session is open at `at` (outside its break, if it has one)."""
        if self._cal is None:
            return True
        i = self._index(at)
        if i < 0:
            return False
        t = int(at.timestamp())
        if t >= self._closes[i]:
            return False
        brk = self._breaks[i]
        return brk is None or not brk[0] <= t < brk[1]

    def day_start(self, day: date) -> datetime:
        """When trading day `day` begins (its session's open; UTC midnight for "24/7")."""
        if self._cal is None:
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        self._cover(datetime(day.year, day.month, day.day, tzinfo=UTC))
        i = bisect.bisect_left(self._days, day)
        if i == len(self._days) or self._days[i] != day:
            raise CalendarError(f"{day} is not a trading day of {self.name}")
        return datetime.fromtimestamp(self._opens[i], UTC)

    # -- the session lists -----------------------------------------------------------------------
    def _index(self, at: datetime) -> int:
        """Index of the last session opened at or before `at` (-1 before the first)."""
        self._cover(at)
        return bisect.bisect_right(self._opens, int(at.timestamp())) - 1

    def _cover(self, at: datetime) -> None:
        t = int(at.timestamp())
        if self._lo <= t < self._hi:
            return
        year = at.astimezone(UTC).year
        lo = min(year - _SPAN_YEARS, datetime.fromtimestamp(self._lo, UTC).year
                 if self._opens else year)
        hi = max(year + _SPAN_YEARS, datetime.fromtimestamp(self._hi, UTC).year
                 if self._opens else year)
        self._build(date(lo, 1, 1), date(hi, 12, 31))

    def _build(self, start: date, end: date) -> None:
        sched = self._cal.schedule(start.isoformat(), end.isoformat())
        opens = [int(ts.timestamp()) for ts in sched["market_open"]]
        closes = [int(ts.timestamp()) for ts in sched["market_close"]]
        breaks: list[tuple[int, int] | None] = [None] * len(opens)
        if "break_start" in sched.columns:
            for i, (a, b) in enumerate(zip(sched["break_start"], sched["break_end"],
                                           strict=True)):
                if a == a and b == b:  # NaT is not equal to itself
                    breaks[i] = (int(a.timestamp()), int(b.timestamp()))
        self._opens, self._closes, self._breaks = opens, closes, breaks
        self._days = [ts.date() for ts in sched.index]
        # A moment after the last close still belongs to the last day until the next open,
        # which lies beyond the span: cover up to the end of the last day plus a margin.
        self._lo = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp()) \
            + 7 * 86400
        self._hi = int((datetime(end.year, end.month, end.day, tzinfo=UTC)
                        - timedelta(days=7)).timestamp())
