"""`anchord ctl …`: talk to a running daemon over its control socket."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path
from typing import Any

import orjson

from daemon.config import load_config
from daemon.control import call
from daemon.errors import ConfigError


def add_ctl_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ctl", help="steer a running daemon")
    p.add_argument("--config", default="runtime.toml", help="path to runtime.toml")
    p.add_argument("--socket", default=None, help="control socket (default: from the config)")
    csub = p.add_subparsers(dest="ctl_command", required=True, metavar="CMD")
    st = csub.add_parser("status", help="show the daemon's state")
    st.add_argument("--json", action="store_true", help="one JSON object for machines")
    k = csub.add_parser("kill", help="engage the kill switch (answers once it is in force)")
    k.add_argument("--reason", default="ctl")
    csub.add_parser("resume", help="release the kill switch")
    n = csub.add_parser("news", help="mark a news event: embargo orders around it")
    n.add_argument("ts", help="ISO time of the news event")
    csub.add_parser("reload", help="re-read runtime.toml (same as SIGHUP)")
    rb = csub.add_parser("rollback", help="roll the forecaster's adapter back (issue 6)")
    rb.add_argument("version", nargs="?", default=None,
                    help="version to activate (e.g. v000003, or 'base'); default: previous")
    csub.add_parser("rollback-artifacts",
                    help="swap to the previous artifact set under [artifacts].dir")
    rl = csub.add_parser("rate-limit", help="set the order submission rate (Order/place per "
                                            "second, <= 5) without a restart")
    rl.add_argument("qps", type=float, help="orders per second, > 0 and <= 5")
    p.set_defaults(func=run_ctl)


def format_table(data: dict[str, Any]) -> str:
    """A two-column table of a status snapshot, nested values flattened with dots."""
    flat: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
            flat.append((prefix, text))

    walk("", data)
    width = max((len(k) for k, _ in flat), default=0)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in flat)


def socket_path(config_path: str) -> Path:
    """The control socket named by the config; if the file is currently invalid (an operator
    mid-edit), still find the socket so that ctl keeps working."""
    try:
        cfg = load_config(config_path)
        return cfg.path(cfg.daemon.control_socket)
    except ConfigError as err:
        try:
            raw = tomllib.loads(Path(config_path).read_text())
            value = raw["daemon"]["control_socket"]
        except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError):
            raise err from None
        return (Path(config_path).resolve().parent / str(value)).resolve()


def run_ctl(args: argparse.Namespace) -> int:
    sock = Path(args.socket) if args.socket else socket_path(args.config)
    cmd = args.ctl_command
    payload: dict[str, Any] = {}
    if cmd == "kill":
        payload = {"reason": args.reason}
    elif cmd == "news":
        payload = {"ts": args.ts}
    elif cmd == "rate-limit":
        payload = {"qps": args.qps}
    elif cmd == "rollback":
        payload = {"version": args.version}
    result = call(sock, cmd, payload)
    if cmd == "status" and not args.json:
        print(format_table(result))
    else:
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2, default=str).decode())
    return 0
