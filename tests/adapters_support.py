"""Small forecaster, synthetic anchor suite and drift windows for the adapters tests."""

from __future__ import annotations

import numpy as np
import torch

from adapters.anchors import AnchorSuite
from adapters.model import Forecaster, ForecasterSpec
from adapters.update import DriftBatch

D = 8


def small_base(seed: int = 0) -> Forecaster:
    """A trained tiny Forecaster (frozen, eval) on a linear-plus-noise task."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, D)).astype(np.float32)
    w = rng.normal(size=D)
    y = (x @ w * 0.01 + rng.normal(size=400) * 0.005).astype(np.float32)
    m = Forecaster(ForecasterSpec(n_inputs=D, hidden=(16, 8)))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    m.set_scaling(xt, yt)
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    for _ in range(150):
        opt.zero_grad()
        ((m(xt) - yt) ** 2).mean().backward()
        opt.step()
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def suite(base: Forecaster, n: int = 60, seed: int = 1) -> AnchorSuite:
    """Stress-like anchors (wider inputs) with the base's outputs as teacher."""
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, D)) * 2).astype(np.float32)
    with torch.no_grad():
        t = base(torch.from_numpy(x)).numpy()
    labels = ["crash" if i % 2 else "vol_spike" for i in range(n)]
    return AnchorSuite(x, t, t + rng.normal(size=n).astype(np.float32) * 0.001, labels,
                       [f"2008-10-{i % 28 + 1:02d}" for i in range(n)])


def drift_window(seed: int = 2, n: int = 80, shift: float = 1.0,
                 start_day: int = 0) -> DriftBatch:
    """A window whose input→target map has moved away from the base's."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D)).astype(np.float32)
    w = np.random.default_rng(0).normal(size=D) + shift * rng.normal(size=D)
    y = (x @ w * 0.01 + rng.normal(size=n) * 0.005).astype(np.float32)
    dates = [str(np.datetime64("2012-01-02") + start_day + i) for i in range(n)]
    return DriftBatch(x, y, dates)
