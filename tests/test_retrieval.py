"""FAISS retrieval: recall over exact search, no self or future retrieval, deterministic builds,
and the model-input functions that sit on top of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daemon.pipeline.neighbours import (
    NEIGHBOUR_STAT_NAMES,
    forecaster_input,
    neighbour_stats,
    neighbour_stats_batch,
    scorer_row,
)
from daemon.pipeline.retrieval import (
    IndexParams,
    NeighbourIndex,
    build_index,
    exact_search,
    index_vector,
    measure_index,
    recall_at_k,
    window_vectors,
)

RECALL_FLOOR = 0.9  # the default [quality_gates].min_ann_recall


def _clustered(n: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(20, dim))
    return (centers[rng.integers(0, 20, n)] + 0.5 * rng.normal(size=(n, dim))).astype(np.float32)


@pytest.mark.parametrize("kind", ["hnsw", "ivf", "flat"])
def test_recall_at_10_above_the_floor_on_held_out_queries(kind: str) -> None:
    v = _clustered(3_000)
    m = measure_index(v, np.zeros(len(v)), IndexParams(kind=kind, ivf_nlist=16, ivf_nprobe=8))
    assert m["recall_at_10"] >= RECALL_FLOOR
    assert m["n_queries"] == 300 and m["n_index"] == 2_700
    assert m["speedup"] > 0


def test_a_query_never_sees_itself_or_an_unrealised_outcome() -> None:
    v = _clustered(500, seed=1)
    horizon = 3
    t = np.arange(500)
    idx = build_index(v, np.arange(500.0), {"kind": "hnsw"}, realised_ts=t + horizon)
    dist, ids = idx.search(v, 10, realised_by=t)  # each bar queried at its own time
    found = ids >= 0
    assert np.all(ids[found] + horizon <= np.broadcast_to(t[:, None], ids.shape)[found])
    assert not np.any(ids == t[:, None])
    assert np.all(ids[:horizon] == -1) and np.all(np.isinf(dist[:horizon]))
    assert np.all(found[50:])  # once enough history is realised, all k are found
    free_dist, free_ids = idx.search(v[100], 1)
    assert free_ids[0, 0] == 100 and free_dist[0, 0] == pytest.approx(0.0, abs=1e-4)


def test_exact_search_and_recall_helpers() -> None:
    v = _clustered(200, dim=8, seed=2)
    d, i = exact_search(v, v[:5], 3)
    assert list(i[:, 0]) == [0, 1, 2, 3, 4] and np.allclose(d[:, 0], 0.0, atol=1e-4)
    assert recall_at_k(i, i) == 1.0
    assert recall_at_k(np.full_like(i, -1), i) == 0.0


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_build_is_deterministic_and_round_trips(tmp_path: Path, kind: str) -> None:
    v = _clustered(1_000, seed=3)
    out = np.random.default_rng(4).normal(size=1_000)
    params = IndexParams(kind=kind, ivf_nlist=16)
    files_a = build_index(v, out, params).save(tmp_path / "a")
    files_b = build_index(v, out, params).save(tmp_path / "b")
    for fa, fb in zip(files_a, files_b, strict=True):
        assert fa.read_bytes() == fb.read_bytes(), fa.name
    loaded = NeighbourIndex.load(tmp_path / "a")
    assert len(loaded) == 1_000 and loaded.dim == 64 and loaded.params == params
    d, i = loaded.search(v[7:8], 5)
    assert i[0, 0] == 7 and np.array_equal(loaded.outcomes, out)
    assert loaded.neighbour_outcomes(np.array([[7, -1]]))[0, 0] == out[7]


def test_window_vectors_flatten_the_last_l_whitened_rows() -> None:
    w = np.arange(40, dtype=np.float64).reshape(10, 4)
    w[2] = np.nan
    v = window_vectors(w, 3)
    assert v.shape == (10, 12)
    assert np.all(np.isnan(v[:5]))  # too short, or the window holds the NaN row
    assert np.array_equal(v[6], index_vector(w[4:7]))
    assert index_vector(np.ones((8, 8))).shape == (64,)


def test_neighbour_stats_ignore_missing_neighbours() -> None:
    dists = np.array([1.0, 4.0, np.inf, np.inf])
    outs = np.array([0.02, -0.01, np.nan, np.nan])
    s = dict(zip(NEIGHBOUR_STAT_NAMES, neighbour_stats(dists, outs), strict=True))
    assert s["nn_mean"] == pytest.approx(0.005)
    assert s["nn_frac_up"] == 0.5 and s["nn_found"] == 0.5
    assert s["nn_dist_min"] == pytest.approx(1.0) and s["nn_dist_mean"] == pytest.approx(1.5)
    none = neighbour_stats(np.full(4, np.inf), np.full(4, np.nan))
    assert np.array_equal(none, np.zeros(len(NEIGHBOUR_STAT_NAMES)))
    batch = neighbour_stats_batch(np.vstack([dists, dists]), np.vstack([outs, outs]))
    assert np.allclose(batch[1], neighbour_stats(dists, outs), rtol=1e-12, atol=1e-15)


def test_single_query_stats_equal_the_batch_definition() -> None:
    # one definition: the per-bar path and the training batch agree on random neighbourhoods,
    # with missing neighbours (inf distance, NaN outcome) and with none found
    rng = np.random.default_rng(0)
    k = 20
    for i in range(300):
        d = rng.gamma(2.0, 1.0, k).astype(np.float32)
        o = rng.normal(0, 0.01, k)
        if i % 3 == 1:
            gone = rng.random(k) < 0.3
            d[gone], o[gone & (rng.random(k) < 0.5)] = np.inf, np.nan
        if i % 17 == 5:
            d[:], o[:] = np.inf, np.nan
        want = neighbour_stats_batch(d[None, :], o[None, :])[0]
        got = neighbour_stats(d, o)
        assert np.allclose(got, want, rtol=1e-12, atol=1e-15), (i, got - want)


def test_model_inputs_have_fixed_layouts() -> None:
    x = forecaster_input(np.ones(8), np.zeros(len(NEIGHBOUR_STAT_NAMES)))
    assert x.shape == (16,) and x.dtype == np.float32
    rows = forecaster_input(np.ones((3, 8)), np.zeros((3, 8)))
    assert rows.shape == (3, 16)
    r = scorer_row(np.ones(8), np.zeros(8), 0.5)
    assert r.shape == (17,) and r[-1] == 0.5
    assert scorer_row(np.ones((3, 8)), np.zeros((3, 8)), np.ones(3)).shape == (3, 17)
