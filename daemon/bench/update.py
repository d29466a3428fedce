"""`anchord bench update`: projected vs naive continual LoRA updates on real drift windows.

Per window (consecutive blocks of `window_bars` bars after the training period; each update
starts from the deployed base checkpoint whose outputs are the teacher cache):
- naive: `steps` SGD steps on the drift loss → drift gain G (deployed drift MSE − updated, on
  the window) and stress regression (anchor-output MSE vs the teacher cache, units y_scale²);
- projected (the configured mode): trained until its drift gain reaches G (or `max_steps`);
- out of sample: drift MSE on the next window, max drawdown of a sign(forecast) strategy on
  the next window's daily returns, worst stress-day return of that strategy on the anchor days.
Totals: stress_regression_reduction = 1 − Σ projected / Σ naive; drift_gain_retained =
Σ projected gain / Σ naive gain. `frontier` sweeps the projection's strength (anchor weight,
A-GEM margin, OGD directions). Then the system figures: `cycle_s_p50` (a full cycle through
the training child process at the default window), `swap_pause_us` (the serving reference
swap), `p99_ratio_training_vs_idle`: p99 of the whole per-bar serving path (the real Pipeline:
decide + check + after_bar, one thread, end-to-end as the pipeline records it) while update
cycles train in the child process, over the idle p99 before and after, in one run (see
daemon/bench/update_latency.py; `latency.forecaster_only` keeps the forward pass alone).
Timings are on a shared 2-core machine: noisy, reported as measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import torch

from adapters.lora import build_serving_model
from adapters.train_job import TrainProcess, pack_job
from adapters.update import UpdateSettings, run_update
from daemon.bench.update_data import BenchData, load_artifact_bench_data, load_bench_data
from daemon.bench.update_latency import (
    Serving,
    forecaster_only,
    pipeline_latency,
    quick_serving,
)


def _predict(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _strategy(model: torch.nn.Module, bd: BenchData, lo: int, hi: int) -> dict[str, float]:
    """Max drawdown of sign(forecast) on rows lo..hi (next-day log returns)."""
    closes = bd.closes
    pos = np.sign(_predict(model, bd.inputs[lo:hi]))
    nxt = np.log(closes[lo + 1:hi + 1] / closes[lo:hi])
    pnl = pos[:len(nxt)] * nxt
    eq = np.cumsum(pnl)
    mdd = float(np.min(eq - np.maximum.accumulate(eq))) if len(eq) else 0.0
    return {"mdd": mdd}


def _worst_stress_day(model: torch.nn.Module, bd: BenchData) -> float:
    pos = np.sign(_predict(model, bd.anchors.inputs))
    return float(np.min(pos * bd.anchors.targets))


def _window_rows(bd: BenchData, k: int) -> tuple[int, int]:
    start = bd.dates.index(bd.windows[k].dates[0])
    return start, start + len(bd.windows[k])


def compare(bd: BenchData, settings: UpdateSettings, n_windows: int,
            detail: bool = True) -> dict[str, Any]:
    """Naive vs `settings` (at matched drift gain) over the first n_windows windows."""
    naive_s = UpdateSettings(**{**settings.to_dict(), "projection": "naive"})
    rows, sum_gain = [], {"naive": 0.0, "projected": 0.0}
    sum_stress = {"naive": 0.0, "projected": 0.0}
    s2 = float(bd.base.y_scale) ** 2
    for k in range(n_windows):
        win = bd.windows[k]
        naive = run_update(bd.base, None, win, bd.anchors, naive_s)
        proj = run_update(bd.base, None, win, bd.anchors, settings,
                          target_gain=max(naive.drift_gain, 0.0), check=False)
        row: dict[str, Any] = {
            "window": k, "start": win.dates[0], "end": win.dates[-1],
            "drift_gain": {"naive": naive.drift_gain / s2, "projected": proj.drift_gain / s2},
            "stress_regression": {"naive": naive.stress_mse, "projected": proj.stress_mse},
            "projected_steps": proj.steps, "reached_matched_gain": proj.reached_target,
        }
        for name, res in (("naive", naive), ("projected", proj)):
            sum_gain[name] += res.drift_gain / s2
            sum_stress[name] += res.stress_mse
        if detail:
            models = {"deployed": bd.base,
                      "naive": build_serving_model(bd.base, naive.state, settings.rank,
                                                   settings.alpha),
                      "projected": build_serving_model(bd.base, proj.state, settings.rank,
                                                       settings.alpha)}
            row["stress_mse_by_label"] = {"naive": naive.stress_mse_by_label,
                                          "projected": proj.stress_mse_by_label}
            row["projection_stats"] = proj.projection_stats
            score = getattr(bd, "score_slice", None)
            if k + 1 < len(bd.windows):
                nxt = bd.windows[k + 1]
                lo, hi = _window_rows(bd, k + 1)
                row["next_window_drift_mse"] = {
                    n: float(np.mean((_predict(m, nxt.inputs) - nxt.targets) ** 2)) / s2
                    for n, m in models.items()}
                if score is not None:  # the pipeline's decision rule and risk gate
                    row["next_window_mdd"] = {
                        n: float(score(m, nxt.dates[0], nxt.dates[-1])["mdd"])
                        for n, m in models.items()}
                else:
                    row["next_window_mdd"] = {n: _strategy(m, bd, lo, hi)["mdd"]
                                              for n, m in models.items()}
            if score is not None and getattr(bd, "stress_slices", None):
                row["worst_stress_day_return"] = {
                    n: min(float(score(m, a, b)["worst_day_return"])
                           for a, b in bd.stress_slices.values())
                    for n, m in models.items()}
            else:
                row["worst_stress_day_return"] = {n: _worst_stress_day(m, bd)
                                                  for n, m in models.items()}
        rows.append(row)
    reduction = 1 - sum_stress["projected"] / sum_stress["naive"] if sum_stress["naive"] else None
    retained = sum_gain["projected"] / sum_gain["naive"] if sum_gain["naive"] else None
    return {"windows": rows, "stress_regression_reduction": reduction,
            "drift_gain_retained": retained,
            "sum_stress_regression": sum_stress, "sum_drift_gain": sum_gain}


def frontier(bd: BenchData, base: UpdateSettings, n_windows: int,
             quick: bool) -> list[dict[str, Any]]:
    """The same windows swept over the projection's strength."""
    points: list[dict[str, Any]] = []
    # anchor_weight 0 = hard projection alone; very large weights are the over-constrained end
    # (the projected update cannot reach the naive drift gain within max_steps).
    sweeps: list[tuple[str, dict[str, Any]]] = [
        ("anchor_weight", {"projection": "agem", "anchor_weight": w})
        for w in ((0.0, 10.0, 1000.0, 10000.0) if quick
                  else (0.0, 1.0, 10.0, 100.0, 1000.0, 3000.0, 10000.0))]
    sweeps += [("margin", {"projection": "agem", "margin": m})
               for m in ((0.0, 0.99) if quick else (0.0, 0.5, 0.99))]
    if not quick:
        sweeps += [("ogd_directions", {"projection": "ogd", "ogd_directions": r})
                   for r in (0, 16, 256)]
        # The same comparison at a 4x larger naive drift gain (more naive steps).
        sweeps += [("steps", {"projection": base.projection, "steps": 400})]
    for knob, over in sweeps:
        s = UpdateSettings(**{**base.to_dict(), **over})
        res = compare(bd, s, n_windows, detail=False)
        steps = [w["projected_steps"] for w in res["windows"]]
        points.append({"knob": knob, **over,
                       "stress_regression_reduction": res["stress_regression_reduction"],
                       "drift_gain_retained": res["drift_gain_retained"],
                       "mean_projected_steps": float(np.mean(steps)),
                       "windows_at_matched_gain": sum(bool(w["reached_matched_gain"])
                                                      for w in res["windows"]),
                       "is_default": all(getattr(base, k) == v for k, v in over.items())})
    return points


