"""`anchord preflight`: the runbook's pre-deployment checklist as one command.

Each check is a function of the loaded config (and what earlier checks found) returning
(ok, detail); a check that raises an expected error fails with that error's one line. Checks run
in the runbook's order and all of them run even after a failure, so the operator sees the whole
list at once. Nothing here changes state except `preflight_metadata.json` in the state dir: the
store is opened read-only (opening it as the daemon does would apply missing migrations).
"""

from __future__ import annotations

import argparse
import dataclasses
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from daemon.config import RuntimeConfig, load_config
from daemon.errors import AnchordError, ChecksFailed

METADATA_FILE = "preflight_metadata.json"
STORE_FILE = "store.sqlite"
VENUE_TIMEOUT_S = 3.0  # connect and request timeout of the venue probe

Context = dict[str, Any]  # what checks hand on to later ones (e.g. the loaded artifact set)
CheckFn = Callable[[RuntimeConfig, Context], tuple[bool, str]]


@dataclass(frozen=True)
class CheckResult:
    """One row of the checklist: status is "pass", "fail" or "skip" (skip counts as failed:
    it could not be checked because an earlier row failed)."""

    name: str
    status: str
    detail: str

    @property
    def ok(self) -> bool:
        """True when the check passed."""
        return self.status == "pass"


def check_artifacts(cfg: RuntimeConfig, ctx: Context) -> tuple[bool, str]:
    """The artifact set at [artifacts].dir loads and every file matches its manifest hash."""
    from daemon.training.artifacts import load_artifact_set

    aset = load_artifact_set(cfg.path(cfg.artifacts.dir))
    ctx["artifacts"] = aset
    return True, f"{aset.dir} ({len(aset.manifest['files'])} files verified)"


def check_quality_gates(cfg: RuntimeConfig, ctx: Context) -> tuple[bool, str]:
    """The set's validation report passes `[quality_gates]` (the `anchord gates` logic)."""
    from daemon.training.gates import gate_results

    aset = ctx.get("artifacts")
    if aset is None:
        return False, "skip: the artifact set did not load"
    results = gate_results(aset, cfg.quality_gates)
    failed = [f"{r.name} {r.value:.4f} (rule {r.op} {r.threshold:g})"
              for r in results if r.status == "fail"]
    if failed:
        return False, "failed: " + "; ".join(failed)
    passed = sum(r.status == "pass" for r in results)
    return True, f"{passed} pass, {len(results) - passed} not applicable"


def check_metadata(cfg: RuntimeConfig, ctx: Context) -> tuple[bool, str]:
    """Git SHA and environment hash are collected and written to the state dir."""
    from daemon.training.manifest import collect_metadata

    meta = collect_metadata()
    if meta.get("git_sha", "unknown") == "unknown" or not meta.get("env_hash"):
        return False, "git SHA or environment hash unavailable"
    aset = ctx.get("artifacts")
    if aset is not None:
        meta["artifact_set"] = str(aset.dir)
    out = cfg.path(cfg.daemon.state_dir) / METADATA_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    return True, f"git {meta['git_sha'][:12]}, env {meta['env_hash'][:12]} -> {out}"


def _store_path(cfg: RuntimeConfig) -> Path:
    return cfg.path(cfg.daemon.state_dir) / STORE_FILE


class StoreUnreadable(AnchordError):
    """The state store could not be read (corrupt file, missing table)."""


