"""The decision rule: a target position from the calibrated edge, a volatility target and limits.

Pure functions over plain numbers, so replay, the benchmark, `score_slice` and live trading
share it. The edge is 2·p_up − 1 (p_up = calibrated probability that the forward return is
positive). Below `min_edge` the target is flat; above it, the position is sized so that one
bar's P&L standard deviation at full conviction is `vol_target` (currency), scaled linearly by
the edge up to `full_edge`, rounded to whole contracts and capped at `max_position`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from daemon.bars.model import Bar


@dataclass(frozen=True)
class Decision:
    """What a strategy (the pipeline, or the moving-average rule) wants after one bar: the
    target position and why. `model` names the forecaster that produced `forecast` (for audit
    and the swap test)."""

    bar: Bar
    target_position: int
    p_up: float
    edge: float
    forecast: float
    reason: str
    p_raw: float = math.nan
    model: str = ""


@dataclass(frozen=True)
class DecisionParams:
    """Parameters of the decision rule (from `[pipeline]`)."""

    min_edge: float = 0.04
    full_edge: float = 0.3
    vol_target: float = 2000.0
    point_value: float = 50.0
    max_position: int = 4
    max_order_size: int = 2
    agree_with_forecast: bool = True


def edge_of(p_up: float) -> float:
    """The calibrated edge in [-1, 1]: 2·p_up − 1 (NaN → 0)."""
    if not math.isfinite(p_up):
        return 0.0
    return max(-1.0, min(1.0, 2.0 * p_up - 1.0))


def target_position(p_up: float, forecast: float, sigma: float, price: float,
                    params: DecisionParams, position: int | None = None) -> tuple[int, float, str]:
    """(target contracts, edge, reason). Promises |target| <= params.max_position; the wanted
    target is 0 when the edge is below min_edge, when inputs are not finite/positive, or (with
    agree_with_forecast) when the forecaster's sign disagrees with the edge's. Given the current
    `position`, the step toward the wanted target is at most max_order_size (so the intent
    passes the gate's size limit; the rest follows on later bars)."""
    target, edge, reason = _wanted(p_up, forecast, sigma, price, params)
    if position is not None and params.max_order_size > 0:
        step = max(-params.max_order_size, min(params.max_order_size, target - position))
        if position + step != target:
            reason += "_stepped"
        target = position + step
        target = max(-params.max_position, min(params.max_position, target))
    return target, edge, reason


def _wanted(p_up: float, forecast: float, sigma: float, price: float,
            params: DecisionParams) -> tuple[int, float, str]:
    edge = edge_of(p_up)
    if abs(edge) < params.min_edge:
        return 0, edge, "edge_below_min"
    if not (math.isfinite(sigma) and sigma > 0 and math.isfinite(price) and price > 0):
        return 0, edge, "no_volatility"
    if params.agree_with_forecast and math.isfinite(forecast) and forecast * edge < 0:
        return 0, edge, "forecast_disagrees"
    conviction = min(1.0, abs(edge) / params.full_edge) if params.full_edge > 0 else 1.0
    per_contract = sigma * price * params.point_value  # one bar's P&L std of one contract
    size = int(math.floor(conviction * params.vol_target / per_contract + 0.5))
    size = max(0, min(size, params.max_position))
    if size == 0:
        return 0, edge, "below_one_contract"
    return (size if edge > 0 else -size), edge, "long" if edge > 0 else "short"


class EwmaVol:
    """Exponentially weighted volatility of log close-to-close returns (per bar).

    O(1) per bar; `value` is NaN until `min_bars` returns were seen.
    """

    __slots__ = ("alpha", "min_bars", "var", "n", "last")

    def __init__(self, halflife: float = 20.0, min_bars: int = 10) -> None:
        self.alpha = 1.0 - 0.5 ** (1.0 / halflife)
        self.min_bars = min_bars
        self.var = 0.0
        self.n = 0
        self.last = math.nan

    def update(self, close: float) -> float:
        """Feed one close; returns the current volatility estimate (NaN while warming up)."""
        if math.isfinite(self.last) and self.last > 0 and close > 0:
            r = math.log(close / self.last)
            self.var = r * r if self.n == 0 else (1 - self.alpha) * self.var + self.alpha * r * r
            self.n += 1
        self.last = close
        return self.value

    @property
    def value(self) -> float:
        """The current per-bar volatility (NaN while warming up)."""
        return math.sqrt(self.var) if self.n >= self.min_bars else math.nan
