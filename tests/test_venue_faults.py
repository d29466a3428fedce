"""Injected faults and rate limits of the paper venue, as a raw httpx client sees them."""

from __future__ import annotations

import httpx
import pytest

from daemon.venue import run_venue
from daemon.venue.faults import FaultInjector, FaultSpecError, parse_faults
from tests.venue_support import ACCOUNT, CONTRACT, Client, bars  # noqa: F401

ORDER = {"accountId": ACCOUNT, "contractId": CONTRACT, "type": 2, "side": 0, "size": 1}


def test_fault_spec_grammar():
    plan = parse_faults("place:timeout_after_accept=0.1,place:reset=0.05,place:5xx=0.1,"
                        "any:429=0.05,latency_ms=5,bars:latency_ms=20,seed=7,stall_s=2")
    assert plan.seed == 7 and plan.stall_s == 2
    assert plan.latency_for("place") == 5 and plan.latency_for("bars") == 25
    assert ("place", "reset", 0.05) in plan.rules and ("any", "429", 0.05) in plan.rules
    assert parse_faults("") == parse_faults(" ")
    for bad in ("place:bogus=0.1", "nowhere:429=0.1", "place:429=1.5", "429=0.1",
                "place:429=0.6,any:5xx=0.5", "cancel:dup_tag=0.1", "place:429", "seed=x"):
        with pytest.raises(FaultSpecError):
            parse_faults(bad)


def test_draws_are_deterministic_per_seed_and_follow_the_probabilities():
    spec = "place:reset=0.2,place:dup_tag=0.1,any:429=0.1,seed=11"
    one, two = FaultInjector(parse_faults(spec)), FaultInjector(parse_faults(spec))
    a = [one.draw("place")[1] for _ in range(2000)]
    # interleaving other endpoints does not change what the n-th place gets
    b = []
    for _ in range(2000):
        two.draw("orders")
        b.append(two.draw("place")[1])
    assert a == b
    assert 300 < a.count("reset") < 500 and 100 < a.count("dup_tag") < 300
    assert 100 < a.count("429") < 300
    other = FaultInjector(parse_faults(spec.replace("seed=11", "seed=12")))
    assert a != [other.draw("place")[1] for _ in range(2000)]
    assert {FaultInjector(parse_faults(spec)).draw("orders")[1] for _ in range(50)} <= {
        None, "429"}  # dup_tag is for place only


async def _place(c: Client, tag: str, timeout: float = 5.0) -> httpx.Response:
    return await c.http.post("/api/Order/place", json={**ORDER, "customTag": tag},
                             headers={"Authorization": f"Bearer {c.token}"}, timeout=timeout)


async def test_each_fault_kind_is_observable_and_counted(bars):  # noqa: F811
    async with run_venue(bars, faults="stall_s=1") as venue:
        venue.advance()
        c = Client(venue.base_url)
        await c.login()
        expect = {  # kind → (what the client sees, was the order placed)
            "429": (429, False), "500": (500, False), "503": (503, False),
            "5xx": ({500, 503}, False), "reset": (httpx.TransportError, False),
            "timeout": (httpx.ReadTimeout, False), "5xx_after_accept": (500, True),
            "reset_after_accept": (httpx.TransportError, True),
            "timeout_after_accept": (httpx.ReadTimeout, True), "dup_tag": ("dup", True)}
        for kind, (seen, placed) in expect.items():
            venue.force_fault("place", kind)
            if isinstance(seen, type):
                with pytest.raises(seen):
                    await _place(c, kind, timeout=0.3)
            else:
                r = await _place(c, kind)
                if seen == "dup":
                    assert r.status_code == 200 and r.json()["errorCode"] == 2
                    assert r.json()["errorMessage"] == "Specified custom tag is already in use"
                else:
                    assert r.status_code in (seen if isinstance(seen, set) else {seen})
                if seen == 429:
                    assert int(r.headers["retry-after"]) >= 1
            assert (kind in venue.tag_counts()) == placed, kind
        assert venue.fault_counts() == {f"place:{k}": 1 for k in expect}
        # a retry with the same tag after an accepted-then-lost order: the venue's answer
        retry = await _place(c, "timeout_after_accept")
        assert retry.json()["errorCode"] == 2 and venue.tag_counts()["timeout_after_accept"] == 1
        assert (await _place(c, "reset")).json()["success"]  # never placed: free to send
        await c.aclose()


