"""The one feature definition: incremental state equals the batch computation, labels look
forward by exactly the horizon, and nothing uses a later bar."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from daemon.bars.model import Bar
from daemon.features import (
    FEATURE_NAMES,
    WARMUP,
    FeatureState,
    bar_arrays,
    batch_features,
    forward_returns,
)


def _bars(n: int, seed: int = 0) -> list[Bar]:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = close * np.exp(rng.normal(0, 0.003, n))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, n))
    volume = rng.integers(1_000, 100_000, n).astype(float)
    t0 = datetime(2000, 1, 3, tzinfo=UTC)
    return [Bar("X", t0 + timedelta(days=i), open_[i], high[i], low[i], close[i], volume[i])
            for i in range(n)]


def test_incremental_state_gives_exactly_the_batch_values() -> None:
    bars = _bars(300)
    a = bar_arrays(bars)
    batch = batch_features(a["close"], a["high"], a["low"], a["open"], a["volume"])
    state = FeatureState()
    for i, bar in enumerate(bars):
        row = state.update(bar)
        if i < WARMUP - 1:
            assert row is None and np.all(np.isnan(batch[i]))
        else:
            assert row is not None and row.dtype == np.float64
            assert np.array_equal(row, batch[i])  # bit-identical, not just close
    assert batch.shape == (300, len(FEATURE_NAMES))


def test_features_of_a_bar_do_not_depend_on_later_bars() -> None:
    a = bar_arrays(_bars(120))
    full = batch_features(a["close"], a["high"], a["low"], a["open"], a["volume"])
    cut = {k: v[:80] for k, v in a.items()}
    head = batch_features(cut["close"], cut["high"], cut["low"], cut["open"], cut["volume"])
    assert np.array_equal(full[:80], head, equal_nan=True)


def test_known_values_on_a_simple_series() -> None:
    close = np.exp(np.arange(30) * 0.01)  # constant 1% log growth
    f = batch_features(close, close * 1.01, close * 0.99, close, np.full(30, 500.0))
    row = f[-1]
    named = dict(zip(FEATURE_NAMES, row, strict=True))
    assert named["ret_1"] == pytest.approx(0.01)
    assert named["ret_5"] == pytest.approx(0.05)
    assert named["ret_20"] == pytest.approx(0.20)
    assert named["range_hl"] == pytest.approx(np.log(1.01 / 0.99))
    assert named["vol_20"] == pytest.approx(0.0, abs=1e-12)
    assert named["volume_z"] == 0.0


def test_forward_returns_look_exactly_horizon_bars_ahead() -> None:
    close = np.array([100.0, 101.0, 99.0, 102.0, 103.0])
    y = forward_returns(close, 2)
    assert y[0] == pytest.approx(np.log(99 / 100))
    assert y[2] == pytest.approx(np.log(103 / 99))
    assert np.all(np.isnan(y[-2:]))
    with pytest.raises(ValueError):
        forward_returns(close, 0)
