"""A position closed from outside the daemon: POST /_venue/flatten and Position/closeContract.
The closing order carries no customTag, as a manual close in the platform would."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from daemon.venue import run_venue
from tests.venue_support import ACCOUNT, CONTRACT, Client, d, path_bars

T0 = datetime(2024, 3, 4, 14, tzinfo=UTC)


async def _long_3_and_a_resting_sell(c: Client) -> int:
    """Buy 3 at market (tagged), rest a tagged sell limit far above; the resting order's id."""
    assert (await c.place(type=2, side=0, size=3, customTag="entry"))["success"]
    return (await c.place(type=1, side=1, size=3, limitPrice=150, customTag="target"))["orderId"]


async def test_admin_flatten_closes_with_an_untagged_market_order_and_cancels_orders():
    bars = path_bars(T0, [99, 99, 99])
    async with run_venue(bars, fee_per_contract="2") as venue:
        c = Client(venue.base_url)
        await c.login()
        venue.advance()  # close 100
        resting = await _long_3_and_a_resting_sell(c)
        venue.set_bar(path_bars(T0.replace(hour=15), [99], level=104)[0])  # close 104
        r = await c.http.post("/_venue/flatten", json={"accountId": ACCOUNT,
                                                       "contractId": CONTRACT,
                                                       "cancelOrders": True})
        assert r.status_code == 200, r.text
        answer = r.json()
        closing = answer["orderId"]
        assert answer == {"success": True, "errorCode": 0, "errorMessage": None,
                          "orderId": closing, "cancelledOrderIds": [resting]}
        orders = {o["id"]: o for o in await c.orders()}
        assert (orders[closing]["customTag"], orders[closing]["type"], orders[closing]["side"],
                orders[closing]["status"], orders[closing]["fillVolume"]) == (None, 2, 1, 2, 3)
        assert (orders[resting]["status"], orders[resting]["fillVolume"]) == (3, 0)
        last = (await c.trades())[-1]
        assert (last["orderId"], last["side"], last["size"], d(last["price"])) == \
            (closing, 1, 3, Decimal(104))
        assert d(last["profitAndLoss"]) == Decimal(4 * 3 * 50)  # 4 points x 3 x $50
        assert d(last["fees"]) == Decimal(6)
        assert await c.positions() == [] and venue.net_position() == 0
        state = (await c.http.get("/_venue/state")).json()
        assert {o["id"]: (o["status"], o["fillVolume"]) for o in state["orders"]} == {
            min(orders): (2, 3), resting: (3, 0), closing: (2, 3)}
        again = (await c.http.post("/_venue/flatten", json={"accountId": ACCOUNT,
                                                            "contractId": CONTRACT})).json()
        assert (again["success"], again["errorCode"], again["orderId"]) == (False, 2, None)
        await c.aclose()


async def test_admin_flatten_leaves_orders_alone_unless_asked_and_checks_its_input():
    bars = path_bars(T0, [99, 99, 99])
    async with run_venue(bars) as venue:
        c = Client(venue.base_url)
        await c.login()
        venue.advance()
        resting = await _long_3_and_a_resting_sell(c)
        answer = (await c.http.post("/_venue/flatten", json={"accountId": ACCOUNT,
                                                             "contractId": CONTRACT})).json()
        assert answer["success"] and answer["cancelledOrderIds"] == []
        assert [o["id"] for o in (await c.call("/api/Order/searchOpen",
                                               {"accountId": ACCOUNT}))["orders"]] == [resting]
        assert (await c.http.get("/_venue/flatten")).status_code == 405
        bad = await c.http.post("/_venue/flatten", json={"contractId": CONTRACT})
        assert bad.status_code == 400 and "accountId" in bad.json()["detail"]
        assert (await c.http.post("/_venue/flatten", content=b"[1]")).status_code == 400
        nobody = (await c.http.post("/_venue/flatten", json={"accountId": 7,
                                                             "contractId": CONTRACT})).json()
        assert (nobody["success"], nobody["errorCode"]) == (False, 1)
        await c.aclose()


async def test_close_contract_flattens_a_partly_filled_position_with_an_untagged_order():
    bars = path_bars(T0, [99, 99, 99])
    async with run_venue(bars, max_fill_per_bar=2) as venue:
        c = Client(venue.base_url)
        await c.login()
        venue.advance()
        oid = (await c.place(type=1, side=0, size=5, limitPrice=100, customTag="in"))["orderId"]
        venue.advance()  # 4 of 5 filled, the order still working
        assert venue.net_position() == 4
        closed = await c.call("/api/Position/closeContract", {"accountId": ACCOUNT,
                                                               "contractId": CONTRACT})
        assert closed == {"success": True, "errorCode": 0, "errorMessage": None}
        orders = await c.orders()
        closing = orders[-1]
        assert (closing["customTag"], closing["type"], closing["side"], closing["size"],
                closing["status"], closing["fillVolume"]) == (None, 2, 1, 4, 2, 4)
        last = (await c.trades())[-1]
        assert (last["orderId"], last["size"], last["side"]) == (closing["id"], 4, 1)
        assert venue.net_position() == 0
        # the working order is not cancelled by a close (as on the real Gateway)
        assert [(o["id"], o["status"], o["fillVolume"]) for o in orders[:-1]] == [(oid, 1, 4)]
        await c.aclose()
