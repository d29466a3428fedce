"""Shared pieces of the execution tests: a ProjectX client session against a real paper venue
on 127.0.0.1, both on one manual clock (the client's backoff sleeps and the venue's token
expiry move together, instantly)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from daemon.clock import ManualClock
from daemon.config import ProjectXSection
from daemon.execution.client import ProjectXClient
from daemon.venue import run_venue
from daemon.venue.server import Venue

USER = "trader"
API_KEY = "pxk-test-3f9a1c77e2b04d5e"
START = datetime(2026, 11, 2, 14, 0, tzinfo=UTC)


def px_config(base_url: str, **overrides: Any) -> ProjectXSection:
    """A [projectx] section pointed at `base_url`, with test-sized timeouts."""
    base = ProjectXSection(base_url=base_url, username=USER, account="PAPER-1",
                           request_timeout_s=0.4, connect_timeout_s=0.4, read_retries=3,
                           max_backoff_s=2.0, general_limit="100000/60",
                           history_limit="100000/30", rate_limit_qps=5.0)
    return dataclasses.replace(base, **overrides)


@asynccontextmanager
async def session(bars: list, *, clock: ManualClock | None = None, venue_opts: dict | None = None,
                  **cfg: Any) -> AsyncIterator[tuple[Venue, ProjectXClient, ManualClock]]:
    """A venue (requiring USER/API_KEY) and a client on it, sharing one manual clock."""
    clock = clock or ManualClock(START)
    opts = {"username": USER, "api_key": API_KEY, "faults": "stall_s=1", **(venue_opts or {})}
    async with run_venue(bars, clock=clock, **opts) as venue:
        venue.advance()
        client = ProjectXClient(px_config(venue.base_url, **cfg), API_KEY, clock=clock)
        try:
            yield venue, client, clock
        finally:
            await client.aclose()
