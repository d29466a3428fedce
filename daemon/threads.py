"""Thread hygiene: BLAS/OpenMP, torch and FAISS thread counts from `[threads]`, set once at start.

numpy and scipy wheels each ship their own OpenBLAS; on a 2-core box two pools fighting for
the cores made one Tyler iteration 15x slower at p50 and ~30 ms at p99
(../shared/reference/performance-notes.md §1, §6). So every pool is pinned explicitly, and what
was set is returned (and logged by the caller).
"""

from __future__ import annotations

import os
from typing import Any

_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def set_env_defaults(blas: int) -> None:
    """Set the thread environment variables (only where unset) for libraries not yet loaded,
    and OMP_WAIT_POLICY=PASSIVE so idle OpenMP workers do not spin between bars."""
    for var in _ENV_VARS:
        os.environ.setdefault(var, str(blas))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pin_blas(blas: int = 1) -> dict[str, Any]:
    """Set the env defaults and pin the BLAS/OpenMP pools already loaded (no torch/faiss
    import: for a daemon that serves no models)."""
    set_env_defaults(blas)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=blas)
    return {"blas": blas}


def apply_thread_limits(blas: int = 1, torch_threads: int = 1, faiss_threads: int = 1,
                        torch_interop: int = 1) -> dict[str, Any]:
    """Pin BLAS/OpenMP pools (threadpoolctl), torch intra/inter-op threads and FAISS's OpenMP
    threads. Returns what is in force afterwards: {"blas": n, "torch": n, "faiss": n,
    "pools": [{"api", "internal_api", "num_threads"}...]}. Safe to call more than once (torch's
    inter-op count can only be set before first use; a refusal is reported, not raised)."""
    set_env_defaults(blas)
    import faiss
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    threadpool_limits(limits=blas)
    torch.set_num_threads(max(1, torch_threads))
    interop_note = ""
    try:
        torch.set_num_interop_threads(max(1, torch_interop))
    except RuntimeError:
        interop_note = "already fixed (torch was used before)"
    faiss.omp_set_num_threads(max(1, faiss_threads))
    pools = [{"api": p.get("user_api"), "internal_api": p.get("internal_api"),
              "num_threads": p.get("num_threads")} for p in threadpool_info()]
    return {"blas": blas, "torch": torch.get_num_threads(),
            "torch_interop": torch.get_num_interop_threads(), "torch_interop_note": interop_note,
            "faiss": faiss.omp_get_max_threads(), "pools": pools}
