"""Fitting the model stack on a set of training rows: index → neighbour stats → forecaster →
CatBoost. Used per CPCV fold (purged training part only) and once on the whole window.

Neighbour statistics of any row — training or test — are computed at that row's own time: only
stored outcomes realised by then are visible, so no row sees itself or a future outcome.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from adapters.base_training import BaseTrainingParams, predict, train_base_forecaster
from daemon.pipeline.neighbours import forecaster_input, neighbour_stats_batch, scorer_row
from daemon.pipeline.retrieval import IndexParams, NeighbourIndex, build_index
from daemon.training.dataset import Dataset


@dataclass
class FittedStack:
    """The models fitted on one set of training rows."""

    index: NeighbourIndex
    forecaster: Any
    scorer: Any


@functools.cache
def catboost_task_type() -> str:
    """"GPU" when torch and CatBoost see a CUDA device, else "CPU" (asked once)."""
    import torch

    if not torch.cuda.is_available():
        return "CPU"
    try:
        from catboost.utils import get_gpu_device_count

        with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
            return "GPU" if get_gpu_device_count() > 0 else "CPU"
    except Exception:  # no CUDA runtime at all
        return "CPU"


def neighbour_stats_for(ds: Dataset, index: NeighbourIndex, rows: np.ndarray,
                        k: int) -> np.ndarray:
    """Neighbour stats of `rows`, each searched at its own bar time."""
    dist, ids = index.search(ds.vectors[rows], k, realised_by=ds.ts[rows])
    return neighbour_stats_batch(dist, index.neighbour_outcomes(ids))


def _catboost(training: Any, seed: int, threads: int) -> Any:
    from catboost import CatBoostClassifier

    return CatBoostClassifier(
        iterations=training.catboost_iterations, depth=training.catboost_depth,
        learning_rate=training.catboost_learning_rate, l2_leaf_reg=training.catboost_l2,
        random_seed=seed, thread_count=threads, task_type=catboost_task_type(),
        loss_function="Logloss", verbose=False, allow_writing_files=False)


def base_params(training: Any) -> BaseTrainingParams:
    """Forecaster hyper-parameters from config `[training]`."""
    return BaseTrainingParams(hidden=tuple(training.forecaster_hidden),
                              epochs=training.forecaster_epochs, lr=training.forecaster_lr,
                              batch=training.forecaster_batch,
                              weight_decay=training.forecaster_weight_decay, seed=training.seed)


def fit_stack(ds: Dataset, rows: np.ndarray, index_params: IndexParams, training: Any,
              labels: np.ndarray | None = None) -> tuple[FittedStack, np.ndarray]:
    """Fit the stack on training bar positions `rows` (time order); returns it and the
    training rows' neighbour stats. `labels` overrides the dataset labels (shuffle test)."""
    y = ds.labels if labels is None else labels
    index = build_index(ds.vectors[rows], y[rows], index_params,
                        realised_ts=ds.realised_ts[rows])
    nstats = neighbour_stats_for(ds, index, rows, index_params.k)
    forecaster = train_base_forecaster(forecaster_input(ds.whitened[rows], nstats), y[rows],
                                       base_params(training))
    forecast = predict(forecaster, forecaster_input(ds.whitened[rows], nstats))
    scorer = _catboost(training, training.seed, training.threads)
    with contextlib.redirect_stdout(io.StringIO()):
        scorer.fit(scorer_row(ds.features[rows], nstats, forecast), (y[rows] > 0).astype(int))
    return FittedStack(index, forecaster, scorer), nstats


def score_rows(ds: Dataset, stack: FittedStack, rows: np.ndarray,
               k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw P(up), forecasts and neighbour stats of `rows` under a fitted stack."""
    nstats = neighbour_stats_for(ds, stack.index, rows, k)
    forecast = predict(stack.forecaster, forecaster_input(ds.whitened[rows], nstats))
    p = stack.scorer.predict_proba(scorer_row(ds.features[rows], nstats, forecast))[:, 1]
    return p, forecast, nstats
