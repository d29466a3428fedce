"""attach_pipeline wires the pipeline into a daemon: status, metrics, journal, reload, denials."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.app import Daemon
from daemon.clock import ManualClock
from daemon.config import load_config, reloadable_keys
from daemon.intent import intent_for_target
from daemon.pipeline import attach as attach_mod
from daemon.risk import Verdict
from tests.helpers import basic_config, write_config
from tests.pipeline_support import sample_bars, small_set


def make_daemon(tmp_path: Path, extra: str = "") -> Daemon:
    text = basic_config(metrics='listen = ""') + extra
    cfg = load_config(write_config(tmp_path, text))
    return Daemon(cfg, clock=ManualClock())


def test_no_artifact_set_means_no_pipeline(tmp_path: Path) -> None:
    daemon = make_daemon(tmp_path, '[artifacts]\ndir = "nowhere"\n')
    assert daemon.pipeline is None
    assert attach_mod.attach_pipeline(daemon) is None and daemon.pipeline is None
    daemon.store.close()


def test_attach_wires_status_metrics_journal_and_denials(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "arts").mkdir()
    (tmp_path / "cal.csv").write_text("1999-03-10T00:00:00Z,scheduled event\n")
    monkeypatch.setattr("daemon.training.artifacts.load_artifact_set", lambda _p: small_set())
    daemon = make_daemon(tmp_path, '[artifacts]\ndir = "arts"\n'
                                   '[limits]\ncalendar_file = "cal.csv"\n'
                                   '[pipeline]\nrecall_fraction = 0.5\n')
    pipe = daemon.pipeline  # Daemon.__init__ attached it
    assert pipe is not None
    assert len(daemon.risk.calendar) == 1
    assert len(daemon.tasks) == 2
    position, denied = 0, 0
    for bar in sample_bars()[:300]:
        d = pipe.decide(bar)
        if d is not None:
            intent = intent_for_target(bar.contract, bar.ts, position, d.target_position,
                                       bar.close)
            if intent is not None:
                v = pipe.check(intent, bar)
                position = d.target_position if v.accepted else position
                denied += not v.accepted
        pipe.after_bar()
    status = daemon.status()["pipeline"]
    assert status["latency_end_to_end"]["count"] > 200 and status["ann_recall"] == 1.0
    assert daemon.metrics.value("anchord_decisions_total") == status["bars_decided"]
    assert daemon.metrics.value("anchord_pipeline_stage_seconds_count",
                                {"stage": "end_to_end"}) > 200
    attach_mod.record_latency(daemon, pipe, "test")
    lat = daemon.store.journal_rows("latency")[-1]
    assert lat["end_to_end"]["p99_us"] > 0 and "retrieve" in lat["stages"]
    assert lat["hist"]["end_to_end"]
    assert daemon.store.journal_rows("monitor")[-1]["ann_recall"] == 1.0
    # the verdict is the judge's (the daemon's one gate), timed as the pipeline's gate stage
    bar = sample_bars()[300]
    pipe.decide(bar)
    gates = status["latency_p99_us"]["gate"]
    v = pipe.check(intent_for_target(bar.contract, bar.ts, 0, 1, bar.close), bar,
                   lambda i, b: Verdict(False, "kill_switch"))
    assert not v.accepted and v.reason == "kill_switch" and gates is not None
    # reload applies new limits
    cfg_path = Path(daemon.cfg.source_path)
    cfg_path.write_text(cfg_path.read_text().replace('calendar_file = "cal.csv"',
                                                     'calendar_file = "cal.csv"\n'
                                                     'max_position = 1'))
    assert daemon.reload("test")
    assert pipe.limits.max_position == 1 and pipe.params.decision.max_position == 1
    daemon.store.close()


def test_daemon_serves_a_trained_artifact_set(tmp_path: Path, trained_set) -> None:
    set_dir, _ = trained_set
    daemon = make_daemon(tmp_path, f'[artifacts]\ndir = "{set_dir}"\n'
                                   '[pipeline]\nrecall_fraction = 0.2\n')
    pipe = daemon.pipeline
    assert pipe is not None and pipe.forecaster.kind == "numpy" and pipe.scorer.kind == "numpy"
    from daemon.pipeline.pipeline import load_bars

    rows = []
    for bar in load_bars("sample:sp500", "CON.F.US.EP.Z26")[3500:3800]:  # after train_end
        d = pipe.decide(bar)
        if d is not None:
            rows.append(d)
        pipe.after_bar()
    assert len(rows) > 200 and all(0.0 < d.p_up < 1.0 for d in rows)
    assert pipe.recall.recall is not None and pipe.recall.recall > 0.9
    out = pipe.score_slice(pipe.arts.forecaster, *pipe.arts.slices["stress_2018_02"])
    assert out["bars"] > 5 and out["mdd"] <= 0
    daemon.store.close()


async def test_a_reload_with_a_bad_calendar_file_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from structlog.testing import capture_logs

    from daemon.control import CommandError

    (tmp_path / "arts").mkdir()
    (tmp_path / "cal.csv").write_text("1999-03-10T00:00:00Z,scheduled event\n")
    (tmp_path / "bad.csv").write_text("1999-03-10T00:00:00Z\nnot a time,oops\n")
    monkeypatch.setattr("daemon.training.artifacts.load_artifact_set", lambda _p: small_set())
    daemon = make_daemon(tmp_path, '[artifacts]\ndir = "arts"\n'
                                   '[limits]\ncalendar_file = "cal.csv"\n')
    pipe = daemon.pipeline
    calendar = list(daemon.risk.calendar)
    cfg_path = Path(daemon.cfg.source_path)
    cfg_path.write_text(cfg_path.read_text().replace('calendar_file = "cal.csv"',
                                                     'calendar_file = "bad.csv"\n'
                                                     'max_position = 1'))
    with capture_logs() as logs:  # whatever output the logging was configured with before
        assert not daemon.reload("SIGHUP")
    logged = [e for e in logs if "bad.csv:2" in str(e.get("error", ""))]
    assert [e["event"] for e in logged] == ["config_reload_failed"]
    with pytest.raises(CommandError) as refused:  # `anchord ctl reload`
        await daemon.control.handlers["reload"]({})
    message = str(refused.value)
    assert message.startswith("reload refused: ") and "[limits].calendar_file" in message
    assert "bad.csv:2" in message  # the file and line that is wrong
    # nothing of the reload was applied: the limit, the calendar and the config in force
    assert pipe.limits.max_position == 4 and pipe.params.decision.max_position == 4
    assert daemon.risk.calendar == calendar
    assert daemon.cfg.limits.max_position == 4 and daemon.cfg.limits.calendar_file == "cal.csv"
    assert daemon.metrics.value("anchord_config_reloads_total", {"result": "invalid"}) == 2
    daemon.store.close()


def test_a_reload_applies_every_reloadable_pipeline_and_tyler_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "arts").mkdir()
    monkeypatch.setattr("daemon.training.artifacts.load_artifact_set", lambda _p: small_set())
    daemon = make_daemon(tmp_path, '[artifacts]\ndir = "arts"\n')
    pipe = daemon.pipeline
    assert (pipe.params.tyler_iterations, pipe.params.tyler_weight) == (2, 0.01)
    cfg_path = Path(daemon.cfg.source_path)
    cfg_path.write_text(cfg_path.read_text() + (
        '[tyler]\nlive_iterations = 5\nlive_weight = 0.2\n'
        '[pipeline]\nmin_edge = 0.1\nfull_edge = 0.5\nvol_target = 500.0\n'
        'stage_budgets_us = ["retrieve=700"]\nrecall_fraction = 0.5\nece_target = 0.2\n'
        'recalibrate = false\nlatency_log_interval_s = 5.0\n'))
    assert daemon.reload("test")
    p = pipe.params
    assert (p.tyler_iterations, p.tyler_weight) == (5, 0.2)  # what after_bar's update uses
    assert (p.decision.min_edge, p.decision.full_edge, p.decision.vol_target) == (0.1, 0.5, 500.0)
    assert (p.recall_fraction, p.ece_target, p.recalibrate) == (0.5, 0.2, False)
    assert pipe.recall.every == 2 and pipe.calibration.target_ece == 0.2
    assert pipe.recorder.budgets_ns == {"retrieve": 700_000}
    assert daemon.cfg.pipeline.latency_log_interval_s == 5.0  # read by the periodic task
    reloadable = {k for k in reloadable_keys() if k.startswith(("[pipeline]", "[tyler]"))}
    assert reloadable == {f"[tyler].{k}" for k in ("live_iterations", "live_weight")} | {
        f"[pipeline].{k}" for k in ("min_edge", "full_edge", "vol_target", "stage_budgets_us",
                                    "recall_fraction", "ece_target", "recalibrate",
                                    "latency_log_interval_s")}  # a new one: assert it above
    daemon.store.close()