def cycle_times(bd: BenchData, settings: UpdateSettings, n: int) -> tuple[list[float], Any]:
    """Wall time of full cycles through the training child (naive + matched projected +
    merge), at the default window; returns (seconds list, the warm TrainProcess)."""
    trainer = TrainProcess()
    trainer.start()
    trainer.run(pack_job(bd.base, None, bd.windows[0], bd.anchors,
                         {**settings.to_dict(), "steps": 1, "max_steps": 1}, False), 300)
    times = []
    for k in range(n):
        t0 = time.perf_counter()
        out = trainer.run(pack_job(bd.base, None, bd.windows[k], bd.anchors,
                                   settings.to_dict(), True), 300)
        state = {key: torch.from_numpy(np.array(v)) for key, v in out["chosen"]["state"].items()}
        build_serving_model(bd.base, state, settings.rank, settings.alpha)
        times.append(time.perf_counter() - t0)
    return times, trainer


def full_cycles(bd: BenchData, settings: UpdateSettings, n: int) -> list[dict[str, Any]]:
    """Whole worker cycles (child-process training, gate on the pipeline's score_slice over the
    stress slices and the window's hold-out, registry, audit) with the default `[promotion]`
    policy; only when the data come from an artifact set (a real pipeline)."""
    import tempfile

    import anyio

    from adapters.audit import AuditLog
    from adapters.registry import AdapterRegistry
    from adapters.worker import UpdateWorker
    from daemon.config import PromotionSection

    out: list[dict[str, Any]] = []
    last: dict[str, Any] = {}

    async def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            cfg = {"adapters": {**settings.to_dict(), "subprocess": True},
                   "promotion": dataclasses.asdict(PromotionSection())}
            worker = UpdateWorker(cfg, bd.base, bd.anchors, AdapterRegistry(root / "a", bd.base),
                                  AuditLog(root / "audit"), bd.score_slice, lambda m: None,
                                  slices=bd.stress_slices or {},
                                  events=lambda kind, payload: last.update(
                                      payload if kind == "cycle" else {}))
            assert worker.trainer is not None
            await anyio.to_thread.run_sync(worker.trainer.start)
            try:
                for k in range(n):
                    t0 = time.perf_counter()
                    await worker.run_cycle(k + 1, bd.windows[k], "bench", 0)
                    out.append({"window": k, "cycle_s": time.perf_counter() - t0,
                                "decision": last.get("decision"), "reason": last.get("reason"),
                                "naive_would_be": last.get("naive_would_be")})
            finally:
                worker.trainer.close()

    anyio.run(run)
    return out


