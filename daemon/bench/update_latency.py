"""Inference latency while an adapter update trains, for `anchord bench update`.

The issue's target: inference p99 while an update trains is at most 1.3x the idle p99,
measured in one run. What is measured is the whole per-bar serving path of the real
`daemon.pipeline.pipeline.Pipeline`, driven exactly as `anchord bench pipeline` drives it:
`decide(bar)`, then `check(intent, bar)` when the decision moves the position, then
`after_bar()` (the off-path work: live Tyler update, recall checks, calibration monitor).

- `end_to_end` (the figure the ratio uses): the pipeline's own LatencyRecorder end-to-end, bar
  in → risk verdict (→ decision when there is no order), the daemon's latency figure;
- `per_bar`: wall time of decide + check + after_bar per bar (perf_counter_ns), for reference.

Three phases in one run, on one pipeline fed one continuing stream of bars: idle before, while
update cycles train in the child process (`TrainProcess`, cycles back to back until the phase
ends, so that training overlaps the whole measurement), idle after; ratio = training p99 /
mean(idle before p99, idle after p99). Serving is single-threaded (`apply_thread_limits(1, 1,
1)`), as in the daemon; the previous limits are restored afterwards. The bars cycle (each repeat
shifted later in time) to give enough samples. Whether training really covered the busy phase
is reported: the fraction of the phase spent inside a cycle and the child's CPU seconds.

`forecaster_only` keeps the earlier, narrower figure (the serving forecaster's forward pass
alone, same three phases) so the two can be compared.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from adapters.train_job import TrainProcess, pack_job
from adapters.update import UpdateSettings


@dataclass
class Serving:
    """What to serve: a factory of fresh pipelines and the bars to feed them."""

    make_pipeline: Callable[[], Any]
    bars: list[Any]
    description: str


def repeat_bars(bars: list[Any]) -> Iterator[Any]:
    """The bars forever: each repeat shifted later in time by the span of the series + 1 day."""
    from daemon.bars.model import Bar

    shift = bars[-1].ts - bars[0].ts + timedelta(days=1)
    rep = 0
    while True:
        for b in bars:
            yield b if rep == 0 else Bar(b.contract, b.ts + rep * shift, b.open, b.high,
                                         b.low, b.close, b.volume)
        rep += 1


def quick_serving(source: str, train_end: str, index_size: int = 100_000,
                  cache: Path | None = None) -> Serving:
    """A quick artifact set (daemon.bench.quickset) built from the bars of `source` up to
    `train_end` (index topped up to `index_size`), serving the bars after it; the pipeline is
    set up as `anchord bench pipeline` sets it up."""
    from daemon.bench.pipeline import bench_setup
    from daemon.bench.quickset import quick_artifact_set
    from daemon.pipeline.pipeline import Pipeline, load_bars

    bars = load_bars(source, "CON.F.US.EP.Z26")
    base = [b for b in bars if b.ts.date().isoformat() <= train_end][-5031:]
    serve = [b for b in bars if b.ts.date().isoformat() > train_end] or bars
    cache = cache or Path.home() / ".cache" / "anchord" / "bench"
    arts = quick_artifact_set(base, window=8, k=20, kind="hnsw", index_size=index_size,
                              cache_dir=cache)
    params, limits = bench_setup(8)
    desc = (f"quick artifact set from {source} up to {train_end} (index {len(arts.index)}, "
            f"hnsw), {len(serve)} bars after it, cycled")
    return Serving(lambda: Pipeline(arts, params, limits), serve, desc)


class _Driver:
    """Feeds bars to one pipeline the way the Trader does and times each bar."""

    def __init__(self, pipe: Any, bars: list[Any]) -> None:
        self.pipe, self.bars, self.position = pipe, repeat_bars(bars), 0

    def step(self) -> int:
        """One bar: decide, check (when the position changes), after_bar; returns its ns."""
        from daemon.bench.pipeline import step_bar

        bar = next(self.bars)
        t0 = time.perf_counter_ns()
        self.position = step_bar(self.pipe, bar, self.position)
        return time.perf_counter_ns() - t0

    def phase(self, n: int) -> dict[str, Any]:
        """`n` bars; p50/p99 (µs) of the recorder's end-to-end and of the whole bar."""
        rec = self.pipe.recorder
        # A no-order bar's end-to-end is recorded at the next decide: this opening bar (run in
        # the phase's conditions) closes the previous phase's last one before the reset.
        self.step()
        rec.reset()
        per_bar = np.array([self.step() for _ in range(n)], dtype=np.float64) / 1000
        e2e = rec.summary("end_to_end")
        return {"p50_us": float(e2e["p50_us"]), "p99_us": float(e2e["p99_us"]),
                "count": int(e2e["count"]),
                "per_bar": {"p50_us": float(np.percentile(per_bar, 50)),
                            "p99_us": float(np.percentile(per_bar, 99))}}


