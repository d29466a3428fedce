"""The Prometheus endpoint and the alert hook, on a real daemon subprocess."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from daemon.config import parse_config
from daemon.errors import ConfigError
from tests.helpers import DaemonProcess, basic_config, write_config


def test_metrics_endpoint_and_kill_alert(tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    hook = tmp_path / "hook.py"
    hook.write_text(f"import sys\nopen({str(out)!r}, 'ab').write(sys.stdin.buffer.read())\n")
    metrics = f'listen = "127.0.0.1:0"\nalert_command = "{sys.executable} {hook}"'
    cfg = write_config(tmp_path, basic_config(extra='start = "2018-06-01"\n', metrics=metrics))
    d = DaemonProcess(cfg)
    try:
        url = d.wait_for("metrics_listening")["url"]
        d.wait_for("replay_end", timeout=60)
        body = httpx.get(url, timeout=5).text
        assert "anchord_bars_total" in body and "anchord_kill_switch 0.0" in body
        d.signal(signal.SIGUSR1)
        d.wait_for("alert_sent", kind="kill")
        deadline = time.monotonic() + 5
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        alert = orjson.loads(out.read_bytes().splitlines()[0])
        assert alert["kind"] == "kill" and alert["source"] == "SIGUSR1"
        after = httpx.get(url, timeout=5).text
        assert "anchord_kill_switch 1.0" in after
        assert 'anchord_alerts_total{kind="kill"} 1.0' in after
    finally:
        assert d.stop() == 0


def test_metrics_must_listen_on_loopback() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"metrics": {"listen": "0.0.0.0:9464"}})
    assert err.value.key == "[metrics].listen"
