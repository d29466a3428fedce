"""The order QPS changes at run time: `anchord ctl rate-limit QPS` over the real control socket
and SIGHUP after editing `[projectx].rate_limit_qps`, on an in-process daemon."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import anyio
import pytest

from daemon.app import Daemon
from daemon.cli import main as cli_main
from daemon.config import load_config
from daemon.errors import ControlError
from daemon.execution.attach_client import build_client, register_rate_limit_command
from daemon.execution.errors import MissingCredential
from tests.helpers import basic_config, write_config

CONFIG = basic_config(extra='start = "2018-01-01"\n',
                      metrics='listen = ""') + "[projectx]\nrate_limit_qps = 2.0\n"


async def _wait_until(cond, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not cond():
            await anyio.sleep(0.02)


def _ctl(config: Path, *args: str) -> int:
    return cli_main(["ctl", "--config", str(config), *args])


async def test_ctl_rate_limit_and_sighup_change_the_order_qps(tmp_path, capsys):
    path = write_config(tmp_path, CONFIG)
    daemon = Daemon(load_config(path))
    client = build_client(daemon, env={"PROJECTX_API_KEY": "k-ctl-test-0001"})
    limiter = client.limiter
    assert limiter.order_qps == 2.0
    async with anyio.create_task_group() as tg:
        tg.start_soon(daemon.run)
        await _wait_until(lambda: daemon.control.path.exists()
                          and signal.getsignal(signal.SIGHUP) is not signal.SIG_DFL)
        assert await anyio.to_thread.run_sync(_ctl, path, "rate-limit", "3.5") == 0
        assert limiter.order_qps == 3.5
        assert '"rate_limit_qps": 3.5' in capsys.readouterr().out
        # above the runbook's 5: refused, old value kept, exit code 1 with a one-line reason
        assert await anyio.to_thread.run_sync(_ctl, path, "rate-limit", "7") == 1
        assert "<= 5" in capsys.readouterr().err and limiter.order_qps == 3.5
        # SIGHUP after an edit of the file: the reloadable key applies
        path.write_text(CONFIG.replace("rate_limit_qps = 2.0", "rate_limit_qps = 1.5"))
        os.kill(os.getpid(), signal.SIGHUP)
        await _wait_until(lambda: limiter.order_qps == 1.5)
        assert limiter.buckets["orders"].rate == 1.5
        assert daemon.status()["rate_limit"]["order_qps"] == 1.5
        # an out-of-range value in the file is refused by validation: the old rate stays
        path.write_text(CONFIG.replace("rate_limit_qps = 2.0", "rate_limit_qps = 9.0"))
        assert not daemon.reload("test")
        assert limiter.order_qps == 1.5
        daemon.request_stop("test")
    await client.aclose()


def test_register_rate_limit_command_without_a_client(tmp_path):
    daemon = Daemon(load_config(write_config(tmp_path, CONFIG)))
    from daemon.execution.attach_client import limiter_for

    limiter = limiter_for(daemon.cfg, daemon.clock)
    register_rate_limit_command(daemon, limiter)
    answer = anyio.run(daemon.control.dispatch, {"cmd": "rate-limit", "args": {"qps": 4}})
    assert answer == {"ok": True, "result": {"rate_limit_qps": 4.0, "previous": 2.0}}
    bad = anyio.run(daemon.control.dispatch, {"cmd": "rate-limit", "args": {"qps": "x"}})
    assert bad["ok"] is False
    daemon.store.close()


def test_missing_key_is_a_clear_error(tmp_path, capsys):
    daemon = Daemon(load_config(write_config(tmp_path, CONFIG)))
    with pytest.raises(MissingCredential) as err:
        build_client(daemon, env={})
    assert "PROJECTX_API_KEY" in str(err.value)
    daemon.store.close()
    assert _ctl(tmp_path / "runtime.toml", "rate-limit", "2") == ControlError.exit_code
    assert "no control socket" in capsys.readouterr().err  # no daemon is running
