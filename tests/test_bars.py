"""Bar validation (property tests) and the ingest loop's refusal to die on bad data."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.bars.model import Bar, BarValidator, validate_bar
from daemon.bars.replay import ReplayData
from daemon.clock import ManualClock
from daemon.ingest import IngestLoop
from daemon.logs import get_logger
from daemon.metrics import Metrics
from daemon.store import Store

T0 = datetime(2020, 1, 1, tzinfo=UTC)
prices = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False, allow_infinity=False)
any_float = st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def valid_bars(draw: st.DrawFn) -> Bar:
    low = draw(prices)
    high = draw(st.floats(min_value=low, max_value=low * 10 + 1))
    o = draw(st.floats(min_value=low, max_value=high))
    c = draw(st.floats(min_value=low, max_value=high))
    v = draw(st.floats(min_value=0, max_value=1e12))
    ts = T0 + timedelta(minutes=draw(st.integers(1, 10**6)))
    return Bar("C", ts, o, high, low, c, v)


def is_valid(bar: Bar, last: datetime | None) -> bool:
    """The rule, written independently of the implementation."""
    p = [bar.open, bar.high, bar.low, bar.close]
    return (all(math.isfinite(x) and x > 0 for x in p) and math.isfinite(bar.volume)
            and bar.volume >= 0 and bar.low <= bar.open <= bar.high
            and bar.low <= bar.close <= bar.high and (last is None or bar.ts > last))


@given(valid_bars())
def test_every_valid_bar_passes(bar: Bar) -> None:
    assert validate_bar(bar, None) is None
    assert validate_bar(bar, bar.ts - timedelta(seconds=1)) is None


@given(any_float, any_float, any_float, any_float, any_float, st.integers(-5, 5))
def test_no_invalid_bar_passes(o, h, lo, c, v, dt) -> None:  # noqa: ANN001
    last = T0
    bar = Bar("C", T0 + timedelta(minutes=dt), o, h, lo, c, v)
    assert (validate_bar(bar, last) is None) == is_valid(bar, last)


def test_duplicate_and_out_of_order_times_are_refused_per_contract() -> None:
    v = BarValidator()
    row = {"timestamp": "2020-01-02T00:00:00Z", "open": 1, "high": 2, "low": 1, "close": 2,
           "volume": 3}
    v.check(row, "A")
    v.check(row, "B")  # another contract has its own clock
    for bad in (row, {**row, "timestamp": "2020-01-01"}):
        try:
            v.check(bad, "A")
            raise AssertionError("accepted a bar that is not later")
        except Exception as err:  # noqa: BLE001
            assert getattr(err, "reason", "") == "time_not_increasing"


cells = st.one_of(
    st.text(max_size=8), st.just("nan"), st.just("NaN"), st.just("-1"), st.just("inf"),
    st.just(""), st.floats(allow_nan=True), st.integers(-10, 10**6),
    st.sampled_from(["2020-01-01", "2020-01-02T10:00:00+02:00", "2019-12-31", "garbage"]),
)
rows = st.lists(
    st.dictionaries(
        st.sampled_from(["Date", "timestamp", "Open", "High", "Low", "Close", "Volume", "junk",
                         "open", "high", "low", "close", "volume"]),
        cells, max_size=8),
    max_size=30,
)


def _loop(tmp: Path, data: list) -> tuple[IngestLoop, Store, list[Bar]]:
    store = Store(tmp / "s.sqlite")
    seen: list[Bar] = []
    loop = IngestLoop(data=ReplayData("t", data), contract="C", store=store, metrics=Metrics(),
                      clock=ManualClock(), log=get_logger("test"), pace=lambda: 0.0)

    async def handler(bar: Bar) -> None:
        seen.append(bar)

    loop.handlers.append(handler)
    return loop, store, seen


@settings(max_examples=60, deadline=None)
@given(rows)
def test_ingest_loop_survives_arbitrary_rows(tmp_path_factory, data) -> None:  # noqa: ANN001
    tmp = tmp_path_factory.mktemp("ingest")
    loop, store, seen = _loop(tmp, data)
    assert anyio.run(loop.run) is True
    # Every row is either a bar handed on or a quarantined row with its reason: nothing lost.
    assert len(seen) + store.quarantine_count() == len(data)
    last = None
    for bar in seen:
        assert is_valid(bar, last)
        last = bar.ts
    store.close()


def test_quarantine_keeps_row_and_reason(tmp_path: Path) -> None:
    data = [
        {"Date": "2020-01-02", "Open": 10, "High": 9, "Low": 8, "Close": 9, "Volume": 1},
        {"Date": "2020-01-03", "Open": 10, "High": 11, "Low": 9, "Close": 10, "Volume": 1},
        {"Date": "2020-01-03", "Open": 10, "High": 11, "Low": 9, "Close": 10, "Volume": 1},
        {"Date": "2020-01-04", "Open": "nan", "High": 11, "Low": 9, "Close": 10, "Volume": 1},
    ]
    loop, store, seen = _loop(tmp_path, data)
    anyio.run(loop.run)
    assert [b.ts.day for b in seen] == [3]
    reasons = [q["reason"] for q in store.quarantined()]
    assert reasons == ["high_below_open_or_close", "time_not_increasing", "non_finite"]
    assert loop.metrics.value("anchord_bars_quarantined_total",
                              {"reason": "non_finite"}) == 1
