"""Orders on the paper venue: customTag uniqueness, validation, deterministic fills."""

from __future__ import annotations

import random
from decimal import ROUND_HALF_EVEN, Decimal

from daemon.venue import run_venue
from tests.venue_support import ACCOUNT, CONTRACT, Client, bars  # noqa: F401

EPOCH = "2000-01-01T00:00:00Z"


def tick(price: float) -> Decimal:
    """Nearest multiple of 0.25 (half-even), the E-mini tick."""
    return (Decimal(repr(price)) / Decimal("0.25")).to_integral_value(ROUND_HALF_EVEN) * \
        Decimal("0.25")


async def orders_of(c: Client, account: int = ACCOUNT) -> list[dict]:
    return (await c.call("/api/Order/search", {"accountId": account,
                                               "startTimestamp": EPOCH}))["orders"]


async def test_custom_tag_is_unique_per_account_forever_even_for_rejected_orders(bars):  # noqa: F811
    async with run_venue(bars, accounts=("A", "B")) as venue:
        venue.advance()
        c = Client(venue.base_url)
        await c.login()
        bad = await c.place(size=0, customTag="t1")
        assert bad["success"] is False and bad["errorCode"] == 2
        assert bad["orderId"] is not None  # a rejected order is still created
        dup = await c.place(customTag="t1")  # a valid order, but the tag is taken
        assert dup == {"orderId": None, "success": False, "errorCode": 2,
                       "errorMessage": "Specified custom tag is already in use"}
        ok = await c.place(customTag="t2")
        assert ok["success"] and (await c.place(customTag="t2"))["errorCode"] == 2
        assert (await c.place(customTag="t1", accountId=ACCOUNT + 1))["success"]  # other account
        mine = await orders_of(c)
        assert [(o["customTag"], o["status"]) for o in mine] == [("t1", 5), ("t2", 2)]
        assert venue.tag_counts() == {"t1": 2, "t2": 1}  # t1 once per account
        await c.aclose()


async def test_invalid_orders_are_rejected_with_the_gateway_codes(bars):  # noqa: F811
    async with run_venue(bars) as venue:
        c = Client(venue.base_url)
        await c.login()
        no_price = await c.place()  # market order before any bar happened
        assert no_price["errorCode"] == 2 and no_price["orderId"] is not None
        venue.advance()
        cases = [({"type": 9}, 2), ({"type": 5}, 2), ({"side": 2}, 2), ({"size": -1}, 2),
                 ({"type": 1}, 2), ({"type": 1, "limitPrice": 1000.1}, 2),
                 ({"type": 4}, 2), ({"accountId": 42}, 1),
                 ({"contractId": "CON.F.US.NOPE.Z26"}, 8), ({"contractId": "CON.F.US.EP.U26"}, 9),
                 ({"stopLossBracket": {"ticks": -8, "type": 4}}, 2)]
        for fields, code in cases:
            answer = await c.place(**fields)
            assert (answer["success"], answer["errorCode"]) == (False, code), (fields, answer)
            assert (answer["orderId"] is None) == (code != 2), (fields, answer)
        assert "Auto OCO" in (await c.place(takeProfitBracket={"ticks": 8, "type": 1}))[
            "errorMessage"]
        assert all(o["status"] == 5 for o in await orders_of(c))
        await c.aclose()


async def test_market_orders_fill_at_the_current_close_with_half_turn_trades(bars):  # noqa: F811
    async with run_venue(bars) as venue:
        c = Client(venue.base_url)
        await c.login()
        first = venue.advance(10)
        buy = await c.place(side=0, size=2, customTag="b")
        second = venue.advance(5)
        sell = await c.place(side=1, size=3, customTag="s")
        p1, p2 = tick(first.close), tick(second.close)
        trades = (await c.call("/api/Trade/search", {"accountId": ACCOUNT,
                                                      "startTimestamp": EPOCH}))["trades"]
        got = [(t["orderId"], Decimal(str(t["price"])), t["size"], t["side"],
                t["profitAndLoss"]) for t in trades]
        pnl = (p2 - p1) * 2 * 50  # $12.50 per 0.25 point
        assert got == [(buy["orderId"], p1, 2, 0, None),
                       (sell["orderId"], p2, 2, 1, float(pnl)),
                       (sell["orderId"], p2, 1, 1, None)]
        pos = (await c.call("/api/Position/searchOpen", {"accountId": ACCOUNT}))["positions"]
        assert [(p["type"], p["size"], Decimal(str(p["averagePrice"]))) for p in pos] == \
            [(2, 1, p2)]  # short 1, size always positive
        assert venue.net_position() == -1
        acct = (await c.call("/api/Account/search", {"onlyActiveAccounts": True}))["accounts"]
        assert Decimal(str(acct[0]["balance"])) == Decimal(50000) + pnl
        closed = await c.call("/api/Position/closeContract", {"accountId": ACCOUNT,
                                                               "contractId": CONTRACT})
        assert closed["success"] and venue.net_position() == 0
        again = await c.call("/api/Position/closeContract", {"accountId": ACCOUNT,
                                                              "contractId": CONTRACT})
        assert (again["success"], again["errorCode"]) == (False, 2)
        await c.aclose()


