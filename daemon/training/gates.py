"""`anchord gates`: check an artifact set's validation report against `[quality_gates]`.

Exit 0 when every gate passes (a gate that does not apply counts as passed and says why),
1 when any fails, 2 when the artifacts cannot be loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.config import QualityGatesSection, RuntimeConfig, load_config
from daemon.errors import ArtifactError
from daemon.training.artifacts import REPORT_DIR, ArtifactSet, load_artifact_set
from daemon.training.report import TIMINGS_FILE


@dataclass(frozen=True)
class GateResult:
    """One gate: measured value, the threshold and how they compare."""

    name: str
    value: float
    op: str  # ">=" or "<="
    threshold: float
    status: str  # "pass", "fail" or "skip"
    note: str = ""


def _check(name: str, value: float, op: str, threshold: float, note: str = "") -> GateResult:
    ok = value >= threshold if op == ">=" else value <= threshold
    return GateResult(name, float(value), op, float(threshold), "pass" if ok else "fail", note)


def evaluate_gates(report: dict[str, Any], timings: dict[str, Any],
                   q: QualityGatesSection) -> list[GateResult]:
    """The gate results of one validation report (and its timings) under thresholds q."""
    summary = report["cpcv"]["summary"]
    ann = report["ann"]
    results = [
        _check("cpcv_auc_mean", summary["auc"]["mean"], ">=", q.min_auc,
               f"{report['cpcv']['n_paths']} paths, min {summary['auc']['min']:.4f}"),
        _check("expected_calibration_error", summary["expected_calibration_error"]["mean"],
               "<=", q.max_ece, f"calibration {report['cpcv']['calibration']['chosen']}"),
        _check("ann_recall_at_10", ann["recall_at_10"], ">=", q.min_ann_recall,
               f"{ann['kind']}, {ann['n_queries']} held-out queries"),
    ]
    speedup = float(timings.get("ann", {}).get("speedup", 0.0))
    if ann["n_index_final"] >= q.speedup_min_vectors:
        results.append(_check("ann_speedup", speedup, ">=", q.min_ann_speedup,
                              f"{ann['n_index_final']} vectors"))
    else:
        results.append(GateResult("ann_speedup", speedup, ">=", q.min_ann_speedup, "skip",
                                  f"index has {ann['n_index_final']} < "
                                  f"{q.speedup_min_vectors} vectors"))
    results.append(_check("cpcv_worst_path_drawdown", summary["worst_path_drawdown"], "<=",
                          q.max_worst_path_drawdown, "validation strategy, fraction"))
    return results


def format_gates(results: list[GateResult]) -> str:
    """A plain-text table of gate results."""
    rows = [("gate", "value", "rule", "result", "note")]
    rows += [(r.name, f"{r.value:.4f}", f"{r.op} {r.threshold:g}", r.status.upper(), r.note)
             for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
             for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def run_gates(artifacts: Path, config_path: str | None) -> tuple[int, str]:
    """Load (and verify) the set, evaluate the gates; returns (exit code, table)."""
    cfg = load_config(config_path) if config_path else RuntimeConfig()
    aset = load_artifact_set(artifacts)
    results = gate_results(aset, cfg.quality_gates)
    code = 1 if any(r.status == "fail" for r in results) else 0
    verdict = "all gates pass" if code == 0 else "gates FAILED"
    return code, format_gates(results) + f"\n{verdict} ({aset.dir})"


def gate_results(aset: ArtifactSet, q: QualityGatesSection) -> list[GateResult]:
    """The gates of a loaded set (its validation report and timings) under thresholds q;
    ArtifactError naming the file when the report or timings are unreadable."""
    try:
        timings = json.loads((aset.dir / REPORT_DIR / TIMINGS_FILE).read_text())
    except (OSError, ValueError) as err:
        raise ArtifactError(f"{aset.dir / REPORT_DIR / TIMINGS_FILE}: unreadable ({err})") from None
    try:
        return evaluate_gates(aset.report, timings, q)
    except (KeyError, TypeError) as err:
        raise ArtifactError(f"{aset.dir / REPORT_DIR / 'validation.json'}: missing {err}") from None
