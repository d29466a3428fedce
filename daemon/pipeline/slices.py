"""`score_slice`: replay a date slice with a candidate forecaster through the real decision rule
and risk gate (what the adapters' promotion gate compares candidates on).

The model-independent part of every bar (features, whitening, retrieval restricted to outcomes
realised by the bar's time, neighbour stats, forecaster input) goes through the same stage
functions as `Pipeline.decide` once per slice and is cached; per candidate only the forecast,
score, calibration, decision and gate run. The simulated book starts flat at the slice start
(features are warmed on the bars before it), fills at the bar close when the gate accepts, and
is marked to market bar by bar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from daemon.bars.model import Bar
from daemon.features import forward_returns
from daemon.intent import intent_for_target
from daemon.pipeline.decision import target_position
from daemon.pipeline.fastpath import ServingForecaster
from daemon.pipeline.neighbours import forecaster_input, neighbour_stats, scorer_row
from daemon.pipeline.retrieval import index_vector
from daemon.pipeline.tyler import whiten
from daemon.risk import MarketView, RiskSnapshot, gate
from daemon.timeutil import parse_utc


@dataclass
class SliceInputs:
    """The model-independent inputs of every decidable bar of one slice."""

    bars: list[Bar]
    feats: np.ndarray
    nstats: np.ndarray
    x: np.ndarray
    sigma: np.ndarray
    labels: np.ndarray


def _bounds(start: str, end: str) -> tuple[datetime, datetime]:
    lo = parse_utc(start)
    hi = parse_utc(end)
    if len(end.strip()) <= 10:  # a date: include the whole day
        hi = hi + timedelta(days=1) - timedelta(microseconds=1)
    return lo, hi


def prepare_slice(pipe: Any, bars: list[Bar], start: str, end: str) -> SliceInputs:
    """Run the model-independent stages over `bars` (all of them, for warm-up) and keep the
    bars inside [start, end] that reached a decision."""
    from daemon.pipeline.pipeline import _BarState

    lo, hi = _bounds(start, end)
    p = pipe.params
    st = _BarState(p.window, p.vol_halflife)
    closes = np.array([b.close for b in bars])
    fwd = forward_returns(closes, p.horizon)
    keep_bars: list[Bar] = []
    feats_l, nstats_l, x_l, sig_l, lab_l = [], [], [], [], []
    for i, bar in enumerate(bars):
        if bar.ts > hi:
            break
        sigma = st.vol.update(bar.close)
        feats = st.features.update(bar)
        if feats is None:
            continue
        w = whiten(feats, pipe.tyler)
        st.window.append(w)
        if len(st.window) < st.window.maxlen or bar.ts < lo:
            continue
        q = index_vector(np.stack(st.window))
        dist, ids = pipe.index.search(q, p.k, realised_by=int(bar.ts.timestamp()))
        nstats = neighbour_stats(dist[0], pipe.index.neighbour_outcomes(ids[0]))
        keep_bars.append(bar)
        feats_l.append(feats)
        nstats_l.append(nstats)
        x_l.append(forecaster_input(w, nstats))
        sig_l.append(sigma)
        lab_l.append(fwd[i])
    n_feat = len(pipe.tyler.center)
    return SliceInputs(
        keep_bars,
        np.array(feats_l).reshape(-1, n_feat),
        np.array(nstats_l).reshape(len(keep_bars), -1),
        np.array(x_l, dtype=np.float32).reshape(len(keep_bars), -1),
        np.array(sig_l, dtype=np.float64), np.array(lab_l, dtype=np.float64))


def score_inputs(pipe: Any, inputs: SliceInputs, model: Any,
                 snapshot: RiskSnapshot) -> dict[str, Any]:
    """Decide and gate every bar of a prepared slice with `model`; the figures the promotion
    gate uses: mdd (≤ 0, of the equity curve), violations (denials + limit breaches),
    worst_day_return, mse (forecast vs realised forward return), returns (per bar)."""
    n = len(inputs.bars)
    empty = {"mdd": 0.0, "violations": 0, "denials": 0, "breaches": 0,
             "worst_day_return": 0.0, "mse": math.nan, "returns": [], "bars": 0,
             "denial_reasons": {}}
    if n == 0:
        return empty
    serving = model if isinstance(model, ServingForecaster) else ServingForecaster(model)
    forecasts = serving.predict_batch(inputs.x)
    rows = scorer_row(inputs.feats, inputs.nstats, forecasts)
    p_raw = pipe.scorer.proba_batch(rows)
    p_up = np.asarray(pipe.calibrator.predict(p_raw), dtype=np.float64)
    dp = pipe.params.decision
    limits = pipe.limits
    scale = max(1, dp.max_position)
    position, prev_close, day, daily_pnl = 0, math.nan, None, 0.0
    orders: list[datetime] = []
    returns = np.zeros(n)
    denials, breaches = 0, 0
    reasons: dict[str, int] = {}
    days: dict[Any, float] = {}
    for i, bar in enumerate(inputs.bars):
        if bar.ts.date() != day:
            day, daily_pnl = bar.ts.date(), 0.0
        if math.isfinite(prev_close) and prev_close > 0:
            returns[i] = position * (bar.close / prev_close - 1.0) / scale
            daily_pnl += position * (bar.close - prev_close) * dp.point_value
        days[day] = days.get(day, 0.0) + returns[i]
        target, _, _ = target_position(float(p_up[i]), float(forecasts[i]),
                                       float(inputs.sigma[i]), bar.close, dp, position)
        intent = intent_for_target(bar.contract, bar.ts, position, target, bar.close)
        if intent is not None:
            cutoff = bar.ts - timedelta(seconds=60)
            recent = sum(1 for t in orders if t > cutoff)
            market = MarketView(bar.ts, bar.ts, prev_close if math.isfinite(prev_close) else 0.0,
                                daily_pnl, recent)
            verdict = gate(intent, snapshot, limits, market)
            if verdict.accepted:
                position = target
                orders.append(bar.ts)
            else:
                denials += 1
                reasons[verdict.reason] = reasons.get(verdict.reason, 0) + 1
        # A breach: the book over its position limit, or still holding risk past the daily
        # loss limit at the close.
        if abs(position) > max(limits.max_position, 0) or (
                limits.max_daily_loss > 0 and daily_pnl <= -limits.max_daily_loss
                and position != 0):
            breaches += 1
        prev_close = bar.close
    equity = np.cumprod(1.0 + returns)
    peak = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
    mdd = float(np.min(equity / peak - 1.0))
    ok = np.isfinite(inputs.labels)
    mse = float(np.mean((forecasts[ok] - inputs.labels[ok]) ** 2)) if ok.any() else math.nan
    return {"mdd": mdd, "violations": denials + breaches, "denials": denials,
            "breaches": breaches, "worst_day_return": float(min(days.values())),
            "mse": mse, "returns": returns.tolist(), "bars": n, "denial_reasons": reasons}


def backtest_snapshot(risk: Any) -> RiskSnapshot:
    """The risk snapshot a slice is gated with: no kill switch and no ctl news marks (they
    belong to the live run), but the scheduled calendar events and embargo window."""
    if risk is None:
        return RiskSnapshot(False, "", (), timedelta(0), timedelta(0), ())
    live = risk.snapshot()
    return RiskSnapshot(False, "", (), live.embargo_before, live.embargo_after, live.scheduled)