async def test_limit_orders_rest_until_a_later_bar_crosses(bars):  # noqa: F811
    async with run_venue(bars) as venue:
        c = Client(venue.base_url)
        await c.login()
        now = venue.advance(20)
        limit = tick(now.close) - 20  # a buy 20 points under the market
        placed = await c.place(type=1, side=0, limitPrice=float(limit), customTag="L")
        assert placed["success"]
        cross = next(i for i in range(20, len(bars)) if bars[i].low <= float(limit) and i > 19)
        open_orders = (await c.call("/api/Order/searchOpen", {"accountId": ACCOUNT}))["orders"]
        assert [o["customTag"] for o in open_orders] == ["L"]
        venue.advance(cross - 20 - 1)  # up to the bar before the crossing one: still resting
        assert (await orders_of(c))[0]["status"] == 1
        venue.advance()
        order = (await orders_of(c))[0]
        assert order["status"] == 2 and order["fillVolume"] == 1
        assert Decimal(str(order["filledPrice"])) == min(limit, tick(bars[cross].open))
        await c.aclose()


async def test_cancel_and_modify_follow_the_gateway_codes(bars):  # noqa: F811
    async with run_venue(bars) as venue:
        c = Client(venue.base_url)
        await c.login()
        now = venue.advance(3)
        below = float(tick(now.close) - 100)
        a = (await c.place(type=1, side=0, limitPrice=below))["orderId"]
        b = (await c.place(type=1, side=0, limitPrice=below))["orderId"]
        cancel = {"accountId": ACCOUNT, "orderId": a}
        assert (await c.call("/api/Order/cancel", cancel))["success"]
        assert (await c.call("/api/Order/cancel", cancel))["errorCode"] == 3  # not open
        assert (await c.call("/api/Order/cancel", {"accountId": ACCOUNT, "orderId": 1}))[
            "errorCode"] == 2
        # raise the limit through the market: it fills at the current close
        mod = await c.call("/api/Order/modify", {"accountId": ACCOUNT, "orderId": b,
                                                 "limitPrice": float(tick(now.close) + 1)})
        assert mod == {"success": True, "errorCode": 0, "errorMessage": None}
        order = (await c.call("/api/Order/searchById", {"accountId": ACCOUNT, "orderId": b}))[
            "order"]
        assert order["status"] == 2 and Decimal(str(order["filledPrice"])) == tick(now.close)
        await c.aclose()


async def test_order_search_honours_the_time_window(bars):  # noqa: F811
    async with run_venue(bars) as venue:
        venue.advance()
        c = Client(venue.base_url)
        await c.login()
        await c.place(customTag="x")
        created = (await orders_of(c))[0]["creationTimestamp"]
        later = await c.call("/api/Order/search", {"accountId": ACCOUNT,
                                                   "startTimestamp": "2999-01-01T00:00:00Z"})
        assert later["orders"] == []
        exact = await c.call("/api/Order/search", {"accountId": ACCOUNT, "startTimestamp": EPOCH,
                                                   "endTimestamp": created})
        assert [o["customTag"] for o in exact["orders"]] == ["x"]
        before = await c.call("/api/Order/search", {"accountId": ACCOUNT, "startTimestamp": EPOCH,
                                                    "endTimestamp": "2001-01-01T00:00:00Z"})
        assert before["orders"] == []
        assert (await c.raw("/api/Order/search", {"accountId": ACCOUNT})).status_code == 400
        nobody = await c.call("/api/Order/search", {"accountId": 7, "startTimestamp": EPOCH})
        assert (nobody["success"], nobody["errorCode"]) == (False, 1)
        await c.aclose()


async def _scripted_session(bars, seed: int) -> list[tuple]:  # noqa: F811
    """Random-but-seeded market/limit orders over 150 bars; the fills, without wall times."""
    rng = random.Random(seed)
    async with run_venue(bars) as venue:
        c = Client(venue.base_url)
        await c.login()
        for i in range(150):
            bar = venue.advance()
            if rng.random() < 0.3:
                kind = rng.choice([1, 2])
                price = float(tick(bar.close) + rng.choice([-10, -5, 5, 10])) if kind == 1 else None
                await c.place(type=kind, side=rng.choice([0, 1]), size=rng.randint(1, 3),
                              limitPrice=price, customTag=f"o{i}")
        orders = [(o["id"], o["customTag"], o["status"], o["filledPrice"], o["fillVolume"])
                  for o in venue.orders()]
        trades = [(t["orderId"], t["price"], t["size"], t["side"], t["profitAndLoss"])
                  for t in venue.trades()]
        await c.aclose()
        return orders + trades + [("net", venue.net_position())]


