"""How much an order's path on our side costs when the machine's caches are cold.

Runs the submitter path of `anchord bench submit` (intent → outbox in a SQLite file →
Submitter → client → answer written) with a client that answers at once (no HTTP: this measures
our CPU and SQLite cost only), first back to back, then after an idle gap before each order. The
gap is either a sleep (the CPU may halt) or a busy loop (it never halts, and nothing else of ours
runs). On a dedicated machine the cost after a busy gap stays near the back-to-back cost; where
it grows with the gap, something outside the process evicts its caches (a shared host).

    .venv/bin/python scripts/cold_path_probe.py [--orders N] [--json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon.bench.submit import _percentile  # noqa: E402
from daemon.clock import WallClock  # noqa: E402
from daemon.execution.order_states import State  # noqa: E402
from daemon.execution.outbox import Outbox  # noqa: E402
from daemon.execution.submitter import SubmitSettings, Submitter  # noqa: E402
from daemon.intent import OrderIntent, Side  # noqa: E402
from daemon.logs import configure_logging, get_logger  # noqa: E402
from daemon.risk import RiskState  # noqa: E402
from daemon.store import Store  # noqa: E402

GAPS_S = (0.0, 0.001, 0.005, 0.02, 0.1, 0.5)


class InstantClient:
    """Takes every order at once, with a new order id (the network left out)."""

    def __init__(self) -> None:
        self.clock = WallClock()
        self.placed = 0

    async def wait_for_order_slot(self) -> None:
        return None

    async def place_order(self, *, last_check: Any = None, **_: object) -> int:
        if last_check is not None and last_check():
            raise RuntimeError("the probe never engages the kill switch")
        self.placed += 1
        return self.placed


async def probe(orders: int) -> dict[str, object]:
    """p50/p90 (µs) of the path per gap and gap kind."""
    client = InstantClient()
    with tempfile.TemporaryDirectory(prefix="anchord-probe-") as tmp:
        store = Store(Path(tmp) / "store.sqlite")
        store.checkpoint_off_path()
        sub = Submitter(client=client, outbox=Outbox(store), risk=RiskState.load(store, 15, 15),
                        clock=client.clock, log=get_logger("probe"), settings=SubmitSettings,
                        account_id=lambda: 1)
        n = 0

        async def one() -> float:
            nonlocal n
            n += 1
            side = Side(n % 2)
            intent = OrderIntent(intent_id=f"probe-{n}", contract="CON.F.US.EP.Z26",
                                 bar_ts=client.clock.now(), side=side, size=1,
                                 target_position=1 - n % 2, ref_price=4500.25)
            t0 = time.perf_counter_ns()
            rec = await sub.drive(sub.enqueue(intent, f"probe-{n}", 1).tag)
            took = (time.perf_counter_ns() - t0) / 1e3
            assert rec is not None and rec.state == State.ACCEPTED
            return took

        for _ in range(200):  # warm: imports, statement cache, pages
            await one()
        report: dict[str, object] = {}
        for gap in GAPS_S:
            for kind in ("sleep", "busy") if gap else ("none",):
                took = []
                for _ in range(orders if gap else 20 * orders):
                    if kind == "sleep":
                        await anyio.sleep(gap)
                    elif kind == "busy":
                        end = time.perf_counter() + gap
                        while time.perf_counter() < end:
                            pass
                    took.append(await one())
                report[f"{kind}_{gap * 1000:g}ms"] = {
                    "p50_us": round(_percentile(took, 50), 1),
                    "p90_us": round(_percentile(took, 90), 1)}
        store.close()
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=60, help="orders per gap (default 60)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    with open("/dev/null", "wb") as sink:  # log lines rendered as the daemon's, then dropped
        configure_logging("info", stream=sink)
        report = anyio.run(probe, args.orders)
    if args.json:
        print(orjson.dumps(report).decode())
    else:
        for key, value in report.items():
            print(f"{key:14} p50 {value['p50_us']:8.1f} µs   p90 {value['p90_us']:8.1f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
