"""Tyler's M-estimator of the feature shape (scatter) matrix, regularised, and whitening.

Features are first standardised per coordinate (median and MAD: robust, and it puts every
feature on one scale so that shrinking toward the identity means the same for all). The shape
Σ of the standardised samples z is the regularised fixed point of Chen–Wiesel–Hero (2011):

    Σ ← (1 − ρ) · (d / n) · Σ_i z_i z_iᵀ / (z_iᵀ Σ⁻¹ z_i)  +  ρ · I,   then trace(Σ) = d

Only the shape is identified (scale is fixed by the trace), and it does not change when any
sample is multiplied by a positive number. Whitening is x ↦ Σ^{-1/2} (x − center) / scale.

Live use keeps the shape current with `tyler_incremental`: a warm start from the last shape and
a few fixed-point steps per bar, either over a window of recent samples or as an exponentially
weighted update from one new sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1
_MAD_TO_SD = 1.4826
_TINY = 1e-12


def _normalise(shape: np.ndarray) -> np.ndarray:
    shape = 0.5 * (shape + shape.T)
    return shape * (shape.shape[0] / np.trace(shape))


def inverse_sqrt(shape: np.ndarray) -> np.ndarray:
    """Σ^{-1/2} of a symmetric positive definite matrix (symmetric square root)."""
    vals, vecs = np.linalg.eigh(0.5 * (shape + shape.T))
    vals = np.maximum(vals, _TINY)
    return (vecs / np.sqrt(vals)) @ vecs.T


@dataclass(frozen=True)
class TylerArtifacts:
    """The whitening artifact: `shape` (d×d, trace d) of the standardised features, its
    `whitener` Σ^{-1/2}, the per-feature `center` (median) and `scale` (MAD·1.4826), the
    `shrinkage` ρ and the number of batch `iterations` it took."""

    shape: np.ndarray
    whitener: np.ndarray
    center: np.ndarray
    shrinkage: float
    iterations: int
    scale: np.ndarray = field(default_factory=lambda: np.ones(0))

    def __post_init__(self) -> None:
        if self.scale.size == 0:
            object.__setattr__(self, "scale", np.ones(len(self.center)))

    @property
    def dim(self) -> int:
        return int(self.shape.shape[0])

    def standardise(self, x: np.ndarray) -> np.ndarray:
        """(x − center) / scale: the samples `tyler_incremental` takes."""
        return (np.asarray(x, dtype=np.float64) - self.center) / self.scale

    def with_shape(self, shape: np.ndarray, iterations: int | None = None) -> TylerArtifacts:
        """The same artifact with a new shape (e.g. after `tyler_incremental`) and its whitener."""
        shape = _normalise(np.asarray(shape, dtype=np.float64))
        return TylerArtifacts(shape, inverse_sqrt(shape), self.center, self.shrinkage,
                              self.iterations if iterations is None else iterations, self.scale)

    def save(self, path: Path) -> Path:
        """Write the artifact as an uncompressed npz (byte-identical for equal contents)."""
        with Path(path).open("wb") as fh:
            np.savez(fh, shape=self.shape, whitener=self.whitener, center=self.center,
                     scale=self.scale, shrinkage=np.float64(self.shrinkage),
                     iterations=np.int64(self.iterations), version=np.int64(FORMAT_VERSION))
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> TylerArtifacts:
        """Read an artifact written by `save`; ValueError on an unknown version or bad file."""
        with np.load(Path(path), allow_pickle=False) as z:
            if int(z["version"]) != FORMAT_VERSION:
                raise ValueError(f"unknown tyler artifact version {int(z['version'])}")
            return cls(shape=z["shape"], whitener=z["whitener"], center=z["center"],
                       shrinkage=float(z["shrinkage"]), iterations=int(z["iterations"]),
                       scale=z["scale"])


def _quad_forms(z: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """z_iᵀ Σ⁻¹ z_i for every row of z."""
    chol = np.linalg.cholesky(shape)
    w = np.linalg.solve(chol, z.T)
    return np.einsum("ij,ij->j", w, w)


def _fixed_point_map(z: np.ndarray, shape: np.ndarray, shrinkage: float) -> np.ndarray:
    n, d = z.shape
    q = np.maximum(_quad_forms(z, shape), _TINY)
    scatter = (z / q[:, None]).T @ z * (d / n)
    return _normalise((1.0 - shrinkage) * scatter + shrinkage * np.eye(d))


def tyler_shape(z: np.ndarray, *, shrinkage: float, tol: float = 1e-6, max_iter: int = 200,
                init: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """The regularised Tyler shape (trace d) of centred samples `z` (n × d) and the number of
    fixed-point iterations used; stops when the relative Frobenius change is below `tol`."""
    z = np.asarray(z, dtype=np.float64)
    z = z[np.linalg.norm(z, axis=1) > _TINY]
    d = z.shape[1]
    if not 0.0 <= shrinkage < 1.0:
        raise ValueError(f"shrinkage must be in [0, 1), got {shrinkage}")
    if shrinkage == 0.0 and len(z) <= d:
        raise ValueError(f"need more than {d} samples without shrinkage, got {len(z)}")
    shape = np.eye(d) if init is None else _normalise(np.asarray(init, dtype=np.float64))
    for it in range(1, max_iter + 1):
        new = _fixed_point_map(z, shape, shrinkage)
        change = np.linalg.norm(new - shape) / np.linalg.norm(shape)
        shape = new
        if change < tol:
            return shape, it
    return shape, max_iter


def robust_location_scale(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column median and MAD·1.4826 (falling back to the standard deviation, then 1)."""
    center = np.median(x, axis=0)
    scale = np.median(np.abs(x - center), axis=0) * _MAD_TO_SD
    sd = np.std(x, axis=0)
    scale = np.where(scale > _TINY, scale, np.where(sd > _TINY, sd, 1.0))
    return center, scale


