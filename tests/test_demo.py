"""`anchord demo` as a real subprocess on a short window: it trains a small artifact set (none
is there), runs the full daemon against the in-process paper venue, and leaves a summary and a
report (HTML, JSON, PNG) whose figures agree with the venue."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.helpers import run_cli

SMALL_TRAINING = """
[training]
cpcv_groups = 4
cpcv_test_groups = 1
catboost_iterations = 40
forecaster_epochs = 1
"""


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict]:
    tmp = tmp_path_factory.mktemp("demo")
    (tmp / "train.toml").write_text(SMALL_TRAINING)
    out = tmp / "out"
    proc = run_cli("demo", "--out", str(out), "--artifacts", str(tmp / "artifacts"),
                   "--train-config", str(tmp / "train.toml"), "--start", "2013-01-01",
                   "--end", "2013-05-31", "--cycles", "2", "--canary-steps", "50,100",
                   timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out, proc.stdout, orjson.loads((out / "summary.json").read_bytes())


def test_demo_trades_adapts_and_agrees_with_the_venue(demo_run) -> None:
    out, stdout, summary = demo_run
    assert summary["bars"] > 90 and summary["first_bar"].startswith("2013-01")
    assert summary["orders"] > 0 and summary["venue_orders"] > 0
    assert summary["daemon_position"] == summary["venue_position"] == summary["final_position"]
    assert summary["update_cycles"] >= 1
    assert summary["latency"]["p99_us"] > 0 and summary["canary_final_step_pct"] in (50, 100)
    assert "summary" in stdout and "max drawdown" in stdout and "wall time" in stdout
    assert '"progress"' in stdout  # not a TTY: JSON progress lines


def test_demo_leaves_a_report_and_a_log_without_the_key(demo_run) -> None:
    out, _, summary = demo_run
    report = out / "report"
    assert (report / "report.html").is_file() and (report / "report.json").is_file()
    pngs = {p.name for p in report.glob("*.png")}
    assert {"equity.png", "position.png", "latency.png", "cycles.png"} <= pngs
    data = orjson.loads((report / "report.json").read_bytes())
    assert data["summary"]["orders"] == summary["orders"]
    assert any(r["kind"] == "cycle" for r in data["timeline"])
    # Events are journalled at bar time, so the report lines them up with the bars.
    assert all(r["ts"].startswith("2013-") for r in data["timeline"] + data["canary"])
    assert (out / "runtime.toml").is_file() and (out / "state" / "store.sqlite").is_file()
    log = (out / "anchord.log").read_text()
    assert '"event":"replay_end"' in log and "demo-paper-venue-key" not in log
    assert "demo-paper-venue-key" not in (out / "runtime.toml").read_text()


def test_demo_refuses_bad_usage_in_one_line(tmp_path) -> None:
    proc = run_cli("demo", "--out", str(tmp_path), "--canary-steps", "5;x")
    assert proc.returncode == 2 and "--canary-steps" in proc.stderr
    assert "Traceback" not in proc.stderr
