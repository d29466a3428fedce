"""Calibration monitor, versioned recalibration (store migration 3), recall monitor, threads."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from daemon.pipeline.monitors import (
    CalibrationMonitor,
    RecallMonitor,
    recalibrate,
    verify_recalibration,
)
from daemon.store import Store
from daemon.training.calibration import Calibrator, fit_platt

AT = datetime(2024, 1, 2, tzinfo=UTC)


def closes_for(outcomes: np.ndarray) -> list[float]:
    """A close series whose bar-to-next-bar moves are the given up(1)/down(0) outcomes."""
    c = [100.0]
    for up in outcomes:
        c.append(c[-1] + (1.0 if up else -1.0))
    return c


def test_ece_drift_fires_once_when_probabilities_are_miscalibrated() -> None:
    rng = np.random.default_rng(0)
    n = 400
    p_true = rng.uniform(0.3, 0.7, n)
    y = (rng.random(n) < p_true).astype(int)
    closes = closes_for(y)
    mon = CalibrationMonitor(horizon=1, window=200, target_ece=0.1, min_samples=100)
    crossings = []
    for i in range(n):
        claimed = min(0.99, p_true[i] + 0.25)  # overconfident in "up"
        crossings.append(mon.observe(p_true[i], claimed, closes[i]))
    mon.observe(0.5, None, closes[n])
    assert sum(crossings) == 1 and mon.in_drift
    assert mon.ece is not None and mon.ece > 0.15
    raw, outcome = mon.window_arrays()
    np.testing.assert_array_equal(outcome, y[-len(outcome):])


def test_recalibration_is_applied_only_if_better_and_always_versioned(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.sqlite")
    rng = np.random.default_rng(1)
    raw = rng.uniform(0.05, 0.95, 600)
    y = (rng.random(600) < raw).astype(float)  # raw is already calibrated
    skewed = Calibrator("platt", a=1.0, b=1.5)  # the serving one pushes everything up
    good = recalibrate(raw, y, skewed, fit_platt, store=store, folder=tmp_path / "cal", at=AT)
    assert good.applied and good.ece_after < good.ece_before and good.version == 1
    assert good.calibrator is not skewed

    def bad_fit(_p: np.ndarray, _y: np.ndarray) -> Calibrator:
        return Calibrator("platt", a=0.0, b=3.0)  # ~0.95 for everything

    current = good.calibrator
    bad = recalibrate(raw, y, current, bad_fit, store=store, folder=tmp_path / "cal", at=AT)
    assert not bad.applied and bad.calibrator is current and bad.version == 2
    rows = store.recalibrations()
    assert [r["version"] for r in rows] == [1, 2]
    assert [r["applied"] for r in rows] == [True, False]
    assert all(verify_recalibration(r) for r in rows)
    assert Path(rows[0]["path"]).name == "calibrator-v1.json"
    Path(rows[1]["path"]).write_text("{}")  # tampering is detected
    assert not verify_recalibration(store.recalibrations()[1])
    store.close()


def test_recall_monitor_samples_a_fraction_and_measures_recall() -> None:
    rng = np.random.default_rng(2)
    base = rng.normal(size=(500, 8)).astype(np.float32)

    def exact(q: np.ndarray, k: int, _visible: int | None = None) -> tuple:
        d = ((base - q) ** 2).sum(1)
        ids = np.argsort(d)[:k]
        return d[ids][None], ids[None]

    mon = RecallMonitor(exact, k=10, fraction=0.25, window=100)
    for i in range(40):
        q = base[i] + 0.01
        _, ids = exact(q, 10)
        answer = ids[0].copy()
        if i % 2:
            answer[-5:] = -1  # half of the answers miss 5 of 10
        mon.offer(q, answer, 1000)
    assert mon.drain() == 10 and mon.checked == 10
    # queries 4, 8, ... (i = 3, 7, ..., 39: all odd) were checked: each found 5 of 10
    assert mon.recall == 0.5 and mon.speedup is not None


def test_thread_limits_are_applied() -> None:
    import torch

    from daemon.threads import apply_thread_limits

    before = torch.get_num_threads()
    try:
        got = apply_thread_limits(blas=1, torch_threads=1, faiss_threads=1)
        assert got["torch"] == 1 and got["faiss"] == 1 and got["blas"] == 1
        assert all(p["num_threads"] == 1 for p in got["pools"])
    finally:
        torch.set_num_threads(before)


def test_pipeline_recalibrates_on_ece_drift_and_audits_it(tmp_path: Path) -> None:
    from daemon.pipeline.pipeline import Pipeline, PipelineParams, load_bars
    from daemon.risk import RiskLimits
    from tests.pipeline_support import replay, small_set

    store = Store(tmp_path / "store.sqlite")
    pipe = Pipeline(small_set(), PipelineParams(ece_target=0.0001, ece_min_samples=40,
                                                ece_window=60), RiskLimits(), store=store)
    pipe.recal_dir = tmp_path / "calibration"
    original = pipe.calibrator
    replay(pipe, load_bars("sample:sp500", "CON.F.US.EP.Z26")[700:1100])  # out of sample
    rows = store.recalibrations()
    assert rows and [r["version"] for r in rows] == list(range(1, len(rows) + 1))
    assert all(verify_recalibration(r) for r in rows)
    journal = store.journal_rows("recalibration")
    assert [j["version"] for j in journal] == [r["version"] for r in rows]
    applied = [r for r in rows if r["applied"]]
    assert (pipe.calibrator is not original) == bool(applied)
    for r in applied:
        assert r["ece_after"] < r["ece_before"]
    store.close()
