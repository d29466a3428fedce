"""FAISS nearest-neighbour index over whitened feature windows, each vector with its outcome.

The vector of bar t is the window of its last L whitened feature vectors, oldest first,
flattened (`index_vector`); with 8 features and L = 8 it has 64 dimensions. Vectors are added
in time order, so id i is the i-th stored bar, and each carries its forward outcome and the
time (`realised_ts`, epoch seconds) at which that outcome became known. A query at time t may
see only outcomes realised by t: `search(..., realised_by=t)` restricts the candidates to that
prefix of ids, so a bar never retrieves itself or a future outcome.

Index kinds (config `[index].kind`): `hnsw` (default), `ivf` (larger sets), `flat` (exact).
Builds are single-threaded with fixed seeds so equal inputs give byte-identical files; IVF/flat
are trained on a GPU when faiss-gpu and CUDA are present (HNSW builds on the CPU).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

FORMAT_VERSION = 1
INDEX_FILE = "index.faiss"
OUTCOMES_FILE = "index_outcomes.npz"
META_FILE = "index.json"


@dataclass(frozen=True)
class IndexParams:
    """How to build and search the index (mirrors config `[index]`)."""

    kind: str = "hnsw"
    window: int = 8
    k: int = 20
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 64
    ivf_nlist: int = 64
    ivf_nprobe: int = 8
    seed: int = 1234
    gpu: str = "auto"

    @classmethod
    def from_any(cls, cfg: Any) -> IndexParams:
        """From an IndexParams, a config section or a dict (unknown keys are ignored)."""
        if isinstance(cfg, IndexParams):
            return cfg
        raw = cfg if isinstance(cfg, dict) else {
            k: getattr(cfg, k) for k in cls.__dataclass_fields__ if hasattr(cfg, k)}
        return cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})


def index_vector(whitened_window: np.ndarray) -> np.ndarray:
    """The ANN vector of one bar: its last L whitened feature vectors (L × d, oldest first)
    flattened to float32 (L·d,)."""
    return np.ascontiguousarray(np.asarray(whitened_window, dtype=np.float32).reshape(-1))


def window_vectors(whitened: np.ndarray, window: int) -> np.ndarray:
    """`index_vector` of every bar of a whitened feature matrix (n × d): row t holds rows
    t-L+1..t flattened; rows without a full finite window are NaN."""
    n, d = whitened.shape
    out = np.full((n, window * d), np.nan, dtype=np.float32)
    for t in range(window - 1, n):
        out[t] = index_vector(whitened[t - window + 1: t + 1])
    out[~np.all(np.isfinite(out), axis=1)] = np.nan
    return out


def gpu_available() -> bool:
    """True when this faiss build has GPU support and sees a CUDA device."""
    try:
        return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    except Exception:  # a CPU build without the symbol
        return False


def _make_index(dim: int, p: IndexParams) -> faiss.Index:
    if p.kind == "flat":
        return faiss.IndexFlatL2(dim)
    if p.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, p.hnsw_m)
        index.hnsw.efConstruction = p.hnsw_ef_construction
        index.hnsw.efSearch = p.hnsw_ef_search
        return index
    if p.kind == "ivf":
        quantizer = faiss.IndexFlatL2(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, p.ivf_nlist)
        index.cp.seed = p.seed
        index.nprobe = p.ivf_nprobe
        return index
    raise ValueError(f"unknown index kind {p.kind!r} (hnsw, ivf, flat)")


class NeighbourIndex:
    """A FAISS index with the outcome and realisation time of every stored vector."""

    def __init__(self, index: faiss.Index, outcomes: np.ndarray, realised_ts: np.ndarray,
                 params: IndexParams, built_on: str = "cpu") -> None:
        self.index = index
        self.outcomes = np.asarray(outcomes, dtype=np.float64)
        self.realised_ts = np.asarray(realised_ts, dtype=np.int64)
        self.params = params
        self.built_on = built_on

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def visible(self, realised_by: np.ndarray | int) -> np.ndarray:
        """How many stored ids (a prefix) have outcomes realised at or before each time."""
        return np.searchsorted(self.realised_ts, np.asarray(realised_by, dtype=np.int64),
                               side="right")

    def _search_params(self, sel: Any) -> Any:
        p = self.params
        if p.kind == "hnsw":
            return faiss.SearchParametersHNSW(sel=sel, efSearch=p.hnsw_ef_search)
        if p.kind == "ivf":
            return faiss.SearchParametersIVF(sel=sel, nprobe=p.ivf_nprobe)
        return faiss.SearchParameters(sel=sel)

    def search(self, q: np.ndarray, k: int, *,
               realised_by: np.ndarray | int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """k nearest stored vectors of each query (1×D or n×D): squared L2 distances and ids,
        nearest first; missing neighbours have id -1 and distance inf. With `realised_by`
        (epoch seconds, one per query or one for all) only outcomes realised by then count."""
        q = np.ascontiguousarray(np.atleast_2d(q), dtype=np.float32)
        if realised_by is None:
            dist, ids = self.index.search(q, k)
        else:
            limits = np.broadcast_to(self.visible(realised_by), (len(q),))
            dist = np.empty((len(q), k), dtype=np.float32)
            ids = np.empty((len(q), k), dtype=np.int64)
            for limit in np.unique(limits):
                rows = np.flatnonzero(limits == limit)
                if limit == 0:
                    dist[rows], ids[rows] = np.inf, -1
                    continue
                params = self._search_params(faiss.IDSelectorRange(0, int(limit)))
                dist[rows], ids[rows] = self.index.search(q[rows], k, params=params)
        missing = ids < 0
        dist = np.where(missing, np.inf, dist).astype(np.float32)
        return dist, ids

    def neighbour_outcomes(self, ids: np.ndarray) -> np.ndarray:
        """Outcomes of the given ids (NaN where the id is -1)."""
        out = np.full(ids.shape, np.nan)
        ok = ids >= 0
        out[ok] = self.outcomes[ids[ok]]
        return out

    def save(self, folder: Path) -> list[Path]:
        """Write the index, its outcomes and its parameters; returns the files written."""
        folder.mkdir(parents=True, exist_ok=True)
        index_path = folder / INDEX_FILE
        faiss.write_index(self.index, str(index_path))
        outcomes = folder / OUTCOMES_FILE
        with outcomes.open("wb") as fh:
            np.savez(fh, outcomes=self.outcomes, realised_ts=self.realised_ts)
        meta = folder / META_FILE
        meta.write_text(json.dumps({"version": FORMAT_VERSION, "params": asdict(self.params),
                                    "ntotal": len(self), "dim": self.dim}, sort_keys=True))
        return [index_path, outcomes, meta]

    @classmethod
    def load(cls, folder: Path) -> NeighbourIndex:
        """Read an index written by `save`; ValueError on an unknown version or a mismatch."""
        meta = json.loads((folder / META_FILE).read_text())
        if meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"unknown index version {meta.get('version')}")
        index = faiss.read_index(str(folder / INDEX_FILE))
        with np.load(folder / OUTCOMES_FILE, allow_pickle=False) as z:
            outcomes, realised = z["outcomes"], z["realised_ts"]
        if index.ntotal != len(outcomes) or index.ntotal != meta.get("ntotal"):
            raise ValueError("index and outcomes disagree on the number of vectors")
        params = IndexParams.from_any(meta["params"])
        if params.kind == "hnsw":
            index.hnsw.efSearch = params.hnsw_ef_search
        elif params.kind == "ivf":
            faiss.extract_index_ivf(index).nprobe = params.ivf_nprobe
        return cls(index, outcomes, realised, params)


def build_index(vectors: np.ndarray, outcomes: np.ndarray, index_cfg: Any,
                realised_ts: np.ndarray | None = None) -> NeighbourIndex:
    """Build the index over `vectors` (n × D, time order) carrying `outcomes` (n,).

    `realised_ts` (epoch seconds, non-decreasing) says when each outcome became known; default
    all 0 (everything visible). Single-threaded and seeded: equal inputs, equal index bytes.
    """
    p = IndexParams.from_any(index_cfg)
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2 or not np.all(np.isfinite(x)):
        raise ValueError("index vectors must be a finite 2-D array")
    realised = (np.zeros(len(x), dtype=np.int64) if realised_ts is None
                else np.asarray(realised_ts, dtype=np.int64))
    if np.any(np.diff(realised) < 0):
        raise ValueError("realised_ts must be non-decreasing (vectors in time order)")
    faiss.omp_set_num_threads(1)
    index = _make_index(x.shape[1], p)
    built_on = "cpu"
    if p.kind in ("ivf", "flat") and p.gpu != "never" and gpu_available():
        res = faiss.StandardGpuResources()
        gpu_index = faiss.index_cpu_to_gpu(res, 0, index)
        if not gpu_index.is_trained:
            gpu_index.train(x)
        gpu_index.add(x)
        index, built_on = faiss.index_gpu_to_cpu(gpu_index), "gpu"
    else:
        if not index.is_trained:
            index.train(x)
        index.add(x)
    return NeighbourIndex(index, outcomes, realised, p, built_on)


def exact_search(vectors: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k-NN (squared L2) of each query among `vectors`: the reference for recall."""
    flat = faiss.IndexFlatL2(vectors.shape[1])
    flat.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return flat.search(np.ascontiguousarray(np.atleast_2d(q), dtype=np.float32), k)


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean fraction of the exact k nearest ids that the approximate search returned."""
    hits = [len(set(a[a >= 0]) & set(e[e >= 0])) / max(1, int(np.sum(e >= 0)))
            for a, e in zip(approx_ids, exact_ids, strict=True)]
    return float(np.mean(hits)) if hits else 0.0


def measure_index(vectors: np.ndarray, outcomes: np.ndarray, index_cfg: Any, *,
                  k: int = 10, holdout_every: int = 10, max_queries: int = 500) -> dict:
    """Recall@k and speed-up over exact search on held-out queries.

    Every `holdout_every`-th vector is held out; an index with the same parameters is built
    on the rest, and the held-out vectors are queried one at a time (as the live pipeline
    does) against it and against an exact flat index, single-threaded.
    """
    p = IndexParams.from_any(index_cfg)
    mask = np.zeros(len(vectors), dtype=bool)
    mask[::holdout_every] = True
    queries = np.ascontiguousarray(vectors[mask][:max_queries], dtype=np.float32)
    base = vectors[~mask]
    approx = build_index(base, outcomes[~mask], p)
    flat = faiss.IndexFlatL2(base.shape[1])
    flat.add(np.ascontiguousarray(base, dtype=np.float32))
    faiss.omp_set_num_threads(1)

    def timed(search: Any) -> tuple[np.ndarray, float]:
        found = np.empty((len(queries), k), dtype=np.int64)
        start = time.perf_counter_ns()
        for i in range(len(queries)):
            found[i] = search(queries[i: i + 1])[1][0]
        return found, (time.perf_counter_ns() - start) / max(1, len(queries)) / 1000.0

    for _ in range(2):  # warm-up both paths
        approx.search(queries[:1], k)
        flat.search(queries[:1], k)
    approx_ids, approx_us = timed(lambda q: approx.search(q, k))
    exact_ids, exact_us = timed(lambda q: flat.search(q, k))
    return {"kind": p.kind, "k": k, "n_index": int(len(base)), "n_queries": int(len(queries)),
            "dim": int(base.shape[1]), f"recall_at_{k}": recall_at_k(approx_ids, exact_ids),
            "recall": recall_at_k(approx_ids, exact_ids),
            "approx_us_per_query": round(approx_us, 2), "exact_us_per_query": round(exact_us, 2),
            "speedup": round(exact_us / approx_us, 3) if approx_us > 0 else 0.0}
