"""The outbox's durability (daemon/execution/outbox.py), against the paper venue: whatever a
power cut takes of the writes that were not fsynced, the order that landed is found again by its
tag, and there is one order at the venue, never two. If the transitions after PENDING are lost,
the resend under the same tag is refused by the venue ("tag in use") and the lookup resolves it;
if the PENDING record itself is lost, start-up reconciliation recovers it from the venue. SENT
is written with the answer: a record left PENDING by a request whose answer was never written is
looked up at start and resolved, never blocked or sent again."""

from __future__ import annotations

from daemon.execution import order_states as states
from daemon.execution.order_states import OutboxRecord, State, make_tag
from daemon.execution.outbox import Outbox
from daemon.intent import OrderIntent, Side, make_intent_id
from daemon.store import Store
from tests.execution_support import CONTRACT, paper_submitter, reconciler_for


def _durable_mode(store: Store) -> int:
    return int(store.conn.execute("PRAGMA synchronous").fetchone()[0])


def _enqueue_buy_one(px) -> OutboxRecord:
    """An intent to buy 1 on the venue's current bar, handed to the submitter."""
    intent = OrderIntent(make_intent_id(CONTRACT, px.bar.ts, Side.BUY, 1, 1), CONTRACT,
                         px.bar.ts, Side.BUY, 1, 1, px.bar.close)
    return px.sub.enqueue(intent, make_tag("inst", 1, intent.intent_id), 1)


def _only_pending_on_disk(store: Store, tag: str) -> None:
    """The file as a crash or power cut may leave it: the record PENDING, nothing after."""
    with store.transaction() as c:
        c.execute("UPDATE outbox SET state = 'PENDING', order_id = NULL, attempts = 0, "
                  "sent_at = NULL WHERE tag = ?", (tag,))
        c.execute("DELETE FROM outbox_log WHERE tag = ? AND event != 'Added'", (tag,))


async def test_lost_post_request_writes_are_recovered_by_tag_without_a_second_order(tmp_path):
    async with paper_submitter(tmp_path) as px:
        sub, store = px.sub, px.store
        rec = _enqueue_buy_one(px)
        assert (await sub.drive(rec.tag)).state == State.ACCEPTED
        assert _durable_mode(store) == 1  # the transitions were committed NORMAL ...
        store.set_meta("probe", "1")
        assert _durable_mode(store) == 2  # ... and the next durable write is FULL again
        # what a power cut may do: every write after the durable PENDING is gone
        _only_pending_on_disk(store, rec.tag)
        sub.outbox = Outbox(store)  # the restart after it: the outbox is read from the file
        assert sub.outbox.get(rec.tag).state == State.PENDING
        sub.requeue_in_flight()
        again = await sub.drive(rec.tag)
        assert again.state == State.RESOLVED and again.outcome == "accepted"
        assert px.venue.tag_counts()[rec.tag] == 1
        assert sub.outbox.working_position(CONTRACT) == 1  # may still fill: never resent


async def test_a_lost_pending_record_is_recovered_from_the_venue_and_never_sent_again(tmp_path):
    async with paper_submitter(tmp_path) as px:
        bar, sub, store = px.bar, px.sub, px.store
        assert not sub.outbox.fsync_pending  # the default: no fsync before the request
        intent = OrderIntent(make_intent_id(CONTRACT, bar.ts, Side.SELL, 2, -2), CONTRACT,
                             bar.ts, Side.SELL, 2, -2, bar.close)
        rec = sub.enqueue(intent, make_tag("inst", 3, intent.intent_id), 3)
        accepted = await sub.drive(rec.tag)
        assert accepted.state == State.ACCEPTED
        # what a power cut may do: the intent's record and its log never reached the disk
        with store.transaction() as c:
            c.execute("DELETE FROM outbox WHERE tag = ?", (rec.tag,))
            c.execute("DELETE FROM outbox_log WHERE tag = ?", (rec.tag,))
        sub.outbox = Outbox(store)  # the restart after it
        assert sub.outbox.get(rec.tag) is None and sub.outbox.started_at() is not None
        rc = reconciler_for(sub, store)
        report = await rc.at_start()
        assert report.ok and report.recovered == 1, report
        got = sub.outbox.get(rec.tag)
        assert (got.state, got.outcome, got.order_id) == (State.RESOLVED, "accepted",
                                                          accepted.order_id)
        assert (got.epoch, got.intent_id, got.side, got.size) == (3, intent.intent_id,
                                                                  Side.SELL, 2)
        assert [e["event"] for e in sub.outbox.log(rec.tag)] == ["Recovered", "Filled"]
        # the same intent again (the bar is decided again after the restart): no second order
        again = sub.enqueue(intent, rec.tag, 3)
        assert again.state == State.RESOLVED
        assert px.venue.tag_counts()[rec.tag] == 1
        assert rc.ledger.position(CONTRACT) == px.venue.net_position() == -2
        # another installation's tags are never taken for ours
        assert (await reconciler_for(sub, store, instance_id="other").at_start()
                ).recovered == 0


async def test_a_request_in_flight_leaves_pending_on_disk_and_sent_is_written_with_the_answer(
        tmp_path):
    async with paper_submitter(tmp_path) as px:
        bar, sub, store = px.bar, px.sub, px.store
        rec = _enqueue_buy_one(px)
        sent = sub.outbox.mark_sent(rec.tag, bar.ts)
        assert sent.state == State.SENT and sub.outbox.get(rec.tag) == sent
        assert Outbox(store).get(rec.tag).state == State.PENDING  # the file, mid-request
        done = sub.outbox.apply(rec.tag, states.Accepted(41, bar.ts))
        assert Outbox(store).get(rec.tag) == done
        assert [(e["from_state"], e["to_state"], e["event"]) for e in sub.outbox.log(rec.tag)] \
            == [("", "PENDING", "Added"), ("PENDING", "SENT", "Sent"),
                ("SENT", "ACCEPTED", "Accepted")]


async def test_a_pending_record_whose_order_landed_is_resolved_at_start_not_blocked(tmp_path):
    async with paper_submitter(tmp_path) as px:
        sub, store = px.sub, px.store
        rec = _enqueue_buy_one(px)
        accepted = await sub.drive(rec.tag)
        # the process died after the request and before the answer's commit: PENDING on disk
        _only_pending_on_disk(store, rec.tag)
        sub.outbox = Outbox(store)
        sub.risk.kill_switch = True  # killed meanwhile: the record must not become BLOCKED
        rc = reconciler_for(sub, store)
        report = await rc.at_start()
        assert report.ok, report.reason
        assert (report.restarted, report.resolved_by_lookup) == (1, 1)
        got = sub.outbox.get(rec.tag)
        assert (got.state, got.outcome, got.order_id, got.attempts) == (
            State.RESOLVED, "accepted", accepted.order_id, 1)
        assert px.venue.tag_counts()[rec.tag] == 1
        assert rc.ledger.position(CONTRACT) == px.venue.net_position() == 1