def tyler_batch(x: np.ndarray, *, shrinkage: float, tol: float = 1e-6,
                max_iter: int = 200) -> TylerArtifacts:
    """Fit the whitening artifact on raw feature rows `x` (n × d; rows with NaN are ignored):
    robust standardisation, then the regularised Tyler fixed point from the identity."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.all(np.isfinite(x), axis=1)]
    if len(x) < 2:
        raise ValueError("tyler_batch needs at least two finite rows")
    center, scale = robust_location_scale(x)
    shape, iterations = tyler_shape((x - center) / scale, shrinkage=shrinkage, tol=tol,
                                    max_iter=max_iter)
    return TylerArtifacts(shape, inverse_sqrt(shape), center, float(shrinkage), iterations,
                          scale)


def tyler_incremental(shape: np.ndarray, x: np.ndarray, *, shrinkage: float, n_iter: int = 2,
                      weight: float = 0.02) -> np.ndarray:
    """A warm-started update of `shape` from new standardised samples (`art.standardise(raw)`).

    - `x` of shape (n, d), a window of recent samples: `n_iter` steps of
      Σ ← (1 − weight)·shape + weight·F(Σ) from Σ = shape, where F is the batch fixed-point map
      over the window. With weight 1 these are plain warm-started Tyler iterations, so repeated
      calls converge to the batch answer of the window.
    - `x` of shape (d,), one new sample: the exponentially weighted recursion
      Σ ← (1 − weight)·shape + weight·((1 − ρ)·d·x xᵀ / (xᵀ Σ⁻¹ x) + ρ I), with the
      quadratic form re-evaluated `n_iter` times. Fed a stream with a small weight it tracks
      the batch fixed point (a stochastic-approximation of it).
    Returns the new shape (trace d); the input is not modified.
    """
    base = _normalise(np.asarray(shape, dtype=np.float64))
    x = np.asarray(x, dtype=np.float64)
    if not 0.0 < weight <= 1.0:
        raise ValueError(f"weight must be in (0, 1], got {weight}")
    d = base.shape[0]
    current = base
    if x.ndim == 2:
        for _ in range(max(1, n_iter)):
            current = _normalise((1 - weight) * base
                                 + weight * _fixed_point_map(x, current, shrinkage))
        return current
    if not np.all(np.isfinite(x)) or np.linalg.norm(x) <= _TINY:
        return base
    outer = np.outer(x, x)
    for _ in range(max(1, n_iter)):
        q = max(float(_quad_forms(x[None, :], current)[0]), _TINY)
        term = (1 - shrinkage) * d * outer / q + shrinkage * np.eye(d)
        current = _normalise((1 - weight) * base + weight * term)
    return current


def whiten(x: np.ndarray, art: TylerArtifacts) -> np.ndarray:
    """Whitened features: Σ^{-1/2} (x − center) / scale, for one vector (d,) or rows (n × d)."""
    return art.standardise(x) @ art.whitener.T


class TylerTracker:
    """Live whitening for the pipeline: each bar's standardised features update the shape by
    `tyler_incremental` (warm start, `n_iter` steps, `weight`), then are whitened with it.

    Starts from the batch artifact; `reset()` returns to it (a periodic cold re-solve bounds
    drift). One small eigendecomposition per bar (d × d).
    """

    def __init__(self, art: TylerArtifacts, *, n_iter: int = 2, weight: float = 0.01) -> None:
        self.base = art
        self.art = art
        self.n_iter = n_iter
        self.weight = weight
        self.updates = 0

    def update(self, x: np.ndarray) -> np.ndarray:
        """Fold one raw feature vector into the shape and return it whitened (d,)."""
        z = self.art.standardise(x)
        shape = tyler_incremental(self.art.shape, z, shrinkage=self.art.shrinkage,
                                  n_iter=self.n_iter, weight=self.weight)
        self.art = self.art.with_shape(shape)
        self.updates += 1
        return z @ self.art.whitener.T

    def reset(self) -> None:
        """Back to the batch artifact."""
        self.art = self.base
        self.updates = 0
