"""Expiry of resting orders on the paper venue (order_expiry day | bars:N), over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from daemon.venue import run_venue
from daemon.venue.expiry import ExpiryRule, ExpirySpecError, parse_expiry, trading_date
from daemon.venue.matching import FillCapError
from tests.venue_support import ACCOUNT, Client, d, path_bars, sp500

MONDAY_2PM_CT = datetime(2024, 3, 4, 20, tzinfo=UTC)  # 14:00 CST (UTC-6)


def test_the_trading_date_changes_at_17_00_chicago_time_winter_and_summer():
    assert trading_date(datetime(2024, 3, 4, 22, 59, tzinfo=UTC)).isoformat() == "2024-03-04"
    assert trading_date(datetime(2024, 3, 4, 23, 0, tzinfo=UTC)).isoformat() == "2024-03-05"
    assert trading_date(datetime(2024, 7, 1, 21, 59, tzinfo=UTC)).isoformat() == "2024-07-01"
    assert trading_date(datetime(2024, 7, 1, 22, 0, tzinfo=UTC)).isoformat() == "2024-07-02"
    # Sunday evening's open is Monday's session; a daily bar at 00:00 UTC is its own date
    assert trading_date(datetime(2024, 3, 3, 23, 0, tzinfo=UTC)).isoformat() == "2024-03-04"
    assert trading_date(sp500()[0].ts) == sp500()[0].ts.date()


def test_order_expiry_specs_parse_or_are_refused_with_one_line():
    assert parse_expiry("gtc") == ExpiryRule("gtc") and str(parse_expiry("DAY")) == "day"
    assert parse_expiry(" bars:12 ") == ExpiryRule("bars", 12)
    for bad in ("", "week", "bars", "bars:", "bars:0", "bars:-2", "bars:1.5", "day:1"):
        with pytest.raises(ExpirySpecError, match="expected gtc, day or bars:N"):
            parse_expiry(bad)


async def test_bad_order_options_are_refused_before_the_venue_listens():
    with pytest.raises(ExpirySpecError):
        async with run_venue(sp500()[:5], order_expiry="weekly"):
            pass
    with pytest.raises(FillCapError):
        async with run_venue(sp500()[:5], max_fill_per_bar=-1):
            pass


async def test_day_orders_expire_at_the_cme_session_boundary_not_utc_midnight():
    # hourly bars from 14:00 CST; the bar at 17:00 CST (23:00 UTC) is the next trading date
    lows = [99.5, 99.5, 97, 97, 97, 97]
    bars = path_bars(MONDAY_2PM_CT, lows)
    async with run_venue(bars, max_fill_per_bar=1, order_expiry="day") as venue:
        c = Client(venue.base_url)
        await c.login()
        venue.advance(2)  # 15:00 CST
        oid = (await c.place(type=1, side=0, size=3, limitPrice=98, customTag="day"))["orderId"]
        venue.advance()  # 16:00 CST, same trading date: 1 fills
        assert [(o["status"], o["fillVolume"]) for o in await c.orders()] == [(1, 1)]
        bar = venue.advance()  # 17:00 CST: a new trading date, expired before matching
        assert bar.ts.date() == MONDAY_2PM_CT.date()  # still Monday in UTC
        order = (await c.orders())[0]
        assert (order["status"], order["fillVolume"], d(order["filledPrice"])) == (4, 1, 98)
        venue.advance(2)  # crossing bars after expiry fill nothing
        assert [(o["status"], o["fillVolume"]) for o in await c.orders()] == [(4, 1)]
        assert [t["orderId"] for t in await c.trades()] == [oid]
        assert venue.net_position() == 1
        cancel = await c.call("/api/Order/cancel", {"accountId": ACCOUNT, "orderId": oid})
        assert cancel["errorCode"] == 3  # not open any more
        modify = await c.call("/api/Order/modify", {"accountId": ACCOUNT, "orderId": oid,
                                                    "limitPrice": 99})
        assert modify["errorCode"] == 3
        await c.aclose()


async def test_day_orders_on_daily_bars_live_for_their_own_bar_only():
    async with run_venue(sp500()[:400], order_expiry="day") as venue:
        c = Client(venue.base_url)
        await c.login()
        now = venue.advance(20)
        await c.place(type=1, side=0, limitPrice=float(round(now.close / 2)), customTag="far")
        venue.advance()
        assert [(o["customTag"], o["status"], o["fillVolume"]) for o in await c.orders()] == \
            [("far", 4, 0)]
        await c.aclose()


async def test_bars_n_orders_are_matched_on_n_bars_and_expire_on_the_next():
    # bar 0 placement; 1..3 are the order's three bars (bar 2 crosses); bar 4 would cross
    lows = [99.5, 99.5, 97, 99.5, 96, 96]
    bars = path_bars(MONDAY_2PM_CT, lows, step=timedelta(minutes=5))
    async with run_venue(bars, max_fill_per_bar=1, order_expiry="bars:3") as venue:
        c = Client(venue.base_url)
        await c.login()
        venue.advance()
        await c.place(type=1, side=0, size=2, limitPrice=98, customTag="n3")
        seen = []
        for _ in range(5):
            venue.advance()
            seen += [(o["status"], o["fillVolume"]) for o in await c.orders()]
        assert seen == [(1, 0), (1, 1), (1, 1), (4, 1), (4, 1)]
        assert [t["size"] for t in await c.trades()] == [1]
        await c.aclose()


async def test_an_order_placed_before_any_bar_counts_from_the_first_bar_it_meets():
    bars = path_bars(MONDAY_2PM_CT, [99.5, 99.5, 97])
    async with run_venue(bars, order_expiry="bars:1") as venue:
        c = Client(venue.base_url)
        await c.login()
        assert (await c.place(type=1, side=0, size=1, limitPrice=98))["success"]
        venue.advance(2)  # its first bar, then its one further bar: still resting
        assert [o["status"] for o in await c.orders()] == [1]
        venue.advance()  # expired, though this bar would have filled it
        assert [(o["status"], o["fillVolume"]) for o in await c.orders()] == [(4, 0)]
        await c.aclose()
