"""Deterministic training of the base forecaster (adapters.model.Forecaster).

The network learns the forward return from `forecaster_input` rows (whitened features and
neighbour statistics). The loss is the MSE of the output against the target, measured in units
of the target's standard deviation. Same inputs, hyper-parameters and seed → the same weights,
bit for bit (single thread, seeded shuffles, deterministic algorithms). Knows nothing of the
daemon: it takes arrays and returns a frozen model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from adapters.model import Forecaster, ForecasterSpec, seed_everything


@dataclass(frozen=True)
class BaseTrainingParams:
    """Hyper-parameters of one base training run."""

    hidden: tuple[int, ...] = (64, 32)
    epochs: int = 15
    lr: float = 1e-3
    batch: int = 128
    weight_decay: float = 1e-3
    seed: int = 7


def train_base_forecaster(x: np.ndarray, y: np.ndarray,
                          params: BaseTrainingParams = BaseTrainingParams()) -> Forecaster:
    """Fit a Forecaster on rows `x` (n × inputs) and targets `y` (n,) with Adam; returns it in
    eval mode with gradients off (the frozen base)."""
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    if len(x) != len(y) or len(x) < 2 or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("base training needs finite x and y of equal length (>= 2 rows)")
    torch.set_num_threads(1)
    gen = seed_everything(params.seed)
    model = Forecaster(ForecasterSpec(n_inputs=x.shape[1], hidden=tuple(params.hidden)))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.set_scaling(xt, yt)
    scale = model.y_scale.detach().clone()
    opt = torch.optim.Adam(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    model.train()
    n = len(xt)
    for _ in range(params.epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, params.batch):
            rows = order[start: start + params.batch]
            opt.zero_grad()
            loss = torch.mean(((model(xt[rows]) - yt[rows]) / scale) ** 2)
            loss.backward()
            opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def predict(model: Forecaster, x: np.ndarray) -> np.ndarray:
    """The model's forward returns for rows x (n × inputs), as float64 (n,)."""
    with torch.no_grad():
        return model(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy().astype(
            np.float64)
