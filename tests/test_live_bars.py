"""Live bars from History/retrieveBars of the paper venue over real HTTP: newest-first paging,
partial bars held back until complete, gaps, and restarts without duplicates or holes."""

from __future__ import annotations

from contextlib import aclosing
from datetime import timedelta
from decimal import Decimal

import anyio

from daemon.bars.live import LiveBarSource
from daemon.bars.model import Bar
from daemon.clock import ManualClock
from daemon.store import Store
from daemon.timeutil import iso, parse_utc
from tests.exec_support import START, session
from tests.venue_support import CONTRACT

GAP = range(30, 45)  # minutes without bars (a halt)
# The venue counts its 50/30 s History budget in real time while this test's clock runs fast.
FAST = {"history_limit": "unlimited"}


def minute_bars(n: int = 90) -> list[Bar]:
    """1-minute bars labelled by their start, with no bars in minutes 30..44."""
    out, price = [], 4500.0
    for i in range(n):
        close = price + ((i * 7) % 5 - 2) * 0.25
        if i not in GAP:
            out.append(Bar(CONTRACT, START + timedelta(minutes=i), price, max(price, close) + 0.5,
                           min(price, close) - 0.25, close, 100 + i))
        price = close
    return out


class MarketClock(ManualClock):
    """A manual clock whose passing time also moves the venue's market (bars appear as they
    start, like a live feed)."""

    venue = None

    def advance(self, seconds: float) -> None:
        super().advance(seconds)
        if self.venue is not None:
            self.venue.set_time(self.now())


