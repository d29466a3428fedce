"""The paper venue speaks the Gateway contract: envelope, auth, contracts (real HTTP)."""

from __future__ import annotations

import base64
import json
import time

import anyio
import httpx

from daemon.venue import run_venue
from tests.venue_support import ACCOUNT, CONTRACT, Client, bars  # noqa: F401


async def test_login_returns_a_jwt_with_exp_and_every_answer_has_the_envelope(bars):  # noqa: F811
    async with run_venue(bars) as venue:
        c = Client(venue.base_url)
        token = await c.login()
        claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        assert claims["sub"] == "trader"
        assert 86_000 < claims["exp"] - time.time() <= 86_400
        body = await c.call("/api/Account/search", {"onlyActiveAccounts": True})
        assert list(body) == ["accounts", "success", "errorCode", "errorMessage"]
        assert body["success"] is True and body["errorCode"] == 0 and body["errorMessage"] is None
        assert body["accounts"][0]["id"] == ACCOUNT and body["accounts"][0]["simulated"] is True
        # a business failure is HTTP 200, success false, the endpoint's own error code
        miss = await c.call("/api/Contract/searchById", {"contractId": "CON.F.US.NOPE.Z26"})
        assert miss == {"contract": None, "success": False, "errorCode": 1,
                        "errorMessage": "Contract not found"}
        await c.aclose()


async def test_prices_are_decimals_with_nine_fractional_digits(bars):  # noqa: F811
    async with run_venue(bars) as venue:
        c = Client(venue.base_url)
        await c.login()
        r = await c.raw("/api/Contract/searchById", {"contractId": CONTRACT})
        assert '"tickSize":0.250000000' in r.text and '"tickValue":12.500000000' in r.text
        await c.aclose()


async def test_requests_without_a_valid_token_get_401(bars):  # noqa: F811
    async with run_venue(bars) as venue:
        c = Client(venue.base_url)
        assert (await c.raw("/api/Account/search", {"onlyActiveAccounts": True})).status_code == 401
        c.token = "not.a.token"
        assert (await c.raw("/api/Account/search", {"onlyActiveAccounts": True})).status_code == 401
        await c.login()
        forged = c.token[:-4] + ("AAAA" if not c.token.endswith("AAAA") else "BBBB")
        c.token = forged
        assert (await c.raw("/api/Account/search", {"onlyActiveAccounts": True})).status_code == 401
        # ping needs no token and is a GET
        ping = await c.http.get("/api/Status/ping")
        assert ping.status_code == 200 and ping.text == "pong"
        await c.aclose()


async def test_tokens_expire_and_validate_returns_a_fresh_token(bars):  # noqa: F811
    async with run_venue(bars, token_lifetime_s=2.0) as venue:
        c = Client(venue.base_url)
        first = await c.login()
        fresh = await c.call("/api/Auth/validate")
        assert fresh["success"] is True and fresh["newToken"] and fresh["newToken"] != first
        await anyio.sleep(2.1)
        assert (await c.raw("/api/Auth/validate")).status_code == 401  # expired: log in again
        c.token = fresh["newToken"]  # issued later, but also past its 2 s now
        assert (await c.raw("/api/Order/searchOpen", {"accountId": ACCOUNT})).status_code == 401
        await c.login()
        assert (await c.call("/api/Order/searchOpen", {"accountId": ACCOUNT}))["success"]
        await c.aclose()


async def test_logout_revokes_only_that_token(bars):  # noqa: F811
    async with run_venue(bars) as venue:
        a, b = Client(venue.base_url), Client(venue.base_url)
        await a.login()
        await b.login()
        assert (await a.call("/api/Auth/logout"))["success"] is True
        assert (await a.raw("/api/Account/search", {"onlyActiveAccounts": True})).status_code == 401
        assert (await b.call("/api/Account/search", {"onlyActiveAccounts": True}))["success"]
        await a.aclose()
        await b.aclose()


async def test_login_checks_credentials_only_when_configured(bars):  # noqa: F811
    async with run_venue(bars, username="Alice", api_key="s3cret") as venue:
        c = Client(venue.base_url)
        r = await c.http.post("/api/Auth/loginKey", json={"userName": "alice", "apiKey": "bad"})
        assert r.status_code == 200
        assert r.json() == {"token": None, "success": False, "errorCode": 3,
                            "errorMessage": "Invalid credentials"}
        await c.login("alice", "s3cret")  # userName is case-insensitive
        missing = await c.http.post("/api/Auth/loginKey", json={"userName": "alice"})
        assert missing.status_code == 400 and missing.json()["status"] == 400
        await c.aclose()


async def test_contract_search_is_a_substring_match_so_clients_must_filter(bars):  # noqa: F811
    async with run_venue(bars) as venue:
        c = Client(venue.base_url)
        await c.login()
        found = (await c.call("/api/Contract/search", {"searchText": "ES", "live": False}))
        names = {x["name"] for x in found["contracts"]}
        assert {"ESZ6", "ESH7", "MESZ6", "MESH7"} <= names  # micro matches too
        assert len(found["contracts"]) <= 20
        exact = [x for x in found["contracts"] if x["id"] == CONTRACT]
        assert exact[0]["symbolId"] == "F.US.EP" and exact[0]["activeContract"] is True
        everything = await c.call("/api/Contract/search", {"searchText": "", "live": False})
        assert len(everything["contracts"]) == 20  # capped, no paging
        # live:true finds nothing on a simulated account, as observed on the real Gateway
        assert (await c.call("/api/Contract/search", {"searchText": "ES", "live": True}))[
            "contracts"] == []
        # expired months are not searchable but resolve by id
        expired = await c.call("/api/Contract/searchById", {"contractId": "CON.F.US.EP.U26"})
        assert expired["contract"]["activeContract"] is False
        assert "ESU6" not in names
        await c.aclose()


async def test_malformed_requests_get_400_problem_details_and_unknown_paths_404(bars):  # noqa: F811
    async with run_venue(bars) as venue:
        c = Client(venue.base_url)
        await c.login()
        r = await c.raw("/api/Order/place", {"accountId": "x", "contractId": CONTRACT})
        assert r.status_code == 400
        assert {"type", "title", "status", "detail"} <= set(r.json())
        bad_json = await c.http.post("/api/Account/search", content=b"{nope",
                                     headers={"Authorization": f"Bearer {c.token}"})
        assert bad_json.status_code == 400
        assert (await c.raw("/api/Nope/nothing")).status_code == 404
        assert (await c.http.get("/api/Account/search")).status_code == 405
        await c.aclose()


async def test_keep_alive_connection_serves_many_requests(bars):  # noqa: F811
    async with run_venue(bars) as venue:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=venue.base_url, limits=limits) as http:
            for _ in range(20):
                assert (await http.get("/api/Status/ping")).text == "pong"


async def test_client_strings_never_turn_into_numbers(bars):  # noqa: F811
    async with run_venue(bars) as venue:
        venue.advance()
        c = Client(venue.base_url)
        await c.login()
        tag = "\x001.500000000"
        assert (await c.place(customTag=tag))["success"]
        orders = (await c.call("/api/Order/search", {"accountId": ACCOUNT,
                                                     "startTimestamp": "2000-01-01T00:00:00Z"}))
        assert orders["orders"][0]["customTag"] == tag
        await c.aclose()
