"""The ProjectX client against the paper venue over real HTTP on 127.0.0.1: session and token
refresh, envelope errors, exact contract resolution, 429 backoff, Order/place never retried."""

from __future__ import annotations

import dataclasses
import gc
from datetime import timedelta
from decimal import Decimal

import pytest

from daemon.config import parse_config
from daemon.errors import ConfigError
from daemon.execution.client import ProjectXClient
from daemon.execution.errors import (
    AccountNotFound,
    AuthError,
    ContractNotFound,
    EnvelopeError,
    GatewayUnavailable,
    InsecureBaseURL,
    OrderOutcomeUnknown,
    OrderRejected,
    RateLimited,
    TagInUse,
)
from daemon.execution.models import tick_align
from daemon.execution.reconcile import venue_net_position
from tests.exec_support import API_KEY, START, px_config, session
from tests.venue_support import ACCOUNT, CONTRACT, bars  # noqa: F401

MARKET = {"account_id": ACCOUNT, "contract_id": CONTRACT, "type": 2, "side": 0, "size": 1}


async def test_login_account_and_reads(bars):  # noqa: F811
    async with session(bars) as (venue, client, _clock):
        account = await client.resolve_account()
        assert (account.id, account.name) == (ACCOUNT, "PAPER-1")
        assert (await client.resolve_account(str(ACCOUNT))).id == ACCOUNT
        with pytest.raises(AccountNotFound):
            await client.resolve_account("PAPER")  # a prefix is not a name
        order_id = await client.place_order(**MARKET, custom_tag="t-1")
        orders = await client.search_orders(ACCOUNT, START - timedelta(days=1))
        assert [o["id"] for o in orders] == [order_id] and orders[0]["customTag"] == "t-1"
        positions = await client.search_open_positions(ACCOUNT)
        assert venue_net_position(positions, CONTRACT) == 1 == venue.net_position()
        trades = await client.search_trades(ACCOUNT, START - timedelta(days=1))
        assert trades[0]["orderId"] == order_id and isinstance(trades[0]["price"], Decimal)
        assert await client.search_open_orders(ACCOUNT) == []
        assert client.counters["logins"] == 1 and venue.request_counts()["login"] == 1


async def test_gateway_calls_leave_no_reference_cycles_behind(bars):  # noqa: F811
    """Each call's request, response and connection streams are freed as soon as they are
    dropped (httpx 0.28 leaves a read response in a cycle with its stream wrapper), so no
    garbage collection is needed for them and none falls due inside an order on their
    account."""
    async with session(bars) as (_venue, client, _clock):
        await client.place_order(**MARKET, custom_tag="cycles-0")  # token and pool in place
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection frees is kept in gc.garbage
        try:
            for i in range(1, 4):
                await client.place_order(**MARKET, custom_tag=f"cycles-{i}")
                await client.search_open_orders(ACCOUNT)
            gc.collect()
            from_http = [type(o).__qualname__ for o in gc.garbage
                         if type(o).__module__.split(".")[0] in ("httpx", "httpcore")]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        assert from_http == []


async def test_token_is_refreshed_with_validate_before_expiry(bars):  # noqa: F811
    async with session(bars, venue_opts={"token_lifetime_s": 600.0},
                       token_refresh_margin_s=300.0) as (venue, client, clock):
        await client.search_accounts()
        first_exp = client.token_expires_at
        assert first_exp == pytest.approx(START.timestamp() + 600, abs=2)
        clock.advance(250)  # 350 s left: still fresh
        await client.search_accounts()
        assert venue.request_counts().get("validate", 0) == 0
        clock.advance(100)  # 250 s left < margin: refresh first
        await client.search_accounts()
        assert venue.request_counts()["validate"] == 1
        assert venue.request_counts()["login"] == 1
        assert client.token_expires_at > first_exp


async def test_failed_validate_falls_back_to_login(bars):  # noqa: F811
    async with session(bars, venue_opts={"token_lifetime_s": 600.0},
                       token_refresh_margin_s=300.0) as (venue, client, clock):
        await client.search_accounts()
        venue.force_fault("validate", "500", times=3)  # every attempt of the read fails
        clock.advance(400)
        await client.search_accounts()
        assert venue.request_counts()["validate"] == 3
        assert venue.request_counts()["login"] == 2
        # an expired token is not validated at all: straight to login
        clock.advance(700)
        await client.search_accounts()
        assert venue.request_counts()["validate"] == 3
        assert venue.request_counts()["login"] == 3


async def test_401_triggers_one_relogin_and_one_resend(bars):  # noqa: F811
    async with session(bars) as (venue, client, _clock):
        await client.search_accounts()
        venue.tokens.revoke(client._token)  # the Gateway forgot our session
        accounts = await client.search_accounts()
        assert accounts and client.counters["relogins_401"] == 1
        assert venue.request_counts()["login"] == 2
        # an order after a 401 is resent once: the Gateway refused it before doing anything
        venue.tokens.revoke(client._token)
        await client.place_order(**MARKET, custom_tag="after-401")
        assert venue.tag_counts() == {"after-401": 1}
        assert client.counters["relogins_401"] == 2