async def test_latency_delays_the_answer_but_the_request_is_processed(bars):  # noqa: F811
    async with run_venue(bars, faults="place:latency_ms=600") as venue:
        venue.advance()
        c = Client(venue.base_url)
        await c.login()
        with pytest.raises(httpx.ReadTimeout):
            await _place(c, "slow", timeout=0.1)
        ok = await c.call("/api/Order/searchOpen", {"accountId": ACCOUNT})  # no latency here
        assert ok["success"]
        r = await _place(c, "patient", timeout=5)
        assert r.json()["success"] and "patient" in venue.tag_counts()
        await c.aclose()


async def _random_resets(bars, seed: int) -> tuple[list[int], dict[str, int]]:  # noqa: F811
    async with run_venue(bars, faults=f"place:reset=0.3,place:500=0.2,seed={seed}") as venue:
        venue.advance()
        c = Client(venue.base_url)
        await c.login()
        failed = []
        for i in range(30):
            try:
                r = await _place(c, f"r{i}")
                if r.status_code != 200:
                    failed.append(i)
            except httpx.TransportError:
                failed.append(i)
        assert sorted(venue.tag_counts()) == sorted(f"r{i}" for i in range(30) if i not in failed)
        await c.aclose()
        return failed, venue.fault_counts()


async def test_random_faults_are_reproducible_for_a_seed(bars):  # noqa: F811
    failed, counts = await _random_resets(bars, 7)
    assert len(failed) == counts["place:reset"] + counts["place:500"] > 0
    assert (failed, counts) == await _random_resets(bars, 7)
    assert failed != (await _random_resets(bars, 8))[0]


async def test_rate_limits_answer_429_per_endpoint_class(bars):  # noqa: F811
    async with run_venue(bars, other_limit="8/60") as venue:
        c = Client(venue.base_url)
        await c.login()  # login counts against the shared budget
        statuses = [(await c.raw("/api/Order/searchOpen", {"accountId": ACCOUNT})).status_code
                    for _ in range(9)]
        assert statuses == [200] * 7 + [429, 429]
        limited = await c.raw("/api/Account/search", {"onlyActiveAccounts": True})
        assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 60
        # History has its own budget, 50 per 30 s by default
        body = {"contractId": CONTRACT, "live": False, "startTime": "1999-01-01T00:00:00Z",
                "endTime": "2000-01-01T00:00:00Z", "unit": 4, "unitNumber": 1, "limit": 5,
                "includePartialBar": False}
        history = [(await c.raw("/api/History/retrieveBars", body)).status_code
                   for _ in range(51)]
        assert history == [200] * 50 + [429]
        venue.set_rate_limits(other="unlimited")
        assert (await c.raw("/api/Order/searchOpen", {"accountId": ACCOUNT})).status_code == 200
        await c.aclose()


async def test_any_scope_faults_hit_every_endpoint(bars):  # noqa: F811
    async with run_venue(bars, faults="any:503=1") as venue:
        async with httpx.AsyncClient(base_url=venue.base_url) as http:
            r = await http.post("/api/Auth/loginKey", json={"userName": "u", "apiKey": "k"})
            assert r.status_code == 503
            assert (await http.get("/api/Status/ping")).status_code == 503
        assert venue.fault_counts() == {"login:503": 1, "ping:503": 1}
        venue.set_faults("")
        c = Client(venue.base_url)
        await c.login()
        await c.aclose()