def swap_pause(bd: BenchData, n: int = 20000) -> dict[str, float]:
    """The serving swap is one reference assignment between bars: time it."""
    holder = {"model": bd.base}
    other = build_serving_model(bd.base, None, 4, 8.0)
    samples = np.empty(n)
    for i in range(n):
        m = other if i % 2 == 0 else bd.base
        t0 = time.perf_counter_ns()
        holder["model"] = m
        samples[i] = time.perf_counter_ns() - t0
    return {"p50": float(np.percentile(samples, 50)) / 1000,
            "p99": float(np.percentile(samples, 99)) / 1000,
            "max": float(samples.max()) / 1000}


def latency_ratio(bd: BenchData, settings: UpdateSettings, trainer: TrainProcess, n: int,
                  serving: Serving | None = None, source: str = "sample:sp500",
                  index_size: int = 100_000) -> dict[str, Any]:
    """Inference latency of the whole per-bar serving path (Pipeline decide + check +
    after_bar, one thread) idle vs while update cycles train in the child process; `ratio` is
    training p99 / idle p99 (daemon/bench/update_latency.py). The pipeline serves the artifact
    set the bench loaded (`bd.serving`), else `serving`, else a quick artifact set built from
    `source` up to `bd.train_end`. `forecaster_only` is the forward pass alone, for reference."""
    serving = serving or bd.serving or quick_serving(source, bd.train_end, index_size)
    out = pipeline_latency(bd, settings, trainer, n, serving)
    out["forecaster_only"] = forecaster_only(bd, settings, trainer, n)
    return out


