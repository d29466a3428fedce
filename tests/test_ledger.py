"""The ledger (daemon/execution/ledger.py, ledger_book.py): positions and P&L from fills only,
each fill counted once, the trading day of the exchange's calendar, the daily-loss limit on it,
and the books as they were after a restart."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.bars.model import Bar
from daemon.execution import ledger_book as lb
from daemon.execution.gatekeeper import Gatekeeper
from daemon.execution.ledger import Ledger
from daemon.execution.ledger_book import Book, Fill
from daemon.intent import Side, intent_for_target
from daemon.logs import get_logger
from daemon.risk import RiskLimits, RiskState
from daemon.store import Store
from daemon.trading_calendar import ALWAYS_OPEN, TradingCalendar

C = "CON.F.US.EP.Z26"
PV = 50.0
T0 = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)  # Mon 17:00 America/Chicago: Tue's session opens
CME = TradingCalendar("CME_Equity")


def _fill(trade_id: int, side: Side, size: int, price: str, at: datetime,
          fees: str = "0", order_id: int = 1) -> Fill:
    return Fill(trade_id, order_id, C, side, size, Decimal(price), Decimal(fees), at)


def _ledger(store: Store, calendar: TradingCalendar = CME) -> Ledger:
    return Ledger(store, calendar, PV, get_logger("test"))


def _mine(order_id: int) -> bool:
    return True


# -- the trading day -----------------------------------------------------------------------
def test_the_cme_trading_day_runs_from_the_evening_open_through_the_halt_and_weekend():
    at = datetime.fromisoformat
    day = CME.trading_day
    assert day(at("2026-11-30T22:59:00+00:00")) == date(2026, 11, 30)  # Mon, in the halt
    assert day(at("2026-11-30T23:00:00+00:00")) == date(2026, 12, 1)  # Tue's session opens
    assert day(at("2026-12-01T00:01:00+00:00")) == date(2026, 12, 1)  # not UTC midnight
    assert day(at("2026-12-05T12:00:00+00:00")) == date(2026, 12, 4)  # Saturday: Friday's
    assert day(at("2026-07-06T22:00:00+00:00")) == date(2026, 7, 7)  # summer time: 17:00 CDT
    assert not CME.is_open(at("2026-12-01T22:30:00+00:00"))  # the daily halt
    assert not CME.is_open(at("2026-12-25T15:00:00+00:00"))  # Christmas
    assert not CME.is_open(at("2026-11-27T19:00:00+00:00"))  # the day after Thanksgiving:
    assert CME.is_open(at("2026-11-27T17:00:00+00:00"))  # an early close at 12:15 CT


# -- the books -------------------------------------------------------------------------------
_FILLS = st.lists(st.tuples(st.sampled_from([Side.BUY, Side.SELL]), st.integers(1, 5),
                            st.integers(3000, 3100), st.integers(0, 3)),
                  min_size=1, max_size=30)


@given(_FILLS, st.integers(3000, 3100))
def test_the_book_is_the_signed_sum_of_its_fills_and_marks_to_market(fills, last):
    book, cash, fees = Book(C, PV), 0.0, 0.0
    position = 0
    for i, (side, size, price, fee) in enumerate(fills):
        f = _fill(i + 1, side, size, f"{price}.25", T0, str(fee))
        book = lb.apply_fill(book, f, date(2026, 12, 1))
        position += f.signed_size
        cash -= f.signed_size * float(f.price) * PV
        fees += fee
    book = lb.mark(book, float(last), date(2026, 12, 1))
    assert book.position == position
    # what it made = cash flows + the open position at the last price - fees
    assert abs(lb.equity(book) - (cash + position * last * PV - fees)) < 1e-6
    # all in one trading day: the day's P&L is all of it
    assert abs(lb.day_pnl(book) - lb.equity(book)) < 1e-6


def test_a_fill_is_counted_once_and_a_voided_one_is_undone(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    ledger = _ledger(store)
    buy = _fill(10, Side.BUY, 2, "6000", T0)
    assert ledger.count([buy], _mine) == [buy]
    assert ledger.count([buy, buy], _mine) == []  # the same trade again (overlapping search)
    assert ledger.position(C) == 2
    ledger.count([dataclasses.replace(buy, voided=True)], _mine)
    assert ledger.position(C) == 0  # the venue voided it after we counted it
    assert _ledger(store).position(C) == 0  # and so it stays after a restart
    store.close()


def test_a_fill_we_did_not_place_is_a_mismatch_that_blocks_new_risk(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    ledger = _ledger(store)
    ledger.count([_fill(11, Side.SELL, 1, "6000", T0, order_id=99)], lambda oid: oid != 99)
    assert ledger.position(C) == -1  # it is the venue's: counted
    assert ledger.mismatch is not None and ledger.mismatch.kind == "foreign_fill"
    assert not ledger.mismatch.blocks_all  # the ledger equals the venue: exits may go
    assert _ledger(store).mismatch == ledger.mismatch  # a restart does not forget it
    ledger.adopt(C, -1, Decimal("6000"), T0, "operator")
    assert ledger.mismatch is None and _ledger(store).mismatch is None
    store.close()


def test_the_books_after_a_restart_are_the_books_before_it(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    ledger = _ledger(store)
    ledger.count([_fill(1, Side.BUY, 3, "6000", T0, "1.5")], _mine)
    ledger.mark(C, 6010.0, T0 + timedelta(minutes=5))
    store.commit_bar()  # a bar's commit: the books as of this bar
    ledger.count([_fill(2, Side.SELL, 1, "6020", T0 + timedelta(minutes=6), "0.5")], _mine)
    # the process dies here: the second fill was written, no bar commit after it
    again = _ledger(store)
    assert again.books == ledger.books
    assert again.day_pnl(C, T0 + timedelta(minutes=7)) == ledger.day_pnl(C, T0 +
                                                                        timedelta(minutes=7))
    store.close()


# -- the daily-loss limit on the exchange's trading day ------------------------------------------
def _gatekeeper(store: Store, ledger: Ledger, risk: RiskState) -> Gatekeeper:
    limits = RiskLimits(max_order_size=2, max_position=8, max_daily_loss=5000.0,
                        max_price_deviation=0.0, max_orders_per_minute=0)
    return Gatekeeper(risk=risk, limits=lambda: limits, ledger=ledger, calendar=CME,
                      contract=C, now=lambda ts: ts, store=store, log=get_logger("test"))


def _bar(ts: datetime, close: float) -> Bar:
    return Bar(C, ts, close, close + 1, close - 1, close, 100)


def test_the_daily_loss_counts_since_the_exchange_day_began_not_utc_midnight(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    risk = RiskState()
    ledger = _ledger(store)
    gk = _gatekeeper(store, ledger, risk)
    ledger.count([_fill(1, Side.BUY, 4, "6000", T0, fees="4")], _mine)  # long 4 at 23:00 UTC
    late = _bar(T0 + timedelta(minutes=59), 5976.0)  # 23:59: -24 pts x 4 x 50 = -4800
    ledger.mark(C, late.close, late.ts)
    assert ledger.day_pnl(C, late.ts) == -4804.0  # fees count
    more = intent_for_target(C, late.ts, 4, 5, late.close)
    assert gk.check(more, late).accepted
    after_midnight = _bar(T0 + timedelta(minutes=61), 5975.0)  # 00:01 UTC, same CME day
    ledger.mark(C, after_midnight.close, after_midnight.ts)
    assert ledger.day_pnl(C, after_midnight.ts) == -5004.0
    more = intent_for_target(C, after_midnight.ts, 4, 5, after_midnight.close)
    assert gk.check(more, after_midnight).reason == "max_daily_loss"
    less = intent_for_target(C, after_midnight.ts, 4, 2, after_midnight.close)
    assert gk.check(less, after_midnight).accepted  # taking risk off always passes
    store.commit_bar()
    # a restart changes nothing: the same ledger, the same denial
    again_ledger = _ledger(store)
    again = _gatekeeper(store, again_ledger, risk)
    assert again.check(more, after_midnight).reason == "max_daily_loss"
    # the next trading day (its session opens at 23:00 UTC) starts from zero at its first mark
    next_day = _bar(T0 + timedelta(days=1, minutes=5), 5975.0)
    again_ledger.mark(C, next_day.close, next_day.ts)
    assert again_ledger.day_pnl(C, next_day.ts) == 0.0
    assert again.check(intent_for_target(C, next_day.ts, 4, 5, next_day.close),
                       next_day).accepted
    store.close()


def test_a_flip_is_new_risk_for_its_new_side_at_the_loss_limit(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    ledger = _ledger(store, TradingCalendar(ALWAYS_OPEN))
    gk = _gatekeeper(store, ledger, RiskState())
    ledger.count([_fill(1, Side.BUY, 1, "6000", T0)], _mine)
    bar = _bar(T0 + timedelta(minutes=1), 5899.0)  # -101 pts x 50 = -5050
    ledger.mark(C, bar.close, bar.ts)
    assert gk.check(intent_for_target(C, bar.ts, 1, -1, bar.close), bar).reason == \
        "max_daily_loss"
    assert gk.check(intent_for_target(C, bar.ts, 1, 0, bar.close), bar).accepted
    store.close()


def test_the_exchange_calendar_denies_orders_while_the_market_is_closed(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    gk = _gatekeeper(store, _ledger(store), RiskState())
    halt = _bar(datetime(2026, 12, 1, 22, 30, tzinfo=UTC), 6000.0)
    assert gk.check(intent_for_target(C, halt.ts, 0, 1, halt.close), halt).reason == \
        "market_closed"
    assert store.journal_rows("deny") == []  # journalled with the bar's commit
    store.commit_bar()
    assert [r["reason"] for r in store.journal_rows("deny")] == ["market_closed"]
    store.close()


@settings(max_examples=200, deadline=None)
@given(position=st.integers(-4, 4), target=st.integers(-4, 4),
       pnl=st.floats(-20000, 20000, allow_nan=False), blocked=st.booleans(),
       block_all=st.booleans(), kill=st.booleans(), is_open=st.booleans())
def test_the_gate_never_adds_risk_past_the_loss_limit_a_block_or_the_kill_switch(
        position, target, pnl, blocked, block_all, kill, is_open):
    from daemon.risk import MarketView, gate, reduces_exposure

    intent = intent_for_target(C, T0, position, target, 6000.0)
    if intent is None:
        return
    risk = RiskState(kill_switch=kill)
    limits = RiskLimits(max_order_size=8, max_position=4, max_daily_loss=5000.0,
                        max_price_deviation=0.0, max_orders_per_minute=0)
    market = MarketView(T0, T0, 6000.0, pnl, 0, market_open=is_open,
                        blocked="position_mismatch" if blocked else "",
                        block_all=block_all)
    verdict = gate(intent, risk.snapshot(), limits, market)
    if not verdict.accepted:
        return
    assert not kill and is_open
    assert not (blocked and block_all)
    if not reduces_exposure(position, target):
        assert pnl > -5000.0 and not blocked
