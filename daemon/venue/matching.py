"""The paper venue's matching rules: whether a bar fills an order, at what price, and how much.

Pure functions over an order and a bar; no state is changed here except the per-bar fill count
`note_fill` keeps on the order. Prices are rounded to the contract's tick, half-even.

- At placement (or modification) with a current bar of close C: Market fills at C; a buy Limit
  at L >= C (sell L <= C) fills at C; a Stop already through C fills at C.
- On each later bar (open O, high H, low L): a buy Limit at P fills when L <= P at min(P, O);
  a sell Limit when H >= P at max(P, O); a buy Stop at S when H >= S at max(S, O); a sell Stop
  when L <= S at min(S, O). A partly filled order keeps its price and its trigger: its rest
  fills only on bars that cross it again (a stop is not turned into a market order).

How much (`VenueOptions.max_fill_per_bar`, 0 = unlimited): a Market order always fills
completely at once. A Limit or Stop fills at most max_fill_per_bar contracts on one bar, the
placement bar included (placement and a later modify on the same bar share that bar's
allowance); the cap is per order and per bar, not a liquidity shared by orders. The order stays
Open until its size has filled.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from daemon.bars.model import Bar
from daemon.errors import AnchordError
from daemon.venue.models import BUY, LIMIT, MARKET, STOP, Order
from daemon.venue.wire import dec


class FillCapError(AnchordError):
    """A max_fill_per_bar value that is not a whole number >= 0."""


def parse_max_fill(value: int | str) -> int:
    """max_fill_per_bar as an int >= 0 (0 = unlimited); FillCapError with a one-line reason
    for anything else (a negative number, a fraction, text, a bool)."""
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit():
        raise FillCapError(f"max fill per bar {value!r}: expected a whole number >= 0 "
                           "(0 = unlimited)")
    return int(text)


def to_tick(price: float | Decimal, tick: Decimal) -> Decimal:
    """`price` rounded half-even to a multiple of `tick`."""
    p = price if isinstance(price, Decimal) else Decimal(repr(float(price)))
    return dec((p / tick).to_integral_value(ROUND_HALF_EVEN) * tick)


def placement_price(order: Order, bar: Bar) -> Decimal | None:
    """The fill price of `order` against the current bar when it is placed or modified, or
    None when it is not marketable and rests."""
    c = to_tick(bar.close, order.contract.tick_size)
    buy = order.side == BUY
    if order.type == MARKET:
        return c
    if order.type == LIMIT and (order.limit_price >= c if buy else order.limit_price <= c):
        return c
    if order.type == STOP and (order.stop_price <= c if buy else order.stop_price >= c):
        return c
    return None


def bar_price(order: Order, bar: Bar) -> Decimal | None:
    """The fill price of a resting `order` on a new bar, or None when the bar does not
    cross it."""
    tick = order.contract.tick_size
    o, h, lo = (to_tick(x, tick) for x in (bar.open, bar.high, bar.low))
    buy = order.side == BUY
    if order.type == LIMIT:
        p = order.limit_price
        if buy and lo <= p:
            return min(p, o)
        if not buy and h >= p:
            return max(p, o)
    elif order.type == STOP:
        s = order.stop_price
        if buy and h >= s:
            return max(s, o)
        if not buy and lo <= s:
            return min(s, o)
    return None


def fill_quantity(order: Order, bar_ts: datetime, max_per_bar: int) -> int:
    """How many contracts of `order` may fill now, on the bar at `bar_ts`: its unfilled rest,
    capped for Limit and Stop orders by what this bar still allows (0 = nothing more)."""
    rest = order.size - order.fill_volume
    if order.type == MARKET or max_per_bar <= 0:
        return rest
    used = order.bar_filled if order.bar_ts == bar_ts else 0
    return max(0, min(rest, max_per_bar - used))


def note_fill(order: Order, bar_ts: datetime, qty: int, price: Decimal) -> None:
    """Record a fill of `qty` at `price` on the bar at `bar_ts`: the order's fillVolume, its
    volume-weighted filledPrice, and the bar's used allowance."""
    if order.bar_ts != bar_ts:
        order.bar_ts, order.bar_filled = bar_ts, 0
    order.bar_filled += qty
    order.fill_notional += price * qty
    order.fill_volume += qty
    order.filled_price = dec(order.fill_notional / order.fill_volume)