async def test_bad_credentials_raise_auth_error_with_the_login_code(bars):  # noqa: F811
    async with session(bars) as (venue, _client, clock):
        bad = ProjectXClient(px_config(venue.base_url), "wrong-key", clock=clock)
        try:
            with pytest.raises(AuthError) as err:
                await bad.search_accounts()
            assert err.value.error_code == 3
            assert "wrong-key" not in str(err.value)
        finally:
            await bad.aclose()


async def test_envelope_errors_carry_the_endpoint_code(bars):  # noqa: F811
    async with session(bars) as (venue, client, _clock):
        with pytest.raises(EnvelopeError) as err:
            await client.retrieve_bars(CONTRACT, start=START - timedelta(days=9000), end=START,
                                       unit=7)
        assert (err.value.endpoint, err.value.error_code) == ("History/retrieveBars", 2)
        with pytest.raises(EnvelopeError) as err:
            await client.search_orders(999, START)
        assert (err.value.endpoint, err.value.error_code) == ("Order/search", 1)
        with pytest.raises(EnvelopeError) as err:
            await client.cancel_order(ACCOUNT, 424242)
        assert err.value.endpoint == "Order/cancel" and err.value.error_code == 2
        # a rejected order still has an id: never infer success from orderId
        with pytest.raises(OrderRejected) as rej:
            await client.place_order(**{**MARKET, "contract_id": "CON.F.US.EP.U26"},
                                     custom_tag="exp")  # an expired contract
        assert rej.value.error_code != 0 and not isinstance(rej.value, TagInUse)
        assert rej.value.custom_tag == "exp"
        assert venue.request_counts()["place"] == 1


async def test_contract_resolution_is_exact(bars):  # noqa: F811
    async with session(bars) as (_venue, client, _clock):
        by_id = await client.resolve_contract(CONTRACT)
        assert (by_id.id, by_id.tick_size) == (CONTRACT, Decimal("0.25"))
        by_name = await client.resolve_contract("MNQH7")
        assert by_name.id == "CON.F.US.MNQ.H27"
        # "ES" finds ESZ6, MESZ6, ... by substring: none of them is "ES"
        hits = await client.search_contracts("ES")
        assert len(hits) > 1
        with pytest.raises(ContractNotFound) as err:
            await client.resolve_contract("ES")
        assert err.value.candidates
        for near_miss in ("CON.F.US.EP.Z2", "F.US.EP", "ESZ", "NQ"):
            with pytest.raises(ContractNotFound):
                await client.resolve_contract(near_miss)
        # an expired contract resolves by id (History needs it), flagged inactive
        expired = await client.resolve_contract("CON.F.US.EP.U26")
        assert expired.active is False


async def test_429_backoff_honours_retry_after(bars):  # noqa: F811
    async with session(bars) as (venue, client, clock):
        await client.search_accounts()
        venue.force_fault("accounts", "429", times=2)  # the venue sends Retry-After: 1
        clock.slept.clear()
        await client.search_accounts()
        backoffs = [s for s in clock.slept if s >= 0.5]
        assert len(backoffs) == 2 and all(1.0 <= s <= 1.2 for s in backoffs), clock.slept
        assert client.counters["retries"] == 2
        # bounded: after read_retries attempts the 429 is raised
        venue.force_fault("accounts", "429", times=3)
        with pytest.raises(RateLimited) as err:
            await client.search_accounts()
        assert err.value.retry_after == 1.0


async def test_429_without_retry_after_backs_off_exponentially(bars):  # noqa: F811
    async with session(bars, venue_opts={"retry_after": False}, max_backoff_s=8.0) as (
            venue, client, clock):
        await client.search_accounts()
        venue.force_fault("accounts", "429", times=2)
        clock.slept.clear()
        await client.search_accounts()
        assert len(clock.slept) == 2 and all(0 <= s <= 8.0 for s in clock.slept)


async def test_reads_retry_5xx_and_resets_but_give_up_bounded(bars):  # noqa: F811
    async with session(bars) as (venue, client, _clock):
        await client.search_accounts()
        venue.force_fault("positions", "503")
        venue.force_fault("positions", "reset")
        assert await client.search_open_positions(ACCOUNT) == []
        assert venue.request_counts()["positions"] == 3
        venue.force_fault("orders", "500", times=3)
        with pytest.raises(GatewayUnavailable):
            await client.search_orders(ACCOUNT, START)


@pytest.mark.parametrize("fault", ["timeout", "timeout_after_accept", "500", "503",
                                   "5xx_after_accept", "reset", "reset_after_accept"])
