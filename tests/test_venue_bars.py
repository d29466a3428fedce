"""History/retrieveBars on the paper venue: newest-first, windows, the 20,000 cap, units."""

from __future__ import annotations

import csv
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.bars.replay import load_bars
from daemon.timeutil import parse_utc
from daemon.venue import run_venue
from tests.venue_support import CONTRACT, Client, bars  # noqa: F401

ALL = {"startTime": "1990-01-01T00:00:00Z", "endTime": "2100-01-01T00:00:00Z"}


def request(**fields) -> dict:
    body = {"contractId": CONTRACT, "live": False, **ALL, "unit": 4, "unitNumber": 1,
            "limit": 1000, "includePartialBar": False}
    body.update(fields)
    return body


@pytest.fixture(scope="module")
def minute_csv(tmp_path_factory) -> Path:
    """25,000 one-minute bars (a seeded random walk): more than one request may return."""
    path = tmp_path_factory.mktemp("bars") / "minutes.csv"
    rng = random.Random(3)
    t0 = datetime(2024, 3, 4, tzinfo=UTC)
    price = 5000.0
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "open", "high", "low", "close", "volume"])
        for i in range(25_000):
            o = price
            price = max(100.0, price + rng.gauss(0, 1.0))
            w.writerow([(t0 + timedelta(minutes=i)).isoformat(), o, max(o, price) + 0.25,
                        min(o, price) - 0.25, price, rng.randint(1, 500)])
    return path


async def test_bars_are_newest_first_and_only_up_to_the_current_bar(bars):  # noqa: F811
    async with run_venue(bars) as venue:
        c = Client(venue.base_url)
        await c.login()
        assert (await c.call("/api/History/retrieveBars", request()))["bars"] == []
        venue.advance(100)
        got = (await c.call("/api/History/retrieveBars", request(limit=10)))["bars"]
        times = [parse_utc(b["t"]) for b in got]
        assert times == [b.ts for b in reversed(bars[90:100])]  # newest 10, newest first
        assert got[0]["c"] == pytest.approx(bars[99].close)
        assert isinstance(got[0]["v"], int)
        await c.aclose()


async def test_paging_backwards_by_time_window_collects_every_bar_once(bars):  # noqa: F811
    async with run_venue(bars) as venue:
        venue.advance(len(bars))
        c = Client(venue.base_url)
        await c.login()
        seen, end = [], "2100-01-01T00:00:00Z"
        while True:
            page = (await c.call("/api/History/retrieveBars",
                                 request(limit=70, endTime=end)))["bars"]
            if not page:
                break
            seen += [parse_utc(b["t"]) for b in page]
            end = (parse_utc(page[-1]["t"]) - timedelta(seconds=1)).isoformat()
        assert seen == [b.ts for b in reversed(bars)]
        window = (await c.call("/api/History/retrieveBars", request(
            startTime=bars[10].ts.isoformat(), endTime=bars[19].ts.isoformat())))["bars"]
        assert [parse_utc(b["t"]) for b in window] == [b.ts for b in reversed(bars[10:20])]
        await c.aclose()


async def test_limit_is_capped_at_20000_and_bad_arguments_get_their_codes(minute_csv):
    async with run_venue(data=str(minute_csv), history_limit="unlimited") as venue:
        venue.advance(25_000)
        c = Client(venue.base_url)
        await c.login()
        got = (await c.call("/api/History/retrieveBars", request(unit=2, limit=50_000)))["bars"]
        assert len(got) == 20_000
        assert parse_utc(got[0]["t"]) == venue.market.bars[-1].ts
        assert parse_utc(got[-1]["t"]) == venue.market.bars[5_000].ts
        for fields, code in [({"unit": 2, "limit": 0}, 4), ({"unit": 9}, 2),
                             ({"unit": 2, "unitNumber": 0}, 3),
                             ({"unit": 1}, 2),  # seconds: finer than the data
                             ({"contractId": "CON.F.US.NOPE.Z26"}, 1)]:
            answer = await c.call("/api/History/retrieveBars", request(**fields))
            assert (answer["success"], answer["errorCode"]) == (False, code), fields
        other = await c.call("/api/History/retrieveBars", request(contractId="CON.F.US.MES.Z26"))
        assert other["success"] and other["bars"] == []
        await c.aclose()


async def test_coarser_units_aggregate_and_the_partial_bar_is_optional(minute_csv):
    raw = load_bars(str(minute_csv), CONTRACT)
    async with run_venue(raw, history_limit="unlimited") as venue:
        venue.advance(62)  # current = minute 61 (00:01 on day 1): 5-min bucket 00:00 is open
        c = Client(venue.base_url)
        await c.login()
        five = (await c.call("/api/History/retrieveBars", request(unit=2, unitNumber=5)))["bars"]
        assert len(five) == 12  # 60 complete minutes; the 13th bucket is in progress
        newest = raw[55:60]
        assert parse_utc(five[0]["t"]) == raw[55].ts
        assert five[0]["o"] == pytest.approx(newest[0].open)
        assert five[0]["h"] == pytest.approx(max(b.high for b in newest))
        assert five[0]["l"] == pytest.approx(min(b.low for b in newest))
        assert five[0]["c"] == pytest.approx(newest[-1].close)
        assert five[0]["v"] == sum(int(b.volume) for b in newest)
        partial = (await c.call("/api/History/retrieveBars",
                                request(unit=2, unitNumber=5, includePartialBar=True)))["bars"]
        assert len(partial) == 13 and partial[0]["c"] == pytest.approx(raw[61].close)
        hourly = (await c.call("/api/History/retrieveBars", request(unit=3, unitNumber=1,
                                                                    includePartialBar=True)))
        assert [parse_utc(b["t"]).hour for b in hourly["bars"]] == [1, 0]
        await c.aclose()


async def test_weekly_bars_from_daily_data_start_on_monday(bars):  # noqa: F811
    async with run_venue(bars) as venue:
        venue.advance(len(bars))
        c = Client(venue.base_url)
        await c.login()
        weeks = (await c.call("/api/History/retrieveBars", request(unit=5, limit=5)))["bars"]
        assert len(weeks) == 5
        assert all(parse_utc(w["t"]).weekday() == 0 for w in weeks)
        days = [b for b in bars if parse_utc(weeks[1]["t"]) <= b.ts
                < parse_utc(weeks[0]["t"])]
        assert weeks[1]["v"] == sum(int(b.volume) for b in days)
        await c.aclose()