def _read_store(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of one query on the store opened read-only; StoreUnreadable if SQLite refuses."""
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error as err:
        raise StoreUnreadable(f"{path}: cannot open ({err})") from None
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.Error as err:
        raise StoreUnreadable(f"{path}: {err}") from None
    finally:
        conn.close()


def check_kill_switch(cfg: RuntimeConfig, ctx: Context) -> tuple[bool, str]:
    """RiskState's kill switch is off in the persisted state and the config does not set it."""
    if cfg.risk.kill_switch:
        return False, "[risk].kill_switch = true in the config"
    path = _store_path(cfg)
    if not path.is_file():
        return True, "off (no state store yet)"
    rows = _read_store(path, "SELECT kill_switch, kill_reason FROM risk_state")
    if rows and rows[0][0]:
        return False, (f"engaged ({rows[0][1] or 'no reason'}); release it with "
                       "`anchord ctl resume` on the running daemon")
    return True, "off"


def check_store(cfg: RuntimeConfig, ctx: Context) -> tuple[bool, str]:
    """The state store passes SQLite's integrity check and has every migration applied."""
    from daemon.store import MIGRATIONS

    path = _store_path(cfg)
    if not path.is_file():
        return True, f"{path}: not created yet (the daemon creates it at first start)"
    integrity = _read_store(path, "PRAGMA integrity_check")
    if not integrity or integrity[0][0] != "ok":
        return False, f"{path}: integrity check failed ({integrity[0][0] if integrity else '?'})"
    applied = {int(r[0]) for r in _read_store(path, "SELECT version FROM schema_migrations")}
    missing = sorted(set(MIGRATIONS) - applied)
    if missing:
        return False, f"{path}: migrations {missing} not applied (of {sorted(MIGRATIONS)})"
    return True, f"integrity ok, migrations {sorted(applied)} applied"


def check_credentials(cfg: RuntimeConfig, ctx: Context) -> tuple[bool, str]:
    """The ProjectX API key is in the environment or the systemd credential directory."""
    from daemon.execution.credentials import load_api_key

    ctx["api_key"] = load_api_key()
    return True, "API key present (value not shown)"


def check_venue(cfg: RuntimeConfig, ctx: Context) -> tuple[bool, str]:
    """The Gateway at [projectx].base_url accepts a login with the key, and the configured
    account and contract resolve (short timeouts, one attempt per read)."""
    import anyio

    from daemon.execution.client import ProjectXClient

    key = ctx.get("api_key")
    if not key:
        return False, "skip: no API key to log in with"
    px = dataclasses.replace(cfg.projectx, connect_timeout_s=VENUE_TIMEOUT_S,
                             request_timeout_s=VENUE_TIMEOUT_S, read_retries=1,
                             max_backoff_s=0.1)

    async def probe() -> str:
        client = ProjectXClient(px, key)
        try:
            await client.login()
            account = await client.resolve_account()
            contract = await client.resolve_contract(cfg.data.contract)
        finally:
            await client.aclose()
        return f"{px.base_url}: account {account.name} ({account.id}), contract {contract.id}"

    try:
        return True, anyio.run(probe)
    except AnchordError as err:
        return False, f"{px.base_url}: {err}"


CHECKS: list[tuple[str, CheckFn]] = [
    ("artifact manifest verified", check_artifacts),
    ("quality gates pass", check_quality_gates),
    ("metadata collected", check_metadata),
    ("kill switch off", check_kill_switch),
    ("state store healthy", check_store),
    ("credentials present", check_credentials),
    ("venue reachable", check_venue),
]


def _one(fn: CheckFn, cfg: RuntimeConfig, ctx: Context) -> tuple[str, str]:
    try:
        ok, detail = fn(cfg, ctx)
    except AnchordError as err:
        return "fail", str(err)
    except OSError as err:  # e.g. the state dir is not writable
        return "fail", f"{type(err).__name__}: {err}"
    if not ok and detail.startswith("skip: "):
        return "skip", detail[len("skip: "):]
    return ("pass" if ok else "fail"), detail


def run_checks(config_path: str | Path) -> list[CheckResult]:
    """Every checklist item for the config at `config_path`, in order; never raises for an
    expected failure. With an invalid config the other rows are skipped (nothing to check)."""
    try:
        cfg = load_config(config_path)
    except AnchordError as err:
        return [CheckResult("config valid", "fail", str(err))] + [
            CheckResult(name, "skip", "the config is invalid") for name, _ in CHECKS]
    results = [CheckResult("config valid", "pass", str(Path(config_path).resolve()))]
    ctx: Context = {}
    for name, fn in CHECKS:
        status, detail = _one(fn, cfg, ctx)
        results.append(CheckResult(name, status, detail))
    return results


def format_results(results: list[CheckResult]) -> str:
    """The checklist as a fixed-width table: check, PASS/FAIL/SKIP, detail."""
    width = max(len(r.name) for r in results)
    lines = [f"{'check'.ljust(width)}  result  detail", f"{'-' * width}  ------  ------"]
    lines += [f"{r.name.ljust(width)}  {r.status.upper():6}  {r.detail}" for r in results]
    return "\n".join(lines)


def preflight(config_path: str | Path, as_json: bool = False) -> int:
    """Run the checklist, print it, and return 0 when every item passes (ChecksFailed if not).
    Component log lines go to stderr at warning level: stdout is the table (or the JSON)."""
    import sys

    from daemon.logs import configure_logging

    configure_logging("warning", stream=sys.stderr.buffer)
    results = run_checks(config_path)
    if as_json:
        rows = [{"name": r.name, "status": r.status, "ok": r.ok, "detail": r.detail}
                for r in results]
        print(orjson.dumps({"ok": all(r.ok for r in results), "checks": rows},
                           option=orjson.OPT_INDENT_2).decode())
    else:
        print(format_results(results))
    failed = [r.name for r in results if not r.ok]
    if failed:
        raise ChecksFailed(f"{len(failed)} of {len(results)} checks failed: "
                           f"{', '.join(failed)}")
    return 0


def add_preflight_parser(sub: argparse._SubParsersAction) -> None:
    """`anchord preflight --config runtime.toml [--json]`."""
    p = sub.add_parser("preflight", help="pre-deployment checklist (exit 1 if any check fails)")
    p.add_argument("--config", default="runtime.toml", help="path to runtime.toml")
    p.add_argument("--json", action="store_true", help="one JSON object for machines")
    p.set_defaults(func=lambda args: preflight(args.config, as_json=args.json))
