"""`anchord train`: build one versioned artifact set from the bars of the training window.

Stages: load bars → features, Tyler whitening, ANN vectors, labels → CPCV (per split: Tyler
whitening, index, forecaster and CatBoost from the purged training part only; out-of-fold
P(up) of the test part) → calibration and per-path metrics → final models on the whole
window → ANN recall and speed-up → stress days and anchor suite → files, report, manifest.
Nothing after the training end is read by any stage. Threads are pinned, seeds fixed: same
data, config and seed give byte-identical files (apart from the volatile timing files the
manifest lists).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from daemon.config import RuntimeConfig
from daemon.errors import AnchordError, ConfigError
from daemon.training import artifacts as A
from daemon.training.cpcv import cpcv_splits
from daemon.training.dataset import Dataset, build_dataset, cut_window, refit_whitening
from daemon.training.manifest import canonical_json, collect_metadata, sha256_json, write_manifest
from daemon.training.progress import Progress
from daemon.training.report import VOLATILE, write_report
from daemon.training.stress import StressDay, choose_stress_days, parse_named, parse_slices

FORMAT_VERSION = 1
ANN_SWEEP = (16, 32, 64, 128)
MIN_ROWS_PER_GROUP = 20


class TrainingError(AnchordError):
    """The training window cannot give an artifact set (too few bars, gaps, bad window)."""


def set_threads(n: int) -> Any:
    """Pin BLAS (threadpoolctl), torch and faiss to `n` threads; returns the BLAS limiter."""
    import faiss
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)
    return threadpool_limits(limits=n)


def _check_config(cfg: RuntimeConfig) -> None:
    tr = cfg.training
    if tr.cpcv_test_groups >= tr.cpcv_groups:
        raise ConfigError(cfg.source_path, "[training].cpcv_test_groups",
                          f"must be < cpcv_groups ({tr.cpcv_groups})")


def freeze_catboost_metadata(model: Any) -> None:
    """Replace CatBoost's per-run metadata (finish time, random model GUID) by fixed values so
    equal models save to equal bytes."""
    meta = model.get_metadata()
    meta["train_finish_time"] = ""
    meta["model_guid"] = "anchord-scorer"


def _anchor_suite(ds: Dataset, stack: Any, nstats: np.ndarray, labels: np.ndarray,
                  days: list[StressDay], span: int) -> Any:
    from adapters.anchors import AnchorSuite
    from adapters.base_training import predict
    from daemon.pipeline.neighbours import forecaster_input

    idx, tags, dates = [], [], []
    for day in days:
        for j in range(day.row, min(day.row + span, len(ds.rows))):
            if j not in idx:
                idx.append(j)
                tags.append(day.label)
                dates.append(ds.dates[ds.rows[j]])
    pos = ds.rows[np.array(idx, dtype=np.int64)]
    inputs = forecaster_input(ds.whitened[pos], nstats[np.array(idx, dtype=np.int64)])
    return AnchorSuite(inputs, predict(stack.forecaster, inputs), labels[pos], tags, dates)


def _ann(ds: Dataset, labels: np.ndarray, index_params: Any) -> tuple[dict, dict, list]:
    from daemon.pipeline.retrieval import measure_index

    vectors, outcomes = ds.vectors[ds.rows], labels[ds.rows]
    main = measure_index(vectors, outcomes, index_params, k=10)
    sweep = []
    if index_params.kind == "hnsw":
        for ef in ANN_SWEEP:
            m = measure_index(vectors, outcomes,
                              dataclasses.replace(index_params, hnsw_ef_search=ef), k=10)
            sweep.append({"ef_search": ef, "recall": m["recall"], "speedup": m["speedup"]})
    else:
        sweep.append({"ef_search": 0, "recall": main["recall"], "speedup": main["speedup"]})
    det = {k: main[k] for k in ("kind", "k", "n_index", "n_queries", "dim", "recall_at_10")}
    det["n_index_final"] = len(ds.rows)
    det["recall_sweep"] = [{"ef_search": s["ef_search"], "recall": s["recall"]} for s in sweep]
    timing = {k: main[k] for k in ("approx_us_per_query", "exact_us_per_query", "speedup")}
    timing["sweep"] = sweep
    return det, timing, sweep


def train_artifacts(cfg: RuntimeConfig, source: str, out: Path, *, train_end: str | None = None,
                    progress: Progress | None = None,
                    shuffle_labels: int | None = None) -> dict[str, Any]:
    """Build an artifact set into `out` (replaced atomically when it exists) and return a
    summary. `shuffle_labels` (a seed) permutes the labels first: a leak check, the gates
    must then fail."""
    from daemon.bars.replay import load_bars
    from daemon.pipeline.retrieval import IndexParams
    from daemon.training.models import fit_stack, score_rows
    from daemon.training.validation import evaluate_cpcv

    _check_config(cfg)
    tr = cfg.training
    train_end = train_end or tr.train_end
    progress = progress or Progress()
    started = time.monotonic()
    limiter = set_threads(tr.threads)
    try:
        progress.stage("load", source=source)
        bars = cut_window(load_bars(source, cfg.data.contract), tr.train_start, train_end)
        progress.stage("features", bars=len(bars))
        try:
            ds = build_dataset(bars, horizon=tr.horizon, window=cfg.index.window,
                               shrinkage=cfg.tyler.shrinkage, tol=cfg.tyler.tol,
                               max_iter=cfg.tyler.max_iter)
        except ValueError as err:
            raise TrainingError(f"{source} up to {train_end} ({len(bars)} bars): {err}") from None
        if len(ds.rows) < MIN_ROWS_PER_GROUP * tr.cpcv_groups:
            raise TrainingError(f"{source} up to {train_end}: {len(ds.rows)} usable bars, need "
                                f"{MIN_ROWS_PER_GROUP * tr.cpcv_groups} for {tr.cpcv_groups} "
                                "CPCV groups")
        labels = ds.labels.copy()
        if shuffle_labels is not None:
            labels[ds.rows] = np.random.default_rng(shuffle_labels).permutation(labels[ds.rows])
        ip = IndexParams.from_any(cfg.index)
        rows, n = ds.rows, len(ds.rows)
        splits = cpcv_splits(n, tr.cpcv_groups, tr.cpcv_test_groups, tr.horizon,
                             tr.embargo_bars)
        progress.stage("cpcv", splits=len(splits), rows=n)
        raw = {}
        for i, s in enumerate(splits):
            fold = refit_whitening(ds, rows[s.train], window=cfg.index.window,
                                   shrinkage=cfg.tyler.shrinkage, tol=cfg.tyler.tol,
                                   max_iter=cfg.tyler.max_iter)
            stack, _ = fit_stack(fold, rows[s.train], ip, tr, labels)
            raw[s.index] = score_rows(fold, stack, rows[s.test], ip.k)[0]
            progress.step(i + 1, len(splits))
        progress.stage("calibration")
        y_up = labels[rows] > 0
        calibrator, cpcv_section, curves = evaluate_cpcv(
            splits, raw, y_up, ds.next_return[rows], tr.cpcv_groups, tr.strategy_band)
        progress.stage("final_models")
        final, nstats = fit_stack(ds, rows, ip, tr, labels)
        progress.stage("ann")
        ann, ann_timing, sweep = _ann(ds, labels, ip)
        progress.stage("anchors")
        row_dates = [ds.dates[p] for p in rows]
        days = choose_stress_days(row_dates, ds.features[rows, 0], ds.features[rows, 6],
                                  parse_named(tr.stress_days), tr.stress_worst_days,
                                  tr.stress_vol_spikes)
        anchors = _anchor_suite(ds, final, nstats, labels, days, tr.anchor_span)
        progress.stage("write")
        slices = parse_slices(tr.slices)
        slices["train_window"] = (row_dates[0], ds.dates[-1])
        params = _params(cfg, ds, ip, final, calibrator.kind, source, train_end, shuffle_labels)
        report = {
            "version": FORMAT_VERSION,
            "data": {"source": source, "first_bar": ds.dates[0], "last_bar": ds.dates[-1],
                     "train_end": train_end, "rows": n, "horizon": tr.horizon,
                     "bars_sha256": ds.bars_sha256, "shuffled_labels": shuffle_labels},
            "cpcv": {"n_groups": tr.cpcv_groups, "k_test_groups": tr.cpcv_test_groups,
                     "n_splits": len(splits), "embargo_bars": tr.embargo_bars,
                     **cpcv_section},
            "ann": ann,
            "stress_days": [dataclasses.asdict(d) for d in days],
            "anchors": {"rows": len(anchors), "content_hash": anchors.content_hash(),
                        "labels": sorted(set(anchors.labels))},
            "tyler": {"iterations": ds.tyler.iterations, "shrinkage": ds.tyler.shrinkage},
        }
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            _write_models(tmp, ds, final, calibrator, anchors, slices, params)
            wall = round(time.monotonic() - started, 2)
            timings = {"train_wall_s": wall, "stages_s": progress.stage_times,
                       "ann": ann_timing}
            write_report(tmp / A.REPORT_DIR, report, timings, curves, row_dates, sweep)
            info = _manifest_info(cfg, ds, source, train_end, timings)
            write_manifest(tmp, info, [f"{A.REPORT_DIR}/{v}" for v in VOLATILE])
            _replace_dir(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        limiter.restore_original_limits()
    summary = {"out": str(out), "train_wall_s": wall, "rows": n,
               "auc_mean": cpcv_section["summary"]["auc"]["mean"],
               "ece_mean": cpcv_section["summary"]["expected_calibration_error"]["mean"],
               "worst_path_drawdown": cpcv_section["summary"]["worst_path_drawdown"],
               "ann_recall_at_10": ann["recall_at_10"], "ann_speedup": ann_timing["speedup"],
               "anchors": len(anchors), "calibration": calibrator.kind}
    progress.finish(**summary)
    return summary


def _write_models(tmp: Path, ds: Dataset, final: Any, calibrator: Any, anchors: Any,
                  slices: dict[str, tuple[str, str]], params: dict[str, Any]) -> None:
    from adapters.model import save_forecaster

    ds.tyler.save(tmp / A.TYLER_FILE)
    final.index.save(tmp / A.INDEX_DIR)
    save_forecaster(final.forecaster, tmp / A.FORECASTER_DIR)
    freeze_catboost_metadata(final.scorer)
    final.scorer.save_model(str(tmp / A.SCORER_FILE))
    (tmp / A.CALIBRATOR_FILE).write_bytes(canonical_json(calibrator.to_dict()))
    anchors.save(tmp / A.ANCHORS_DIR)
    (tmp / A.SLICES_FILE).write_bytes(canonical_json(
        {"version": FORMAT_VERSION, "slices": {k: list(v) for k, v in slices.items()}}))
    (tmp / A.PARAMS_FILE).write_bytes(canonical_json(params))


def _params(cfg: RuntimeConfig, ds: Dataset, ip: Any, final: Any, calibration: str,
            source: str, train_end: str, shuffled: int | None) -> dict[str, Any]:
    from daemon.features import FEATURE_NAMES
    from daemon.pipeline.neighbours import NEIGHBOUR_STAT_NAMES, scorer_feature_names

    return {
        "version": FORMAT_VERSION, "feature_names": list(FEATURE_NAMES),
        "neighbour_stat_names": list(NEIGHBOUR_STAT_NAMES),
        "scorer_feature_names": scorer_feature_names(FEATURE_NAMES),
        "window": cfg.index.window, "horizon": cfg.training.horizon, "k": ip.k,
        "dim": int(ds.vectors.shape[1]), "train_end": train_end,
        "first_bar": ds.dates[0], "last_bar": ds.dates[-1], "source": source,
        "index": dataclasses.asdict(ip),
        "tyler": {"shrinkage": cfg.tyler.shrinkage, "live_iterations": cfg.tyler.live_iterations,
                  "live_weight": cfg.tyler.live_weight},
        "forecaster": {"n_inputs": final.forecaster.spec.n_inputs,
                       "hidden": list(final.forecaster.spec.hidden)},
        "calibration": calibration, "strategy_band": cfg.training.strategy_band,
        "seed": cfg.training.seed, "shuffled_labels": shuffled,
    }


def config_dict(cfg: RuntimeConfig) -> dict[str, Any]:
    """The config as plain data (every section), for the manifest."""
    raw = dataclasses.asdict(cfg)
    raw.pop("source_path", None)
    return raw


def _manifest_info(cfg: RuntimeConfig, ds: Dataset, source: str, train_end: str,
                   timings: dict[str, Any]) -> dict[str, Any]:
    return {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source, "bars_sha256": ds.bars_sha256,
        "data_window": {"first_bar": ds.dates[0], "last_bar": ds.dates[-1],
                        "train_end": train_end, "bars": len(ds.dates),
                        "rows": int(len(ds.rows))},
        "config": config_dict(cfg), "config_sha256": sha256_json(config_dict(cfg)),
        **collect_metadata(), "timings": timings,
    }


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished set into place; an existing `out` is replaced."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)
