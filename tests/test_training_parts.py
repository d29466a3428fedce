"""The plain-data parts of the builder: metrics, calibration, stress-day choice, progress."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from daemon.training.calibration import Calibrator, choose_calibrator, fit_isotonic, fit_platt
from daemon.training.metrics import (
    expected_calibration_error,
    log_loss,
    max_drawdown,
    roc_auc,
    sharpe,
)
from daemon.training.progress import Progress
from daemon.training.stress import choose_stress_days, parse_named, parse_slices


def test_auc_equals_the_pairwise_definition_with_ties() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.round(rng.random(300) + 0.3 * y, 1)  # many ties
    pos, neg = p[y == 1], p[y == 0]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert roc_auc(y, p) == pytest.approx(pairs)
    assert roc_auc(np.ones(5), np.arange(5)) == 0.5


def test_drawdown_sharpe_and_ece_on_known_series() -> None:
    r = np.log([1.1, 0.5, 1.2])  # +10%, -50%, +20%
    assert max_drawdown(r) == pytest.approx(0.5)
    assert max_drawdown(np.array([0.01, 0.02])) == 0.0
    assert sharpe(np.zeros(10)) == 0.0
    assert expected_calibration_error(np.array([1, 0, 1, 0]), np.full(4, 0.5)) == 0.0
    assert expected_calibration_error(np.ones(4), np.full(4, 0.75)) == pytest.approx(0.25)


def test_calibrators_fix_an_overconfident_score_and_round_trip() -> None:
    rng = np.random.default_rng(1)
    true_p = rng.uniform(0.3, 0.7, 4_000)
    y = (rng.random(4_000) < true_p).astype(float)
    raw = 1 / (1 + np.exp(-4 * np.log(true_p / (1 - true_p))))  # far too confident
    platt = fit_platt(raw, y)
    assert platt.a == pytest.approx(0.25, abs=0.05)
    iso = fit_isotonic(raw, y)
    assert np.all(np.diff(iso.predict(np.linspace(0, 1, 50))) >= 0)
    for cal in (platt, iso):
        assert log_loss(y, cal.predict(raw)) < log_loss(y, raw)
        back = Calibrator.from_dict(json.loads(json.dumps(cal.to_dict())))
        assert np.array_equal(back.predict(raw[:20]), cal.predict(raw[:20]))
    groups = np.arange(4_000) // 1_000
    chosen, losses, oof = choose_calibrator(raw, y, groups)
    assert chosen.kind == min(losses, key=losses.get) and oof.shape == raw.shape
    with pytest.raises(ValueError):
        Calibrator.from_dict({"kind": "magic"})


def test_stress_days_named_and_by_rule() -> None:
    dates = ["2001-09-10", "2001-09-17", "2001-09-18", "2001-09-19", "2001-09-20",
             "2001-09-21", "2001-09-24", "2001-09-25", "2001-09-26", "2001-09-27"]
    ret = np.array([0.0, -0.05, -0.01, -0.02, -0.03, -0.02, 0.04, 0.01, -0.04, 0.0])
    vol = np.array([0.0, 0.1, 0.2, 0.9, 0.1, 0.8, 0.3, 0.0, 0.0, 0.7])
    named = parse_named(["2001-09-11 event_shock", "2015-08-24 flash_crash"])
    days = choose_stress_days(dates, ret, vol, named, n_worst=1, n_spikes=1)
    by_date = {d.date: d for d in days}
    assert by_date["2001-09-17"].label == "event_shock"  # closed 9/11-9/14: next bar
    assert by_date["2001-09-17"].source == "named"
    assert by_date["2001-09-26"].label == "tail_loss"  # -0.05 is taken, 9/20 too close
    # 9/19 is too close to 9/17, 9/27 too close to 9/26: the next largest spike is 9/21
    assert by_date["2001-09-21"].label == "vol_spike" and len(days) == 3
    assert "2015-08-24" not in by_date
    assert parse_slices(["a 2013-01-01 2013-02-01"]) == {"a": ("2013-01-01", "2013-02-01")}


def test_progress_bar_on_a_terminal_json_events_otherwise() -> None:
    tty = io.StringIO()
    p = Progress(tty, tty=True)
    p.stage("cpcv")
    p.step(3, 15)
    p.finish()
    assert "[" in tty.getvalue() and "3/15" in tty.getvalue() and "done in" in tty.getvalue()
    pipe = io.StringIO()
    p = Progress(pipe, tty=False)
    p.stage("cpcv", splits=15)
    p.step(1, 15)
    p.finish(auc_mean=0.52)
    events = [json.loads(line) for line in pipe.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["train_stage", "train_progress", "train_done"]
    assert events[1]["done"] == 1 and events[2]["auc_mean"] == 0.52
    assert "cpcv" in p.stage_times
