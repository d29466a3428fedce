"""Shared pieces of the execution tests: configs that point the daemon at a paper venue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from daemon.config import parse_config

API_KEY = "paper-key-5f3a9c"
CONTRACT = "CON.F.US.EP.Z26"

# Every fault kind the venue has, on Order/place and on the reads the submitter makes.
ALL_FAULTS = ("place:timeout_after_accept=0.05,place:reset_after_accept=0.04,"
              "place:5xx_after_accept=0.04,place:dup_tag=0.05,place:reset=0.04,"
              "place:5xx=0.04,place:timeout=0.03,place:429=0.03,orders:5xx=0.05,"
              "orders:reset=0.03,trades:503=0.05,latency_ms=1,stall_s=0.6")


def execution_doc(tmp: Path, base_url: str, *, start: str, end: str, fast: int = 1,
                  slow: int = 2, extra: dict[str, dict[str, Any]] | None = None
                  ) -> dict[str, dict[str, Any]]:
    """A runtime.toml document: an MA-crossover replay trading on the venue at `base_url`,
    canary pinned to 100 %, fast settle/lookups, the Gateway's order ceiling of 5/s."""
    doc: dict[str, dict[str, Any]] = {
        "daemon": {"state_dir": str(tmp / "state"), "control_socket": str(tmp / "ctl.sock"),
                   "status_interval_s": 60.0},
        "metrics": {"listen": ""},
        "data": {"source": "sample:sp500", "start": start, "end": end, "pace": 0.0,
                 "at_end": "exit", "contract": CONTRACT},
        "projectx": {"base_url": base_url, "username": "paper", "request_timeout_s": 0.3,
                     "connect_timeout_s": 1.0, "rate_limit_qps": 5.0,
                     "general_limit": "100000/60", "read_retries": 8, "max_backoff_s": 0.1},
        "execution": {"enabled": True, "strategy": "ma_crossover", "ma_fast": fast,
                      "ma_slow": slow, "settle_s": 0.02, "unknown_checks": 2,
                      "lookup_retry_s": 0.05, "check_interval_s": 2.0,
                      "startup_retry_s": 0.2},
        "canary": {"steps": [100]},
    }
    for section, values in (extra or {}).items():
        doc.setdefault(section, {}).update(values)
    return doc


def toml_text(doc: dict[str, dict[str, Any]]) -> str:
    """A TOML rendering of a two-level document (strings, numbers, booleans, lists)."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    lines = []
    for section, values in doc.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def reconciler_for(sub: Any, store: Any, *, instance_id: str = "inst",
                   on_mismatch: str = "halt") -> Any:
    """A Reconciler (with its ledger and venue sync) over a Submitter and its Store, as
    `attach_execution` builds one; the ledger's calendar is always open."""
    from daemon.execution.ledger import Ledger
    from daemon.execution.reconcile import Reconciler
    from daemon.execution.venue_sync import VenueSync
    from daemon.logs import get_logger
    from daemon.trading_calendar import ALWAYS_OPEN, TradingCalendar

    log = get_logger("test")
    ledger = Ledger(store, TradingCalendar(ALWAYS_OPEN), 50.0, log)
    sync = VenueSync(client=sub.client, outbox=sub.outbox, ledger=ledger, clock=sub.clock,
                     account_id=sub.account_id, market_time=lambda: None,
                     tag_prefix=f"ax-{instance_id}-", log=log)
    return Reconciler(submitter=sub, outbox=sub.outbox, sync=sync, ledger=ledger,
                      contract=CONTRACT, instance_id=instance_id, log=log,
                      on_mismatch=lambda: on_mismatch)


def config(tmp: Path, doc: dict[str, dict[str, Any]]) -> Any:
    return parse_config(doc, str(tmp / "runtime.toml"))


