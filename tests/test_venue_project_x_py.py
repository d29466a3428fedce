"""The real project-x-py SDK (4.4.x) against the paper venue — when it can be imported.

project-x-py declares Python >= 3.12 and this project runs 3.11, so it is not a dependency and
pip will not put it into the venv. Its code does run on 3.11; to run this test, install it
and its dependencies into a separate folder and point PROJECT_X_PY_PATH at it:

    .venv/bin/pip install --target /tmp/pxsdk --no-deps --ignore-requires-python project-x-py
    .venv/bin/pip install --target /tmp/pxsdk polars pytz cachetools lz4 deprecated pysignalr h2
    PROJECT_X_PY_PATH=/tmp/pxsdk .venv/bin/python -m pytest tests/test_venue_project_x_py.py

The folder goes at the END of sys.path, so the venv's own packages are never shadowed.
Without it the test is skipped; tests/test_venue_sdk_shapes.py covers the SDK's request
shapes with raw httpx either way.
"""

from __future__ import annotations

import datetime as dt
import os
import sys

import pytest

from daemon.venue import run_venue
from tests.venue_support import CONTRACT, sp500

if os.environ.get("PROJECT_X_PY_PATH"):
    sys.path.append(os.environ["PROJECT_X_PY_PATH"])
pytest.importorskip("project_x_py", reason="project-x-py not importable (see module docstring)")

from project_x_py import ProjectX  # noqa: E402
from project_x_py.event_bus import EventBus  # noqa: E402
from project_x_py.exceptions import OrderSubmissionUncertainError, ProjectXOrderError  # noqa: E402
from project_x_py.models import ProjectXConfig  # noqa: E402
from project_x_py.order_manager import OrderManager  # noqa: E402


async def test_the_sdk_logs_in_resolves_trades_and_reads_back():
    async with run_venue(sp500(), faults="stall_s=3") as venue:
        venue.set_time(dt.datetime(2018, 12, 31, tzinfo=dt.UTC))
        config = ProjectXConfig(api_url=venue.base_url + "/api", timeout_seconds=1)
        async with ProjectX("trader", "key", config=config) as px:
            await px.authenticate()
            assert px.account_info.id == 1001 and px.account_info.simulated
            assert (await px.get_instrument(CONTRACT)).tickSize == 0.25
            assert "MESZ6" in [i.name for i in await px.search_instruments("ES")]
            bars = await px.get_bars(CONTRACT, unit=4, interval=1,
                                     start_time=dt.datetime(2018, 12, 1, tzinfo=dt.UTC),
                                     end_time=dt.datetime(2018, 12, 31, tzinfo=dt.UTC))
            assert bars.height == len([b for b in sp500()
                                       if dt.datetime(2018, 12, 1, tzinfo=dt.UTC) <= b.ts])
            om = OrderManager(px, EventBus())
            placed = await om.place_order(CONTRACT, 2, 0, 2, custom_tag="sdk-1")
            assert placed.success
            resting = await om.place_order(CONTRACT, 1, 0, 1, limit_price=2000.0,
                                           custom_tag="sdk-2")
            with pytest.raises(ProjectXOrderError, match="custom tag is already in use"):
                await om.place_order(CONTRACT, 2, 0, 1, custom_tag="sdk-1")
            assert [o.id for o in await om.search_open_orders()] == [resting.orderId]
            positions = await px.search_open_positions()
            assert [(p.type, p.size) for p in positions] == [(1, 2)]
            trades = await px.search_trades()
            assert [(t.orderId, t.size, t.profitAndLoss) for t in trades] == [
                (placed.orderId, 2, None)]
            # an accepted order whose answer is lost: v4 raises "uncertain", never resends
            venue.force_fault("place", "reset_after_accept")
            with pytest.raises(OrderSubmissionUncertainError):
                await om.place_order(CONTRACT, 2, 1, 1, custom_tag="sdk-3")
        assert venue.tag_counts() == {"sdk-1": 1, "sdk-2": 1, "sdk-3": 1}
        assert venue.net_position() == 1
