"""The venue runs in a background thread and as `anchord venue`; both on real ports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from daemon.venue import venue_in_thread
from tests.venue_support import ACCOUNT, CONTRACT, sp500

ROOT = Path(__file__).resolve().parents[1]


def _login(http: httpx.Client) -> dict[str, str]:
    r = http.post("/api/Auth/loginKey", json={"userName": "u", "apiKey": "k"})
    return {"Authorization": f"Bearer {r.json()['token']}"}


def test_venue_in_a_thread_serves_a_synchronous_client():
    with venue_in_thread(sp500()[:200], faults="place:dup_tag=1") as v:
        v.advance(5)
        with httpx.Client(base_url=v.base_url, timeout=5) as http:
            auth = _login(http)
            r = http.post("/api/Order/place", headers=auth, json={
                "accountId": ACCOUNT, "contractId": CONTRACT, "type": 2, "side": 1, "size": 2,
                "customTag": "thr"})
            assert r.json()["errorCode"] == 2  # the dup_tag fault: placed, answered "in use"
        assert v.tag_counts() == {"thr": 1}
        assert v.net_position() == -2
        assert v.fault_counts() == {"place:dup_tag": 1}
        assert v.current_bar == sp500()[4]


def test_cli_venue_listens_on_a_free_port_and_steps_its_own_clock(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "venue", "--port", "0", "--pace", "0",
         "--start", "1999-03-01", "--faults", "orders:500=1"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        line = json.loads(proc.stdout.readline())
        assert line["event"] == "venue_listening" and line["port"] > 0
        with httpx.Client(base_url=line["base_url"], timeout=5) as http:
            auth = _login(http)
            state = http.get("/_venue/state").json()
            start = state["current"]["index"]
            assert state["current"]["ts"].startswith("1999-03-01")
            assert http.post("/_venue/clock", json={"advance": 3}).json()["index"] == start + 3
            placed = http.post("/api/Order/place", headers=auth, json={
                "accountId": ACCOUNT, "contractId": CONTRACT, "type": 2, "side": 0, "size": 1,
                "customTag": "cli"}).json()
            assert placed["success"]
            search = http.post("/api/Order/search", headers=auth, json={
                "accountId": ACCOUNT, "startTimestamp": "2000-01-01T00:00:00Z"})
            assert search.status_code == 500  # the injected fault
            state = http.get("/_venue/state").json()
            assert [o["customTag"] for o in state["orders"]] == ["cli"]
            assert state["faults"] == {"orders:500": 1}
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0
        assert json.loads(out.strip().splitlines()[-1])["event"] == "venue_stopping"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_refuses_a_bad_fault_spec_with_one_line():
    done = subprocess.run([sys.executable, "-m", "daemon", "venue", "--faults", "place:nope=1"],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "unknown kind 'nope'" in done.stderr


async def test_attached_venue_follows_the_daemons_replay_clock(tmp_path):
    from daemon.app import Daemon
    from daemon.config import parse_config
    from daemon.venue import attach_to_daemon, run_venue

    cfg = parse_config({"daemon": {"state_dir": str(tmp_path / "state"),
                                   "control_socket": str(tmp_path / "ctl.sock")},
                        "data": {"source": "sample:sp500", "end": "1999-03-01"}},
                       str(tmp_path / "runtime.toml"))
    daemon = Daemon(cfg)
    seen = []

    async def pipeline(bar):  # stands for the pipeline: the venue already stands on `bar`
        seen.append(venue.current_bar == bar)

    async with run_venue(sp500(), contract=cfg.data.contract) as venue:
        daemon.ingest.handlers.append(pipeline)
        attach_to_daemon(venue, daemon)
        for row in daemon.ingest.data.rows[:30]:
            await daemon.ingest.process(row)
        assert seen == [True] * 30
        assert venue.current_bar == daemon.ingest.last_bar
        status = daemon.status()
        assert status["venue"]["current_bar"] == daemon.ingest.last_bar.ts.isoformat()
    daemon.store.close()


def test_cli_venue_takes_the_order_options():
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "venue", "--port", "0", "--pace", "0", "--start", "10",
         "--max-fill-per-bar", "1", "--order-expiry", "bars:2"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        line = json.loads(proc.stdout.readline())
        with httpx.Client(base_url=line["base_url"], timeout=5) as http:
            auth = _login(http)
            state = http.get("/_venue/state").json()
            assert state["options"] == {"max_fill_per_bar": 1, "order_expiry": "bars:2"}
            data, i = sp500(), state["current"]["index"]
            limit = round(data[i].close) + 50  # marketable: 1 of 3 fills at once
            assert all(b.low <= limit for b in data[i + 1:i + 3])  # and 1 on each next bar
            placed = http.post("/api/Order/place", headers=auth, json={
                "accountId": ACCOUNT, "contractId": CONTRACT, "type": 1, "side": 0, "size": 3,
                "limitPrice": limit}).json()
            assert placed["success"]
            seen = []
            for _ in range(2):
                http.post("/_venue/clock", json={"advance": 1})
                seen += [(o["status"], o["fillVolume"])
                         for o in http.get("/_venue/state").json()["orders"]]
            assert seen == [(1, 2), (2, 3)]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)


def test_cli_refuses_a_bad_order_expiry_with_one_line():
    done = subprocess.run([sys.executable, "-m", "daemon", "venue", "--order-expiry", "weekly"],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "expected gtc, day or bars:N" in done.stderr


@pytest.mark.parametrize("value", ["two", "-1", "1.5", ""])
def test_cli_options_refuse_a_bad_max_fill_per_bar(value):
    from daemon.cli import build_parser
    from daemon.errors import AnchordError
    from daemon.venue.cli import _options

    args = build_parser().parse_args(["venue", "--max-fill-per-bar", value])
    with pytest.raises(AnchordError, match="expected a whole number >= 0") as err:
        _options(args)
    assert "\n" not in str(err.value) and getattr(err.value, "exit_code", 2) == 2
