"""SIGTERM never waits for the network, and start-up reconciliation finishes what it left;
the kill switch blocks queued intents and cancels this installation's open orders."""

from __future__ import annotations

import dataclasses
import re
import signal
import time
from datetime import timedelta
from decimal import Decimal

import anyio

from daemon.execution.ledger import Ledger
from daemon.execution.order_states import State, make_tag
from daemon.execution.outbox import Outbox
from daemon.intent import OrderIntent, Side, make_intent_id
from daemon.logs import get_logger
from daemon.store import Store
from daemon.trading_calendar import ALWAYS_OPEN, TradingCalendar
from daemon.venue import venue_in_thread
from tests.execution_support import (
    API_KEY,
    CONTRACT,
    execution_doc,
    paper_submitter,
    toml_text,
)
from tests.helpers import DaemonProcess, cli_env, run_cli, write_config
from tests.venue_support import sp500


def test_sigterm_does_not_wait_for_a_hanging_order_and_restart_resolves_it(tmp_path):
    with venue_in_thread(sp500(), contract=CONTRACT, faults="place:timeout=1,stall_s=60",
                         other_limit="unlimited") as venue:
        venue.set_time(sp500()[0].ts)
        doc = execution_doc(tmp_path, venue.base_url, start="1999-01-01", end="1999-01-29",
                            extra={"projectx": {"request_timeout_s": 30.0}})
        cfg = write_config(tmp_path, toml_text(doc))
        env = cli_env(PROJECTX_API_KEY=API_KEY)
        first = DaemonProcess(cfg, env=env)
        try:
            first.wait_for("execution_ready", timeout=60)
            deadline = time.monotonic() + 30
            while venue.request_counts().get("place", 0) < 1:  # Order/place is hanging now
                assert time.monotonic() < deadline
                time.sleep(0.02)
            _check_status_table(cfg)
            t0 = time.monotonic()
            first.signal(signal.SIGTERM)
            assert first.proc.wait(15) == 0
            assert time.monotonic() - t0 < 10  # far less than the 30 s request timeout
        finally:
            first.kill()
        store = Store(tmp_path / "state" / "store.sqlite")
        [rec] = Outbox(store).records()
        store.close()
        # left for start-up reconciliation: SENT is written with the answer, which never came
        assert rec.state == State.PENDING
        venue.set_faults("")
        second = DaemonProcess(cfg, env=env)
        try:
            report = second.wait_for("reconciled", timeout=60)
            assert second.proc.wait(60) == 0
        finally:
            second.kill()
        assert report["restarted"] == 1 and report["ok"]
        assert venue.tag_counts()[rec.tag] == 1  # resent once with the same tag: one order
        store = Store(tmp_path / "state" / "store.sqlite")
        outbox = Outbox(store)
        after = outbox.get(rec.tag)
        events = [(r["from_state"], r["to_state"]) for r in outbox.log(rec.tag)]
        # looked up at start (absent: the hanging request never placed it), then sent once
        assert after.state == State.ACCEPTED and after.attempts == 1
        assert events[:3] == [("", "PENDING"), ("PENDING", "SENT"), ("SENT", "ACCEPTED")]
        ledger = Ledger(store, TradingCalendar(ALWAYS_OPEN), 50.0, get_logger("test"))
        assert ledger.position(CONTRACT) == venue.net_position()
        store.close()


def _check_status_table(cfg) -> None:
    """`anchord ctl status` (the table) while trading: the on-call summary first, then the
    flattened detail; parts that are not attached (pipeline, adapters) show "—"."""
    out = run_cli("ctl", "--config", str(cfg), "status")
    assert out.returncode == 0, out.stderr
    summary, detail = out.stdout.split("\n\ndetail\n------\n")
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in summary.splitlines())
    assert list(rows) == ["kill switch", "embargo", "canary step", "active adapter",
                          "last gate decision", "latency p99", "open orders", "position",
                          "day P&L", "mismatch"]
    assert rows["kill switch"] == "off" and rows["embargo"] == "off"
    assert rows["canary step"] == "100%"
    assert rows["active adapter"] == rows["last gate decision"] == rows["latency p99"] == "—"
    assert re.fullmatch(r"-?\d+", rows["position"])  # the ledger's position
    assert rows["mismatch"] == "none"
    assert re.search(r"^execution\.phase\s+trading$", detail, re.M)


def _intent(bar, side: Side, size: int, limit: Decimal | None) -> OrderIntent:
    target = size if side == Side.BUY else -size
    return OrderIntent(make_intent_id(CONTRACT, bar.ts, side, size, target), CONTRACT, bar.ts,
                       side, size, target, bar.close, limit)


async def test_kill_switch_blocks_before_place_and_cancels_our_open_orders(tmp_path):
    async with paper_submitter(tmp_path) as px:
        bar, client, account, risk, sub, venue = (px.bar, px.client, px.account, px.risk,
                                                  px.sub, px.venue)
        resting = _intent(bar, Side.BUY, 1, Decimal("100.00"))  # far below the market
        rec = sub.enqueue(resting, make_tag("inst", 1, resting.intent_id), 1)
        assert (await sub.drive(rec.tag)).state == State.ACCEPTED
        foreign = await client.place_order(account_id=account, contract_id=CONTRACT, type=1,
                                           side=0, size=1, limit_price=Decimal("100.00"),
                                           custom_tag="manual-1")
        risk.kill_switch = True
        later = _intent(dataclasses.replace(bar, ts=bar.ts + timedelta(days=1)), Side.SELL, 2,
                        None)
        blocked = sub.enqueue(later, make_tag("inst", 1, later.intent_id), 1)
        assert (await sub.drive(blocked.tag)).state == State.BLOCKED
        assert blocked.tag not in venue.tag_counts()  # never sent
        assert await sub.cancel_open_orders("ax-inst-") == 1
        status = {o["customTag"]: o["status"] for o in venue.orders()}
        assert status == {rec.tag: 3, "manual-1": 1}  # ours cancelled, the manual one kept
        assert foreign


async def test_a_kill_during_the_rate_limit_wait_blocks_the_waiting_order(tmp_path):
    async with paper_submitter(tmp_path) as px:
        bar, client, risk, sub, venue = px.bar, px.client, px.risk, px.sub, px.venue
        client.limiter.set_order_qps(1.0)  # one order a second: the second one waits ~1 s
        first = _intent(bar, Side.BUY, 1, None)
        second = _intent(dataclasses.replace(bar, ts=bar.ts + timedelta(days=1)), Side.SELL,
                         1, None)
        rec1 = sub.enqueue(first, make_tag("inst", 1, first.intent_id), 1)
        assert (await sub.drive(rec1.tag)).state == State.ACCEPTED
        rec2 = sub.enqueue(second, make_tag("inst", 1, second.intent_id), 1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(sub.drive, rec2.tag)
            await anyio.sleep(0.3)  # the second order is waiting for its slot
            assert sub.outbox.get(rec2.tag).state == State.PENDING
            risk.kill_switch = True
        assert sub.outbox.get(rec2.tag).state == State.BLOCKED
        assert rec2.tag not in venue.tag_counts()  # the kill came after the check, not before
