"""The training data set: bars of the training window turned into features, whitened windows,
labels and their realisation times. Nothing here looks past the training end."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from datetime import date

import numpy as np

from daemon.bars.model import Bar
from daemon.features import bar_arrays, batch_features, forward_returns
from daemon.pipeline.retrieval import window_vectors
from daemon.pipeline.tyler import TylerArtifacts, tyler_batch, whiten


@dataclass
class Dataset:
    """Per-bar arrays of the training window (n bars) and the usable rows (time order)."""

    dates: list[str]  # ISO date of each bar
    ts: np.ndarray  # bar close time, epoch seconds
    features: np.ndarray  # n × d raw features
    whitened: np.ndarray  # n × d
    vectors: np.ndarray  # n × (L·d) ANN vectors (float32)
    labels: np.ndarray  # forward log return over the horizon (NaN when not realised)
    next_return: np.ndarray  # one-bar forward log return (what the validation strategy earns)
    realised_ts: np.ndarray  # time at which each bar's label is realised (0 if never)
    rows: np.ndarray  # usable bar positions: finite features, vector and label
    tyler: TylerArtifacts
    horizon: int
    bars_sha256: str


def bars_digest(bars: list[Bar]) -> str:
    """sha256 of the bars' times and OHLCV values (the frozen input snapshot)."""
    h = hashlib.sha256(b"bars/v1")
    h.update(np.array([int(b.ts.timestamp()) for b in bars], dtype=np.int64).tobytes())
    for name, arr in bar_arrays(bars).items():
        h.update(name.encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def cut_window(bars: list[Bar], train_start: str, train_end: str) -> list[Bar]:
    """Bars whose date lies in [train_start, train_end] (start empty = from the first)."""
    lo = date.fromisoformat(train_start) if train_start else date.min
    hi = date.fromisoformat(train_end)
    return [b for b in bars if lo <= b.ts.date() <= hi]


def build_dataset(bars: list[Bar], *, horizon: int, window: int, shrinkage: float,
                  tol: float, max_iter: int) -> Dataset:
    """Features, Tyler whitening (fitted on this window), ANN vectors and labels of `bars`."""
    a = bar_arrays(bars)
    feats = batch_features(a["close"], a["high"], a["low"], a["open"], a["volume"])
    tyler = tyler_batch(feats, shrinkage=shrinkage, tol=tol, max_iter=max_iter)
    whitened = whiten(feats, tyler)
    vectors = window_vectors(whitened, window)
    labels = forward_returns(a["close"], horizon)
    ts = np.array([int(b.ts.timestamp()) for b in bars], dtype=np.int64)
    realised = np.zeros(len(bars), dtype=np.int64)
    realised[:-horizon] = ts[horizon:]
    ok = (np.all(np.isfinite(feats), axis=1) & np.all(np.isfinite(vectors), axis=1)
          & np.isfinite(labels))
    rows = np.flatnonzero(ok)
    if len(rows) < 50:
        raise ValueError(f"only {len(rows)} usable bars in the training window")
    if np.any(np.diff(rows) != 1):
        raise ValueError("usable bars are not contiguous (gaps in features or labels)")
    return Dataset(dates=[b.ts.date().isoformat() for b in bars], ts=ts, features=feats,
                   whitened=whitened, vectors=vectors, labels=labels,
                   next_return=forward_returns(a["close"], 1), realised_ts=realised, rows=rows,
                   tyler=tyler, horizon=horizon, bars_sha256=bars_digest(bars))



def refit_whitening(ds: Dataset, rows: np.ndarray, *, window: int, shrinkage: float, tol: float,
                    max_iter: int) -> Dataset:
    """A view of `ds` whose Tyler whitening (and so its ANN vectors) is fitted on the feature
    rows `rows` only (a CPCV fold's training part); labels and times are shared."""
    tyler = tyler_batch(ds.features[rows], shrinkage=shrinkage, tol=tol, max_iter=max_iter)
    whitened = whiten(ds.features, tyler)
    return dataclasses.replace(ds, tyler=tyler, whitened=whitened,
                               vectors=window_vectors(whitened, window))
