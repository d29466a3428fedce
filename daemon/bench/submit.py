"""`anchord bench submit`: hold Order/place at the configured QPS against the paper venue.

The venue runs as `anchord venue` in a child process on 127.0.0.1, as a remote Gateway would:
its request handling runs on its own interpreter, so it neither holds our GIL nor competes
with our awaits (run in a thread of this process, it did both, and every outbox write after
an answer waited for the venue thread to let go of the GIL). Its rate limits are raised to
allow the rate; the client's own budgets are sized the same way. Orders are market orders of
size 1, alternating buy and sell, each with a fresh customTag, placed one after another for
`--seconds`, either through the whole submitter path (intent → outbox in SQLite → Submitter →
client → limiter; the default when the submitter is present) or through the client and its
limiter alone. The outbox is written as the default config writes it (no fsync per order);
`--fsync-before-send` fsyncs each PENDING record before the request.

Reported: `achieved_qps` — orders per second between the first and the last order as the venue
stamped them, which must be within ±5 % of `target_qps`; `overhead_p50_us` / `overhead_p99_us`
— time spent per order on our side of the wire (for the submitter path: the outbox writes, the
kill-switch check, the state machine and the client; for the client path: building and
serialising the request, token check, limiter bookkeeping, parsing the answer), excluding the
HTTP exchange and the limiter's deliberate wait; `client_overhead_*` — the client's share;
`wire_p50_us` / `wire_p99_us` — the HTTP exchange (loopback plus the venue's handling).
Timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson

DEFAULT_SECONDS = 60.0


def add_parser(bsub: argparse._SubParsersAction) -> None:
    p = bsub.add_parser("submit", help="order submission rate and client overhead against the "
                                       "in-process paper venue")
    p.add_argument("--seconds", type=float, default=DEFAULT_SECONDS,
                   help="how long to submit (default 60)")
    p.add_argument("--qps", type=float, default=None,
                   help="target orders/s (default [projectx].rate_limit_qps of --config, or 2)")
    p.add_argument("--config", default=None, help="runtime.toml to take rate_limit_qps from")
    p.add_argument("--path", choices=("auto", "submitter", "client"), default="auto",
                   help="what to time: the submitter (outbox + Submitter + client; the default "
                        "when present) or the client alone")
    p.add_argument("--store", choices=("disk", "memory"), default="disk",
                   help="submitter path: the outbox in a SQLite file, as the daemon runs it "
                        "(default), or in memory (CPU cost only)")
    p.add_argument("--fsync-before-send", action="store_true",
                   help="disk store: fsync each PENDING record before Order/place, as with "
                        "[execution].fsync_before_send = true (default: as the default config)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default=None,
                   help="level of the JSON log lines the orders write (default [daemon].log_level "
                        "of --config, or info, as the daemon)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


@contextlib.contextmanager
def _venue_process(general_limit: str) -> Iterator[str]:
    """`anchord venue` in a child process on a free 127.0.0.1 port (its request handling runs
    on its own interpreter, as a remote Gateway's would, not on our GIL); yields its base URL.
    """
    import httpx

    with socket.socket() as s:  # a free port (the venue binds it right after)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "venue", "--port", str(port), "--pace", "0",
         "--rate-other", general_limit, "--rate-history", "unlimited", "--log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError("bench submit: the venue exited: "
                                   + proc.stderr.read().decode(errors="replace")[-2000:])
            try:
                httpx.get(f"{base_url}/_venue/state", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("bench submit: the venue did not answer in 60 s"
                                       ) from None
                time.sleep(0.1)
        yield base_url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of `values`; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class _ClientPath:
    """Orders straight through ProjectXClient.place_order (its limiter included)."""

    name = "client+limiter (ProjectXClient.place_order)"

    def __init__(self, client: Any, account: int, contract: str, state_dir: Any,
                 fsync: bool) -> None:
        self.client, self.account, self.contract = client, account, contract
        self.run = time.time_ns()

    async def place(self, n: int) -> int:
        await self.client.place_order(account_id=self.account, contract_id=self.contract,
                                      type=2, side=n % 2, size=1,
                                      custom_tag=f"bench-{self.run}-{n}")
        return self.client.last_place_overhead_ns

    def start(self, tg: Any) -> None:
        pass

    def close(self) -> None:
        pass


class _SubmitterPath:
    """Orders as the daemon sends them: intent → outbox (SQLite, PENDING before the request)
    → Submitter (kill-switch check, SENT, Order/place through the client) → ACCEPTED."""

    name = "submitter (outbox + Submitter.drive + client + limiter)"

    def __init__(self, client: Any, account: int, contract: str, state_dir: Any,
                 fsync: bool) -> None:
        from daemon.execution.outbox import Outbox
        from daemon.execution.submitter import SubmitSettings, Submitter
        from daemon.logs import get_logger
        from daemon.risk import RiskState
        from daemon.store import Store

        self.client, self.contract = client, contract
        self.store = Store(state_dir / "store.sqlite" if state_dir else ":memory:")
        self.outbox = Outbox(self.store, fsync_pending=fsync)
        risk = RiskState.load(self.store, 15.0, 15.0)
        self.submitter = Submitter(client=client, outbox=self.outbox, risk=risk,
                                   clock=client.clock, log=get_logger("bench"),
                                   settings=SubmitSettings, account_id=lambda: account)
        self.run = time.time_ns()

    async def place(self, n: int) -> int:
        from daemon.execution.order_states import State
        from daemon.intent import OrderIntent, Side

        side = Side(n % 2)
        intent = OrderIntent(intent_id=f"{self.run:x}-{n}", contract=self.contract,
                             bar_ts=self.client.clock.now(), side=side, size=1,
                             target_position=1 if side == Side.BUY else 0, ref_price=4500.25)
        t0 = time.perf_counter_ns()
        rec = self.submitter.enqueue(intent, f"bench-{self.run}-{n}", 1)
        rec = await self.submitter.drive(rec.tag)
        total = time.perf_counter_ns() - t0
        if rec is None or rec.state != State.ACCEPTED:
            raise RuntimeError(f"bench order {n} ended {rec.state if rec else None}")
        return total - self.client.last_place_wire_ns - self.client.last_place_wait_ns

    def start(self, tg: Any) -> None:
        """The daemon's background WAL checkpoints (none inside an order's commit)."""
        from daemon.store import checkpoint_loop

        tg.start_soon(checkpoint_loop, self.store)

    def close(self) -> None:
        self.store.close()


@contextlib.contextmanager
def _log_file(path: Any, level: str) -> Iterator[Any]:
    """The process's JSON log lines go to `path` at `level` (as the daemon's go to stdout)."""
    from daemon.logs import configure_logging

    with open(path, "ab") as out:
        configure_logging(level, stream=out)
        try:
            yield path
        finally:
            configure_logging("warning", stream=sys.stderr.buffer)


def _paths() -> dict[str, type]:
    paths: dict[str, type] = {"client": _ClientPath}
    try:
        import daemon.execution.submitter  # noqa: F401  (issue 5 part 2)

        paths["submitter"] = _SubmitterPath
    except ImportError:
        pass
    return paths


async def bench_submit(seconds: float, qps: float, path: str = "auto",
                       store: str = "disk", fsync: bool = False,
                       log_level: str = "info") -> dict[str, Any]:
    """Run the benchmark and return its report (see the module docstring). Logging is routed
    to the bench's log file while it runs and to stderr at warning afterwards."""
    import dataclasses
    import tempfile
    from pathlib import Path

    import anyio

    from daemon.clock import WallClock
    from daemon.config import ProjectXSection
    from daemon.errors import AnchordError
    from daemon.execution.client import ProjectXClient
    from daemon.execution.ratelimit import check_order_qps
    from daemon.timeutil import parse_utc

    qps = check_order_qps(qps)
    paths = _paths()
    if path == "auto":
        path = "submitter" if "submitter" in paths else "client"
    if path not in paths:
        raise AnchordError(f"bench submit: path {path!r} is not available here "
                           f"(available: {', '.join(paths)})")
    contract = "CON.F.US.EP.Z26"
    expected = int(qps * seconds) + 2
    # Budgets that allow the rate: the client keeps 95 % of a window, 10 % of it as a burst.
    general = f"{math.ceil(expected * 1.3 + 60 * qps * 1.3 + 50)}/60"
    clock = WallClock()
    with tempfile.TemporaryDirectory(prefix="anchord-bench-") as tmp, \
            _venue_process(general) as base_url, \
            _log_file(Path(tmp) / "anchord.log", log_level) as log_path:
        cfg = dataclasses.replace(ProjectXSection(), base_url=base_url, username="bench",
                                  account="", rate_limit_qps=qps, general_limit=general)
        async with ProjectXClient(cfg, "bench-key", clock=clock) as client:
            account = (await client.resolve_account()).id
            await client.resolve_contract(contract)
            runner = paths[path](client, account, contract,
                                 Path(tmp) if store == "disk" else None, fsync)
            overhead_us: list[float] = []
            client_us: list[float] = []
            wire_us: list[float] = []
            first = clock.now()
            start = time.perf_counter()
            deadline = start + seconds
            n = 0
            try:
                async with anyio.create_task_group() as tg:
                    runner.start(tg)
                    while time.perf_counter() < deadline:
                        overhead_us.append(await runner.place(n) / 1000)
                        client_us.append(client.last_place_overhead_ns / 1000)
                        wire_us.append(client.last_place_wire_ns / 1000)
                        n += 1
                    tg.cancel_scope.cancel()
            finally:
                runner.close()
            elapsed = time.perf_counter() - start
            # The rate as the venue saw it: creation times of the orders it accepted.
            orders = await client.search_orders(account, first - timedelta(minutes=1))
        log_lines = log_path.read_bytes().count(b"\n")
    created = sorted(parse_utc(o["creationTimestamp"]) for o in orders)
    span = (created[-1] - created[0]).total_seconds() if len(created) > 1 else 0.0
    achieved = (len(created) - 1) / span if span > 0 else 0.0
    return {
        "bench": "submit", "path": runner.name,
        "venue": "paper venue (anchord venue) in a child process, 127.0.0.1",
        "store": None if path == "client" else (
            "SQLite file, WAL, "
            + ("PENDING fsynced before the request ([execution].fsync_before_send = true), "
               "later states synchronous=NORMAL" if fsync else
               "every state synchronous=NORMAL (the default config: no fsync per order)")
            if store == "disk"
            else "SQLite in memory (no fsync: the CPU part only)"),
        "log": f"JSON lines at {log_level} to a file, as the daemon logs", "log_lines": log_lines,
        "target_qps": qps, "achieved_qps": round(achieved, 4),
        "deviation_pct": round(100 * (achieved - qps) / qps, 3),
        "within_5pct": abs(achieved - qps) <= 0.05 * qps,
        "orders": n, "orders_at_venue": len(created), "seconds": round(elapsed, 3),
        "overhead_p50_us": round(_percentile(overhead_us, 50), 1),
        "overhead_p99_us": round(_percentile(overhead_us, 99), 1),
        "overhead_max_us": round(max(overhead_us, default=0.0), 1),
        "client_overhead_p50_us": round(_percentile(client_us, 50), 1),
        "client_overhead_p99_us": round(_percentile(client_us, 99), 1),
        "wire_p50_us": round(_percentile(wire_us, 50), 1),
        "wire_p99_us": round(_percentile(wire_us, 99), 1),
        "note": "timings on a shared machine; overhead excludes the HTTP exchange and the "
                "limiter's wait",
    }


def run(args: argparse.Namespace) -> int:
    import sys

    import anyio

    from daemon.logs import configure_logging

    configure_logging("warning", stream=sys.stderr.buffer)  # stdout carries the report only

    qps, log_level = args.qps, args.log_level
    if args.config:
        from daemon.config import load_config

        cfg = load_config(args.config)
        qps = cfg.projectx.rate_limit_qps if qps is None else qps
        log_level = log_level or cfg.daemon.log_level
    report = anyio.run(bench_submit, args.seconds, 2.0 if qps is None else qps, args.path,
                       args.store, args.fsync_before_send, log_level or "info")
    if args.json:
        print(orjson.dumps(report).decode())
    else:
        for key, value in report.items():
            print(f"{key:18} {value}")
    return 0