@asynccontextmanager
async def paper_submitter(tmp: Path, **venue_opts: Any) -> AsyncIterator[SimpleNamespace]:
    """A paper venue (sample bars, 5 bars in; `venue_opts` such as faults) and a Submitter on
    a real SQLite outbox in `tmp`, logged in: yields venue, bar (the current one), client,
    account, store, risk, sub."""
    from daemon.clock import WallClock
    from daemon.execution.client import ProjectXClient
    from daemon.execution.outbox import Outbox
    from daemon.execution.submitter import SubmitSettings, Submitter
    from daemon.logs import get_logger
    from daemon.risk import RiskState
    from daemon.store import Store
    from daemon.venue import run_venue
    from tests.venue_support import sp500

    async with run_venue(sp500(), contract=CONTRACT, other_limit="unlimited",
                         **venue_opts) as venue:
        venue.advance(5)
        cfg = config(tmp, execution_doc(tmp, venue.base_url, start="", end=""))
        client = ProjectXClient(cfg.projectx, API_KEY)
        await client.login()
        account = (await client.resolve_account()).id
        store = Store(tmp / "s.sqlite")
        risk = RiskState()
        sub = Submitter(client=client, outbox=Outbox(store), risk=risk, clock=WallClock(),
                        log=get_logger("test"), account_id=lambda: account,
                        settings=lambda: SubmitSettings(0.01, 2, 0.01))
        try:
            yield SimpleNamespace(venue=venue, bar=venue.current_bar, client=client,
                                  account=account, store=store, risk=risk, sub=sub)
        finally:
            await client.aclose()
            store.close()


async def run_replay(tmp: Path, faults: str, *, start: str = "1999-01-01",
                     end: str = "1999-03-31", extra: dict | None = None, before: Any = None,
                     during: Any = None, venue_opts: dict[str, Any] | None = None,
                     strategy: Any = None) -> dict[str, Any]:
    """A Daemon (MA-crossover replay, canary 100 %) trading on an in-process paper venue over
    real loopback HTTP until the replay ends: what the venue, the outbox, the journal and the
    status said. `before(venue)` runs before the daemon starts; `during(daemon, execution,
    bar)` is the last handler of every bar; `strategy` replaces the MA rule (as the pipeline,
    with `[execution].strategy = "pipeline"`)."""
    from daemon.app import Daemon
    from daemon.execution.attach import attach_execution
    from daemon.execution.outbox import Outbox
    from daemon.store import Store
    from daemon.venue import attach_to_daemon, run_venue
    from tests.venue_support import sp500

    async with run_venue(sp500(), contract=CONTRACT, faults=faults, other_limit="unlimited",
                         **(venue_opts or {})) as venue:
        if before is not None:
            await before(venue)
        extra = dict(extra or {})
        if strategy is not None:
            extra["execution"] = {**extra.get("execution", {}), "strategy": "pipeline"}
        cfg = config(tmp, execution_doc(tmp, venue.base_url, start=start, end=end,
                                        extra=extra))
        daemon = Daemon(cfg)
        if strategy is not None:
            daemon.pipeline = strategy
        attach_to_daemon(venue, daemon)
        execution = attach_execution(daemon)
        snaps: list[dict[str, Any]] = []

        async def snapshot(bar: Any) -> None:  # what `anchord ctl status` shows after it
            snaps[:] = [daemon.status()]

        daemon.ingest.handlers.append(snapshot)
        if during is not None:
            daemon.ingest.handlers.append(lambda bar: during(daemon, execution, bar))
        assert await daemon.run() == 0
        store = Store(tmp / "state" / "store.sqlite")
        try:
            return {"venue": venue, "orders": venue.orders(),
                    "records": Outbox(store).records(), "net": venue.net_position(),
                    "tags": venue.tag_counts(), "bars": store.journal_rows("bar"),
                    "journal": store.journal_rows(), "faults": venue.fault_counts(),
                    "status": {"phase": execution.phase,
                               "refused_reason": execution.refused_reason,
                               "reconcile": execution.report.to_dict()},
                    "filled": execution.ledger.position(CONTRACT),
                    "ctl_status": snaps[-1] if snaps else {},
                    "metric": daemon.metrics.value}
        finally:
            store.close()
