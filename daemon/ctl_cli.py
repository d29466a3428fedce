"""`anchord ctl …`: talk to a running daemon over its control socket."""

from __future__ import annotations

import argparse
from typing import Any

import orjson

from daemon.config import load_config
from daemon.control import call


def add_ctl_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ctl", help="steer a running daemon")
    p.add_argument("--config", default="runtime.toml", help="path to runtime.toml")
    csub = p.add_subparsers(dest="ctl_command", required=True, metavar="CMD")
    st = csub.add_parser("status", help="show the daemon's state")
    st.add_argument("--json", action="store_true", help="one JSON object for machines")
    k = csub.add_parser("kill", help="engage the kill switch (answers once it is in force)")
    k.add_argument("--reason", default="ctl")
    csub.add_parser("resume", help="release the kill switch")
    n = csub.add_parser("news", help="mark a news event: embargo orders around it")
    n.add_argument("ts", help="ISO time of the news event")
    csub.add_parser("reload", help="re-read runtime.toml (same as SIGHUP)")
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


def run_ctl(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    sock = cfg.path(cfg.daemon.control_socket)
    cmd = args.ctl_command
    payload: dict[str, Any] = {}
    if cmd == "kill":
        payload = {"reason": args.reason}
    elif cmd == "news":
        payload = {"ts": args.ts}
    result = call(sock, cmd, payload)
    if cmd == "status" and not args.json:
        print(format_table(result))
    else:
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2, default=str).decode())
    return 0
