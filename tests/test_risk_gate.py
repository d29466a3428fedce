"""The pure pre-trade gate: never accepts under the kill switch, in an embargo, or over a limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon import risk
from daemon.intent import intent_for_target
from daemon.risk import MarketView, RiskLimits, RiskSnapshot, gate, load_calendar, parse_session

T0 = datetime(2024, 3, 6, 15, 0, tzinfo=UTC)  # a Wednesday
LIMITS = RiskLimits(max_order_size=3, max_position=5, max_daily_loss=1000.0,
                    sessions=(parse_session("Mon-Fri 13:30-20:00"),), stale_bar_s=120.0,
                    max_price_deviation=0.02, max_orders_per_minute=4)


def snap(kill: bool = False, news: tuple[datetime, ...] = (),
         scheduled: tuple[datetime, ...] = ()) -> RiskSnapshot:
    return RiskSnapshot(kill, "t" if kill else "", news, timedelta(minutes=15),
                        timedelta(minutes=15), scheduled)


def test_accepts_when_all_within() -> None:
    intent = intent_for_target("C", T0, 1, 3, 100.0)
    v = gate(intent, snap(), LIMITS, MarketView(T0, T0, 100.5, -10.0, 1))
    assert v.accepted and v.reason == risk.ACCEPTED


@pytest.mark.parametrize(("change", "reason"), [
    ({"snapshot": snap(kill=True)}, risk.KILL_SWITCH),
    ({"snapshot": snap(news=(T0 + timedelta(minutes=10),))}, risk.NEWS_EMBARGO),
    ({"snapshot": snap(scheduled=(T0 - timedelta(minutes=14),))}, risk.NEWS_EMBARGO),
    ({"now": T0.replace(hour=21)}, risk.OUTSIDE_SESSION),
    ({"now": T0 + timedelta(days=3)}, risk.OUTSIDE_SESSION),  # Saturday
    ({"now": T0 + timedelta(seconds=121)}, risk.STALE_BAR),
    ({"last": 97.0}, risk.PRICE_DEVIATION),
    ({"target": 5, "position": 1}, risk.MAX_ORDER_SIZE),
    ({"target": 6, "position": 4}, risk.MAX_POSITION),
    ({"pnl": -1000.0}, risk.MAX_DAILY_LOSS),
    ({"orders": 4}, risk.ORDERS_PER_MINUTE),
])
def test_each_limit_denies_with_its_reason(change: dict, reason: str) -> None:
    intent = intent_for_target("C", T0, change.get("position", 1), change.get("target", 2),
                               100.0)
    market = MarketView(change.get("now", T0), T0, change.get("last", 100.0),
                        change.get("pnl", 0.0), change.get("orders", 0))
    v = gate(intent, change.get("snapshot", snap()), LIMITS, market)
    assert not v.accepted and v.reason == reason


def test_daily_loss_still_lets_a_reducing_order_through() -> None:
    intent = intent_for_target("C", T0, 3, 1, 100.0)
    assert gate(intent, snap(), LIMITS, MarketView(T0, T0, 100.0, -5000.0, 0)).accepted


def test_sessions_and_calendar_parse(tmp_path: Path) -> None:
    s = parse_session("Sun-Fri 00:00-24:00")
    assert s.contains(T0) and not s.contains(T0 + timedelta(days=3))
    for bad in ("Mon-Fri 20:00-13:30", "Funday 10:00-11:00", "10-11", "Mon 25:00-26:00"):
        with pytest.raises(ValueError):
            parse_session(bad)
    cal = tmp_path / "cal.csv"
    cal.write_text("ts,name\n2024-03-06T15:10:00Z,CPI\n# comment\n\n2024-03-07,FOMC\n")
    events = load_calendar(cal)
    assert events[0] == T0 + timedelta(minutes=10) and len(events) == 2
    cal.write_text("tomorrow,x\n")
    with pytest.raises(ValueError, match="cal.csv:1"):
        load_calendar(cal)


times = st.integers(min_value=-3 * 86400, max_value=3 * 86400).map(
    lambda s: T0 + timedelta(seconds=s))


@settings(max_examples=400, deadline=None)
@given(kill=st.booleans(), news=st.lists(times, max_size=3), cal=st.lists(times, max_size=3),
       position=st.integers(-8, 8), target=st.integers(-8, 8),
       now_off=st.integers(0, 400), bar_off=st.integers(-7200, 7200),
       last=st.floats(50.0, 150.0), price=st.floats(50.0, 150.0),
       pnl=st.floats(-3000.0, 3000.0), orders=st.integers(0, 8),
       max_size=st.integers(1, 4), max_pos=st.integers(0, 6), max_loss=st.floats(0.0, 2000.0),
       stale=st.floats(0.0, 300.0), dev=st.floats(0.0, 0.2), opm=st.integers(0, 6),
       with_session=st.booleans())
def test_gate_never_accepts_outside_the_rules(kill, news, cal, position, target, now_off,
                                              bar_off, last, price, pnl, orders, max_size,
                                              max_pos, max_loss, stale, dev, opm,
                                              with_session) -> None:
    bar_ts = T0 + timedelta(seconds=bar_off)
    now = bar_ts + timedelta(seconds=now_off)
    intent = intent_for_target("C", bar_ts, position, target, price)
    if intent is None:
        return
    sessions = (parse_session("Mon-Fri 13:30-20:00"),) if with_session else ()
    limits = RiskLimits(max_size, max_pos, max_loss, sessions, stale, dev, opm)
    s = snap(kill, tuple(news), tuple(cal))
    v = gate(intent, s, limits, MarketView(now, bar_ts, last, pnl, orders))
    within = (
        not kill and not s.in_embargo(now) and not s.in_embargo(bar_ts)
        and (not sessions or sessions[0].contains(now))
        and (stale <= 0 or now_off <= stale)
        and (dev <= 0 or abs(price / last - 1) <= dev)
        and intent.size <= max_size and abs(target) <= max_pos
        and (max_loss <= 0 or pnl > -max_loss or abs(target) < abs(position))
        and (opm <= 0 or orders < opm)
    )
    assert v.accepted == within, (v, within)
    if v.accepted:
        assert not kill and not s.in_embargo(now)
        assert intent.size <= max_size and abs(target) <= max_pos
    else:
        assert v.reason in risk.REASONS
