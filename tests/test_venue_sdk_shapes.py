"""Compatibility with project-x-py 4.4.x, through raw httpx requests of the SDK's shapes.

project-x-py needs Python >= 3.12 and this project runs 3.11, so the SDK itself cannot be
installed here. The requests below copy what its 4.4.1 source sends (base URL ending in /api,
`/Auth/loginKey` etc., nullable price fields sent as null, ISO timestamps with +00:00, Trade
search with contractId, bar paging that moves `endTime` to the earliest bar seen), and the
checks mirror what it reads back (JWT `exp`, dataclass fields, `success`).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import httpx

from daemon.venue import run_venue
from tests.venue_support import bars  # noqa: F401

ORDER_FIELDS = {"id", "accountId", "contractId", "creationTimestamp", "updateTimestamp", "status",
                "type", "side", "size", "symbolId", "fillVolume", "limitPrice", "stopPrice",
                "filledPrice", "customTag"}
POSITION_FIELDS = {"id", "accountId", "contractId", "creationTimestamp", "type", "size",
                   "averagePrice"}
TRADE_FIELDS = {"id", "accountId", "contractId", "creationTimestamp", "price", "profitAndLoss",
                "fees", "side", "size", "voided", "orderId"}


class SdkShapedClient:
    """The request layer of project-x-py's ProjectX client, reduced to what it sends."""

    def __init__(self, api_url: str) -> None:
        self.base_url = api_url  # e.g. https://api.topstepx.com/api (PROJECTX_API_URL)
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(30, connect=5),
                                      follow_redirects=False)
        self.session_token = ""

    async def request(self, endpoint: str, data: dict | None = None) -> dict:
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if self.session_token and endpoint != "/Auth/loginKey":
            headers["Authorization"] = f"Bearer {self.session_token}"
        r = await self.http.post(f"{self.base_url}{endpoint}", json=data, headers=headers)
        assert r.status_code in (200, 201, 204), (endpoint, r.status_code, r.text)
        return r.json()


async def test_project_x_py_request_shapes_work_against_the_venue(bars):  # noqa: F811
    async with run_venue(bars) as venue:
        venue.advance(300)
        sdk = SdkShapedClient(venue.base_url + "/api")
        auth = await sdk.request("/Auth/loginKey", {"userName": "trader", "apiKey": "key"})
        assert auth["success"]
        sdk.session_token = auth["token"]
        payload = auth["token"].split(".")[1]
        payload += "=" * (4 - len(payload) % 4)
        exp = json.loads(base64.urlsafe_b64decode(payload))["exp"]
        assert datetime.fromtimestamp(exp, UTC) > datetime.now(UTC) + timedelta(hours=23)

        accounts = await sdk.request("/Account/search", {"onlyActiveAccounts": True})
        account = accounts["accounts"][0]
        assert {"id", "name", "balance", "canTrade", "isVisible", "simulated"} <= set(account)

        found = await sdk.request("/Contract/search", {"searchText": "ES", "live": False})
        by_id = await sdk.request("/Contract/searchById", {"contractId": "CON.F.US.EP.Z26"})
        assert by_id["contract"] in found["contracts"]
        assert (await sdk.request("/Contract/available", {"live": False}))["success"]

        close = float(by_id["contract"]["tickSize"]) * round(bars[299].close / 0.25)
        placed = await sdk.request("/Order/place", {
            "accountId": account["id"], "contractId": "CON.F.US.EP.Z26", "type": 1, "side": 0,
            "size": 1, "limitPrice": close - 50.0, "stopPrice": None, "trailPrice": None,
            "customTag": "sdk-1"})
        assert placed["success"] and isinstance(placed["orderId"], int)
        market = await sdk.request("/Order/place", {
            "accountId": account["id"], "contractId": "CON.F.US.EP.Z26", "type": 2, "side": 0,
            "size": 1, "limitPrice": None, "stopPrice": None, "trailPrice": None})
        assert market["success"]

        now = datetime.now(UTC)
        window = {"accountId": account["id"],
                  "startTimestamp": (now - timedelta(days=30)).isoformat(),
                  "endTimestamp": (now + timedelta(seconds=5)).isoformat()}
        orders = (await sdk.request("/Order/search", window))["orders"]
        assert [o["customTag"] for o in orders] == ["sdk-1", None]
        assert all(set(o) >= ORDER_FIELDS for o in orders)
        open_orders = await sdk.request("/Order/searchOpen", {"accountId": account["id"]})
        assert [o["id"] for o in open_orders["orders"]] == [placed["orderId"]]
        one = await sdk.request("/Order/searchById", {"accountId": account["id"],
                                                      "orderId": placed["orderId"]})
        assert one["order"]["customTag"] == "sdk-1"
        positions = (await sdk.request("/Position/searchOpen", {"accountId": account["id"]}))
        assert set(positions["positions"][0]) >= POSITION_FIELDS
        trades = await sdk.request("/Trade/search", {**window, "contractId": "CON.F.US.EP.Z26"})
        assert len(trades["trades"]) == 1 and set(trades["trades"][0]) >= TRADE_FIELDS
        assert (await sdk.request("/Order/cancel", {"accountId": account["id"],
                                                    "orderId": placed["orderId"]}))["success"]

        # get_bars: pages of at most 20,000 newest-first bars, endTime moved to the earliest
        start, end, frames = datetime(1999, 1, 1, tzinfo=UTC), datetime(2000, 1, 1, tzinfo=UTC), []
        for _ in range(20):
            page = await sdk.request("/History/retrieveBars", {
                "contractId": "CON.F.US.EP.Z26", "live": False, "startTime": start.isoformat(),
                "endTime": end.isoformat(), "unit": 4, "unitNumber": 1, "limit": 20_000,
                "includePartialBar": False})
            assert page["success"]
            frames += page["bars"]
            if len(page["bars"]) < 20_000:
                break
        expected = [b for b in bars[:300] if start <= b.ts <= end]  # seen so far, in window
        assert len(frames) == len(expected) and frames[0]["t"] > frames[-1]["t"]

        fresh = await sdk.request("/Auth/validate")
        assert fresh["success"] and fresh["newToken"]
        assert (await sdk.request("/Auth/logout"))["success"]
        await sdk.http.aclose()
