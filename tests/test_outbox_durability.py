"""The outbox's durability split (daemon/execution/outbox.py): only PENDING is fsynced before
the request. If a power cut loses every later transition (the record is PENDING again after
the order landed), the resend under the same tag is refused by the venue ("tag in use") and the
lookup resolves it: one order at the venue, never two."""

from __future__ import annotations

from daemon.clock import WallClock
from daemon.execution.client import ProjectXClient
from daemon.execution.outbox import Outbox, State, make_tag
from daemon.execution.submitter import SubmitSettings, Submitter
from daemon.intent import OrderIntent, Side, make_intent_id
from daemon.logs import get_logger
from daemon.risk import RiskState
from daemon.store import Store
from daemon.venue import run_venue
from tests.execution_support import API_KEY, CONTRACT, config, execution_doc
from tests.venue_support import sp500


def _durable_mode(store: Store) -> int:
    return int(store.conn.execute("PRAGMA synchronous").fetchone()[0])


async def test_lost_post_request_writes_are_recovered_by_tag_without_a_second_order(tmp_path):
    async with run_venue(sp500(), contract=CONTRACT, other_limit="unlimited") as venue:
        venue.advance(5)
        bar = venue.current_bar
        cfg = config(tmp_path, execution_doc(tmp_path, venue.base_url, start="", end=""))
        client = ProjectXClient(cfg.projectx, API_KEY)
        await client.login()
        account = (await client.resolve_account()).id
        store = Store(tmp_path / "s.sqlite")
        sub = Submitter(client=client, outbox=Outbox(store), risk=RiskState(),
                        clock=WallClock(), log=get_logger("test"), account_id=lambda: account,
                        settings=lambda: SubmitSettings(0.01, 2, 0.01))
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
        assert venue.tag_counts()[rec.tag] == 1
        assert sub.outbox.expected_position(CONTRACT) == 1
        await client.aclose()
        store.close()
