"""The numbers a cycle's gate and monitor look at, computed for one model (pure functions).

- `slice_figures`: from the daemon's `score_slice` over the named replay slices plus the drift
  window's hold-out: drift_mse (hold-out forecast MSE), mdd (worst over slices), violations
  (sum), worst_day_return (worst over the replay slices); all MSEs in units of y_scale².
- `diagnostics`: output drift against the serving model (hold-out + anchors), stress MSE per
  taxonomy label (vs the deployed teacher cache) and against the base cache, and attribution
  shift (relative change of input-gradient attributions on the anchors).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from adapters.anchors import AnchorSuite
from adapters.update import DriftBatch

ScoreSlice = Callable[[torch.nn.Module, str, str], dict[str, Any]]


def predict(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """Forward pass without gradients over float32 rows."""
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def slice_figures(model: torch.nn.Module, holdout: DriftBatch,
                  slices: dict[str, tuple[str, str]], score_slice: ScoreSlice | None,
                  y_scale: float) -> dict[str, Any]:
    """Gate figures of `model`; without `score_slice` only the local drift MSE is known (mdd
    and violations are None, which makes the gate `hold`)."""
    s2 = y_scale ** 2
    local = float(np.mean((predict(model, holdout.inputs) - holdout.targets) ** 2))
    fig: dict[str, Any] = {"drift_mse_window": local / s2}
    named = dict(slices)
    if holdout.dates and score_slice is not None:
        named["drift_window"] = (holdout.dates[0], holdout.dates[-1])
    mdds: list[float] = []
    worst: list[float] = []
    viols = 0
    for name, (start, end) in named.items():
        if score_slice is None:
            break
        r = score_slice(model, start, end)
        mdds.append(float(r["mdd"]))
        viols += int(r["violations"])
        if name != "drift_window" or len(named) == 1:
            worst.append(float(r["worst_day_return"]))
        if name == "drift_window":
            fig["drift_mse"] = float(r["mse"]) / s2
    fig.setdefault("drift_mse", local / s2)
    fig["mdd"] = min(mdds) if mdds else None
    fig["violations"] = viols if score_slice is not None else None
    fig["worst_day_return"] = min(worst) if worst else None
    return fig


def diagnostics(model: torch.nn.Module, serving: torch.nn.Module, holdout: DriftBatch,
                anchors: AnchorSuite, base_anchors: AnchorSuite, y_scale: float
                ) -> dict[str, Any]:
    """Output drift vs the serving model, stress MSE per label and vs the base cache, and
    attribution shift on the anchors."""
    s2 = y_scale ** 2
    x = np.concatenate([holdout.inputs, anchors.inputs])
    out_drift = float(np.mean((predict(model, x) - predict(serving, x)) ** 2) / s2)
    pred = predict(model, anchors.inputs)
    by_label = {lab: float(np.mean((pred[idx] - anchors.teacher[idx]) ** 2) / s2)
                for lab, idx in anchors.taxonomy().items()}
    return {"output_drift": out_drift,
            "attribution_shift": attribution_shift(model, serving, anchors.inputs),
            "stress_mse_by_label": by_label,
            "stress_mse_base": float(np.mean((pred - base_anchors.teacher) ** 2) / s2)}


def attribution_shift(a: torch.nn.Module, b: torch.nn.Module, x: np.ndarray) -> float:
    """Relative change of input-gradient attributions (∂f/∂x on each anchor) from b to a."""
    def grads(m: torch.nn.Module) -> torch.Tensor:
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(m(xt).sum(), xt)
        return g

    ga, gb = grads(a), grads(b)
    return float((ga - gb).norm() / gb.norm().clamp_min(1e-12))
