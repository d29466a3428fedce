"""`anchord audit list|show ID|verify ID`: read the adapter worker's audit trail.

`verify` re-runs the recorded cycle from the inputs the record keeps (D_t, M_t, the start
adapter and the base, content-addressed) and confirms the same adapter checksum and gate
decision on the same device class; exit 1 when it does not.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson

from daemon.errors import AnchordError, ChecksFailed


class AuditCliError(AnchordError):
    """The audit trail or a record cannot be read."""


def add_audit_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="list, show and verify adapter update records")
    p.add_argument("--config", default="runtime.toml", help="path to runtime.toml")
    p.add_argument("--state-dir", default=None, help="state directory (default: from config)")
    asub = p.add_subparsers(dest="audit_command", required=True, metavar="CMD")
    ls = asub.add_parser("list", help="one line per record")
    ls.add_argument("--json", action="store_true")
    sh = asub.add_parser("show", help="one record in full (JSON)")
    sh.add_argument("id")
    ve = asub.add_parser("verify", help="re-run a recorded cycle; same checksum and decision?")
    ve.add_argument("id")
    p.set_defaults(func=run_audit)


def _audit_dir(args: argparse.Namespace) -> Path:
    if args.state_dir:
        return Path(args.state_dir) / "audit"
    from daemon.config import load_config

    cfg = load_config(args.config)
    return cfg.path(cfg.daemon.state_dir) / "audit"


def _line(rec: dict[str, Any]) -> str:
    cs = (rec.get("adapter_checksum") or "-")[:12]
    return (f"{rec['id']}  {rec['ts'][:19]}  {rec.get('kind', 'candidate'):9}  "
            f"cycle={rec.get('cycle', '-')!s:4} {rec.get('decision', '-'):8} "
            f"version={rec.get('version') or '-'}  checksum={cs}  {rec.get('reason', '')}")


def run_audit(args: argparse.Namespace) -> int:
    from adapters.audit import AuditError, AuditLog, verify

    folder = _audit_dir(args)
    if not folder.exists():
        raise AuditCliError(f"{folder}: no audit trail here")
    log = AuditLog(folder)
    try:
        if args.audit_command == "list":
            records = log.records()
            if args.json:
                print(orjson.dumps(records, option=orjson.OPT_INDENT_2).decode())
            else:
                for rec in records:
                    print(_line(rec))
                print(f"{len(records)} records; chain {'ok' if log.chain_ok() else 'BROKEN'}")
            return 0
        if args.audit_command == "show":
            print(orjson.dumps(log.get(args.id), option=orjson.OPT_INDENT_2).decode())
            return 0
        result = verify(log, args.id)
    except AuditError as err:
        raise AuditCliError(str(err)) from None
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2, default=str).decode())
    if not result["ok"]:
        raise ChecksFailed(f"record {result['id']} not reproduced: "
                           f"checksum_match={result.get('checksum_match')} "
                           f"decision_match={result.get('decision_match')}")
    return 0
