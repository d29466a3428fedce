"""The outbox state machine under random outcomes and crashes (hypothesis).

The real Submitter and reconciliation drive the real outbox in a real SQLite file against an
in-memory venue whose answers are scripted by hypothesis: accepted, rejected, lost before or
after the order landed (timeout, 5xx, reset, 429, "tag in use"), failed lookups, crashes
(the process dies before or after the venue placed the order; the SQLite file is reopened), and
power cuts after the order landed that lose every write since the last fsynced one (the file
goes back to how it was at its last durable commit).
The venue here does NOT enforce customTag uniqueness, so the checks hold for our logic alone:
never two orders for one intent, never a lost intent, only legal transitions, and the venue's
position equal to the outbox's.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.clock import ManualClock
from daemon.execution import order_states as states
from daemon.execution.errors import (
    GatewayError,
    GatewayUnavailable,
    OrderNotSent,
    OrderOutcomeUnknown,
    OrderRejected,
    RateLimited,
    TagInUse,
)
from daemon.execution.order_states import FINAL, IllegalTransition, State, make_tag, transition
from daemon.execution.outbox import _COLUMNS, Outbox, _sql, _to_row
from daemon.execution.reconcile import Reconciler
from daemon.execution.submitter import SubmitSettings, Submitter
from daemon.intent import Side, intent_for_target
from daemon.logs import get_logger
from daemon.risk import RiskState
from daemon.store import Store
from tests.execution_support import reconciler_for

CONTRACT = "CON.F.US.EP.Z26"
T0 = datetime(2024, 1, 2, tzinfo=UTC)
LEGAL = {
    ("", "PENDING"), ("PENDING", "SENT"), ("PENDING", "BLOCKED"), ("SENT", "ACCEPTED"),
    ("SENT", "REJECTED"), ("SENT", "UNKNOWN"), ("UNKNOWN", "UNKNOWN"), ("UNKNOWN", "RESOLVED"),
    ("UNKNOWN", "SENT"), ("UNKNOWN", "BLOCKED"), ("ACCEPTED", "ACCEPTED"),
    ("RESOLVED", "RESOLVED"), ("", "RESOLVED"),  # recovered from the venue
    ("PENDING", "RESOLVED"),  # found at start: sent by a process that died before its answer
}
PLACE = ["ok", "ok", "ok", "reject", "timeout", "5xx", "reset", "429", "timeout_after",
         "5xx_after", "dup_after", "crash_before", "crash_after", "power_cut_after"]
LOOKUP = ["ok", "ok", "ok", "fail"]


class Crash(BaseException):
    """The daemon process dies here (nothing after this line of the submitter runs)."""


class PowerCut(BaseException):
    """The machine loses power here: the process dies and unsynced writes may be gone."""


class PowerCutStore(Store):
    """A Store that remembers its file as of the last fsynced commit: what a power cut leaves
    (everything committed with synchronous=NORMAL since then is lost)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.durable_image = self.conn.serialize()

    @contextmanager
    def transaction(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        with super().transaction(durable) as c:
            yield c
        if durable:
            self.durable_image = self.conn.serialize()

    def power_cut(self) -> None:
        """The machine loses power: the process is gone and the file is the durable image."""
        image, path = self.durable_image, Path(self.path)
        self.conn.close()
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        path.write_bytes(image)


class ScriptedVenue:
    """Orders, fills and positions in memory; answers scripted per call."""

    def __init__(self, place: list[str], lookup: list[str]) -> None:
        self.place = iter(place)
        self.lookup = iter(lookup)
        self.orders: list[dict[str, Any]] = []

    def _land(self, tag: str, side: int, size: int, status: int) -> dict[str, Any]:
        order = {"id": len(self.orders) + 1, "customTag": tag, "side": side, "size": size,
                 "status": status, "contractId": CONTRACT}
        self.orders.append(order)
        return order

    async def wait_for_order_slot(self) -> None:
        pass

    async def place_order(self, *, account_id, contract_id, type, side, size, limit_price,
                          custom_tag, last_check=None) -> int:
        what = next(self.place, "ok")
        if what == "crash_before":
            raise Crash
        if last_check is not None and (reason := last_check()):
            raise OrderNotSent(custom_tag, reason)
        if what in ("timeout", "5xx", "reset"):
            raise OrderOutcomeUnknown(custom_tag, what)
        if what == "429":
            raise RateLimited("Order/place", 1.0)
        if what == "reject":
            order = self._land(custom_tag, side, size, 5)
            raise OrderRejected("Order/place", 2, "Invalid", order["id"], custom_tag)
        order = self._land(custom_tag, side, size, 2)
        if what in ("timeout_after", "5xx_after"):
            raise OrderOutcomeUnknown(custom_tag, what)
        if what == "dup_after":
            raise TagInUse("Order/place", 2, "Specified custom tag is already in use", None,
                           custom_tag)
        if what == "crash_after":
            raise Crash
        if what == "power_cut_after":
            raise PowerCut
        return order["id"]

    async def search_orders(self, account_id, start, end=None) -> list[dict[str, Any]]:
        if next(self.lookup, "ok") == "fail":
            raise GatewayUnavailable("Order/search", "HTTP 503", 503)
        return [dict(o) for o in self.orders]

    async def search_trades(self, account_id, start, end=None) -> list[dict[str, Any]]:
        return [{"id": o["id"], "orderId": o["id"], "contractId": CONTRACT, "side": o["side"],
                 "size": o["size"], "price": "100.25", "fees": "0", "voided": False,
                 "creationTimestamp": "2024-01-02T00:00:00Z"}
                for o in self.orders if o["status"] == 2]

    async def search_open_positions(self, account_id) -> list[dict[str, Any]]:
        net = self.net()
        return [] if net == 0 else [{"contractId": CONTRACT, "type": 1 if net > 0 else 2,
                                     "size": abs(net)}]

    async def search_open_orders(self, account_id) -> list[dict[str, Any]]:
        return []

    def net(self) -> int:
        return sum(o["size"] if o["side"] == 0 else -o["size"] for o in self.orders
                   if o["status"] == 2)


def _submitter(store: Store, venue: ScriptedVenue, risk: RiskState) -> Submitter:
    return Submitter(client=venue, outbox=Outbox(store), risk=risk, clock=ManualClock(T0),
                     log=get_logger("test"), account_id=lambda: 1,
                     settings=lambda: SubmitSettings(settle_s=0.1, unknown_checks=2,
                                                     lookup_retry_s=0.1))


async def _restart(path: Path, venue: ScriptedVenue, risk: RiskState
                   ) -> tuple[Store, Submitter, Reconciler]:
    """A new process: open the file and reconcile; it may crash again while doing so."""
    risk.kill_switch = False
    while True:
        store = PowerCutStore(path)
        sub = _submitter(store, venue, risk)
        rc = reconciler_for(sub, store)
        try:  # as Execution._start: a failed lookup is retried, never guessed
            report = await rc.at_start()
        except GatewayError:
            store.conn.close()
            continue
        except Crash:
            store.conn.close()
            continue
        except PowerCut:
            store.power_cut()
            continue
        assert report.ok and rc.ledger.mismatch is None, report.reason
        return store, sub, rc


def _assert_view_matches_file(live: Outbox, store: Store) -> None:
    """The outbox's in-memory view (open records, positions) equals one read from the file."""
    fresh = Outbox(store)
    assert [r.tag for r in live.in_flight()] == [r.tag for r in fresh.in_flight()]
    assert live.unfilled() == fresh.unfilled()
    assert live.working_position(CONTRACT) == fresh.working_position(CONTRACT)
    for rec in fresh.in_flight():
        assert live.get(rec.tag) == rec


async def _run(path: Path, targets: list[int], venue: ScriptedVenue,
               kills: list[bool]) -> tuple[Store, list[str]]:
    store = PowerCutStore(path)
    risk = RiskState()
    sub = _submitter(store, venue, risk)
    tags: list[str] = []
    rc = reconciler_for(sub, store)
    for i, target in enumerate(targets):
        risk.kill_switch = kills[i % len(kills)]
        await rc.sync.sync()  # the fills so far, as after each bar
        position = rc.ledger.position(CONTRACT) + sub.outbox.working_position(CONTRACT)
        intent = intent_for_target(CONTRACT, T0 + timedelta(days=i), position, target, 100.0)
        if intent is None:
            continue
        rec = sub.enqueue(intent, make_tag("inst", 1, intent.intent_id), 1)
        tags.append(rec.tag)
        try:
            await sub.drive(rec.tag)
            _assert_view_matches_file(sub.outbox, store)
        except Crash:  # the process dies; a new one opens the same file and reconciles
            store.conn.close()
            store, sub, rc = await _restart(path, venue, risk)
        except PowerCut:  # the intent's record (and more) is gone although its order landed
            store.power_cut()
            store, sub, rc = await _restart(path, venue, risk)
            assert sub.outbox.get(rec.tag).state in FINAL  # recovered from the venue
    store.conn.close()  # a last restart: reconciliation also records every fill
    store, sub, rc = await _restart(path, venue, risk)
    _assert_view_matches_file(sub.outbox, store)
    return store, tags, rc.ledger.position(CONTRACT)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(targets=st.lists(st.sampled_from([-2, -1, 0, 1, 2]), min_size=1, max_size=8),
       place=st.lists(st.sampled_from(PLACE), max_size=30),
       lookup=st.lists(st.sampled_from(LOOKUP), max_size=20),
       kills=st.lists(st.booleans(), min_size=1, max_size=3).map(
           lambda k: k if any(not x for x in k) else [False]))
def test_random_outcomes_and_crashes_never_duplicate_or_lose(tmp_path_factory, targets, place,
                                                              lookup, kills):
    path = tmp_path_factory.mktemp("ob") / "store.sqlite"
    venue = ScriptedVenue(place, lookup)
    store, tags, ledger_position = anyio.run(_run, path, targets, venue, kills)
    try:
        outbox = Outbox(store)
        recs = {r.tag: r for r in outbox.records()}
        # never a lost intent: every intent handed in is in the outbox, and final
        assert set(tags) <= set(recs)
        assert all(r.state in FINAL for r in recs.values()), outbox.counts()
        # never two placements of one intent (the venue here would have accepted a duplicate)
        by_tag: dict[str, list[dict[str, Any]]] = {}
        for o in venue.orders:
            by_tag.setdefault(o["customTag"], []).append(o)
        assert all(len(v) == 1 for v in by_tag.values()), by_tag
        for tag, rec in recs.items():
            landed = by_tag.get(tag, [])
            if rec.accepted:
                assert len(landed) == 1 and landed[0]["status"] == 2
                assert rec.order_id == landed[0]["id"]
            elif rec.state == State.BLOCKED:
                assert landed == []
            else:  # REJECTED or RESOLVED-rejected: nothing filled
                assert all(o["status"] == 5 for o in landed)
        # only legal transitions, as recorded in the store
        for row in outbox.log():
            assert (row["from_state"], row["to_state"]) in LEGAL, row
        # the ledger holds the venue's position, and nothing of ours may still fill
        assert venue.net() == ledger_position
        assert outbox.working_position(CONTRACT) == 0
    finally:
        store.close()


EVENTS = [states.Sent(T0), states.Accepted(7, T0), states.Rejected("x", T0),
          states.Unknown("x", T0), states.Restarted(T0), states.Found(7, False, T0),
          states.Found(7, True, T0), states.Absent(2, T0), states.Blocked("kill_switch", T0),
          states.Filled(1, None, T0)]


@given(st.lists(st.sampled_from(EVENTS), max_size=25))
def test_transition_allows_only_the_drawn_edges(events):
    intent = intent_for_target(CONTRACT, T0, 0, 1, 100.0)
    rec = states.new_record(intent, "t", 1, 1, T0)
    sends = 0  # requests known to have gone out: sent, or found at the venue from PENDING
    for event in events:
        try:
            new = transition(rec, event)
        except IllegalTransition:
            continue
        assert (rec.state.value, new.state.value) in LEGAL | {(s.value, s.value) for s in State}
        if isinstance(event, states.Sent):
            sends += 1
            # a resend only after the lookups said the order is absent
            assert rec.state == State.PENDING or rec.resend_due
        if isinstance(event, states.Found) and rec.state == State.PENDING:
            sends += 1
        if rec.state in FINAL:
            assert new.state == rec.state
        rec = new
    assert rec.attempts == sends


def test_tags_are_stable_per_intent_and_differ_per_instance_and_epoch():
    assert make_tag("a1", 1, "ff00") == make_tag("a1", 1, "ff00")
    assert len({make_tag("a1", 1, "ff00"), make_tag("b2", 1, "ff00"),
                make_tag("a1", 2, "ff00")}) == 3


def test_adding_the_same_intent_twice_keeps_one_record(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    outbox = Outbox(store)
    intent = intent_for_target(CONTRACT, T0, 0, -1, 100.0)
    a = outbox.add(intent, "tag-1", 1, T0)
    b = outbox.add(intent, "tag-1", 1, T0 + timedelta(seconds=5))
    assert a == b and len(outbox.records()) == 1
    assert a.side == Side.SELL and outbox.working_position(CONTRACT) == -1
    with pytest.raises(IllegalTransition):
        outbox.apply("tag-1", states.Accepted(1, T0))  # PENDING cannot be accepted: never sent
    store.close()


_MOMENTS = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1),
                        timezones=st.just(UTC))
