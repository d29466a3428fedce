"""Partial fills on the paper venue (max_fill_per_bar) and cancelling what is left, over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import httpx

from daemon.venue import run_venue, venue_in_thread
from tests.venue_support import ACCOUNT, CONTRACT, Client, d, path_bars

T0 = datetime(2024, 3, 4, 14, tzinfo=UTC)  # a Monday, 08:00 in Chicago


def fills(trades: list[dict], order_id: int) -> list[tuple[Decimal, int, int, float | None]]:
    return [(d(t["price"]), t["size"], t["side"], t["profitAndLoss"]) for t in trades
            if t["orderId"] == order_id]


async def test_a_resting_limit_fills_at_most_n_per_bar_until_complete():
    # bar 0: placement; bars 1, 2, 4 reach 98 or lower, bar 3 does not
    bars = path_bars(T0, [99.5, 97, 98, 99.5, 96, 95, 95])
    async with run_venue(bars, max_fill_per_bar=2, fee_per_contract="1.5") as venue:
        c = Client(venue.base_url)
        await c.login()
        venue.advance()
        placed = await c.place(type=1, side=0, size=5, limitPrice=98, customTag="L5")
        oid = placed["orderId"]
        seen = []
        for _ in range(5):
            venue.advance()
            order = (await c.orders())[0]
            pos = await c.positions()
            seen.append((order["status"], order["fillVolume"], d(order["filledPrice"] or 0),
                         [(p["size"], d(p["averagePrice"])) for p in pos]))
        assert seen == [(1, 2, 98, [(2, 98)]), (1, 4, 98, [(4, 98)]), (1, 4, 98, [(4, 98)]),
                        (2, 5, 98, [(5, 98)]), (2, 5, 98, [(5, 98)])]
        trades = await c.trades()
        assert fills(trades, oid) == [(Decimal(98), 2, 0, None)] * 2 + [(Decimal(98), 1, 0, None)]
        assert [d(t["fees"]) for t in trades] == [Decimal(3), Decimal(3), Decimal("1.5")]
        state = (await c.http.get("/_venue/state")).json()
        assert [(o["id"], o["status"], o["fillVolume"], o["size"]) for o in state["orders"]] == \
            [(oid, 2, 5, 5)]
        assert state["options"] == {"max_fill_per_bar": 2, "order_expiry": "gtc"}
        await c.aclose()


async def test_a_marketable_limit_fills_n_at_placement_and_the_rest_later_at_a_vwap():
    bars = path_bars(T0, [99, 99, 99, 99])
    async with run_venue(bars, max_fill_per_bar=2) as venue:
        c = Client(venue.base_url)
        await c.login()
        venue.advance()  # close 100
        long = await c.place(type=2, side=0, size=4, customTag="mkt")  # market: all at once
        sell = await c.place(type=1, side=1, size=5, limitPrice=99.75, customTag="s5")
        orders = {o["customTag"]: o for o in await c.orders()}
        assert (orders["mkt"]["status"], orders["mkt"]["fillVolume"]) == (2, 4)
        assert (orders["s5"]["status"], orders["s5"]["fillVolume"]) == (1, 2)
        assert venue.net_position() == 2
        # the same bar again is no new bar: nothing more fills
        venue.set_bar(bars[0])
        assert (await c.orders())[1]["fillVolume"] == 2
        venue.advance()  # high 101 >= 99.75: sells 2 more at max(99.75, open 100) = 100
        venue.advance()  # the last one; the position goes through zero to short 1
        order = (await c.orders())[1]
        assert (order["status"], order["fillVolume"]) == (2, 5)
        assert d(order["filledPrice"]) == Decimal(100)
        got = fills(await c.trades(), sell["orderId"])
        # closing half-turns realise (100 - 100) x 50 = 0; the last fill is 1 closing + 1 opening
        assert got == [(Decimal(100), 2, 1, 0.0), (Decimal(100), 2, 1, 0.0),
                       (Decimal(100), 1, 1, None)]
        assert [(p["type"], p["size"]) for p in await c.positions()] == [(2, 1)]
        assert long["success"]
        await c.aclose()


async def test_filled_price_is_the_volume_weighted_average_of_the_fills():
    bars = [*path_bars(T0, [99, 99]), *path_bars(T0.replace(hour=16), [90], level=95)]
    async with run_venue(bars, max_fill_per_bar=1) as venue:
        c = Client(venue.base_url)
        await c.login()
        venue.advance()
        await c.place(type=1, side=0, size=3, limitPrice=100, customTag="v")  # 1 at 100
        venue.advance()  # 1 at min(100, open 100) = 100
        venue.advance()  # 1 at min(100, open 95) = 95
        order = (await c.orders())[0]
        assert (order["status"], order["fillVolume"]) == (2, 3)
        vwap = (Decimal(100) * 2 + Decimal(95)) / 3
        assert d(order["filledPrice"]) == vwap.quantize(Decimal("1e-9"))
        assert d((await c.positions())[0]["averagePrice"]) == d(order["filledPrice"])
        await c.aclose()


async def test_cancel_after_a_partial_fill_keeps_the_fill_volume():
    bars = path_bars(T0, [99, 98, 98, 98])
    async with run_venue(bars, max_fill_per_bar=1) as venue:
        c = Client(venue.base_url)
        await c.login()
        venue.advance()
        oid = (await c.place(type=1, side=0, size=3, limitPrice=98.5, customTag="c"))["orderId"]
        venue.advance()  # 1 filled at 98.5
        opened = (await c.call("/api/Order/searchOpen", {"accountId": ACCOUNT}))["orders"]
        assert [(o["id"], o["fillVolume"]) for o in opened] == [(oid, 1)]
        answer = await c.call("/api/Order/cancel", {"accountId": ACCOUNT, "orderId": oid})
        assert answer == {"success": True, "errorCode": 0, "errorMessage": None}
        venue.advance(2)  # bars that would have filled the rest
        order = (await c.orders())[0]
        assert (order["status"], order["fillVolume"], d(order["filledPrice"])) == \
            (3, 1, Decimal("98.5"))
        assert len(await c.trades()) == 1 and venue.net_position() == 1
        assert (await c.call("/api/Order/searchOpen", {"accountId": ACCOUNT}))["orders"] == []
        await c.aclose()


async def test_modify_cannot_shrink_an_order_under_what_has_filled():
    bars = path_bars(T0, [99, 99])
    async with run_venue(bars, max_fill_per_bar=2) as venue:
        c = Client(venue.base_url)
        await c.login()
        venue.advance()
        oid = (await c.place(type=1, side=0, size=5, limitPrice=100))["orderId"]  # 2 filled
        body = {"accountId": ACCOUNT, "orderId": oid}
        assert (await c.call("/api/Order/modify", {**body, "size": 2}))["errorCode"] == 3
        assert (await c.call("/api/Order/modify", {**body, "size": 3}))["success"]
        order = (await c.orders())[0]  # the placement bar's allowance is spent: still 2
        assert (order["status"], order["size"], order["fillVolume"]) == (1, 3, 2)
        venue.advance()
        assert [(o["status"], o["fillVolume"]) for o in await c.orders()] == [(2, 3)]
        await c.aclose()


def test_venue_in_thread_takes_the_order_options_as_keywords():
    bars = path_bars(T0, [99, 97, 97, 97])
    with venue_in_thread(bars, max_fill_per_bar=1, order_expiry="bars:1") as v, \
            httpx.Client(base_url=v.base_url, timeout=5) as http:
        token = http.post("/api/Auth/loginKey", json={"userName": "u", "apiKey": "k"}).json()
        auth = {"Authorization": f"Bearer {token['token']}"}
        v.advance()
        http.post("/api/Order/place", headers=auth, json={
            "accountId": ACCOUNT, "contractId": CONTRACT, "type": 1, "side": 0, "size": 3,
            "limitPrice": 98})
        v.advance(3)  # one fill on the next bar, then expired
        assert [(o["status"], o["fillVolume"]) for o in v.orders()] == [(4, 1)]
        assert v.state()["options"] == {"max_fill_per_bar": 1, "order_expiry": "bars:1"}
