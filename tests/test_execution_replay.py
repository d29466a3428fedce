"""The Trader, submitter and reconciliation in a daemon against the paper venue (real loopback
HTTP, real SQLite): same orders with and without faults, kill switch, refusal on mismatch."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from daemon.app import Daemon
from daemon.errors import AnchordError
from daemon.execution.attach import attach_execution
from daemon.execution.order_states import State
from daemon.risk import reduces_exposure
from daemon.store import Store
from daemon.venue import attach_to_daemon, run_venue
from tests.execution_support import (
    ALL_FAULTS,
    API_KEY,
    CONTRACT,
    config,
    execution_doc,
    run_replay,
)
from tests.venue_support import sp500


@pytest.fixture(autouse=True)
def _api_key(monkeypatch):
    monkeypatch.setenv("PROJECTX_API_KEY", API_KEY)


def _shape(orders: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    # The instance id differs between two state dirs; the intent id (tag suffix) does not.
    return [(o["customTag"].rsplit("-", 1)[1], o["side"], o["size"], o["type"], o["status"])
            for o in orders]


async def test_same_orders_in_the_same_order_with_and_without_faults(tmp_path):
    clean = await run_replay(tmp_path / "clean", "")
    faulty = await run_replay(tmp_path / "faulty", ALL_FAULTS + ",seed=3")
    assert len(clean["orders"]) >= 20
    assert _shape(faulty["orders"]) == _shape(clean["orders"])
    assert faulty["net"] == clean["net"] == faulty["filled"] == clean["filled"]
    assert set(faulty["tags"].values()) == {1}
    assert all(r.state in (State.ACCEPTED, State.RESOLVED) for r in faulty["records"])
    assert any(r.state == State.RESOLVED for r in faulty["records"])
    assert any(r.attempts > 1 for r in faulty["records"])  # absent after the checks: resent
    kinds = {k.split(":")[1] for k in faulty["faults"]}
    assert {"timeout_after_accept", "dup_tag", "reset", "5xx"} <= kinds, faulty["faults"]
    # the journal the run report reads: one bar record per bar, the position after the bar
    assert [b["position"] for b in faulty["bars"]] == [b["position"] for b in clean["bars"]]
    assert faulty["bars"][-1]["position"] == faulty["net"]
    shown = faulty["ctl_status"]
    assert shown["execution"]["phase"] == "trading"
    assert shown["execution"]["position"] == faulty["net"]
    assert shown["canary"]["step_pct"] == 100 and "venue" in shown
    metric = faulty["metric"]
    resolved = sum(1 for r in faulty["records"] if r.state == State.RESOLVED)
    assert metric("anchord_orders_final_total", {"state": "RESOLVED_accepted"}) == resolved
    assert metric("anchord_canary_step_pct") == 100 and metric("anchord_execution_trading") == 1


async def test_the_kill_switch_blocks_queued_intents_before_any_place(tmp_path):
    doc_extra = {"risk": {"kill_switch": True}}
    run = await run_replay(tmp_path, "", end="1999-01-31", extra=doc_extra)
    assert run["orders"] == [] and run["net"] == 0
    # the gate denies first; nothing reaches the outbox while the switch is on
    assert all(r.state == State.BLOCKED for r in run["records"])


async def test_an_unexplained_venue_position_halts_new_risk_unless_adopted(tmp_path):
    async def foreign_trade(venue):
        venue.advance(3)
        venue.book.place(account_id=1001, contract_id=CONTRACT, type_=2, side=0, size=3,
                         limit=None, stop=None, tag="someone-else", bar=venue.current_bar)

    halted = await run_replay(tmp_path / "a", "", end="1999-01-31", before=foreign_trade)
    mismatch = halted["ctl_status"]["ledger"]["mismatch"]
    # the ledger counted the foreign fill (it equals the venue, so it may still take risk
    # off) or, had the fill been older than its search, saw the venue's position differ
    assert mismatch["kind"] in ("foreign_fill", "position")
    position = 3
    for order in halted["orders"][1:]:  # ours: never new risk while halted
        after = position + (order["size"] if order["side"] == 0 else -order["size"])
        assert reduces_exposure(position, after), (position, after)
        position = after
    assert halted["net"] == halted["filled"] == position
    adopted = await run_replay(tmp_path / "b", "", end="1999-01-31", before=foreign_trade,
                            extra={"execution": {"on_mismatch": "adopt"}})
    assert adopted["status"]["phase"] == "trading"
    assert adopted["status"]["reconcile"]["ledger_position"] == 3  # counted or adopted
    assert adopted["ctl_status"]["ledger"]["mismatch"] is None
    assert len(adopted["orders"]) > 1 and adopted["net"] == adopted["filled"]


def test_pipeline_strategy_without_a_pipeline_is_a_clear_error(tmp_path):
    cfg = config(tmp_path, execution_doc(tmp_path, "http://127.0.0.1:9", start="1999-01-01",
                                         end="1999-01-31",
                                         extra={"execution": {"strategy": "pipeline"}}))
    daemon = Daemon(cfg)
    try:
        with pytest.raises(AnchordError, match="no pipeline is attached"):
            attach_execution(daemon)
    finally:
        daemon.store.close()


async def test_canary_sends_only_its_fraction_live_and_the_shadow_book_follows_all(tmp_path):
    from daemon.execution.canary import is_live

    run = await run_replay(tmp_path, "", end="1999-02-28", extra={"canary": {"steps": [50]}})
    sent = [o["customTag"].rsplit("-", 1)[1] for o in run["orders"]]
    assert sent and all(is_live(i, 50) for i in sent)
    shadow = [b["shadow_position"] for b in run["bars"]]
    live = [b["position"] for b in run["bars"]]
    assert shadow != live  # the shadow book traded intents the canary kept back
    assert run["net"] == live[-1]


async def test_a_paced_replay_submits_in_the_background_and_drains_at_exit(tmp_path):
    run = await run_replay(tmp_path, "place:timeout_after_accept=0.2,place:reset=0.1,seed=5",
                        end="1999-02-15", extra={"data": {"pace": 40.0}})
    assert len(run["orders"]) >= 10 and set(run["tags"].values()) == {1}
    assert all(r.final and r.accepted for r in run["records"])
    # the last bar's book: the ledger's position plus what our orders could still fill
    last = run["bars"][-1]
    assert run["net"] == run["filled"] == last["position"] + last["working"]


async def test_an_outbox_of_another_account_is_never_touched(tmp_path):
    (tmp_path / "state").mkdir()
    store = Store(tmp_path / "state" / "store.sqlite")
    store.set_meta("execution_account", "999")
    store.close()
    run = await run_replay(tmp_path, "", end="1999-01-31")
    assert run["status"]["phase"] == "refused" and run["orders"] == []
    assert "belongs to account 999" in run["status"]["refused_reason"]


async def test_engaging_the_kill_switch_cancels_our_resting_order(tmp_path):
    import anyio

    from daemon.execution.order_states import make_tag
    from daemon.intent import OrderIntent, Side

    seen: list[Any] = []
    holder: dict[str, Any] = {}

    async def keep(venue):
        holder["venue"] = venue

    async def during(daemon, execution, bar):
        seen.append(bar)
        if len(seen) == 5:  # a resting buy limit far below the market, through the outbox
            intent = OrderIntent("feedfacecafe0001", CONTRACT, bar.ts, Side.BUY, 1, 9,
                                 bar.close, Decimal("100.00"))
            rec = execution.submitter.enqueue(
                intent, make_tag(execution.instance_id, 1, intent.intent_id), 1)
            assert (await execution.submitter.wait_final(rec.tag)).state == State.ACCEPTED
        if len(seen) == 7:
            daemon._engage_kill("test")  # as SIGUSR1 / ctl kill
            with anyio.fail_after(5):
                while not any(o["status"] == 3 for o in holder["venue"].orders()):
                    await anyio.sleep(0.05)

    run = await run_replay(tmp_path, "", end="1999-01-31", before=keep, during=during)
    resting = [o for o in run["orders"] if o["customTag"].endswith("feedfacecafe0001")]
    assert [o["status"] for o in resting] == [3]  # cancelled on the kill switch
    ours = [r for r in run["records"] if r.intent_id == "feedfacecafe0001"]
    assert [r.state for r in ours] == [State.CANCELLED]  # and its record ended with it
    assert all(r.state in (State.ACCEPTED, State.BLOCKED, State.CANCELLED)
               for r in run["records"])


async def test_a_second_replay_in_the_same_state_dir_sends_every_order(tmp_path):
    # Another [data].start is another replay (another source id) over partly the same bars:
    # its intents on those bars have the first replay's ids, so only a new run epoch keeps
    # their tags apart from the first replay's settled records (else they are never sent).
    async with run_venue(sp500(), contract=CONTRACT, other_limit="unlimited") as venue:
        async def replay(start: str) -> int:
            cfg = config(tmp_path, execution_doc(tmp_path, venue.base_url, start=start,
                                                 end="1999-02-15"))
            daemon = Daemon(cfg)
            attach_to_daemon(venue, daemon)
            attach_execution(daemon)
            assert await daemon.run() == 0
            return daemon.ingest.cursor.epoch

        first_epoch = await replay("1999-01-01")
        store = Store(tmp_path / "state" / "store.sqlite")
        first_orders = len(store.journal_rows("order"))
        store.close()
        placed_before = len(venue.orders())
        second_epoch = await replay("1999-01-11")
        placed = [o["customTag"] for o in venue.orders()[placed_before:]]
        net = venue.net_position()
    store = Store(tmp_path / "state" / "store.sqlite")
    try:
        handed = [r["tag"] for r in store.journal_rows("order")[first_orders:]]
        last_position = store.journal_rows("bar")[-1]["position"]
    finally:
        store.close()
    assert first_orders >= 5 and len(handed) >= 5
    assert second_epoch > first_epoch
    assert handed == placed  # every order of the second replay reached the venue, once
    assert net == last_position
