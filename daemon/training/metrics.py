"""Classification and strategy metrics used by the validation report (plain numpy).

`expected_calibration_error` keeps the runbook's name.
"""

from __future__ import annotations

import numpy as np

_CLIP = 1e-6
TRADING_DAYS = 252


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (rank statistic, ties get average ranks); 0.5 if one class."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p), dtype=np.float64)
    sorted_p = p[order]
    # average ranks over ties
    boundaries = np.flatnonzero(np.diff(sorted_p)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(p)]])
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Mean negative log likelihood of binary labels under probabilities p (clipped)."""
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), _CLIP, 1 - _CLIP)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared error of probabilities against binary labels."""
    return float(np.mean((np.asarray(p, dtype=np.float64) - np.asarray(y, dtype=np.float64)) ** 2))


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """ECE: the bin-weighted mean |observed frequency − mean probability| over equal-width
    probability bins."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if len(p) == 0:
        return 0.0
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            total += m.sum() * abs(y[m].mean() - p[m].mean())
    return float(total / len(p))


def calibration_curve(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> dict[str, list[float]]:
    """Per non-empty bin: mean predicted probability, observed frequency, count."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    pred, obs, count = [], [], []
    for b in range(n_bins):
        m = bins == b
        if m.any():
            pred.append(float(p[m].mean()))
            obs.append(float(y[m].mean()))
            count.append(int(m.sum()))
    return {"predicted": pred, "observed": obs, "count": count}


def sharpe(returns: np.ndarray, periods_per_year: float = TRADING_DAYS) -> float:
    """Annualised Sharpe ratio of per-period returns (0 when flat)."""
    r = np.asarray(returns, dtype=np.float64)
    sd = float(np.std(r))
    return float(np.mean(r) / sd * np.sqrt(periods_per_year)) if sd > 0 else 0.0


def max_drawdown(log_returns: np.ndarray) -> float:
    """Largest peak-to-trough loss of the equity curve exp(cumsum(log returns)), as a
    positive fraction (0.25 = a 25% drawdown)."""
    r = np.asarray(log_returns, dtype=np.float64)
    if len(r) == 0:
        return 0.0
    equity = np.concatenate([[0.0], np.cumsum(r)])
    peak = np.maximum.accumulate(equity)
    return float(1.0 - np.exp(np.min(equity - peak)))
