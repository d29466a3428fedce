"""Invariants of the venue's book under random fills (hypothesis; pure logic, no HTTP)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.bars.model import Bar
from daemon.venue.book import BUY, CANCELLED, EXPIRED, FILLED, LIMIT, MARKET, OPEN, STOP, Book
from daemon.venue.catalog import Catalog
from daemon.venue.expiry import parse_expiry, trading_date

CONTRACT = "CON.F.US.EP.Z26"
T0 = datetime(2020, 1, 1, tzinfo=UTC)

actions = st.lists(st.tuples(st.sampled_from([MARKET, LIMIT]), st.sampled_from([0, 1]),
                             st.integers(1, 5), st.integers(-8, 8),
                             st.floats(3000, 3100).map(lambda x: round(x * 4) / 4)),
                   min_size=1, max_size=40)


def bar(i: int, close: float) -> Bar:
    return Bar(CONTRACT, T0 + timedelta(days=i), close, close + 3, close - 3, close, 1000)


@settings(max_examples=60, deadline=None)
@given(actions)
def test_positions_trades_and_balance_agree_with_the_fills(script):
    book = Book(Catalog(CONTRACT), lambda: T0, Decimal("0.5"))
    book.add_account(1, "A", Decimal(100_000))
    for i, (kind, side, size, offset, close) in enumerate(script):
        b = bar(i, close)
        book.on_bar(CONTRACT, b)
        limit = Decimal(repr(close)) + Decimal(offset) / 4 if kind == LIMIT else None
        res = book.place(account_id=1, contract_id=CONTRACT, type_=kind, side=side, size=size,
                         limit=limit, stop=None, tag=f"t{i}", bar=b)
        assert res.code == 0
    filled = [o for o in book.orders.values() if o.status == FILLED]
    signed = sum(o.size if o.side == BUY else -o.size for o in filled)
    pos = book.positions.get((1, CONTRACT))
    assert (pos.net if pos else 0) == signed
    for o in filled:  # each fill is split into half-turns that add up to the order
        assert sum(t.size for t in book.trades if t.order_id == o.id) == o.size
    # at most one closing and one opening half-turn per order, closing first
    for o in filled:
        kinds = [t.pnl is None for t in book.trades if t.order_id == o.id]
        assert kinds in ([True], [False], [False, True])
    fees = sum(t.fees for t in book.trades)
    realised = sum(t.pnl for t in book.trades if t.pnl is not None)
    assert book.accounts[1].balance == Decimal(100_000) + realised - fees
    # average-price accounting loses nothing: realised + open P&L at any price P equals the
    # cash flow of all fills marked at P ($50 per point on the E-mini)
    mark = Decimal(3050)
    net = pos.net if pos else 0
    unrealised = (mark - pos.avg) * net * 50 if pos else Decimal(0)
    cash = sum((-1 if o.side == BUY else 1) * o.size * o.filled_price for o in filled) * 50
    assert abs(realised + unrealised - (cash + net * mark * 50)) < Decimal("0.001")
    # tags are unique and every order kept its tag
    assert len({o.custom_tag for o in book.orders.values()}) == len(book.orders)


# One step of a session: a new bar (open and close offsets, range below and above, in ticks),
# then maybe an order (type, side, size, limit/stop offset from the close in ticks), then maybe
# a cancel of the n-th open order.
steps = st.lists(st.tuples(
    st.integers(-8, 8), st.integers(-8, 8), st.integers(0, 6), st.integers(0, 6),
    st.none() | st.tuples(st.sampled_from([MARKET, LIMIT, LIMIT, STOP]), st.sampled_from([0, 1]),
                          st.integers(1, 7), st.integers(-12, 12)),
    st.none() | st.integers(0, 5)), min_size=1, max_size=40)


def _session(script, cap: int, expiry: str) -> Book:
    """Run `script` on a fresh book whose clock is the current bar's time."""
    clock = [T0]
    book = Book(Catalog(CONTRACT), lambda: clock[0], Decimal("0.5"), max_fill_per_bar=cap,
                expiry=parse_expiry(expiry))
    book.add_account(1, "A", Decimal(100_000))
    price = Decimal(3000)
    done: dict[int, int] = {}  # cancelled or expired order id -> its fillVolume then
    for i, (d_open, d_close, below, above, order, cancel) in enumerate(script):
        tick = Decimal("0.25")
        o, c = price + d_open * tick, price + d_close * tick
        b = Bar(CONTRACT, T0 + timedelta(hours=5 * i), float(o), float(max(o, c) + above * tick),
                float(min(o, c) - below * tick), float(c), 1000)
        price = c
        clock[0] = b.ts
        book.on_bar(CONTRACT, b)
        if order is not None:
            kind, side, size, offset = order
            level = c + offset * tick
            res = book.place(account_id=1, contract_id=CONTRACT, type_=kind, side=side,
                             size=size, limit=level if kind == LIMIT else None,
                             stop=level if kind == STOP else None, tag=f"t{i}", bar=b)
            assert res.code == 0
        open_ids = [oid for oid, o_ in book.orders.items() if o_.status == OPEN]
        if cancel is not None and open_ids:
            assert book.cancel(1, open_ids[cancel % len(open_ids)]).code == 0
        for oid, o_ in book.orders.items():
            if o_.status in (CANCELLED, EXPIRED):
                assert done.setdefault(oid, o_.fill_volume) == o_.fill_volume  # never fills again
    return book


@settings(max_examples=80, deadline=None)
@given(steps, st.integers(1, 3), st.sampled_from(["gtc", "day", "bars:1", "bars:3"]))
def test_partial_fills_add_up_per_order_and_to_the_position(script, cap, expiry):
    book = _session(script, cap, expiry)
    for o in book.orders.values():
        mine = [t for t in book.trades if t.order_id == o.id]
        assert sum(t.size for t in mine) == o.fill_volume <= o.size
        assert (o.status == FILLED) == (o.fill_volume == o.size)
        if mine:  # filledPrice is the volume-weighted average of the order's fills
            vwap = sum(t.price * t.size for t in mine) / o.fill_volume
            assert o.filled_price == vwap.quantize(Decimal("1e-9"))
        per_bar: dict = {}
        for t in mine:  # a fill through zero is two trades of one fill: count them together
            per_bar[t.created] = per_bar.get(t.created, 0) + t.size
        if o.type != MARKET:
            assert all(n <= cap for n in per_bar.values())
    signed = sum(t.size if t.side == BUY else -t.size for t in book.trades)
    pos = book.positions.get((1, CONTRACT))
    assert (pos.net if pos else 0) == signed
    # an order fills, and stays Open, only within its time (placed at its home bar's time)
    last_bar = T0 + timedelta(hours=5 * (len(script) - 1))
    for o in book.orders.values():
        times = [t.created for t in book.trades if t.order_id == o.id]
        times += [last_bar] if o.status == OPEN else []
        for when in times:
            if expiry == "day":
                assert trading_date(when) == trading_date(o.created)
            elif expiry.startswith("bars:"):
                assert when - o.created <= int(expiry[5:]) * timedelta(hours=5)
    fees = sum(t.fees for t in book.trades)
    assert fees == Decimal("0.5") * sum(t.size for t in book.trades)
    realised = sum(t.pnl for t in book.trades if t.pnl is not None)
    assert book.accounts[1].balance == Decimal(100_000) + realised - fees
    # same bars and same orders, same fills
    again = _session(script, cap, expiry)
    assert [(t.order_id, t.price, t.size, t.pnl) for t in again.trades] == \
        [(t.order_id, t.price, t.size, t.pnl) for t in book.trades]
