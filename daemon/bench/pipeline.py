"""`anchord bench pipeline`: per-bar latency of the serving pipeline on real bars, one thread.

An artifact set is built from the bars with the artifact builder's functions (real feature
windows; the index is topped up to `--index-size` with vectors drawn from a Gaussian fitted to
the real whitened windows). The HNSW index is cached on disk keyed by its contents and
parameters (`--cache`, default ~/.cache/anchord/bench), since a single-threaded build of 1e6
vectors takes minutes. Then, in the same run:

- the fast path: `Pipeline.decide` + `check` per bar, every stage in the LatencyRecorder;
- ANN recall@10 and speed-up of the index against exact (flat) search, one query at a time;
- the naive path, interleaved bar by bar with the fast one for `--naive-bars` bars: the same
  stages called the obvious way (a fresh Tyler solve over the recent window, CatBoost
  `predict_proba` on a one-row pandas frame, the peft-wrapped LoRA module, neighbour stats via
  the reference function);
- RSS at the start and end of the timed bars (no per-bar growth), and the timer's own cost.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from daemon.errors import AnchordError


class BenchError(AnchordError):
    """The benchmark cannot run with the given arguments."""


def rss_mb() -> float:
    """Resident set size of this process in MiB (from /proc)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _bars(source: str, n_needed: int) -> list[Any]:
    import itertools

    from daemon.bench.update_latency import repeat_bars
    from daemon.pipeline.pipeline import load_bars

    bars = load_bars(source, "CON.F.US.EP.Z26")
    if len(bars) < 300:
        raise BenchError(f"{source}: only {len(bars)} valid bars (need >= 300)")
    # the series again, later in time, until there are enough
    return list(itertools.islice(repeat_bars(bars), max(n_needed, len(bars))))


def bench_setup(window: int) -> tuple[Any, Any]:
    """(PipelineParams, RiskLimits) of the benchmarks' pipeline: k = 20, live Tyler update
    every bar, no recall sampling, limits loose enough that the rule trades."""
    from daemon.pipeline.pipeline import PipelineParams
    from daemon.risk import RiskLimits

    limits = RiskLimits(max_order_size=2, max_position=4, max_daily_loss=0.0,
                        max_price_deviation=0.25, max_orders_per_minute=0)
    params = PipelineParams(k=20, window=window, recall_fraction=0.0, replay=False,
                            tyler_every=1)
    return params, limits


def step_bar(pipe: Any, bar: Any, position: int) -> int:
    """One bar as the Trader runs it: decide, check the intent when the decision moves the
    position, then the off-path work; returns the position afterwards."""
    from daemon.intent import intent_for_target

    d = pipe.decide(bar, position)
    if d is not None:
        intent = intent_for_target(bar.contract, bar.ts, position, d.target_position,
                                   bar.close)
        if intent is not None and pipe.check(intent, bar).accepted:
            position = d.target_position
    pipe.after_bar()
    return position


def timer_overhead_ns(n: int = 100_000) -> float:
    """Cost of one `with recorder.stage(...)` block (two perf_counter_ns + an append)."""
    from daemon.pipeline.latency import LatencyRecorder

    rec = LatencyRecorder()
    st = rec.stage("x")
    t0 = time.perf_counter_ns()
    for _ in range(n):
        with st:
            pass
    with_timer = time.perf_counter_ns() - t0
    t0 = time.perf_counter_ns()
    for _ in range(n):
        pass
    empty = time.perf_counter_ns() - t0
    rec.reset()
    return (with_timer - empty) / n


