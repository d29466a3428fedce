"""A small artifact set built in memory from real bars with the artifact builder's own functions
(features, Tyler, window vectors, index, neighbour stats, model inputs, calibration), for the
pipeline benchmark and tests when no trained set is at hand.

The models are deliberately cheap (a briefly fitted forecaster, a small CatBoost), but shaped
exactly like the trained ones, so every serving stage does its real work. The index can be
enlarged to any size with vectors drawn from the fitted distribution of the real window vectors
(a Gaussian with their mean and covariance); those carry bootstrapped real outcomes.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from daemon.bars.model import Bar
from daemon.features import FEATURE_NAMES, bar_arrays, batch_features, forward_returns
from daemon.pipeline.neighbours import forecaster_input, neighbour_stats_batch, scorer_row
from daemon.pipeline.retrieval import IndexParams, NeighbourIndex, build_index, window_vectors
from daemon.pipeline.tyler import tyler_batch, whiten
from daemon.training.artifacts import ArtifactSet
from daemon.training.calibration import fit_platt


def real_windows(bars: list[Bar], window: int, shrinkage: float = 0.05,
                 horizon: int = 1) -> dict[str, Any]:
    """Features, the Tyler artifact, whitened rows, window vectors and labels of `bars`."""
    cols = bar_arrays(bars)
    feats = batch_features(cols["close"], cols["high"], cols["low"], cols["open"],
                           cols["volume"])
    tyler = tyler_batch(feats, shrinkage=shrinkage)
    white = np.full_like(feats, np.nan)
    ok = np.all(np.isfinite(feats), axis=1)
    white[ok] = whiten(feats[ok], tyler)
    vecs = window_vectors(white, window)
    labels = forward_returns(cols["close"], horizon)
    return {"feats": feats, "tyler": tyler, "white": white, "vectors": vecs, "labels": labels}


def synthetic_vectors(real: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """`n` vectors from a Gaussian with the mean and covariance of `real` (float32)."""
    rng = np.random.default_rng(seed)
    mean = real.mean(axis=0)
    cov = np.cov(real, rowvar=False) + 1e-9 * np.eye(real.shape[1])
    chol = np.linalg.cholesky(cov)
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    step = 200_000
    for i in range(0, n, step):
        m = min(step, n - i)
        out[i:i + m] = mean + rng.standard_normal((m, real.shape[1])) @ chol.T
    return out


def index_vectors(vectors: np.ndarray, labels: np.ndarray, size: int,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, outcomes) of an index of `size`: the real finite windows (all of them if they
    fit), topped up with synthetic ones carrying bootstrapped real outcomes."""
    ok = np.all(np.isfinite(vectors), axis=1) & np.isfinite(labels)
    real, out = vectors[ok].astype(np.float32), labels[ok]
    if size <= len(real):
        return real[-size:], out[-size:]
    rng = np.random.default_rng(seed + 1)
    extra = synthetic_vectors(real, size - len(real), seed)
    return np.vstack([extra, real]), np.concatenate([rng.choice(out, len(extra)), out])


def cached_index(vectors: np.ndarray, outcomes: np.ndarray, params: IndexParams,
                 cache_dir: Path | None) -> tuple[NeighbourIndex, bool]:
    """`build_index`, cached on disk under `cache_dir` keyed by the vectors' bytes and the
    parameters (an HNSW build over 1e6 vectors takes minutes on one thread). Returns
    (index, loaded_from_cache)."""
    if cache_dir is None:
        return build_index(vectors, outcomes, params), False
    # efSearch is a search-time knob: the cache key uses the default so one build serves all.
    build_params = dataclasses.replace(params, hnsw_ef_search=IndexParams.hnsw_ef_search)
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(vectors).tobytes())
    h.update(np.ascontiguousarray(outcomes).tobytes())
    h.update(repr(sorted(build_params.__dict__.items())).encode())
    folder = cache_dir / f"{params.kind}-{len(vectors)}x{vectors.shape[1]}-{h.hexdigest()[:16]}"
    index, loaded = None, False
    if (folder / "index.json").is_file():
        try:
            index, loaded = NeighbourIndex.load(folder), True
        except (OSError, ValueError):
            index = None
    if index is None:
        index = build_index(vectors, outcomes, build_params)
        index.save(folder)
    index.params = params
    if params.kind == "hnsw":
        index.index.hnsw.efSearch = params.hnsw_ef_search
    return index, loaded


def quick_artifact_set(bars: list[Bar], *, window: int = 8, k: int = 20, kind: str = "hnsw",
                       index_size: int | None = None, ef_search: int = 64, hnsw_m: int = 32,
                       scorer_iterations: int = 100, seed: int = 0,
                       cache_dir: Path | None = None) -> ArtifactSet:
    """An in-memory ArtifactSet over `bars` (see the module docstring)."""
    import torch

    from adapters.model import Forecaster, ForecasterSpec

    rw = real_windows(bars, window)
    vectors, labels = rw["vectors"], rw["labels"]
    size = index_size or int(np.sum(np.all(np.isfinite(vectors), axis=1)))
    vecs, outs = index_vectors(vectors, labels, size, seed)
    params = IndexParams(kind=kind, window=window, k=k, hnsw_m=hnsw_m,
                         hnsw_ef_search=ef_search, seed=1234)
    index, _ = cached_index(vecs, outs, params, cache_dir)
    # Model inputs of the real bars (neighbours from the index: fine for a quick set).
    ok = np.all(np.isfinite(vectors), axis=1) & np.isfinite(labels)
    rows = np.flatnonzero(ok)
    dist, ids = index.search(vectors[rows], k)
    nstats = neighbour_stats_batch(dist, index.neighbour_outcomes(ids))
    x = forecaster_input(rw["white"][rows], nstats)
    y = labels[rows]
    torch.manual_seed(seed)
    model = Forecaster(ForecasterSpec(n_inputs=x.shape[1]))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))
    model.set_scaling(xt, yt)
    # A few plain gradient steps (no torch.optim: it imports torch._dynamo, seconds of start-up)
    params = list(model.parameters())
    for _ in range(30):
        loss = torch.mean((model(xt) - yt) ** 2)
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                p -= 0.05 * g
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.inference_mode():
        forecast = model(xt).numpy().astype(np.float64)
    from catboost import CatBoostClassifier

    srows = scorer_row(rw["feats"][rows], nstats, forecast)
    up = (y > 0).astype(int)
    scorer = CatBoostClassifier(iterations=scorer_iterations, depth=6, verbose=0,
                                thread_count=1, random_seed=seed, allow_writing_files=False)
    scorer.fit(srows, up)
    p_raw = scorer.predict_proba(srows, thread_count=1)[:, 1]
    calibrator = fit_platt(p_raw, up)
    first, last = bars[0].ts.date().isoformat(), bars[-1].ts.date().isoformat()
    return ArtifactSet(
        dir=Path("."), manifest={"quick": True}, tyler=rw["tyler"], index=index,
        forecaster=model, scorer=scorer, calibrator=calibrator, anchors=None,
        slices={"all": (first, last)},
        params={"window": window, "k": k, "horizon": 1, "feature_names": list(FEATURE_NAMES),
                "source": "quick", "contract": bars[0].contract},
    )
