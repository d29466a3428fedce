"""The bar-ingest loop: raw rows → validated bars → the bar handlers, one bar at a time.

A row that fails parsing or validation is quarantined (stored with its reason, counted, logged)
and never reaches a handler; no exception from a row ends the loop. The replay cursor is
committed after every bar with everything the bar changed (`Store.commit_bar`), so a restart
resumes where it stopped, keeps the run epoch, and never sees half a bar.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio

from daemon.bars.model import Bar, BarRejected, BarValidator
from daemon.bars.replay import ReplayData
from daemon.clock import Clock
from daemon.metrics import Metrics
from daemon.store import Store

BarHandler = Callable[[Bar], Awaitable[None]]


class ReplayCursor:
    """Where a replay resumes, and its run epoch: a resumed replay keeps its epoch; one that
    starts from its first bar (a source never run here, or one that finished) takes a new
    epoch, greater than any this state store ever used (the customTag includes it, and the
    same bars under another source or window give the same intent ids)."""

    def __init__(self, store: Store, data: ReplayData) -> None:
        self.store = store
        self.source_id = data.source_id
        self.total = len(data.rows)
        saved = store.get_cursor(self.source_id)
        if saved is not None and saved[1] < saved[2]:  # stopped part-way: resume it
            self.epoch, self.start, self.resumed = saved[0], saved[1], True
        else:
            self.epoch, self.start, self.resumed = store.new_epoch(self.source_id), 0, False
        store.set_cursor(self.source_id, self.epoch, self.start, self.total)

    def advance(self, next_index: int) -> None:
        """Commit the bar just handled with the cursor past it (one transaction)."""
        self.store.commit_bar((self.source_id, self.epoch, next_index, self.total))


class IngestLoop:
    """Feeds bars from a replay to the handlers, paced by the injected clock."""

    def __init__(self, *, data: ReplayData, contract: str, store: Store, metrics: Metrics,
                 clock: Clock, log: Any, pace: Callable[[], float]) -> None:
        self.data = data
        self.contract = contract
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.log = log
        self.pace = pace
        self.validator = BarValidator()
        self.handlers: list[BarHandler] = []
        self.cursor = ReplayCursor(store, data)
        self.last_bar: Bar | None = None
        self.bars_seen = 0
        self._stop = False
        self._sleep_scope: anyio.CancelScope | None = None

    def stop(self) -> None:
        """Finish the current bar, then return from `run` (interrupts a pacing sleep)."""
        self._stop = True
        if self._sleep_scope is not None:
            self._sleep_scope.cancel()

    @property
    def finished(self) -> bool:
        return self.cursor.start >= self.cursor.total

    async def run(self) -> bool:
        """Process bars until the data ends (True) or `stop()` was called (False)."""
        rows = self.data.rows
        self.log.info("replay_start", source_id=self.data.source_id, epoch=self.cursor.epoch,
                      start_index=self.cursor.start, total=self.cursor.total,
                      resumed=self.cursor.resumed)
        for index in range(self.cursor.start, len(rows)):
            if self._stop:
                return False
            await self.process(rows[index])
            self.cursor.advance(index + 1)
            self.cursor.start = index + 1
            await self._pace()
        return True

    async def run_stream(self, rows: AsyncIterator[Any]) -> bool:
        """Process rows of an endless source (live bars) until it ends (True) or `stop()`
        (False). `stop()` interrupts only the wait for the next row, never a bar."""
        it = rows.__aiter__()
        try:
            while not self._stop:
                with anyio.CancelScope() as scope:
                    self._sleep_scope = scope
                    try:
                        raw = await it.__anext__()
                    except StopAsyncIteration:
                        return True
                self._sleep_scope = None
                if scope.cancelled_caught:
                    break
                await self.process(raw)
                self.store.commit_bar()
            return False
        finally:
            self._sleep_scope = None
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()

    async def process(self, raw: Any) -> Bar | None:
        """Validate one raw row and hand the bar to every handler; None if quarantined."""
        t0 = time.perf_counter()
        try:
            bar = self.validator.check(raw, self.contract)
        except BarRejected as rej:
            self._quarantine(raw, rej.reason, rej.detail)
            return None
        except Exception as err:  # a row must never end the loop
            self._quarantine(raw, "unparseable", repr(err))
            return None
        self.last_bar = bar
        self.bars_seen += 1
        self.metrics.bars_total.inc()
        for handler in self.handlers:
            await handler(bar)
        self.metrics.bar_lag.observe(time.perf_counter() - t0)
        return bar

    def _quarantine(self, raw: Any, reason: str, detail: str) -> None:
        ts = None
        if isinstance(raw, dict):
            for key in ("timestamp", "date", "Date", "ts", "time", "t"):
                if key in raw:
                    ts = str(raw[key])
                    break
        self.store.quarantine(self.contract, ts, raw, reason, self.clock.now())
        self.metrics.bars_quarantined.labels(reason=reason).inc()
        self.log.warning("bar_quarantined", reason=reason, detail=detail, ts=ts)

    async def _pace(self) -> None:
        pace = self.pace()
        if pace <= 0:
            # Let signals, ctl and other tasks run between bars even at full speed.
            await anyio.lowlevel.checkpoint()
            return
        with anyio.CancelScope() as scope:
            self._sleep_scope = scope
            await self.clock.sleep(1.0 / pace)
        self._sleep_scope = None
