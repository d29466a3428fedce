"""When a resting order of the paper venue expires: `VenueOptions.order_expiry`.

    gtc       never (the default, and the venue's behaviour before expiry existed)
    day       when the market moves to a bar of a later trading date than the order's home bar
    bars:N    (N >= 1) after N further bars: the order is matched on the N bars that follow its
              home bar and expires on the bar after those

The home bar of an order is the current bar of its contract when it was placed; an order placed
before its contract had any bar takes the first bar it meets as its home bar (and is matched on
it). Modifying an order does not move its home bar.

Each new bar of a contract (`Book.on_bar`) first expires that contract's resting orders whose
time is up, then matches the rest: an order never fills on the bar that expires it. Expiry sets
status 4 (Expired) and keeps `fillVolume` and `filledPrice` of what had filled before. Only bars
of the order's own contract count; the same bar again (set_bar with an unchanged time) is not a
new bar, while a rewind (a replay that starts over) is one.

Trading date: CME Globex's session convention. A session opens at 17:00 America/Chicago and
belongs to the next calendar date, so the trading date of a bar time is the America/Chicago date
of that time plus 7 hours (Sunday 17:00 CT opens Monday; a daily bar stamped 00:00 UTC is the
trading date of its UTC date). No holiday calendar is consulted: two bars are of different
trading dates exactly when this formula gives different dates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from daemon.errors import AnchordError
from daemon.venue.models import Order

SESSION_ZONE = ZoneInfo("America/Chicago")
SESSION_OPENS = timedelta(hours=24 - 17)  # 17:00 CT starts the next trading date
GTC, DAY, BARS = "gtc", "day", "bars"


class ExpirySpecError(AnchordError):
    """An order_expiry value that is not gtc, day or bars:N."""


@dataclass(frozen=True)
class ExpiryRule:
    """A parsed order_expiry: `kind` gtc | day | bars, and `bars` = N for bars:N."""

    kind: str = GTC
    bars: int = 0

    def __str__(self) -> str:
        return f"{BARS}:{self.bars}" if self.kind == BARS else self.kind


def parse_expiry(text: str) -> ExpiryRule:
    """The ExpiryRule of "gtc", "day" or "bars:N" (N a whole number >= 1, case-insensitive);
    ExpirySpecError with a one-line reason otherwise."""
    spec = (text or "").strip().lower()
    if spec in (GTC, DAY):
        return ExpiryRule(spec)
    kind, sep, count = spec.partition(":")
    if kind == BARS and sep and count.isdigit() and int(count) >= 1:
        return ExpiryRule(BARS, int(count))
    raise ExpirySpecError(f"order expiry {text!r}: expected gtc, day or bars:N with N >= 1")


def trading_date(ts: datetime) -> date:
    """The CME trading date of an aware time (see the module docstring)."""
    return (ts.astimezone(SESSION_ZONE) + SESSION_OPENS).date()


def expires_on(order: Order, bar_ts: datetime, rule: ExpiryRule) -> bool:
    """Whether a new bar at `bar_ts` of the order's contract expires this resting order.
    Call once per new bar, before matching it: it also advances the order's own bar count
    (and gives an order without a home bar this one)."""
    if order.home_ts is None:
        order.home_ts = bar_ts
        return False
    order.bars_after_home += 1
    if rule.kind == DAY:
        return trading_date(bar_ts) > trading_date(order.home_ts)
    if rule.kind == BARS:
        return order.bars_after_home > rule.bars
    return False
