"""scripts/cold_path_probe.py runs the real submitter path and reports each gap it was asked
for (the figures themselves are for the machine, not asserted here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent


def test_the_probe_reports_every_gap_kind_with_ordered_percentiles():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "cold_path_probe.py"),
                             "--orders", "2", "--json"], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    report = orjson.loads(result.stdout)
    gaps = ["1ms", "5ms", "20ms", "100ms", "500ms"]
    assert list(report) == ["none_0ms"] + [f"{k}_{g}" for g in gaps for k in ("sleep", "busy")]
    for row in report.values():
        assert 0 < row["p50_us"] <= row["p90_us"]
