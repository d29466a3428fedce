"""The control socket (server side in the daemon, client side for `anchord ctl`).

Protocol: one JSON object per line each way. Request `{"cmd": NAME, "args": {...}}`; answer
`{"ok": true, "result": {...}}` or `{"ok": false, "error": "..."}`. The socket is created with
mode 0600, so only the daemon's user can steer it.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import orjson
from anyio.abc import SocketStream

from daemon.errors import AnchordError, ControlError

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_REQUEST = 64 * 1024


class CommandError(AnchordError):
    """A control command was understood but refused; the text goes back to the caller."""


def _socket_in_use(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
            return True
        except OSError:
            return False


class ControlServer:
    """Serves registered command handlers on a Unix socket."""

    def __init__(self, path: Path, log: Any) -> None:
        self.path = path
        self.log = log
        self.handlers: dict[str, Handler] = {}

    def register(self, name: str, handler: Handler) -> None:
        self.handlers[name] = handler

    async def serve(self, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; removes the socket file on the way out."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            if _socket_in_use(self.path):
                raise ControlError(f"{self.path}: control socket in use by another daemon")
            self.path.unlink()
        old = os.umask(0o177)  # the socket file is born 0600: no window where others can connect
        try:
            listener = await anyio.create_unix_listener(self.path)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        task_status.started()
        try:
            async with listener:
                await listener.serve(self._handle)
        finally:
            with anyio.CancelScope(shield=True):
                self.path.unlink(missing_ok=True)

    async def _handle(self, stream: SocketStream) -> None:
        async with stream:
            try:
                request = await _read_line(stream)
                answer = await self.dispatch(request)
            except Exception as err:  # one bad client never takes the daemon down
                answer = {"ok": False, "error": f"bad request: {err}"}
            try:  # status blocks may have int or enum keys (e.g. per-step counters)
                data = orjson.dumps(answer, default=str, option=orjson.OPT_NON_STR_KEYS)
            except TypeError as err:  # never let an unanswerable reply stop the daemon
                data = orjson.dumps({"ok": False, "error": f"answer not serialisable: {err}"})
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await stream.send(data + b"\n")

    async def dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        """Run one command and return the answer envelope."""
        cmd = request.get("cmd")
        handler = self.handlers.get(cmd) if isinstance(cmd, str) else None
        if handler is None:
            return {"ok": False, "error": f"unknown command {cmd!r} "
                                          f"(known: {', '.join(sorted(self.handlers))})"}
        args = request.get("args") or {}
        try:
            result = await handler(args)
        except CommandError as err:
            self.log.warning("ctl_refused", cmd=cmd, error=str(err))
            return {"ok": False, "error": str(err)}
        self.log.info("ctl", cmd=cmd, args=args)
        return {"ok": True, "result": result}


async def _read_line(stream: SocketStream) -> dict[str, Any]:
    buf = b""
    while b"\n" not in buf:
        chunk = await stream.receive(4096)
        buf += chunk
        if len(buf) > MAX_REQUEST:
            raise ValueError("request too large")
    return orjson.loads(buf.split(b"\n", 1)[0])


def call(path: Path, cmd: str, args: dict[str, Any] | None = None,
         timeout: float = 10.0) -> dict[str, Any]:
    """Send one command to a running daemon and return its result; ControlError otherwise."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            raise ControlError(f"{path}: no control socket (is the daemon running?)") from None
        except OSError as err:
            raise ControlError(f"{path}: cannot connect ({err.strerror})") from None
        try:
            sock.sendall(orjson.dumps({"cmd": cmd, "args": args or {}}) + b"\n")
            buf = b""
            while b"\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
        except TimeoutError:
            raise ControlError(f"{path}: no answer within {timeout:g} s") from None
    if not buf:
        raise ControlError(f"{path}: the daemon closed the connection without an answer")
    answer = orjson.loads(buf.split(b"\n", 1)[0])
    if not answer.get("ok"):
        raise ControlError(f"{cmd}: {answer.get('error', 'refused')}")
    return answer.get("result") or {}