def _cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of process `pid` (from /proc), None if unknown."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Training:
    """Update cycles run back to back in the child process (one thread waits on it) until
    `stop()`; records when each cycle was in flight, to show the overlap with a window."""

    def __init__(self, trainer: TrainProcess, job: dict[str, Any], timeout_s: float = 300) -> None:
        self.trainer, self.job, self.timeout_s = trainer, job, timeout_s
        self.spans: list[tuple[int, int]] = []
        self._current: int | None = None  # start of the cycle in flight (perf_counter_ns)
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-train", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._current = t0 = time.perf_counter_ns()
            self._started.set()
            try:
                self.trainer.run(self.job, self.timeout_s)
            except Exception as err:  # noqa: BLE001 - reported, and the loop stops
                self.errors.append(f"{type(err).__name__}: {err}")
                self._stop.set()
            self.spans.append((t0, time.perf_counter_ns()))
            self._current = None

    def start(self, settle_s: float = 0.3) -> None:
        """Start the first cycle and give the child `settle_s` to get going."""
        self._thread.start()
        self._started.wait()
        time.sleep(settle_s)

    def running(self) -> bool:
        """True while a cycle is in flight (the waiting thread is alive and not stopped)."""
        return self._thread.is_alive() and not self._stop.is_set()

    def stop(self) -> None:
        """Let the cycle in flight finish and run no more."""
        self._stop.set()
        self._thread.join()

    def coverage(self, t0: int, t1: int) -> float:
        """Fraction of [t0, t1] (perf_counter_ns) spent inside a cycle."""
        current = self._current
        spans = self.spans + ([(current, t1)] if current is not None else [])
        covered = sum(max(0, min(b, t1) - max(a, t0)) for a, b in spans)
        return min(1.0, covered / max(1, t1 - t0))


