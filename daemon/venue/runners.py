"""The three ways to run the paper venue: in the current event loop (`run_venue`), in a
background thread with its own loop (`venue_in_thread`), and standalone (daemon/venue/cli.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import lru_cache
from typing import Any

import anyio
from anyio.from_thread import start_blocking_portal

from daemon.bars.model import Bar
from daemon.bars.replay import load_bars
from daemon.clock import Clock
from daemon.venue.server import Venue, VenueOptions


@lru_cache(maxsize=4)
def _sample_bars(source: str, contract: str) -> tuple[Bar, ...]:
    return tuple(load_bars(source, contract))


def venue_bars(source: str, contract: str) -> list[Bar]:
    """The valid bars of a replay source; the bundled samples are loaded once per process
    (they never change, and loading one takes seconds), files are read every time."""
    if source.startswith("sample:"):
        return list(_sample_bars(source, contract))
    return load_bars(source, contract)


@asynccontextmanager
async def run_venue(bars: list[Bar] | None = None, options: VenueOptions | None = None, *,
                    data: str | None = None, clock: Clock | None = None,
                    **overrides: Any) -> AsyncIterator[Venue]:
    """Serve a venue in the current event loop for the duration of the block.

    Bars come from `bars` or are loaded from `data` (a replay source: `sample:sp500`, CSV,
    Parquet). `overrides` replace fields of `options` (e.g. faults="place:reset=0.1").
    """
    opts = options or VenueOptions()
    if overrides:
        opts = VenueOptions(**{**vars(opts), **overrides})
    if bars is None:
        bars = venue_bars(data or "sample:sp500", opts.contract)
    venue = Venue(bars, opts, clock)
    async with anyio.create_task_group() as tg:
        await venue.start(tg)
        try:
            yield venue
        finally:
            tg.cancel_scope.cancel()


class ThreadedVenue:
    """A venue running in a background thread; calls are forwarded to its event loop."""

    def __init__(self, venue: Venue, portal: Any) -> None:
        self._venue = venue
        self._portal = portal

    @property
    def base_url(self) -> str:
        return self._venue.base_url

    @property
    def venue(self) -> Venue:
        """The venue object itself (read-only use from this thread)."""
        return self._venue

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._venue, name)
        if not callable(attr):
            return attr
        return lambda *a, **kw: self._portal.call(lambda: attr(*a, **kw))


@contextmanager
def venue_in_thread(bars: list[Bar] | None = None, options: VenueOptions | None = None,
                    **kwargs: Any) -> Iterator[ThreadedVenue]:
    """`run_venue` in a background thread with its own event loop (for tests that drive a
    daemon subprocess). Method calls on the result run inside the venue's loop."""
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(
            run_venue(bars, options, **kwargs)) as venue:
        yield ThreadedVenue(venue, portal)