async def test_same_bars_and_same_orders_give_the_same_fills(bars):  # noqa: F811
    one = await _scripted_session(bars, 5)
    two = await _scripted_session(bars, 5)
    assert one == two
    assert any(row[2] == 2 for row in one if len(row) == 5 and isinstance(row[1], str))
    assert one != await _scripted_session(bars, 6)


async def test_on_bar_shares_the_replay_clock(bars):  # noqa: F811
    async with run_venue(bars) as venue:
        c = Client(venue.base_url)
        await c.login()
        await venue.on_bar(bars[30])  # the daemon's ingest handler call
        placed = await c.place(customTag="m")
        order = (await orders_of(c))[0]
        assert placed["success"] and Decimal(str(order["filledPrice"])) == tick(bars[30].close)
        assert venue.current_bar == bars[30]
        await c.aclose()


async def test_x_replay_time_header_moves_the_clock_forward_only(bars):  # noqa: F811
    async with run_venue(bars) as venue:
        c = Client(venue.base_url)
        await c.login()
        c.http.headers["X-Replay-Time"] = bars[40].ts.isoformat()
        await c.place(customTag="h1")
        c.http.headers["X-Replay-Time"] = bars[10].ts.isoformat()  # older: ignored
        await c.place(customTag="h2")
        fills = [Decimal(str(o["filledPrice"])) for o in await orders_of(c)]
        assert fills == [tick(bars[40].close)] * 2 and venue.current_bar == bars[40]
        c.http.headers["X-Replay-Time"] = "yesterday"
        assert (await c.raw("/api/Order/searchOpen", {"accountId": ACCOUNT})).status_code == 400
        await c.aclose()


async def test_the_same_bar_twice_does_not_match_twice_and_a_rewind_restarts(bars):  # noqa: F811
    async with run_venue(bars) as venue:
        c = Client(venue.base_url)
        await c.login()
        venue.set_bar(bars[50])
        # a buy limit inside bar 50's range but under its close: must wait for a later bar
        limit = tick(bars[50].low) + Decimal("0.25")
        if limit >= tick(bars[50].close):
            limit = tick(bars[50].close) - 1
        await c.place(type=1, side=0, limitPrice=float(limit), customTag="w")
        venue.set_bar(bars[50])  # the same bar again (e.g. a second handler call)
        assert (await orders_of(c))[0]["status"] == 1
        venue.set_bar(bars[5])  # a replay that starts over
        assert venue.market.index == 5 and venue.current_bar == bars[5]
        history = await c.call("/api/History/retrieveBars", {
            "contractId": CONTRACT, "live": False, "startTime": "1990-01-01T00:00:00Z",
            "endTime": "2100-01-01T00:00:00Z", "unit": 4, "unitNumber": 1, "limit": 100})
        assert len(history["bars"]) == 6
        await c.aclose()


async def test_order_v2_query_filters_sorts_and_pages(bars):  # noqa: F811
    async with run_venue(bars) as venue:
        c = Client(venue.base_url)
        await c.login()
        now = venue.advance(3)
        for i in range(130):  # resting buys far under the market, every 10th cancelled
            oid = (await c.place(type=1, limitPrice=float(tick(now.close) - 100),
                                 customTag=f"q{i}"))["orderId"]
            if i % 10 == 0:
                await c.call("/api/Order/cancel", {"accountId": ACCOUNT, "orderId": oid})
        flat = await c.raw("/api/Order/v2/query", {"accountId": ACCOUNT})
        assert flat.status_code == 400 and "filter" in flat.json()["detail"]
        query = {"filter": {"accountId": ACCOUNT, "statuses": [1]}, "pageSize": 500,
                 "pageOffset": 0, "sortBy": 1, "sortDirection": 1, "includeTotalCount": True}
        first = await c.call("/api/Order/v2/query", query)
        assert first["totalCount"] == 117 and len(first["orders"]) == 100  # page cap
        second = await c.call("/api/Order/v2/query", {**query, "pageOffset": 100})
        ids = [o["id"] for o in first["orders"] + second["orders"]]
        assert len(ids) == 117 and ids == sorted(ids, reverse=True)
        assert all(o["status"] == 1 for o in second["orders"])
        await c.aclose()