async def test_place_is_never_retried_and_its_outcome_is_unknown(bars, fault):  # noqa: F811
    async with session(bars) as (venue, client, _clock):
        await client.search_accounts()
        venue.force_fault("place", fault)
        with pytest.raises(OrderOutcomeUnknown) as err:
            await client.place_order(**MARKET, custom_tag=f"tag-{fault}")
        assert err.value.custom_tag == f"tag-{fault}"
        assert venue.request_counts()["place"] == 1  # one request, never a second
        landed = "accept" in fault
        assert (f"tag-{fault}" in venue.tag_counts()) == landed
        # the tag is the way to find out; a resend with it is refused if the first landed
        if landed:
            with pytest.raises(TagInUse):
                await client.place_order(**MARKET, custom_tag=f"tag-{fault}")
        else:
            assert await client.place_order(**MARKET, custom_tag=f"tag-{fault}") > 0
        assert venue.tag_counts()[f"tag-{fault}"] == 1


async def test_tag_in_use_and_429_on_place(bars):  # noqa: F811
    async with session(bars) as (venue, client, _clock):
        await client.place_order(**MARKET, custom_tag="dup")
        with pytest.raises(TagInUse) as err:
            await client.place_order(**MARKET, custom_tag="dup")
        assert err.value.error_code == 2 and err.value.order_id is None
        venue.force_fault("place", "dup_tag")  # the order lands, the answer says "in use"
        with pytest.raises(TagInUse):
            await client.place_order(**MARKET, custom_tag="lost-answer")
        assert venue.tag_counts()["lost-answer"] == 1
        venue.force_fault("place", "429")
        with pytest.raises(RateLimited):
            await client.place_order(**MARKET, custom_tag="limited")
        assert "limited" not in venue.tag_counts()
        assert venue.request_counts()["place"] == 4


async def test_prices_are_decimal_and_tick_aligned_away_from_the_market(bars):  # noqa: F811
    assert tick_align(Decimal("4500.2"), Decimal("0.25"), "down") == Decimal("4500.00")
    assert tick_align(4500.05, Decimal("0.25"), "up") == Decimal("4500.25")
    assert tick_align("2100.1", Decimal("0.1")) == Decimal("2100.1")
    async with session(bars) as (venue, client, _clock):
        buy = await client.place_order(**{**MARKET, "type": 1, "side": 0}, limit_price=1.2,
                                       custom_tag="buy")
        sell = await client.place_order(**{**MARKET, "type": 1, "side": 1},
                                        limit_price=Decimal("99999.05"), custom_tag="sell")
        by_id = {o["id"]: o for o in venue.orders()}
        assert by_id[buy]["limitPrice"] == Decimal("1.00")
        assert by_id[sell]["limitPrice"] == Decimal("99999.25")


async def test_base_url_must_be_https_unless_loopback():
    for bad in ("http://api.topstepx.com", "http://10.0.0.5:8080", "ftp://127.0.0.1",
                "api.topstepx.com"):
        with pytest.raises(InsecureBaseURL):
            ProjectXClient(px_config(bad), API_KEY)
        with pytest.raises(ConfigError) as err:
            parse_config({"projectx": {"base_url": bad}})
        assert err.value.key == "[projectx].base_url"
    for good in ("https://api.topstepx.com", "http://127.0.0.1:8123", "http://localhost:1",
                 "http://[::1]:9"):
        await ProjectXClient(px_config(good), API_KEY).aclose()
    assert parse_config({}).projectx.base_url.startswith("https://")


def test_projectx_config_checks():
    with pytest.raises(ConfigError) as err:
        parse_config({"projectx": {"rate_limit_qps": 6}})
    assert err.value.key == "[projectx].rate_limit_qps"
    with pytest.raises(ConfigError) as err:
        parse_config({"projectx": {"api_key": "sekrit"}})  # never in runtime.toml
    assert err.value.key == "[projectx].api_key"
    with pytest.raises(ConfigError):
        parse_config({"projectx": {"general_limit": "lots"}})
    cfg = parse_config({"projectx": {"rate_limit_qps": 4.5}})
    assert dataclasses.asdict(cfg.projectx)["rate_limit_qps"] == 4.5


async def test_client_budget_keeps_inside_the_venue_window_in_real_time(bars):  # noqa: F811
    """Wall clock: with the client's general budget equal to the venue's (20 per 1 s), a burst
    of reads is paced and the venue refuses none; with a larger client budget the venue's real
    429 comes with Retry-After, which the client waits out and then succeeds."""
    from daemon.clock import WallClock

    clock = WallClock()
    async with session(bars, clock=clock, venue_opts={"other_limit": "20/1"},
                       general_limit="20/1") as (venue, client, _):
        for _ in range(30):
            await client.search_open_positions(ACCOUNT)
        assert venue.limits.other.refused == 0 and client.counters["retries"] == 0
    async with session(bars, clock=clock, venue_opts={"other_limit": "4/1"}) as (
            venue, client, _):
        t0 = clock.monotonic()
        for _ in range(6):
            await client.search_open_positions(ACCOUNT)
        assert venue.limits.other.refused >= 1 and client.counters["retries"] >= 1
        assert clock.monotonic() - t0 >= 1.0  # waited out Retry-After (1 s), no hammering
        assert venue.limits.other.refused == client.counters["retries"]