def run_bench_update(args: argparse.Namespace) -> int:
    """Run the benchmark and print a table (or one JSON object with --json)."""
    t0 = time.perf_counter()
    n_windows = int(args.windows)
    arts_dir = args.artifacts
    if arts_dir is None and Path(args.config).exists():
        from daemon.config import load_config

        cfg = load_config(args.config)
        candidate = cfg.path(cfg.artifacts.dir)
        arts_dir = str(candidate) if (candidate / "manifest.json").exists() else None
    if arts_dir:
        bd = load_artifact_bench_data(arts_dir, windows=n_windows, config=args.config)
    else:
        bd = load_bench_data(args.data, windows=n_windows)
    n_windows = min(n_windows, len(bd.windows))
    settings = UpdateSettings()
    main = compare(bd, settings, n_windows)
    front = frontier(bd, settings, n_windows, args.quick)
    times, trainer = cycle_times(bd, settings, 3 if args.quick else 5)
    try:
        lat = latency_ratio(bd, settings, trainer, 3000 if args.quick else 10000,
                            source=args.data)
    finally:
        trainer.close()
    swap = swap_pause(bd)
    full = full_cycles(bd, settings, 3 if args.quick else n_windows) \
        if bd.score_slice is not None else []
    out = {
        "data": {"source": args.data, "base": bd.description, "train_end": bd.train_end,
                 "anchors": len(bd.anchors), "anchor_labels": sorted(set(bd.anchors.labels))},
        "settings": settings.to_dict(), "projection": settings.projection,
        "n_windows": n_windows, **main, "frontier": front,
        "cycle_s_p50": statistics.median([c["cycle_s"] for c in full] or times),
        "cycle_s_train_only": times, "full_cycles": full,
        "swap_pause_us": swap["p99"], "swap_pause": swap,
        "p99_ratio_training_vs_idle": lat["ratio"], "latency": lat,
        "targets": {"stress_regression_reduction": ">= 0.8", "drift_gain_retained": ">= 0.9",
                    "cycle_s_p50": "<= 30", "swap_pause_us": "< 100",
                    "p99_ratio_training_vs_idle": "<= 1.3"},
        "note": "timings on a shared 2-core machine (other work running): noisy",
        "bench_s": time.perf_counter() - t0,
    }
    if args.json:
        print(orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY, default=str).decode())
        return 0
    print(f"data: {bd.description}")
    print(f"{'win':>3} {'start':>10} {'gain naive':>11} {'gain proj':>10} {'stress naive':>13}"
          f" {'stress proj':>12} {'oos mse n/p':>17} {'mdd n/p':>15} {'worst day n/p':>17}")
    for r in main["windows"]:
        oos = r.get("next_window_drift_mse", {})
        mdd = r.get("next_window_mdd", {})
        wd = r["worst_stress_day_return"]
        print(f"{r['window']:>3} {r['start']:>10} {r['drift_gain']['naive']:>11.4f} "
              f"{r['drift_gain']['projected']:>10.4f} {r['stress_regression']['naive']:>13.4f} "
              f"{r['stress_regression']['projected']:>12.5f} "
              f"{oos.get('naive', float('nan')):>8.3f}/{oos.get('projected', float('nan')):<8.3f}"
              f" {mdd.get('naive', float('nan')):>7.3f}/{mdd.get('projected', float('nan')):<7.3f}"
              f" {wd['naive']:>8.4f}/{wd['projected']:<8.4f}")
    print(f"stress_regression_reduction {main['stress_regression_reduction']:.3f} (>= 0.8)   "
          f"drift_gain_retained {main['drift_gain_retained']:.3f} (>= 0.9)")
    print("frontier:")
    for p in front:
        print(f"  {p['knob']:>15} {p.get(p['knob'])!s:>7}  reduction "
              f"{p['stress_regression_reduction']:.3f}  retained {p['drift_gain_retained']:.3f}"
              f"  steps {p['mean_projected_steps']:.0f}  matched {p['windows_at_matched_gain']}"
              f"{'  (default)' if p['is_default'] else ''}")
    print(f"cycle_s_p50 {out['cycle_s_p50']:.2f} s (<= 30)   swap_pause_us p99 "
          f"{swap['p99']:.3f} (< 100)   p99_ratio_training_vs_idle {lat['ratio']:.2f} (<= 1.3)")
    fo = lat["forecaster_only"]
    print(f"  serving path p50/p99 µs: idle {lat['idle_p50_us']:.1f}/{lat['idle_p99_us']:.1f}, "
          f"training {lat['training_p50_us']:.1f}/{lat['training_p99_us']:.1f} "
          f"(training throughout: {lat['training_was_running_throughout']}); forecaster alone "
          f"p99 ratio {fo['ratio']:.2f}")
    return 0


def add_parser(bsub: argparse._SubParsersAction) -> None:
    """`anchord bench update`: projected vs naive LoRA updates at matched drift gain."""
    p = bsub.add_parser(
        "update", help="continual update: projected vs naive LoRA at matched drift gain")
    p.add_argument("--data", default="sample:sp500", help="bar source (default sample:sp500)")
    p.add_argument("--windows", type=int, default=10, help="consecutive drift windows")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument("--quick", action="store_true", help="fewer frontier points and samples")
    p.add_argument("--artifacts", default=None,
                   help="artifact set to use (default: [artifacts].dir when it holds one; "
                        "otherwise a minimal base is built from --data)")
    p.add_argument("--config", default="runtime.toml", help="path to runtime.toml")
    p.set_defaults(func=run_bench_update)