def starts(rows: list[dict]) -> list[int]:
    """Minutes after START of each row's bar."""
    return [int((parse_utc(r["bar_start"]) - START).total_seconds() // 60) for r in rows]


async def test_paging_newest_first_gives_every_complete_bar_once_oldest_first(tmp_path):
    data = minute_bars()
    clock = ManualClock(START + timedelta(minutes=20, seconds=30))
    async with session(data, clock=clock, venue_opts=FAST) as (venue, client, _):
        venue.set_time(clock.now())  # bars 0..20 have started; 20 is still forming
        store = Store(tmp_path / "s.sqlite")
        source = LiveBarSource(client, CONTRACT, store=store, clock=clock, lookback=100,
                               page_limit=6)
        rows = await source.poll()
        assert starts(rows) == list(range(20))
        assert source.requests >= 4  # 21 bars in pages of 6, walked backwards
        assert rows[3]["close"] == Decimal(repr(data[3].close))
        assert rows[3]["ts"] == iso(data[3].ts + timedelta(minutes=1))  # close time
        assert isinstance(rows[0]["volume"], int)
        store.close()


async def test_partial_bar_is_not_emitted_until_complete(tmp_path):
    data = minute_bars()
    clock = MarketClock(START + timedelta(minutes=12, seconds=30))
    async with session(data, clock=clock, venue_opts=FAST) as (venue, client, _):
        clock.venue = venue
        venue.set_time(clock.now())
        store = Store(tmp_path / "s.sqlite")
        # 5-minute bars; ask the venue for the in-progress bar too, as a Gateway might send it
        source = LiveBarSource(client, CONTRACT, store=store, clock=clock, unit=2,
                               unit_number=5, lookback=10, include_partial=True)
        first = await source.poll()
        assert starts(first) == [0, 5]  # [10, 15) is forming: not yet
        got = []
        async with aclosing(source.rows()) as rows:
            async for row in rows:
                got.append(row)
                if len(got) == 3:
                    break
        assert starts(got) == [0, 5, 10]
        assert clock.now() >= START + timedelta(minutes=15)
        final = got[2]
        assert final["volume"] == sum(100 + i for i in range(10, 15))  # all five minutes
        assert final["close"] == Decimal(repr(data[14].close))
        assert final["ts"] == iso(START + timedelta(minutes=15))
        store.close()


async def consume(source: LiveBarSource, n: int, checkpoint: bool = True) -> list[dict]:
    got = []
    async with aclosing(source.rows()) as rows:
        async for row in rows:
            got.append(row)
            if len(got) == n:
                break
    if checkpoint:
        source.checkpoint()
    return got


async def test_restart_resumes_without_duplicates_or_holes_across_a_gap(tmp_path):
    data = minute_bars()
    clock = MarketClock(START + timedelta(minutes=3))
    async with session(data, clock=clock, venue_opts=FAST) as (venue, client, _):
        clock.venue = venue
        venue.set_time(clock.now())
        path = tmp_path / "s.sqlite"
        store = Store(path)
        a = LiveBarSource(client, CONTRACT, store=store, clock=clock, lookback=60)
        first = await consume(a, 25)
        assert starts(first) == list(range(25))
        store.close()
        # a new process: same store, new source
        store = Store(path)
        b = LiveBarSource(client, CONTRACT, store=store, clock=clock, lookback=60)
        assert b.last_start == START + timedelta(minutes=24)
        second = await consume(b, 20)
        want = [m for m in range(25, 90) if m not in GAP][:20]
        assert starts(second) == want  # resumes right after, skips the halt, invents nothing
        assert b.gaps == 1
        # a crash while a bar is being processed: that one bar comes again, nothing else
        c = LiveBarSource(client, CONTRACT, store=store, clock=clock, lookback=60)
        in_flight = await consume(c, 1, checkpoint=False)
        d = LiveBarSource(client, CONTRACT, store=store, clock=clock, lookback=60)
        again = await consume(d, 2)
        assert starts(again) == starts(in_flight) + [starts(in_flight)[0] + 1]
        # every poll went through the client's history bucket
        assert client.limiter.taken["history"] == venue.request_counts()["bars"]
        store.close()


async def test_bars_are_validated(tmp_path):
    data = minute_bars(10)
    clock = MarketClock(START + timedelta(minutes=2))
    async with session(data, clock=clock, venue_opts=FAST) as (venue, client, _):
        clock.venue = venue
        venue.set_time(clock.now())
        store = Store(tmp_path / "s.sqlite")
        source = LiveBarSource(client, CONTRACT, store=store, clock=clock, lookback=5)
        got = []
        async with aclosing(source.bars()) as bars:
            async for bar in bars:
                got.append(bar)
                if len(got) == 5:
                    break
        assert [b.ts for b in got] == [START + timedelta(minutes=i + 1) for i in range(5)]
        assert all(isinstance(b, Bar) and b.low <= b.close <= b.high for b in got)
        store.close()


async def test_daemon_ingests_live_bars_and_resumes_after_a_restart(tmp_path, monkeypatch):
    """`[data].source = "projectx:live"`: the daemon's ingest loop takes live bars; a second
    daemon on the same state directory continues with the next bar."""
    from daemon.app import Daemon
    from daemon.config import load_config
    from tests.exec_support import API_KEY, USER
    from tests.helpers import write_config

    monkeypatch.setenv("PROJECTX_API_KEY", API_KEY)
    data = minute_bars()
    clock = MarketClock(START + timedelta(minutes=5))
    async with session(data, clock=clock, venue_opts=FAST) as (venue, _client, _):
        clock.venue = venue
        venue.set_time(clock.now())
        path = write_config(tmp_path, (
            '[daemon]\nstate_dir = "state"\ncontrol_socket = "state/ctl.sock"\n'
            '[metrics]\nlisten = ""\n'
            f'[data]\nsource = "projectx:live"\ncontract = "{CONTRACT}"\n'
            f'[projectx]\nbase_url = "{venue.base_url}"\nusername = "{USER}"\n'
            'account = "PAPER-1"\nbar_lookback = 10\ngeneral_limit = "100000/60"\n'
            'history_limit = "100000/30"\n'))

        async def run_until(n: int) -> list[Bar]:
            daemon = Daemon(load_config(path), clock=clock)
            seen: list[Bar] = []

            async def handler(bar: Bar) -> None:
                seen.append(bar)
                if len(seen) == n:
                    daemon.request_stop("test")

            daemon.ingest.handlers.append(handler)
            with anyio.fail_after(20):
                await daemon.run()
            await daemon.gateway.aclose()
            assert daemon.live_bars.status()["polls"] >= 1
            return seen

        first = await run_until(12)
        second = await run_until(8)
        minutes = [int((b.ts - START).total_seconds() // 60) - 1 for b in first + second]
        assert minutes == list(range(20))  # bar start minutes 0..19: each once, in order
