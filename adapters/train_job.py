"""Training off the event loop: a spawned child process that runs updates on request.

A thread would hold the GIL for the whole update and stall inference, so the update runs in a
separate process (multiprocessing "spawn", niced, single-threaded torch). The child is kept
warm between cycles (importing torch and peft costs seconds); on a timeout or a crash it is
killed and the next job starts a fresh one. Jobs and results are plain numpy/dicts.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import threading
from dataclasses import asdict
from typing import Any

import numpy as np

from adapters.anchors import AnchorSuite
from adapters.model import Forecaster, ForecasterSpec


class TrainTimeout(Exception):
    """The update did not finish within its time limit (the child was killed)."""


class TrainFailed(Exception):
    """The child reported an error or died; the message says what happened."""


def pack_job(base: Forecaster, init_state: dict[str, Any] | None, drift: Any,
             anchors: AnchorSuite, settings: dict[str, Any], matched: bool) -> dict[str, Any]:
    """A picklable job: the base's spec and tensors, the start adapter, D_t, M_t, settings."""
    return {
        "spec": asdict(base.spec),
        "base": {k: v.detach().cpu().numpy() for k, v in base.state_dict().items()},
        "init": None if init_state is None else {k: v.cpu().numpy()
                                                 for k, v in init_state.items()},
        "drift": (drift.inputs, drift.targets, list(drift.dates)),
        "anchors": (anchors.inputs, anchors.teacher, anchors.targets, anchors.labels,
                    anchors.dates),
        "settings": settings, "matched": matched,
    }


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Execute one packed job in this process; returns {"chosen": ..., "naive": ...} where each
    is the result's metrics plus its adapter state as numpy arrays."""
    import torch

    from adapters.update import DriftBatch, UpdateSettings, run_matched, run_update

    spec = job["spec"]
    base = Forecaster(ForecasterSpec(n_inputs=int(spec["n_inputs"]),
                                     hidden=tuple(spec["hidden"]),
                                     version=int(spec.get("version", 1))))
    base.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in job["base"].items()})
    base.eval()
    for p in base.parameters():
        p.requires_grad_(False)
    init = None if job["init"] is None else {k: torch.from_numpy(np.array(v))
                                             for k, v in job["init"].items()}
    drift = DriftBatch(*job["drift"])
    anchors = AnchorSuite(*job["anchors"])
    settings = UpdateSettings(**job["settings"])
    if job["matched"]:
        chosen, naive = run_matched(base, init, drift, anchors, settings)
    else:
        chosen, naive = run_update(base, init, drift, anchors, settings), None

    def pack(res: Any) -> dict[str, Any] | None:
        if res is None:
            return None
        return {"metrics": res.metrics(),
                "state": {k: v.numpy() for k, v in res.state.items()}}

    return {"chosen": pack(chosen), "naive": pack(naive)}


def _child(conn: Any) -> None:
    import torch

    with contextlib.suppress(OSError):
        os.nice(10)  # serving keeps priority over training
    torch.set_num_threads(1)
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            conn.send(("ok", run_job(job)))
        except Exception as err:  # report any failure to the parent, keep serving jobs
            conn.send(("error", f"{type(err).__name__}: {err}"))


class TrainProcess:
    """One warm child process; `run(job, timeout_s)` blocks the calling thread (not the GIL)."""

    def __init__(self) -> None:
        self._ctx = mp.get_context("spawn")
        self._proc: Any = None
        self._conn: Any = None
        self._lock = threading.Lock()

    def _ensure(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            return
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_child, args=(child,), daemon=True,
                                       name="anchord-train")
        self._proc.start()
        child.close()
        self._conn = parent

    def start(self) -> None:
        """Start the child now (so the first cycle does not pay the import cost)."""
        with self._lock:
            self._ensure()

    def run(self, job: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send a job and wait for its result; TrainTimeout / TrainFailed on failure."""
        with self._lock:
            self._ensure()
            try:
                self._conn.send(job)
                if not self._conn.poll(timeout_s):
                    self._kill()
                    raise TrainTimeout(f"update did not finish within {timeout_s:g} s")
                status, payload = self._conn.recv()
            except (EOFError, OSError, BrokenPipeError) as err:
                self._kill()
                raise TrainFailed(f"training process died ({err or type(err).__name__})") \
                    from None
        if status != "ok":
            raise TrainFailed(str(payload))
        return payload

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(timeout=5)
        if self._conn is not None:
            self._conn.close()
        self._proc, self._conn = None, None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def close(self) -> None:
        """Stop the child (politely, then by force)."""
        with self._lock:
            if self._proc is not None and self._proc.is_alive():
                try:
                    self._conn.send(None)
                    self._proc.join(timeout=2)
                except (OSError, BrokenPipeError):
                    pass
            self._kill()
