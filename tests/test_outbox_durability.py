"""The outbox's durability split (daemon/execution/outbox.py): only PENDING is fsynced before
the request. If a power cut loses every later transition (the record is PENDING again after
the order landed), the resend under the same tag is refused by the venue ("tag in use") and the
lookup resolves it: one order at the venue, never two."""

from __future__ import annotations

from daemon.execution.outbox import State, make_tag
from daemon.intent import OrderIntent, Side, make_intent_id
from daemon.store import Store
from tests.execution_support import CONTRACT, paper_submitter


def _durable_mode(store: Store) -> int:
    return int(store.conn.execute("PRAGMA synchronous").fetchone()[0])


async def test_lost_post_request_writes_are_recovered_by_tag_without_a_second_order(tmp_path):
    async with paper_submitter(tmp_path) as px:
        bar, sub, store = px.bar, px.sub, px.store
        intent = OrderIntent(make_intent_id(CONTRACT, bar.ts, Side.BUY, 1, 1), CONTRACT,
                             bar.ts, Side.BUY, 1, 1, bar.close)
        rec = sub.enqueue(intent, make_tag("inst", 1, intent.intent_id), 1)
        assert (await sub.drive(rec.tag)).state == State.ACCEPTED
        assert _durable_mode(store) == 2  # FULL again after the NORMAL transitions
        # what a power cut may do: every write after the durable PENDING is gone
        with store.transaction() as c:
            c.execute("UPDATE outbox SET state = 'PENDING', order_id = NULL, attempts = 0, "
                      "sent_at = NULL WHERE tag = ?", (rec.tag,))
        sub.requeue_in_flight()
        again = await sub.drive(rec.tag)
        assert again.state == State.RESOLVED and again.outcome == "accepted"
        assert px.venue.tag_counts()[rec.tag] == 1
        assert sub.outbox.expected_position(CONTRACT) == 1
