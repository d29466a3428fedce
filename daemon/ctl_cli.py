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
    rb = csub.add_parser("rollback", help="roll the forecaster's adapter back")
    rb.add_argument("version", nargs="?", default=None,
                    help="version to activate (e.g. v000003, or 'base'); default: previous")
    csub.add_parser("rollback-artifacts",
                    help="swap to the previous artifact set under [artifacts].dir")
    csub.add_parser("adopt", help="take the venue's position into the ledger and trade on "
                                  "(after a position mismatch)")
    rl = csub.add_parser("rate-limit", help="set the order submission rate (Order/place per "
                                            "second, <= 5) without a restart")
    rl.add_argument("qps", type=float, help="orders per second, > 0 and <= 5")
    p.set_defaults(func=run_ctl)


NONE = "\u2014"  # shown when the part that reports a field is not attached


def _get(data: dict[str, Any], *path: str) -> Any:
    """data[path[0]][path[1]]...; None when any step is missing."""
    value: Any = data
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _show(value: Any) -> str:
    if value is None:
        return NONE
    if isinstance(value, bool):
        return "ON" if value else "off"
    return value if isinstance(value, str) else orjson.dumps(value, default=str).decode()


def summary_rows(data: dict[str, Any]) -> list[tuple[str, str]]:
    """The fields an on-call engineer looks for first, from the daemon's status snapshot and
    its attached parts (pipeline, execution, canary, adapters); "\u2014" when not attached."""
    kill = data.get("kill_switch")
    kill_text = _show(kill) + (f" ({data.get('kill_reason')})"
                               if kill and data.get("kill_reason") else "")
    last = _get(data, "adapters", "last")
    gate = None
    if isinstance(last, dict) and last.get("decision"):
        gate = f"{last['decision']} (cycle {last.get('cycle')})"
        if last.get("reason"):
            gate += f": {last['reason']}"
    elif isinstance(last, dict):
        gate = "none yet"
    p99 = _get(data, "pipeline", "latency_end_to_end", "p99_us")
    step = _get(data, "canary", "step_pct")
    position = _get(data, "ledger", "position")
    mismatch = _get(data, "ledger", "mismatch")
    adapter = _get(data, "adapters", "active_version")
    if adapter is None and isinstance(data.get("adapters"), dict):
        adapter = "base"
    return [
        ("kill switch", kill_text),
        ("embargo", _show(data.get("embargo_active"))),
        ("canary step", NONE if step is None else f"{step}%"),
        ("active adapter", _show(adapter)),
        ("last gate decision", _show(gate)),
        ("latency p99", NONE if p99 is None else f"{p99} us (end to end)"),
        ("open orders", _show(_get(data, "execution", "open_orders"))),
        ("position", _show(position)),
        ("day P&L", _show(_get(data, "ledger", "day_pnl"))),
        ("mismatch", NONE if "ledger" not in data
         else str(mismatch.get("reason")) if isinstance(mismatch, dict) else "none"),
    ]


def format_status(data: dict[str, Any]) -> str:
    """`ctl status` for people: the summary block, then the full flattened detail."""
    rows = summary_rows(data)
    width = max(len(k) for k, _ in rows)
    head = "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
    return f"{head}\n\ndetail\n------\n{format_table(data)}"


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
        print(format_status(result))
    else:
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2, default=str).decode())
    return 0
