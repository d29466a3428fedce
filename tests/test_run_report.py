"""The run report is rebuilt from a run's journal in its state store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from daemon.store import Store
from tests.helpers import run_cli


def test_report_from_journal(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.sqlite")
    t0 = datetime(2013, 1, 2, tzinfo=UTC)
    equity = [0.0, 5.0, 2.0, 8.0, 1.0, 4.0]
    for i, e in enumerate(equity):
        store.journal("bar", t0 + timedelta(days=i), {"close": 100 + i, "position": i % 2,
                                                      "equity": e})
    store.journal("cycle", t0, {"cycle": 1, "decision": "promote", "reason": "all pass"})
    store.journal("cycle", t0, {"cycle": 2, "decision": "reject", "reason": "stress_mse"})
    store.journal("rollback", t0, {"version": "v1", "reason": "stress breach"})
    store.journal("deny", t0, {"reason": "max_position"})
    store.journal("canary", t0, {"step_pct": 25, "healthy": True, "reason": "2 healthy"})
    store.journal("monitor", t0, {"ann_recall": 0.97, "ece": 0.03})
    lat = {"p50_us": 300, "p90_us": 400, "p99_us": 700, "p999_us": 900, "max_us": 1000}
    store.journal("latency", t0, {"stages": {"ann": lat}, "end_to_end": lat,
                                  "hist": {"end_to_end": [[300, 5], [700, 1]]}})
    store.close()
    result = run_cli("report", str(tmp_path))
    assert result.returncode == 0, result.stderr
    summary = orjson.loads(result.stdout)
    assert summary["bars"] == 6 and summary["final_equity"] == 4.0
    assert summary["max_drawdown"] == -7.0  # from 8 down to 1
    assert summary["decisions"] == {"promote": 1, "reject": 1} and summary["rollbacks"] == 1
    assert summary["risk_denials"] == {"max_position": 1}
    out = tmp_path / "reports"
    for name in ("report.html", "report.json", "equity.png", "position.png", "latency.png",
                 "cycles.png", "canary.png", "denials.png", "monitors.png"):
        assert (out / name).stat().st_size > 0, name
    assert "stress breach" in (out / "report.html").read_text()


def test_report_refuses_non_run_dir(tmp_path: Path) -> None:
    result = run_cli("report", str(tmp_path))
    assert result.returncode == 2 and "no store.sqlite" in result.stderr
