"""`anchord run` as a real subprocess, steered by real signals and the control socket."""

from __future__ import annotations

import os
import signal
import socket
import stat
import time
from pathlib import Path

import orjson

from tests.helpers import DaemonProcess, basic_config, cli_env, run_cli, write_config

WINDOW = '\nstart = "2018-06-01"\n'


def _ctl(cfg: Path, *args: str) -> dict:
    result = run_cli("ctl", "--config", str(cfg), *args)
    assert result.returncode == 0, result.stderr
    return orjson.loads(result.stdout)


def test_signals_kill_reload_and_stop(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, basic_config(extra=WINDOW))
    d = DaemonProcess(cfg)
    try:
        d.wait_for("replay_end", timeout=60)
        sock = tmp_path / "state" / "ctl.sock"
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600

        # SIGUSR1: kill switch on, logged, visible in ctl status.
        d.signal(signal.SIGUSR1)
        d.wait_for("kill_switch_engaged", source="SIGUSR1")
        assert _ctl(cfg, "status", "--json")["kill_switch"] is True

        # SIGHUP with a broken file: error logged, daemon keeps running on the old config.
        good = cfg.read_text()
        cfg.write_text(good.replace("pace = 0.0", "pace = 'fast'"))
        mark = d.mark()
        d.signal(signal.SIGHUP)
        err = d.wait_for("config_reload_failed", after=mark)
        assert "[data].pace" in err["error"]
        assert d.proc.poll() is None
        assert _ctl(cfg, "status", "--json")["bars_processed"] > 0

        # SIGHUP with a valid change: the diff is logged and applied.
        cfg.write_text(good.replace("status_interval_s = 60.0", "status_interval_s = 30.0"))
        mark = d.mark()
        d.signal(signal.SIGHUP)
        ok = d.wait_for("config_reloaded", after=mark)
        assert ok["diff"] == [{"key": "[daemon].status_interval_s", "old": 60.0, "new": 30.0}]

        # SIGUSR2: a status snapshot in the log.
        mark = d.mark()
        d.signal(signal.SIGUSR2)
        assert d.wait_for("status", after=mark)["kill_switch"] is True

        # SIGTERM: exit 0 within 5 s.
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        assert d.proc.wait(10) == 0
        assert time.monotonic() - t0 < 5.0
    finally:
        d.kill()
    for line in d.raw_lines:  # stdout is JSON lines and nothing else
        rec = orjson.loads(line)
        assert {"ts", "level", "event"} <= rec.keys()
    assert not sock.exists()

    # The kill switch survives a restart; only `ctl resume` releases it.
    d2 = DaemonProcess(cfg)
    try:
        d2.wait_for("ready")
        assert _ctl(cfg, "status", "--json")["kill_switch"] is True
        assert _ctl(cfg, "resume")["kill_switch"] is False
        assert _ctl(cfg, "status", "--json")["kill_switch"] is False
        assert _ctl(cfg, "kill", "--reason", "drill")["kill_switch"] is True
        _ctl(cfg, "news", "2018-07-02T14:00:00Z")
        table = run_cli("ctl", "--config", str(cfg), "status").stdout
        summary, detail = table.split("\n\ndetail\n------\n")
        assert summary.splitlines()[0].split(None, 2)[2] == "ON (drill)"
        assert "canary step" in summary and "\u2014" in summary  # no execution attached
        assert "kill_switch" in detail and "true" in detail
    finally:
        assert d2.stop() == 0


def test_config_cannot_release_kill_switch(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, basic_config(extra=WINDOW + "[risk]\nkill_switch = true\n"))
    d = DaemonProcess(cfg)
    try:
        d.wait_for("kill_switch_engaged", source="config")
        d.wait_for("ready")
        cfg.write_text(cfg.read_text().replace("kill_switch = true", "kill_switch = false"))
        mark = d.mark()
        d.signal(signal.SIGHUP)
        d.wait_for("config_reloaded", after=mark)
        assert _ctl(cfg, "status", "--json")["kill_switch"] is True
    finally:
        assert d.stop() == 0


def test_at_end_exit_and_resume_keeps_epoch(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, basic_config(at_end="exit", extra=WINDOW))
    first = run_cli("run", "--config", str(cfg))
    assert first.returncode == 0, first.stderr
    events = [orjson.loads(x) for x in first.stdout.splitlines()]
    start = next(e for e in events if e["event"] == "replay_start")
    assert start["epoch"] == 1 and start["start_index"] == 0
    assert next(e for e in events if e["event"] == "replay_end")["bars"] == start["total"]
    # A finished replay starts over in a new epoch.
    again = [orjson.loads(x) for x in run_cli("run", "--config", str(cfg)).stdout.splitlines()]
    assert next(e for e in again if e["event"] == "replay_start")["epoch"] == 2


def test_sd_notify_ready_watchdog_reload_stopping(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, basic_config(extra=WINDOW))
    addr = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(addr)
    sock.settimeout(10)
    d = DaemonProcess(cfg, env=cli_env(NOTIFY_SOCKET=addr, WATCHDOG_USEC="400000"))
    got: list[str] = []

    def until(word: str) -> None:
        while not any(word in g for g in got):
            got.append(sock.recv(4096).decode())

    try:
        until("READY=1")
        until("WATCHDOG=1")
        d.signal(signal.SIGHUP)
        until("RELOADING=1")
        d.signal(signal.SIGTERM)
        until("STOPPING=1")
        assert d.proc.wait(10) == 0
    finally:
        d.kill()
        sock.close()
