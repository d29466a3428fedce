"""`anchord bench submit`: hold Order/place at the configured QPS against the paper venue.

The venue runs in-process on 127.0.0.1 with its rate limits raised to allow the rate; the
client's own budgets are sized the same way. Orders are market orders of size 1, alternating
buy and sell, each with a fresh customTag, placed one after another through the client and its
rate limiter for `--seconds`.

Reported: `achieved_qps` — orders per second between the first and the last order, which must
be within ±5 % of `target_qps`; `overhead_p50_us` / `overhead_p99_us` — time spent per order in
the client itself (building and serialising the request, token check, limiter bookkeeping,
parsing and checking the answer), excluding the HTTP exchange and the limiter's deliberate
wait; `wire_p50_us` / `wire_p99_us` — the HTTP exchange (loopback plus the venue's handling,
which shares this event loop). Timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import math
import time
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
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of `values`; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


async def bench_submit(seconds: float, qps: float) -> dict[str, Any]:
    """Run the benchmark and return its report (see the module docstring)."""
    import dataclasses

    from daemon.bars.model import Bar
    from daemon.clock import WallClock
    from daemon.config import ProjectXSection
    from daemon.execution.client import ProjectXClient
    from daemon.execution.ratelimit import check_order_qps
    from daemon.venue import run_venue
    from daemon.venue.server import FIRST_ACCOUNT_ID

    qps = check_order_qps(qps)
    contract = "CON.F.US.EP.Z26"
    expected = int(qps * seconds) + 2
    # Budgets that allow the rate: the client keeps 95 % of a window, 10 % of it as a burst.
    general = f"{math.ceil(expected * 1.3 + 60 * qps * 1.3 + 50)}/60"
    clock = WallClock()
    now = clock.now()
    bars = [Bar(contract, now, 4500.0, 4501.0, 4499.0, 4500.25, 1000.0)]
    async with run_venue(bars, clock=clock, other_limit=general, history_limit="unlimited",
                         username="bench", api_key="bench-key") as venue:
        venue.advance()
        cfg = dataclasses.replace(ProjectXSection(), base_url=venue.base_url, username="bench",
                                  account="", rate_limit_qps=qps, general_limit=general)
        async with ProjectXClient(cfg, "bench-key", clock=clock) as client:
            account = (await client.resolve_account()).id
            await client.resolve_contract(contract)
            assert account == FIRST_ACCOUNT_ID
            overhead_us: list[float] = []
            wire_us: list[float] = []
            run = time.time_ns()
            start = time.perf_counter()
            deadline = start + seconds
            n = 0
            while time.perf_counter() < deadline:
                await client.place_order(account_id=account, contract_id=contract, type=2,
                                         side=n % 2, size=1, custom_tag=f"bench-{run}-{n}")
                overhead_us.append(client.last_place_overhead_ns / 1000)
                wire_us.append(client.last_place_wire_ns / 1000)
                n += 1
            elapsed = time.perf_counter() - start
            # The rate as the venue saw it: creation times of the orders it accepted.
            created = sorted(o["creationTimestamp"] for o in venue.orders())
    span = (created[-1] - created[0]).total_seconds() if len(created) > 1 else 0.0
    achieved = (len(created) - 1) / span if span > 0 else 0.0
    return {
        "bench": "submit", "path": "client+limiter (ProjectXClient.place_order)",
        "venue": "paper venue in-process, 127.0.0.1",
        "target_qps": qps, "achieved_qps": round(achieved, 4),
        "deviation_pct": round(100 * (achieved - qps) / qps, 3),
        "within_5pct": abs(achieved - qps) <= 0.05 * qps,
        "orders": n, "orders_at_venue": len(created), "seconds": round(elapsed, 3),
        "overhead_p50_us": round(_percentile(overhead_us, 50), 1),
        "overhead_p99_us": round(_percentile(overhead_us, 99), 1),
        "overhead_max_us": round(max(overhead_us, default=0.0), 1),
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

    qps = args.qps
    if qps is None:
        qps = 2.0
        if args.config:
            from daemon.config import load_config

            qps = load_config(args.config).projectx.rate_limit_qps
    report = anyio.run(bench_submit, args.seconds, qps)
    if args.json:
        print(orjson.dumps(report).decode())
    else:
        for key, value in report.items():
            print(f"{key:18} {value}")
    return 0
