"""Probability calibration of the scorer: isotonic (pool-adjacent-violators) or Platt (logistic
on the logit), chosen by out-of-fold log loss. Plain numpy; `predict` is a few microseconds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from daemon.training.metrics import log_loss

_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def _pav(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Non-decreasing least-squares fit of y (weights w), pool-adjacent-violators."""
    values: list[float] = []
    weights: list[float] = []
    sizes: list[int] = []
    for yi, wi in zip(y, w, strict=True):
        values.append(float(yi))
        weights.append(float(wi))
        sizes.append(1)
        while len(values) > 1 and values[-2] > values[-1]:
            wt = weights[-2] + weights[-1]
            values[-2] = (values[-2] * weights[-2] + values[-1] * weights[-1]) / wt
            weights[-2] = wt
            sizes[-2] += sizes[-1]
            values.pop()
            weights.pop()
            sizes.pop()
    return np.repeat(values, sizes)


@dataclass
class Calibrator:
    """Maps raw scorer probabilities to calibrated ones. `kind` is "isotonic" (knots `x`, `y`,
    linear interpolation, flat beyond the ends) or "platt" (`a`, `b`: sigmoid(a·logit(p)+b))."""

    kind: str
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    a: float = 1.0
    b: float = 0.0

    def predict(self, p: np.ndarray) -> np.ndarray:
        """Calibrated probabilities, same shape as p, clipped to [1e-6, 1 - 1e-6]."""
        p = np.asarray(p, dtype=np.float64)
        if self.kind == "isotonic":
            out = np.interp(p, self.x, self.y)
        else:
            out = 1.0 / (1.0 + np.exp(-(self.a * _logit(p) + self.b)))
        return np.clip(out, _EPS, 1 - _EPS)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "x": list(self.x), "y": list(self.y), "a": self.a,
                "b": self.b}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Calibrator:
        if raw.get("kind") not in ("isotonic", "platt"):
            raise ValueError(f"unknown calibrator kind {raw.get('kind')!r}")
        return cls(kind=raw["kind"], x=[float(v) for v in raw.get("x", [])],
                   y=[float(v) for v in raw.get("y", [])], a=float(raw.get("a", 1.0)),
                   b=float(raw.get("b", 0.0)))


def fit_isotonic(p: np.ndarray, y: np.ndarray) -> Calibrator:
    """Isotonic regression of y on p, stored as interpolation knots (one per distinct block)."""
    order = np.argsort(p, kind="mergesort")
    ps, ys = np.asarray(p, dtype=np.float64)[order], np.asarray(y, dtype=np.float64)[order]
    fitted = _pav(ys, np.ones(len(ys)))
    # keep the two ends of every constant block: exact step shape under interpolation
    keep = np.ones(len(ps), dtype=bool)
    same_prev = np.r_[False, fitted[1:] == fitted[:-1]]
    same_next = np.r_[fitted[:-1] == fitted[1:], False]
    keep &= ~(same_prev & same_next)
    xs, fs = ps[keep], fitted[keep]
    # np.interp needs increasing x: merge duplicate x by their mean fitted value
    ux, inv = np.unique(xs, return_inverse=True)
    uy = np.bincount(inv, weights=fs) / np.bincount(inv)
    return Calibrator("isotonic", x=[float(v) for v in ux], y=[float(v) for v in uy])


def fit_platt(p: np.ndarray, y: np.ndarray, iters: int = 50) -> Calibrator:
    """Logistic regression of y on logit(p) (Newton's method, tiny ridge for stability)."""
    z = _logit(p)
    y = np.asarray(y, dtype=np.float64)
    x = np.column_stack([z, np.ones_like(z)])
    beta = np.array([1.0, 0.0])
    for _ in range(iters):
        q = 1.0 / (1.0 + np.exp(-(x @ beta)))
        grad = x.T @ (q - y) + 1e-6 * beta
        hess = (x * (q * (1 - q))[:, None]).T @ x + 1e-6 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return Calibrator("platt", a=float(beta[0]), b=float(beta[1]))


def cross_fit(p: np.ndarray, y: np.ndarray, groups: np.ndarray, kind: str) -> np.ndarray:
    """Out-of-fold calibrated probabilities: each group's rows are calibrated by a calibrator
    fitted on all other groups."""
    fit = fit_isotonic if kind == "isotonic" else fit_platt
    out = np.empty(len(p))
    for g in np.unique(groups):
        m = groups == g
        out[m] = fit(p[~m], y[~m]).predict(p[m])
    return out


def choose_calibrator(p: np.ndarray, y: np.ndarray,
                      groups: np.ndarray) -> tuple[Calibrator, dict[str, float], np.ndarray]:
    """Pick isotonic or Platt by out-of-fold (cross-fitted by group) log loss; returns the
    chosen calibrator fitted on everything, both losses, and the chosen kind's out-of-fold
    calibrated probabilities (for honest metrics)."""
    losses, oof = {}, {}
    for kind in ("isotonic", "platt"):
        oof[kind] = cross_fit(p, y, groups, kind)
        losses[kind] = log_loss(y, oof[kind])
    best = min(losses, key=lambda k: (losses[k], k))
    final = fit_isotonic(p, y) if best == "isotonic" else fit_platt(p, y)
    return final, losses, oof[best]
