"""The money path's scenarios, each as a daemon trading on the paper venue over real loopback
HTTP and a real SQLite file: the book that decides an order is the ledger's, kept equal to the
venue's, through restarts, ended orders, venue-side flattens, kills and canary steps."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from daemon.bars.model import Bar
from daemon.execution.order_states import State, make_tag
from daemon.execution.outbox import Outbox
from daemon.intent import OrderIntent, Side, intent_for_target
from daemon.pipeline.decision import Decision
from daemon.risk import Verdict
from daemon.store import Store
from tests.execution_support import API_KEY, CONTRACT, run_replay

ACCOUNT = 1001


@pytest.fixture(autouse=True)
def _api_key(monkeypatch):
    monkeypatch.setenv("PROJECTX_API_KEY", API_KEY)


def _positions(orders: list[dict[str, Any]], start: int = 0) -> list[int]:
    """The account's position after each filled order, in the order they were placed."""
    out, pos = [], start
    for o in orders:
        if o["fillVolume"]:
            pos += o["fillVolume"] if o["side"] == 0 else -o["fillVolume"]
        out.append(pos)
    return out


class Scripted:
    """A strategy with the pipeline's methods whose targets are a function of the bar's index
    (it keeps no book: `decide` is handed the basis)."""

    def __init__(self, target_of: Any) -> None:
        self.target_of = target_of
        self.n = 0
        self.targets: list[int] = []

    def decide(self, bar: Bar, position: int = 0) -> Decision:
        target = self.target_of(self.n)
        self.n += 1
        self.targets.append(target)
        return Decision(bar, target, 0.5, 0.0, 0.0, "scripted")

    def check(self, intent: OrderIntent, bar: Bar, judge: Any = None) -> Verdict:
        return judge(intent, bar) if judge is not None else Verdict(True, "ok")


# -- 1: the pipeline steps from the ledger's position, not a book of its own -----------------
async def test_a_position_held_at_start_is_stepped_from_never_round_tripped(tmp_path,
                                                                              trained_set):
    set_dir, _ = trained_set

    async def plus_four(venue):  # the account holds +4 when the daemon starts
        venue.advance(3)
        venue.book.place(account_id=ACCOUNT, contract_id=CONTRACT, type_=2, side=0, size=4,
                         limit=None, stop=None, tag="desk-manual", bar=venue.current_bar)

    run = await run_replay(tmp_path, "", start="2013-01-01", end="2013-06-28",
                           before=plus_four, extra={
                               "artifacts": {"dir": str(set_dir)},
                               "execution": {"strategy": "pipeline", "on_mismatch": "adopt"},
                               "adapters": {"enabled": False}})
    denials = Counter(r["reason"] for r in run["journal"] if r["kind"] == "deny")
    assert denials["max_order_size"] == 0, denials
    ours = [o for o in run["orders"] if o["customTag"] != "desk-manual"]
    assert ours, "the model never traded"
    positions = _positions(ours, start=4)
    steps = [abs(b - a) for a, b in zip([4, *positions], positions, strict=False)]
    assert max(steps) <= 2  # every order one step of at most max_order_size from the ledger
    assert run["net"] == run["filled"] == positions[-1]


# -- 2: orders that end at the venue end in the outbox, with their fills ----------------------
async def test_resting_orders_that_expire_leave_no_phantom_position(tmp_path):
    run = await run_replay(tmp_path, "", end="1999-04-30",
                           venue_opts={"order_expiry": "bars:1"},
                           extra={"execution": {"order_type": "limit",
                                                "limit_offset_ticks": 8,
                                                "limit_ttl_bars": 5}})
    states = Counter(r.state for r in run["records"])
    assert states[State.EXPIRED] >= 3, states
    filled = sum(r.filled if r.side == Side.BUY else -r.filled for r in run["records"])
    assert run["net"] == run["filled"] == filled  # only fills count, never an ended order
    last = run["bars"][-1]
    assert last["working"] == 0 and last["position"] == run["net"]
    assert not [r for r in run["records"] if r.open]  # nothing left open to grow the search


async def test_a_partial_fill_then_a_cancel_counts_only_what_filled(tmp_path):
    run = await run_replay(tmp_path, "", end="1999-04-30",
                           venue_opts={"max_fill_per_bar": 1},
                           extra={"execution": {"order_type": "limit",
                                                "limit_offset_ticks": 2,
                                                "limit_ttl_bars": 1}})
    partial = [r for r in run["records"] if r.state == State.CANCELLED and 0 < r.filled < r.size]
    assert partial, Counter((r.state, r.filled, r.size) for r in run["records"])
    by_id = {o["id"]: o for o in run["orders"]}
    assert all(by_id[r.order_id]["fillVolume"] == r.filled for r in run["records"]
               if r.order_id in by_id)
    assert run["net"] == run["filled"] == run["bars"][-1]["position"]
    # every intent was sized from what the account held plus what could still fill
    assert run["ctl_status"]["execution"]["working"] == 0


