"""The validation report of an artifact set: `validation.json` (deterministic metrics),
`timings.json` (wall times, ANN speed), and a Markdown page with PNG plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from daemon.training.manifest import canonical_json

VALIDATION_FILE = "validation.json"
TIMINGS_FILE = "timings.json"
PAGE_FILE = "report.md"
# Files that legitimately differ between two identical builds (they show wall times).
VOLATILE = (TIMINGS_FILE, PAGE_FILE, "ann.png")


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    fig.savefig(path, dpi=90, metadata={"Software": None})
    _figure().close(fig)


def plot_calibration(section: dict[str, Any], path: Path) -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfect")
    raw, cal = section["calibration"]["curve_raw"], section["calibration"]["curve"]
    ax.plot(raw["predicted"], raw["observed"], "o-", label="raw CatBoost (out-of-fold)")
    ax.plot(cal["predicted"], cal["observed"], "s-",
            label=f"{section['calibration']['chosen']} calibrated (cross-fitted)")
    ax.set_xlabel("predicted P(up)")
    ax.set_ylabel("observed frequency")
    ax.set_title("Calibration")
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_equity(curves: list[np.ndarray], dates: list[str], path: Path) -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(len(dates))
    for i, strat in enumerate(curves):
        ax.plot(x, np.exp(np.cumsum(strat)), lw=1, label=f"path {i}")
    ticks = np.linspace(0, len(dates) - 1, 6).astype(int)
    ax.set_xticks(ticks, [dates[t][:7] for t in ticks])
    ax.set_ylabel("equity (start 1)")
    ax.set_title("CPCV path equity curves (validation strategy)")
    ax.legend(fontsize=7, ncol=2)
    _save(fig, path)


def plot_ann(sweep: list[dict[str, Any]], path: Path) -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 4))
    ef = [s["ef_search"] for s in sweep]
    ax.plot(ef, [s["recall"] for s in sweep], "o-", color="tab:blue")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("HNSW efSearch")
    ax.set_ylabel("recall@10", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(ef, [s["speedup"] for s in sweep], "s--", color="tab:red")
    ax2.set_ylabel("speed-up over exact (1 thread)", color="tab:red")
    ax.set_title("ANN recall and speed-up on held-out queries")
    _save(fig, path)


def _page(report: dict[str, Any], timings: dict[str, Any]) -> str:
    cp, ann = report["cpcv"], report["ann"]
    lines = [
        "# Validation report", "",
        f"- data: {report['data']['source']} {report['data']['first_bar']} .. "
        f"{report['data']['last_bar']} (train end {report['data']['train_end']}, "
        f"{report['data']['rows']} rows, horizon {report['data']['horizon']})",
        f"- build wall time: {timings.get('train_wall_s', '?')} s (noisy: shared machine)",
        f"- calibration: {cp['calibration']['chosen']} (out-of-fold log loss "
        f"{cp['calibration']['oof_log_loss']})", "",
        "## CPCV paths", "",
        "| path | AUC | log loss | Brier | ECE | Sharpe | max DD |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, p in enumerate(cp["paths"]):
        lines.append(f"| {i} | {p['auc']:.4f} | {p['log_loss']:.4f} | {p['brier']:.4f} | "
                     f"{p['expected_calibration_error']:.4f} | {p['sharpe']:.2f} | "
                     f"{p['max_drawdown']:.3f} |")
    t_ann = timings.get("ann", {})
    lines += [
        "", "![calibration](calibration.png)", "", "![equity](cpcv_equity.png)", "",
        "## ANN index", "",
        f"- {ann['kind']}, {ann['n_index_final']} vectors of dim {ann['dim']}; "
        f"recall@10 {ann['recall_at_10']:.4f} on {ann['n_queries']} held-out queries",
        f"- speed-up over exact search: {t_ann.get('speedup', '?')}× "
        f"({t_ann.get('approx_us_per_query', '?')} µs vs {t_ann.get('exact_us_per_query', '?')}"
        " µs per query, 1 thread)", "", "![ann](ann.png)", "",
        "## Stress days", "", "| date | label | source |", "|---|---|---|",
        *[f"| {d['date']} | {d['label']} | {d['source']} |" for d in report["stress_days"]],
    ]
    return "\n".join(lines) + "\n"


def write_report(folder: Path, report: dict[str, Any], timings: dict[str, Any],
                 curves: list[np.ndarray], dates: list[str],
                 sweep: list[dict[str, Any]]) -> list[Path]:
    """Write the JSON report, the timings, the plots and the page into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / VALIDATION_FILE).write_bytes(canonical_json(report))
    (folder / TIMINGS_FILE).write_bytes(canonical_json(timings))
    plot_calibration(report["cpcv"], folder / "calibration.png")
    plot_equity(curves, dates, folder / "cpcv_equity.png")
    plot_ann(sweep, folder / "ann.png")
    (folder / PAGE_FILE).write_text(_page(report, timings))
    return sorted(folder.iterdir())
