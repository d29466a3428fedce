"""Invariants of the venue's book under random fills (hypothesis; pure logic, no HTTP)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.bars.model import Bar
from daemon.venue.book import BUY, FILLED, LIMIT, MARKET, Book
from daemon.venue.catalog import Catalog

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