async def test_after_a_kill_cancels_a_resting_order_resume_sizes_from_the_ledger(tmp_path):
    import anyio

    seen: list[Bar] = []

    async def during(daemon, execution, bar):
        seen.append(bar)
        if len(seen) == 5:  # a resting buy far below the market, through the outbox
            intent = OrderIntent("feedfacecafe0002", CONTRACT, bar.ts, Side.BUY, 1, 9,
                                 bar.close, Decimal("100.00"))
            rec = execution.submitter.enqueue(
                intent, make_tag(execution.instance_id, execution.trader.epoch(),
                                 intent.intent_id), 1)
            assert (await execution.submitter.wait_final(rec.tag)).state == State.ACCEPTED
        if len(seen) == 6:
            daemon._engage_kill("test")  # cancel_open_on_kill cancels it
            with anyio.fail_after(5):
                while execution.outbox.unfilled():
                    await execution.settle()
                    await anyio.sleep(0.05)
        if len(seen) == 9:
            daemon.risk.release_kill(daemon.clock.now())  # as `anchord ctl resume`

    run = await run_replay(tmp_path, "", end="1999-02-26", during=during)
    [rec] = [r for r in run["records"] if r.intent_id == "feedfacecafe0002"]
    assert rec.state == State.CANCELLED and rec.filled == 0
    # the MA rule's target after the last bar is what the account holds: no phantom +1
    last_target = 1 if run["bars"][-1]["close"] > run["bars"][-2]["close"] else -1
    assert run["net"] == run["filled"] == last_target


# -- 3: a position changed at the venue blocks new risk at once ------------------------------
async def test_a_venue_side_flatten_blocks_new_risk_and_the_account_never_goes_short(tmp_path):
    seen: list[Bar] = []

    async def during(daemon, execution, bar):
        seen.append(bar)
        if len(seen) == 20 and execution.ledger.position(CONTRACT) != 0:
            holder["flatten"] = holder["venue"].flatten(ACCOUNT, CONTRACT)

    holder: dict[str, Any] = {}

    async def keep(venue):
        holder["venue"] = venue

    run = await run_replay(tmp_path, "", end="1999-03-31", before=keep, during=during)
    assert holder["flatten"]["success"], holder
    mismatch = run["ctl_status"]["ledger"]["mismatch"]
    assert mismatch is not None and mismatch["kind"] == "foreign_fill"
    assert run["metric"]("anchord_alerts_total", {"kind": "position_mismatch"}) >= 1
    flatten_id = holder["flatten"]["orderId"]
    orders = run["orders"]
    at = next(i for i, o in enumerate(orders) if o["id"] == flatten_id)
    after = _positions(orders)[at:]
    assert after[0] == 0 and all(p == 0 for p in after)  # nothing of ours added risk again
    assert run["net"] == run["filled"] == 0


# -- 7: start-up sends nothing unchecked -------------------------------------------------------
async def test_old_or_embargoed_pending_intents_found_at_start_are_never_sent(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    store = Store(state / "store.sqlite")
    instance = store.instance_id()
    outbox = Outbox(store)
    now = datetime.now().astimezone()
    bar_ts = datetime.fromisoformat("1999-01-05T00:00:00+00:00")
    old = intent_for_target(CONTRACT, bar_ts, 0, 1, 1244.78)
    fresh = intent_for_target(CONTRACT, bar_ts + timedelta(days=1), 0, -1, 1272.34)
    old_tag, fresh_tag = (make_tag(instance, 1, i.intent_id) for i in (old, fresh))
    outbox.add(old, old_tag, 1, now - timedelta(days=3))
    outbox.add(fresh, fresh_tag, 1, now)
    store.add_news_mark(fresh.bar_ts, "test")  # an embargo around the fresh one's bar
    store.close()
    run = await run_replay(tmp_path, "", end="1999-01-29")
    recs = {r.tag: r for r in run["records"]}
    assert recs[old_tag].state == State.BLOCKED
    assert recs[old_tag].reason.startswith("aged_out")
    assert (recs[fresh_tag].state, recs[fresh_tag].reason) == (State.BLOCKED, "news_embargo")
    sent = {o["customTag"] for o in run["orders"]}
    assert old_tag not in sent and fresh_tag not in sent
    journalled = [r["intent_id"] for r in run["journal"] if r["kind"] == "not_sent"]
    assert sorted(journalled) == sorted([old.intent_id, fresh.intent_id])
    assert run["status"]["reconcile"]["not_sent"] == 2


# -- 8: the canary limits new risk; taking risk off always goes live --------------------------
async def test_at_the_lowest_canary_step_every_exit_goes_live_the_bar_it_is_wanted(tmp_path):
    strategy = Scripted(lambda i: 1 if i % 2 == 0 else 0)  # enter, exit, enter, exit ...
    run = await run_replay(tmp_path, "", end="1999-12-31", strategy=strategy,
                           extra={"canary": {"steps": [5]}})
    bars = run["bars"]
    assert len(bars) == len(strategy.targets)
    entered = [i for i, b in enumerate(bars) if b["position"] != 0]
    assert entered, "no entry went live at 5 %: pick a longer window"
    # the bar after every live entry wants flat, and flat is what the account is then
    assert all(bars[i + 1]["position"] == 0 for i in entered if i + 1 < len(bars))
    assert all(strategy.targets[i] == 1 for i in entered)
    assert len(entered) < len(bars) / 4  # the canary held most entries back


# -- 12: every strategy goes through the same gate --------------------------------------------
async def test_the_ma_rule_is_held_to_every_limit(tmp_path):
    run = await run_replay(tmp_path, "", end="1999-02-26",
                           extra={"execution": {"ma_size": 3}})
    assert run["orders"] == []  # an entry of 3 and flips of 6 are all over max_order_size 2
    denials = Counter(r["reason"] for r in run["journal"] if r["kind"] == "deny")
    assert denials["max_order_size"] >= 5 and set(denials) == {"max_order_size"}

