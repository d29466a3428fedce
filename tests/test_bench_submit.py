"""`anchord bench submit --json` prints one object with the rate and the client overhead (the
numbers themselves are for the benchmark run, not asserted here)."""

from __future__ import annotations

import orjson
import pytest

from tests.helpers import run_cli


@pytest.mark.parametrize("path,extra", [("submitter", []), ("client", []),
                                        ("submitter", ["--fsync-before-send"])])
def test_bench_submit_json_report(path, extra):
    result = run_cli("bench", "submit", "--seconds", "1.5", "--qps", "4", "--path", path,
                     "--json", *extra, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    report = orjson.loads(lines[0])
    for key in ("achieved_qps", "target_qps", "overhead_p99_us", "overhead_p50_us", "orders"):
        assert key in report
    assert report["target_qps"] == 4.0
    assert report["orders"] == report["orders_at_venue"] >= 3
    assert report["overhead_p99_us"] > 0 and report["achieved_qps"] > 0
    assert 0 < report["client_overhead_p50_us"] <= report["client_overhead_p99_us"]
    assert report["path"].startswith(path)
    if path == "submitter":
        assert ("PENDING fsynced" in report["store"]) == bool(extra)
        # logged as the daemon logs by default: at least one info line per accepted order
        assert report["log_lines"] >= report["orders"] and "at info" in report["log"]


def test_bench_submit_logs_at_the_level_asked():
    result = run_cli("bench", "submit", "--seconds", "1", "--qps", "4", "--log-level", "warning",
                     "--json", timeout=60)
    assert result.returncode == 0, result.stderr
    report = orjson.loads(result.stdout)
    assert report["orders"] >= 3 and report["log_lines"] == 0  # a clean run warns of nothing


def test_bench_submit_refuses_a_rate_above_the_runbook():
    result = run_cli("bench", "submit", "--seconds", "1", "--qps", "9", "--json", timeout=60)
    assert result.returncode == 2
    assert "<= 5" in result.stderr and "Traceback" not in result.stderr