def measure_recall(index: Any, queries: np.ndarray, k: int = 10) -> dict[str, float]:
    """Recall@k and speed-up of `index` against exact flat search, queries one at a time.

    All ANN queries run first, then all exact ones: interleaving them would let each 256 MB
    flat scan evict the HNSW graph from the caches and time the ANN search cold."""
    import faiss

    inner = index.index
    flat = faiss.IndexFlatL2(inner.d)
    flat.add(inner.reconstruct_n(0, inner.ntotal))
    qs = [np.ascontiguousarray(q.reshape(1, -1), dtype=np.float32) for q in queries]

    def timed(search: Any) -> tuple[list[np.ndarray], list[int]]:
        search(qs[0])  # warm-up
        found, took = [], []
        for q in qs:
            t0 = time.perf_counter_ns()
            _, ids = search(q)
            took.append(time.perf_counter_ns() - t0)
            found.append(ids[0])
        return found, took

    ann_ids, ann_ns = timed(lambda q: index.search(q, k))
    exact_ids, exact_ns = timed(lambda q: flat.search(q, k))
    hits = [len(set(a.tolist()) & set(e.tolist())) / k
            for a, e in zip(ann_ids, exact_ids, strict=True)]
    return {"recall": float(np.mean(hits)), "ann_us": float(np.median(ann_ns)) / 1000,
            "exact_us": float(np.median(exact_ns)) / 1000,
            "speedup": float(np.median(exact_ns) / np.median(ann_ns))}


class NaivePath:
    """The same stages called the obvious way, one bar per `step` (so the benchmark can
    interleave it with the fast path: both then see the same machine load). Per bar: a fresh
    Tyler solve over the recent feature window (timed; whitening then uses the artifact's matrix,
    as the index was built with it, so both paths compute the same decision), the
    peft-wrapped LoRA module on a new tensor, CatBoost `predict_proba` on a one-row pandas frame,
    the reference neighbour stats and calibrator."""

    def __init__(self, arts: Any, params: Any, limits: Any, tyler_window: int = 500) -> None:
        import copy

        from peft import LoraConfig, get_peft_model

        from adapters.model import LORA_TARGET_MODULES
        from daemon.features import FEATURE_NAMES, FeatureState
        from daemon.pipeline.decision import EwmaVol
        from daemon.pipeline.latency import LatencyRecorder
        from daemon.pipeline.neighbours import scorer_feature_names
        from daemon.risk import RiskSnapshot

        self.arts, self.params, self.limits = arts, params, limits
        self.tyler_window = tyler_window
        self.model = get_peft_model(copy.deepcopy(arts.forecaster),
                                    LoraConfig(r=8, target_modules=list(LORA_TARGET_MODULES)))
        self.model.eval()
        self.columns = scorer_feature_names(tuple(FEATURE_NAMES))
        self.rec = LatencyRecorder()
        self.features, self.vol = FeatureState(), EwmaVol(params.vol_halflife)
        self.history: list[np.ndarray] = []
        self.window: list[np.ndarray] = []
        self.snapshot = RiskSnapshot(False, "", (), timedelta(0), timedelta(0), ())
        self.position, self.prev = 0, 0.0

    def step(self, bar: Any) -> None:
        import pandas as pd
        import torch

        from daemon.intent import intent_for_target
        from daemon.pipeline.decision import target_position
        from daemon.pipeline.neighbours import forecaster_input, neighbour_stats, scorer_row
        from daemon.pipeline.retrieval import index_vector
        from daemon.pipeline.tyler import tyler_batch, whiten
        from daemon.risk import MarketView, gate

        arts, params = self.arts, self.params
        t0 = self.rec.start()
        sigma = self.vol.update(bar.close)
        feats = self.features.update(bar)
        prev, self.prev = self.prev, bar.close
        if feats is None:
            return
        self.history.append(feats)
        del self.history[:-self.tyler_window]
        recent = np.array(self.history)
        if len(recent) > 2 * len(feats):
            tyler_batch(recent, shrinkage=arts.tyler.shrinkage)  # the fresh solve (timed)
        self.window.append(whiten(feats, arts.tyler))
        del self.window[:-params.window]
        if len(self.window) < params.window:
            return
        dist, ids = arts.index.search(index_vector(np.stack(self.window)), params.k)
        nstats = neighbour_stats(dist[0], arts.index.neighbour_outcomes(ids[0]))
        x = torch.tensor(forecaster_input(self.window[-1], nstats)).unsqueeze(0)
        with torch.no_grad():
            forecast = float(self.model(x)[0])
        frame = pd.DataFrame([scorer_row(feats, nstats, forecast)], columns=self.columns)
        p_raw = float(arts.scorer.predict_proba(frame)[0, 1])
        p_up = float(arts.calibrator.predict(np.array([p_raw]))[0])
        target, _, _ = target_position(p_up, forecast, sigma, bar.close, params.decision,
                                       self.position)
        intent = intent_for_target(bar.contract, bar.ts, self.position, target, bar.close)
        if intent is not None:
            v = gate(intent, self.snapshot, self.limits, MarketView(bar.ts, bar.ts, prev, 0, 0))
            if v.accepted:
                self.position = target
        self.rec.end_to_end(t0)