def _busy(trainer: TrainProcess, job: dict[str, Any],
          measure: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
    """Run `measure()` while cycles train back to back; returns (its result, overlap facts)."""
    training = Training(trainer, job)
    training.start()
    pid = trainer.pid
    cpu0, t0 = _cpu_s(pid), time.perf_counter_ns()
    alive_at_start = training.running()
    result = measure()
    t1 = time.perf_counter_ns()
    cpu1 = _cpu_s(pid)
    alive_at_end = training.running() and cpu1 is not None and trainer.pid == pid
    coverage = training.coverage(t0, t1)
    training.stop()
    wall = (t1 - t0) / 1e9
    cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    return result, {
        "training_was_running_throughout": bool(alive_at_start and alive_at_end
                                                and coverage >= 0.99 and not training.errors),
        "busy_window_s": wall, "training_coverage": coverage,
        "cycles_in_window": sum(1 for a, b in training.spans if b > t0 and a < t1),
        "child_pid": pid, "child_cpu_s": cpu,
        "child_cpu_fraction": None if cpu is None or wall <= 0 else cpu / wall,
        "training_errors": training.errors}


@contextlib.contextmanager
def single_threaded() -> Iterator[dict[str, Any]]:
    """`apply_thread_limits(1, 1, 1)` for the block (the daemon's serving set-up); the BLAS,
    torch intra-op and FAISS counts in force before are restored afterwards."""
    import faiss
    import torch
    from threadpoolctl import threadpool_limits

    from daemon.threads import apply_thread_limits

    before = threadpool_limits(limits=None)
    torch_prev, faiss_prev = torch.get_num_threads(), faiss.omp_get_max_threads()
    try:
        yield apply_thread_limits(1, 1, 1)
    finally:
        before.restore_original_limits()
        torch.set_num_threads(torch_prev)
        faiss.omp_set_num_threads(faiss_prev)


def _ratio(idle: dict[str, Any], training: dict[str, Any], idle_after: dict[str, Any],
           key: str = "p99_us") -> float:
    ref = (idle[key] + idle_after[key]) / 2
    return training[key] / ref if ref else float("nan")


def training_job(bd: Any, settings: UpdateSettings) -> dict[str, Any]:
    """The update the busy phases train, cycle after cycle: the second drift window."""
    return pack_job(bd.base, None, bd.windows[min(1, len(bd.windows) - 1)], bd.anchors,
                    settings.to_dict(), True)


def pipeline_latency(bd: Any, settings: UpdateSettings, trainer: TrainProcess, n: int,
                     serving: Serving, warmup: int = 300) -> dict[str, Any]:
    """Whole per-bar serving path (see the module docstring): idle / training / idle."""
    job = training_job(bd, settings)
    with single_threaded() as threads:
        pipe = serving.make_pipeline()
        drive = _Driver(pipe, serving.bars)
        for _ in range(warmup):
            drive.step()
        idle = drive.phase(n)
        training, overlap = _busy(trainer, job, lambda: drive.phase(n))
        idle_after = drive.phase(n)
    ref = (idle["p99_us"] + idle_after["p99_us"]) / 2
    return {
        "path": "whole per-bar serving path: Pipeline.decide + check (when the position moves) "
                "+ after_bar, one thread; p50/p99 of the pipeline's end-to-end (bar in → "
                "verdict); per_bar = decide + check + after_bar wall time",
        "serving": serving.description, "forecaster_path": pipe.forecaster.kind,
        "samples": n, "warmup_bars": warmup,
        "threads": {k: threads.get(k) for k in ("blas", "torch", "faiss")},
        "idle_p50_us": (idle["p50_us"] + idle_after["p50_us"]) / 2, "idle_p99_us": ref,
        "idle_before": idle, "idle_after": idle_after,
        "idle_before_p99_us": idle["p99_us"], "idle_after_p99_us": idle_after["p99_us"],
        "training_p50_us": training["p50_us"], "training_p99_us": training["p99_us"],
        "training": training, "ratio": _ratio(idle, training, idle_after),
        "ratio_p50": _ratio(idle, training, idle_after, "p50_us"),
        "per_bar_ratio": _ratio(idle["per_bar"], training["per_bar"], idle_after["per_bar"]),
        **overlap}


def forecaster_only(bd: Any, settings: UpdateSettings, trainer: TrainProcess,
                    n: int) -> dict[str, Any]:
    """The narrower earlier figure: the serving forecaster's forward pass alone (numpy fast
    path), idle / training / idle, one thread."""
    from adapters.lora import build_serving_model
    from daemon.pipeline.fastpath import ServingForecaster

    serving = ServingForecaster(build_serving_model(bd.base, None, settings.rank,
                                                    settings.alpha), "bench")
    x = bd.windows[0].inputs

    def phase() -> dict[str, float]:
        lat = np.empty(n)
        for i in range(n):
            row = x[i % len(x)]
            t0 = time.perf_counter_ns()
            serving.predict(row)
            lat[i] = time.perf_counter_ns() - t0
        return {"p50_us": float(np.percentile(lat, 50)) / 1000,
                "p99_us": float(np.percentile(lat, 99)) / 1000}

    job = training_job(bd, settings)
    with single_threaded():
        phase()
        idle = phase()
        training, overlap = _busy(trainer, job, phase)
        idle_after = phase()
    return {"path": f"ServingForecaster.predict ({serving.kind} path) alone, one thread",
            "idle_p99_us": (idle["p99_us"] + idle_after["p99_us"]) / 2,
            "training_p99_us": training["p99_us"], "idle_before": idle,
            "training": training, "idle_after": idle_after,
            "ratio": _ratio(idle, training, idle_after),
            "training_was_running_throughout": overlap["training_was_running_throughout"]}
