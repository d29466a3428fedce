"""Out-of-fold evaluation of the CPCV splits: calibration choice, and metrics and equity curves
per backtest path.

AUC is a rank statistic, so it is measured on the raw out-of-fold probabilities (the final
calibrator is monotone and leaves ranks alone); log loss, Brier and ECE on the cross-fitted
calibrated ones. The validation strategy trades the model's view against the unconditional
rate: it holds +1 when the calibrated P(up) exceeds the base rate + band, −1 when it is below
the base rate − band, else 0, for one bar, and earns the next bar's log return.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from daemon.training.calibration import Calibrator, choose_calibrator
from daemon.training.cpcv import Split, cpcv_paths, sample_groups
from daemon.training.metrics import (
    brier,
    calibration_curve,
    expected_calibration_error,
    log_loss,
    max_drawdown,
    roc_auc,
    sharpe,
)


def positions(p: np.ndarray, band: float, reference: float = 0.5) -> np.ndarray:
    """The validation strategy's position for each probability."""
    return np.where(p > reference + band, 1.0, np.where(p < reference - band, -1.0, 0.0))


def _r(x: float) -> float:
    return float(round(x, 6))


def evaluate_cpcv(splits: list[Split], raw: dict[int, np.ndarray], y_up: np.ndarray,
                  next_return: np.ndarray, n_groups: int,
                  band: float) -> tuple[Calibrator, dict[str, Any], list[np.ndarray]]:
    """Choose and fit the calibrator on the pooled out-of-fold probabilities, then score every
    CPCV path with cross-fitted calibrated probabilities. Returns the calibrator, the report
    section and each path's strategy log returns (for the equity plot)."""
    n = len(y_up)
    groups = sample_groups(n, n_groups)
    p_pool = np.concatenate([raw[s.index] for s in splits])
    rows_pool = np.concatenate([s.test for s in splits])
    calibrator, losses, oof = choose_calibrator(p_pool, y_up[rows_pool], groups[rows_pool])
    calibrated, offset = {}, 0
    for s in splits:
        calibrated[s.index] = oof[offset: offset + len(s.test)]
        offset += len(s.test)
    base_rate = float(y_up.mean())
    paths, curves = [], []
    for path in cpcv_paths(splits, n_groups):
        p, p_raw = np.empty(n), np.empty(n)
        for g, si in enumerate(path):
            test = splits[si].test
            mine = groups[test] == g
            p[test[mine]] = calibrated[si][mine]
            p_raw[test[mine]] = raw[si][mine]
        pos = positions(p, band, base_rate)
        strat = pos * next_return
        curves.append(strat)
        paths.append({"splits": path, "n": n, "auc": _r(roc_auc(y_up, p_raw)),
                      "log_loss": _r(log_loss(y_up, p)), "brier": _r(brier(y_up, p)),
                      "expected_calibration_error": _r(expected_calibration_error(y_up, p)),
                      "sharpe": _r(sharpe(strat)), "max_drawdown": _r(max_drawdown(strat)),
                      "total_log_return": _r(float(np.sum(strat))),
                      "long_fraction": _r(float(np.mean(pos > 0))),
                      "flat_fraction": _r(float(np.mean(pos == 0)))})

    def stat(key: str) -> dict[str, float]:
        vals = np.array([pth[key] for pth in paths])
        return {"mean": _r(vals.mean()), "min": _r(vals.min()), "max": _r(vals.max())}

    summary = {key: stat(key) for key in ("auc", "log_loss", "brier",
                                          "expected_calibration_error", "sharpe",
                                          "max_drawdown")}
    summary["worst_path_drawdown"] = summary["max_drawdown"]["max"]
    y_pool = y_up[rows_pool]
    section = {
        "n_paths": len(paths), "paths": paths, "summary": summary,
        "pooled": {"auc": _r(roc_auc(y_pool, p_pool)), "log_loss_raw": _r(log_loss(y_pool, p_pool)),
                   "auc_cross_fitted": _r(roc_auc(y_pool, oof)),
                   "log_loss": _r(log_loss(y_pool, oof)),
                   "expected_calibration_error": _r(expected_calibration_error(y_pool, oof)),
                   "base_rate": _r(base_rate)},
        "calibration": {"chosen": calibrator.kind,
                        "oof_log_loss": {k: _r(v) for k, v in losses.items()},
                        "curve_raw": calibration_curve(y_pool, p_pool),
                        "curve": calibration_curve(y_pool, oof)},
    }
    return calibrator, section, curves