def run_bench(*, index_size: int, dim: int, n_bars: int, data: str, naive_bars: int,
              ef_search: int, hnsw_m: int, cache: Path | None, kind: str = "hnsw",
              progress: Any = None, base_bars: int = 5031,
              scorer_iterations: int = 100) -> dict[str, Any]:
    """Run the benchmark and return its figures (see the module docstring)."""
    from daemon.threads import apply_thread_limits

    threads = apply_thread_limits(1, 1, 1)
    from daemon.bench.quickset import quick_artifact_set
    from daemon.features import FEATURE_NAMES
    from daemon.pipeline.latency import LatencyRecorder
    from daemon.pipeline.pipeline import Pipeline

    say = progress or (lambda *_: None)
    d = len(FEATURE_NAMES)
    if dim % d:
        raise BenchError(f"--dim must be a multiple of {d} (features per bar), got {dim}")
    window = dim // d
    all_bars = _bars(data, n_bars)
    base = all_bars[: min(len(all_bars), base_bars)]
    t0 = time.perf_counter()
    say(f"building the artifact set (index {index_size} x {dim}, {kind}) ...")
    arts = quick_artifact_set(base, window=window, k=20, kind=kind, index_size=index_size,
                              ef_search=ef_search, hnsw_m=hnsw_m, cache_dir=cache,
                              scorer_iterations=scorer_iterations)
    build_s = time.perf_counter() - t0
    say(f"artifact set ready in {build_s:.1f} s")
    params, limits = bench_setup(window)
    rec = LatencyRecorder()
    pipe = Pipeline(arts, params, limits, recorder=rec)
    # The timed run: decide + check per bar, off-path work after each bar; the naive path is
    # stepped on the same bars, interleaved, for the first `naive_bars` bars.
    naive = NaivePath(arts, params, limits)
    timed = all_bars[:n_bars]
    position = 0
    warm = 300
    rss = []
    for i, bar in enumerate(timed):
        if i == warm:
            rec.reset()
            naive.rec.reset()
            rss.append((i, rss_mb()))
        position = step_bar(pipe, bar, position)
        if i < warm + naive_bars:
            naive.step(bar)
        if i > warm and i % 5000 == 0:
            rss.append((i, rss_mb()))
    rss.append((len(timed), rss_mb()))
    snap = rec.snapshot()
    say("fast path done; measuring recall ...")
    # Recall@10 and speed-up on real query windows (the last ones the pipeline saw).
    from daemon.bench.quickset import real_windows

    rw = real_windows(base, window)
    vecs = rw["vectors"][np.all(np.isfinite(rw["vectors"]), axis=1)]
    rng = np.random.default_rng(0)
    q_idx = rng.choice(len(vecs), size=min(200, len(vecs)), replace=False)
    queries = vecs[q_idx] + rng.normal(0, 0.05, (len(q_idx), vecs.shape[1])).astype(np.float32)
    recall = measure_recall(arts.index, queries)
    naive_e2e = naive.rec.summary("end_to_end")
    e2e = snap["end_to_end"]

    def pick(s: dict[str, float]) -> dict[str, float]:
        return {k: s.get(k) for k in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us",
                                      "count")}

    growth = rss[-1][1] - rss[0][1]
    return {
        "index_size": len(arts.index), "dim": dim, "index_kind": kind, "hnsw_m": hnsw_m,
        "ef_search": ef_search, "bars_timed": e2e.get("count", 0), "data": data,
        "threads": {k: threads[k] for k in ("blas", "torch", "faiss")},
        "build_s": round(build_s, 1),
        "end_to_end": pick(e2e),
        "stages": {n: pick(s) for n, s in snap["stages"].items()},
        "ann_recall_at_10": round(recall["recall"], 4),
        "ann_speedup": round(recall["speedup"], 1),
        "ann_us": round(recall["ann_us"], 1), "exact_us": round(recall["exact_us"], 1),
        "naive_end_to_end": pick(naive_e2e),
        "naive_p99_ratio": round(naive_e2e["p99_us"] / e2e["p99_us"], 2),
        "naive_p50_ratio": round(naive_e2e["p50_us"] / e2e["p50_us"], 2),
        "fast_paths": {"forecaster": pipe.forecaster.kind, "scorer": pipe.scorer.kind,
                       "neighbour_stats": "python", "calibration": pipe._cal.kind},
        "timer_overhead_ns_per_stage": round(timer_overhead_ns(), 1),
        "rss_mb": {"start": round(rss[0][1], 1), "end": round(rss[-1][1], 1),
                   "samples": [[i, round(m, 1)] for i, m in rss],
                   "growth_mb": round(growth, 1)},
        "note": "shared 2-core machine: timings are noisy",
        "cache": str(cache) if cache else None,
        "pid": os.getpid(),
    }


