"""The control socket answers status blocks with non-string keys, and an unanswerable reply is
an error answer, never the end of the daemon (found by `anchord ctl status` during the demo)."""

from __future__ import annotations

import anyio
import pytest

from daemon.control import ControlServer, call
from daemon.errors import ControlError
from daemon.logs import get_logger


async def test_int_keys_are_answered_and_a_bad_answer_does_not_stop_the_server(tmp_path):
    server = ControlServer(tmp_path / "ctl.sock", get_logger("test"))

    async def status(_args):
        return {"steps": {5: 1, 25: 2}}

    async def broken(_args):
        return {"x": {(1, 2): "tuple keys cannot be JSON"}}

    server.register("status", status)
    server.register("broken", broken)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        with pytest.raises(ControlError, match="not serialisable"):
            await anyio.to_thread.run_sync(lambda: call(server.path, "broken"))
        ok = await anyio.to_thread.run_sync(lambda: call(server.path, "status"))
        tg.cancel_scope.cancel()
    assert ok == {"steps": {"5": 1, "25": 2}}
