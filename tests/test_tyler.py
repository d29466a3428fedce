"""Regularised Tyler shape: agrees with a plain reference fixed point, is scale invariant, is
proportional to the covariance for Gaussian data, and the incremental update reaches the batch
answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daemon.pipeline.tyler import (
    TylerArtifacts,
    inverse_sqrt,
    tyler_batch,
    tyler_incremental,
    tyler_shape,
    whiten,
)


def reference_tyler(z: np.ndarray, rho: float, iters: int = 500) -> np.ndarray:
    """The textbook Chen–Wiesel–Hero iteration, one sample at a time, no vectorisation."""
    n, d = z.shape
    sigma = np.eye(d)
    for _ in range(iters):
        inv = np.linalg.inv(sigma)
        acc = np.zeros((d, d))
        for x in z:
            acc += np.outer(x, x) / float(x @ inv @ x)
        new = (1 - rho) * d / n * acc + rho * np.eye(d)
        sigma = new * d / np.trace(new)
    return sigma


def _correlated(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d))
    cov = a @ a.T + d * np.eye(d)
    return rng.multivariate_normal(np.zeros(d), cov, size=n), cov


@pytest.mark.parametrize("rho", [0.0, 0.1, 0.4])
def test_matches_the_reference_fixed_point(rho: float) -> None:
    z, _ = _correlated(200, 5, seed=1)
    shape, iters = tyler_shape(z, shrinkage=rho, tol=1e-12, max_iter=2000)
    assert np.allclose(shape, reference_tyler(z, rho), atol=1e-8)
    assert np.trace(shape) == pytest.approx(5.0)
    assert iters < 2000


def test_shape_ignores_the_scale_of_each_sample() -> None:
    z, _ = _correlated(300, 4, seed=2)
    scales = np.random.default_rng(3).lognormal(0, 2, size=300)[:, None]
    a, _ = tyler_shape(z, shrinkage=0.1, tol=1e-12, max_iter=2000)
    b, _ = tyler_shape(z * scales, shrinkage=0.1, tol=1e-12, max_iter=2000)
    assert np.allclose(a, b, atol=1e-9)


def test_gaussian_shape_is_proportional_to_the_covariance() -> None:
    z, cov = _correlated(20_000, 4, seed=4)
    shape, _ = tyler_shape(z, shrinkage=0.0, tol=1e-10)
    target = cov * 4 / np.trace(cov)
    assert np.abs(shape - target).max() / np.abs(target).max() < 0.05


def test_whitening_decorrelates_heavy_tailed_data() -> None:
    rng = np.random.default_rng(5)
    z, cov = _correlated(5_000, 3, seed=6)
    x = z / np.sqrt(rng.chisquare(3, size=(5_000, 1)) / 3) * [0.01, 1.0, 50.0]  # Student-t rows
    art = tyler_batch(x, shrinkage=0.01)
    w = whiten(x, art)
    again = tyler_shape(w, shrinkage=0.0, tol=1e-10)[0]
    assert np.allclose(again, np.eye(3), atol=0.1)
    assert np.allclose(art.whitener @ art.shape @ art.whitener, np.eye(3), atol=1e-8)


def test_incremental_window_iterations_converge_to_the_batch_answer() -> None:
    z, _ = _correlated(400, 6, seed=7)
    batch, _ = tyler_shape(z, shrinkage=0.05, tol=1e-12, max_iter=2000)
    shape = np.eye(6)
    for _ in range(60):  # a few iterations per bar, warm-started each time
        shape = tyler_incremental(shape, z, shrinkage=0.05, n_iter=2, weight=1.0)
    assert np.allclose(shape, batch, atol=1e-8)


def test_incremental_stream_tracks_the_batch_answer() -> None:
    z, _ = _correlated(2_000, 4, seed=8)
    batch, _ = tyler_shape(z, shrinkage=0.05, tol=1e-12, max_iter=2000)
    shape = np.eye(4)
    start = np.linalg.norm(shape - batch)
    for epoch in range(3):
        for x in z:
            shape = tyler_incremental(shape, x, shrinkage=0.05, n_iter=1,
                                      weight=0.002 / (1 + epoch))
    assert np.linalg.norm(shape - batch) < 0.15 * start
    assert np.trace(shape) == pytest.approx(4.0)


def test_save_load_round_trip_and_byte_identical(tmp_path: Path) -> None:
    x, _ = _correlated(300, 4, seed=9)
    art = tyler_batch(x, shrinkage=0.1)
    a, b = art.save(tmp_path / "a.npz"), tyler_batch(x, shrinkage=0.1).save(tmp_path / "b.npz")
    assert a.read_bytes() == b.read_bytes()
    back = TylerArtifacts.load(a)
    assert np.array_equal(back.whitener, art.whitener) and back.iterations == art.iterations
    assert np.allclose(whiten(x[:3], back), whiten(x[:3], art))
    upd = art.with_shape(tyler_incremental(art.shape, art.standardise(x[0]), shrinkage=0.1))
    assert np.allclose(upd.whitener, inverse_sqrt(upd.shape))


def test_tracker_whitens_live_bars_and_stays_near_the_batch_shape() -> None:
    from daemon.pipeline.tyler import TylerTracker

    x, _ = _correlated(3_000, 5, seed=10)
    art = tyler_batch(x[:2_000], shrinkage=0.05)
    tracker = TylerTracker(art, n_iter=2, weight=0.005)
    out = np.array([tracker.update(row) for row in x[2_000:]])
    assert out.shape == (1_000, 5) and np.all(np.isfinite(out))
    assert np.linalg.norm(tracker.art.shape - art.shape) < 0.5
    assert np.allclose(tracker.art.whitener @ tracker.art.shape @ tracker.art.whitener,
                       np.eye(5), atol=1e-8)
    tracker.reset()
    assert tracker.art is art and tracker.updates == 0