def format_text(r: dict[str, Any]) -> str:
    """The figures as a small table."""
    lines = [f"pipeline bench: index {r['index_size']} x {r['dim']} ({r['index_kind']}, "
             f"M={r['hnsw_m']}, ef={r['ef_search']}), {r['bars_timed']} bars, threads "
             f"{r['threads']}  [{r['note']}]",
             f"{'stage':<12}{'p50 µs':>10}{'p99 µs':>10}{'p99.9 µs':>10}{'max µs':>10}"]
    rows = {**r["stages"], "END-TO-END": r["end_to_end"], "naive e2e": r["naive_end_to_end"]}
    for name, s in rows.items():
        lines.append(f"{name:<12}{s['p50_us']:>10}{s['p99_us']:>10}{s['p999_us']:>10}"
                     f"{s['max_us']:>10}")
    lines += [
        f"ANN recall@10 {r['ann_recall_at_10']}  speed-up over exact {r['ann_speedup']}x "
        f"({r['ann_us']} µs vs {r['exact_us']} µs per query)",
        f"naive/fast p99 ratio {r['naive_p99_ratio']}x (p50 {r['naive_p50_ratio']}x)",
        f"fast paths {r['fast_paths']}; timer cost {r['timer_overhead_ns_per_stage']} ns/stage",
        f"RSS {r['rss_mb']['start']} MiB → {r['rss_mb']['end']} MiB "
        f"(growth {r['rss_mb']['growth_mb']} MiB over the timed bars); build {r['build_s']} s",
    ]
    return "\n".join(lines)


def add_parser(bsub: Any) -> None:
    """`anchord bench pipeline`: per-bar latency, ANN recall and the naive-path ratio."""
    p = bsub.add_parser(
        "pipeline", help="per-bar pipeline latency, ANN recall, naive-path ratio (one thread)")
    p.add_argument("--index-size", type=int, default=100_000, help="vectors in the index")
    p.add_argument("--dim", type=int, default=64, help="ANN vector dimension (8 x window)")
    p.add_argument("--bars", type=int, default=5000, help="bars to time (the sample repeats)")
    p.add_argument("--data", default="sample:sp500", help="bar source (sample or file)")
    p.add_argument("--naive-bars", type=int, default=600, help="bars for the naive path")
    p.add_argument("--ef-search", type=int, default=64, help="HNSW efSearch")
    p.add_argument("--hnsw-m", type=int, default=32, help="HNSW M")
    p.add_argument("--kind", default="hnsw", choices=("hnsw", "ivf", "flat"))
    p.add_argument("--cache", default=None,
                   help="index cache folder (default ~/.cache/anchord/bench; 'none' = off)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cli)


def _cli(args: Any) -> int:
    import sys

    import orjson

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    cache = (None if args.cache == "none" else Path(args.cache).expanduser() if args.cache
             else Path.home() / ".cache" / "anchord" / "bench")
    progress = None if args.json else (lambda msg: print(msg, file=sys.stderr))
    result = run_bench(index_size=args.index_size, dim=args.dim, n_bars=args.bars,
                       data=args.data, naive_bars=args.naive_bars, ef_search=args.ef_search,
                       hnsw_m=args.hnsw_m, cache=cache, kind=args.kind, progress=progress)
    print(orjson.dumps(result).decode() if args.json else format_text(result))
    return 0
