"""The one feature definition: what training and the live pipeline compute from bars.

Every feature of bar t uses only bars up to and including t:

| name        | definition                                                          |
|-------------|---------------------------------------------------------------------|
| `ret_1`     | log(close_t / close_{t-1})                                          |
| `ret_5`     | log(close_t / close_{t-5})                                          |
| `ret_20`    | log(close_t / close_{t-20})                                         |
| `range_hl`  | log(high_t / low_t)                                                 |
| `body_oc`   | log(close_t / open_t)                                               |
| `vol_20`    | standard deviation (ddof 0) of the last 20 `ret_1`                  |
| `vol_ratio` | log((sd of the last 5 `ret_1` + eps) / (vol_20 + eps))              |
| `volume_z`  | z-score of log(1 + volume_t) against the last 20 bars' log volumes  |

A bar's features exist once `WARMUP` bars have been seen (before that: None / NaN rows).
`batch_features` runs the very same arithmetic as `FeatureState.update`, so the values are
bit-identical (a test checks it). The label of bar t is the forward log return over `horizon`
bars, `log(close_{t+h} / close_t)`; it is realised at bar t + h.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from daemon.bars.model import Bar

FEATURE_NAMES: tuple[str, ...] = (
    "ret_1", "ret_5", "ret_20", "range_hl", "body_oc", "vol_20", "vol_ratio", "volume_z",
)
LONG = 20  # longest look-back in bars (ret_20, vol_20, volume_z)
SHORT = 5
WARMUP = LONG + 1  # bars needed before the first feature row (21 closes give 20 returns)
_EPS = 1e-12


def _row(closes: np.ndarray, high: float, low: float, open_: float,
         log_volumes: np.ndarray) -> np.ndarray:
    """Features of the newest bar from its window: `closes` (WARMUP values, oldest first) and
    `log_volumes` (LONG values, newest last)."""
    last = closes[-1]
    rets = np.diff(np.log(closes))  # LONG one-bar log returns, newest last
    vol_long = float(np.std(rets))
    vol_short = float(np.std(rets[-SHORT:]))
    lv_mean = float(np.mean(log_volumes))
    lv_sd = float(np.std(log_volumes))
    out = np.empty(len(FEATURE_NAMES), dtype=np.float64)
    out[0] = rets[-1]
    out[1] = np.log(last / closes[-1 - SHORT])
    out[2] = np.log(last / closes[0])
    out[3] = np.log(high / low)
    out[4] = np.log(last / open_)
    out[5] = vol_long
    out[6] = np.log((vol_short + _EPS) / (vol_long + _EPS))
    out[7] = (log_volumes[-1] - lv_mean) / (lv_sd + 1e-6) if lv_sd > 0 else 0.0
    return out


class FeatureState:
    """Rolling state over bars of one contract; `update` gives the features of each new bar."""

    def __init__(self) -> None:
        self._closes: deque[float] = deque(maxlen=WARMUP)
        self._log_volumes: deque[float] = deque(maxlen=LONG)

    @property
    def warm(self) -> bool:
        """True once `update` returns feature vectors."""
        return len(self._closes) == WARMUP

    def update_values(self, open_: float, high: float, low: float, close: float,
                      volume: float) -> np.ndarray | None:
        """Feed one bar's values; its feature vector (float64, len(FEATURE_NAMES)) or None
        while fewer than WARMUP bars have been seen."""
        self._closes.append(float(close))
        self._log_volumes.append(float(np.log1p(max(float(volume), 0.0))))
        if len(self._closes) < WARMUP:
            return None
        return _row(np.fromiter(self._closes, dtype=np.float64, count=WARMUP), float(high),
                    float(low), float(open_),
                    np.fromiter(self._log_volumes, dtype=np.float64, count=LONG))

    def update(self, bar: Bar) -> np.ndarray | None:
        """Feed one bar; its feature vector, or None until warm."""
        return self.update_values(bar.open, bar.high, bar.low, bar.close, bar.volume)


def batch_features(close: np.ndarray, high: np.ndarray, low: np.ndarray, open: np.ndarray,
                   volume: np.ndarray) -> np.ndarray:
    """Feature matrix (n × len(FEATURE_NAMES)) of a bar series; rows before warm-up are NaN.

    Identical, value for value, to feeding the bars one by one to `FeatureState.update`.
    """
    n = len(close)
    out = np.full((n, len(FEATURE_NAMES)), np.nan)
    state = FeatureState()
    for i in range(n):
        row = state.update_values(open[i], high[i], low[i], close[i], volume[i])
        if row is not None:
            out[i] = row
    return out


def bar_arrays(bars: list[Bar]) -> dict[str, np.ndarray]:
    """Columns of a bar list as float64 arrays (`open`, `high`, `low`, `close`, `volume`)."""
    return {name: np.array([getattr(b, name) for b in bars], dtype=np.float64)
            for name in ("open", "high", "low", "close", "volume")}


def forward_returns(close: np.ndarray, horizon: int) -> np.ndarray:
    """Label of each bar: log(close_{t+horizon} / close_t); NaN for the last `horizon` bars
    (their outcome is not realised yet)."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    close = np.asarray(close, dtype=np.float64)
    out = np.full(len(close), np.nan)
    if len(close) > horizon:
        out[:-horizon] = np.log(close[horizon:] / close[:-horizon])
    return out
