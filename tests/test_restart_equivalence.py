"""A restart does not change what the daemon does next: `anchord run` (a real subprocess, the
model pipeline with adapter updates and recalibration on, every fault kind of the paper venue)
killed with SIGKILL at three different bars and restarted places exactly the orders, in the same
order, and ends with the same position and equity as the same replay uninterrupted."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from daemon.store import Store
from daemon.venue import venue_in_thread
from tests.execution_support import ALL_FAULTS, API_KEY, CONTRACT, execution_doc, toml_text
from tests.helpers import DaemonProcess, cli_env, write_config
from tests.venue_support import sp500

START, END = "2013-01-01", "2014-01-31"
KILL_AT_BARS = (100, 192, 240)
FAULTS = ALL_FAULTS + ",seed=21"


def _doc(tmp: Path, base_url: str, set_dir: Path) -> dict[str, dict[str, Any]]:
    return execution_doc(tmp, base_url, start=START, end=END, extra={
        "artifacts": {"dir": str(set_dir)},
        "execution": {"strategy": "pipeline"},
        "canary": {"steps": [25, 100], "window_bars": 40, "healthy_windows": 1},
        "adapters": {"every_n_bars": 40, "window_bars": 40, "gate_holdout_bars": 10,
                     "min_spacing_bars": 20, "monitor_bars": 20, "monitor_every_bars": 5},
        "promotion": {"delta": 0.01, "tolerance": 0.005},
        "pipeline": {"ece_window": 40, "ece_min_samples": 20, "ece_target": 0.05}})


def _cursor(state: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{state / 'store.sqlite'}?mode=ro", uri=True, timeout=1)
        try:
            row = conn.execute("SELECT MAX(next_index) FROM replay_cursor").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return 0
    return int(row[0] or 0)


def _run(tmp: Path, set_dir: Path, kill_at: int | None) -> dict[str, Any]:
    env = cli_env(PROJECTX_API_KEY=API_KEY)
    with venue_in_thread(sp500(), contract=CONTRACT, faults=FAULTS,
                         other_limit="unlimited") as venue:
        venue.set_time(sp500()[0].ts)
        config = write_config(tmp, toml_text(_doc(tmp, venue.base_url, set_dir)))
        proc = DaemonProcess(config, env=env)
        try:
            if kill_at is not None:
                deadline = time.monotonic() + 300
                while _cursor(tmp / "state") < kill_at:
                    proc.assert_running()
                    assert time.monotonic() < deadline
                    time.sleep(0.005)
                proc.kill()  # SIGKILL, somewhere inside the next bar
                proc = DaemonProcess(config, env=env)
            assert proc.exit_code(600) == 0
        finally:
            proc.kill()
        orders = venue.orders()
        net = venue.net_position()
    store = Store(tmp / "state" / "store.sqlite")
    try:
        journal = store.journal_rows()
    finally:
        store.close()
    bars = [r for r in journal if r["kind"] == "bar"]
    return {"orders": [(o["customTag"].rsplit("-", 1)[1], o["side"], o["size"])
                       for o in orders], "net": net, "bars": bars,
            "equity": bars[-1]["equity"], "position": bars[-1]["position"],
            "kinds": [(r["kind"], len([b for b in bars if b["seq"] < r["seq"]]), r)
                      for r in journal if r["kind"] in ("promotion", "recalibration")]}


def test_a_replay_killed_at_three_bars_places_the_orders_of_one_that_never_stopped(
        tmp_path, trained_set):
    set_dir, _ = trained_set
    whole = _run(tmp_path / "whole", set_dir, None)
    promotions = [bar for kind, bar, _ in whole["kinds"] if kind == "promotion"]
    recals = [bar for kind, bar, r in whole["kinds"] if kind == "recalibration"
              and r.get("applied")]
    print(f"\nRESTART whole: orders={len(whole['orders'])} position={whole['position']} "
          f"equity={whole['equity']} promotions_at_bar={promotions} "
          f"applied_recalibrations_at_bar={recals}")
    assert len(whole["orders"]) >= 20
    # an applied recalibration lies before every kill, an applied cycle before the later two
    assert promotions and promotions[0] < KILL_AT_BARS[1], promotions
    assert recals and recals[0] < KILL_AT_BARS[0], recals
    for kill_at in KILL_AT_BARS:
        run = _run(tmp_path / f"kill{kill_at}", set_dir, kill_at)
        print(f"RESTART killed at bar {kill_at}: orders={len(run['orders'])} "
              f"position={run['position']} equity={run['equity']}")
        assert run["orders"] == whole["orders"], kill_at
        assert run["net"] == whole["net"] == run["position"] == whole["position"]
        assert run["equity"] == whole["equity"]
        assert [b["close"] for b in run["bars"]] == [b["close"] for b in whole["bars"]]