_PRICES = st.none() | st.decimals(min_value=0, max_value=100_000, places=2)
_RECORDS = st.builds(
    states.OutboxRecord, tag=st.text(min_size=1, max_size=20), seq=st.integers(1, 10**9),
    intent_id=st.text(max_size=20), epoch=st.integers(0, 10**6), contract=st.just(CONTRACT),
    bar_ts=_MOMENTS, side=st.sampled_from(Side), size=st.integers(1, 100),
    target_position=st.integers(-100, 100), ref_price=st.floats(0, 1e5),
    limit_price=_PRICES, state=st.sampled_from(State), created_at=_MOMENTS,
    updated_at=_MOMENTS, order_id=st.none() | st.integers(1, 10**9),
    attempts=st.integers(0, 9), checks=st.integers(0, 9), resend_due=st.booleans(),
    outcome=st.sampled_from(["", "accepted", "rejected"]), reason=st.text(max_size=30),
    filled=st.integers(0, 100), fill_price=_PRICES, sent_at=st.none() | _MOMENTS)


@given(rec=_RECORDS, other=_RECORDS, names=st.sets(st.sampled_from(states._FIELDS)))
def test_the_hot_path_row_and_copy_agree_with_the_generic_ones(rec, other, names):
    """`_to_row` (columns spelt out) writes what the generic per-column conversion writes, in
    `_COLUMNS` order, and `_evolve` copies a record as `dataclasses.replace` does."""
    assert _to_row(rec) == tuple(_sql(getattr(rec, c)) for c in _COLUMNS)
    changes = {n: getattr(other, n) for n in names}
    assert states._evolve(rec, **changes) == dataclasses.replace(rec, **changes)
