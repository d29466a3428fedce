"""The outbox: every live intent, its customTag and where its order stands, in SQLite.

A record is written (PENDING) before any network call, and every change of state is one
transaction (store migration 2), so after a crash at any point the outbox says what may have
reached the venue. The states, the events and the pure function `transition` between them are
in daemon/execution/order_states.py.

SENT is written together with the request's outcome, in one commit (`mark_sent`), not in a
commit of its own before the request: the record on disk before the request (PENDING, or
UNKNOWN with a resend due) already says that a request may go out, and after a crash start-up
reconciliation looks every such record up at the venue before it sends anything
(daemon/execution/reconcile.py). The transition log still has every step, SENT included.

Durability (what must reach the disk, and when). Exactly-once rests on three facts: the venue
refuses a second order with a customTag already in use, we never send an intent under a tag
other than its own, and the tag names its intent (`parse_tag`). Every commit is in the WAL file
before the call that made it returns, so a crash of the process (SIGKILL, the chaos test) loses
nothing. A power cut or kernel crash can lose a suffix of the commits made with
`synchronous=NORMAL` (WAL frames are checksummed in a chain, so what survives is always a
prefix), back to the last fsynced one. By default no outbox write is fsynced before the
request (`[execution].fsync_before_send = false`: the fsync is the largest single cost of an
order on our side, see `anchord bench submit`), and what such a loss can do is covered:
- a lost PENDING (with everything after it) whose order reached the venue: start-up
  reconciliation searches the venue's orders since the newest surviving record for tags of this
  installation that the outbox does not hold, and records each as RESOLVED with the venue's
  outcome (`recovered_record`). The intent, if generated again for the same bar, finds that
  record and is not sent again. A lost PENDING whose order never went out is an intent that
  was never acted on, as if the daemon had stopped before deciding it.
- a lost ACCEPTED/REJECTED/UNKNOWN (SENT is written with them) leaves the record PENDING (or
  UNKNOWN): start-up reconciliation looks it up by tag before sending anything and resolves it
  from the venue's answer; should a request still land after that lookup, the resend under the
  same tag gets "tag in use", the record goes UNKNOWN and the next lookup resolves it. Never a
  second order.
- a lost RESOLVED/lookup/fill is repeated by the next lookup or Trade/search (idempotent).
With `fsync_before_send = true` the PENDING write is fsynced (one fsync per order), for a desk
that prefers not to lean on the venue's order history after a power cut. BLOCKED (the kill
switch stopped a send) is always fsynced, like every risk-state write (kill switch, news
embargo, the ledger's fills and adoptions): those are not re-derivable from the venue. So is the
outbox's start time (`started_at`), written before its first record: the recovery search of an
outbox that lost every record starts there.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from daemon.execution.order_states import (
    IN_FLIGHT,
    Blocked,
    Event,
    IllegalTransition,
    OutboxRecord,
    Sent,
    State,
    new_record,
    recovered_record,
    transition,
)
from daemon.intent import OrderIntent, Side
from daemon.store import Store
from daemon.timeutil import iso, parse_utc

_COLUMNS = ("tag", "seq", "intent_id", "epoch", "contract", "bar_ts", "side", "size",
            "target_position", "ref_price", "limit_price", "state", "order_id", "attempts",
            "checks", "resend_due", "outcome", "reason", "filled", "fill_price", "created_at",
            "sent_at", "updated_at")


def _sql(value: Any) -> Any:
    """A record field as SQLite stores it."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, State | Side):
        return value.value
    return value


def _to_row(r: OutboxRecord) -> tuple[Any, ...]:
    """The record's row, in `_COLUMNS` order (spelt out: the generic `_sql` per column cost
    an order about 20 µs warm)."""
    return (r.tag, r.seq, r.intent_id, r.epoch, r.contract, iso(r.bar_ts), r.side.value, r.size,
            r.target_position, r.ref_price, _decimal_text(r.limit_price), r.state.value,
            r.order_id, r.attempts, r.checks, int(r.resend_due), r.outcome, r.reason, r.filled,
            _decimal_text(r.fill_price), iso(r.created_at),
            iso(r.sent_at) if r.sent_at is not None else None, iso(r.updated_at))


def _decimal_text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _from_row(row: Any) -> OutboxRecord:
    d = dict(row)
    return OutboxRecord(
        tag=d["tag"], seq=d["seq"], intent_id=d["intent_id"], epoch=d["epoch"],
        contract=d["contract"], bar_ts=parse_utc(d["bar_ts"]), side=Side(d["side"]),
        size=d["size"], target_position=d["target_position"], ref_price=d["ref_price"],
        limit_price=Decimal(d["limit_price"]) if d["limit_price"] is not None else None,
        state=State(d["state"]), created_at=parse_utc(d["created_at"]),
        updated_at=parse_utc(d["updated_at"]), order_id=d["order_id"], attempts=d["attempts"],
        checks=d["checks"], resend_due=bool(d["resend_due"]), outcome=d["outcome"],
        reason=d["reason"], filled=d["filled"],
        fill_price=Decimal(d["fill_price"]) if d["fill_price"] is not None else None,
        sent_at=parse_utc(d["sent_at"]) if d["sent_at"] else None)


def _detail(event: Event) -> str:
    """What the transition log says of an event besides its name."""
    return getattr(event, "reason", "") or str(getattr(event, "order_id", "") or "")


_STARTED_KEY = "outbox_started_at"


class Outbox:
    """The outbox table of a Store: add intents, apply events, read records.

    The Outbox is the table's only writer in the process, so it keeps in memory what the hot
    path reads (every record that may still change, the next seq, and the contracts our
    orders may still fill) and writes through to SQLite: an order's transitions and a bar's
    sizing cost no table scan and no row parsing. Settled records (final and, if accepted,
    fully filled or ended at the venue) live only in the table. Positions are the ledger's
    (daemon/execution/ledger.py): the outbox only says what may still fill."""

    def __init__(self, store: Store, *, fsync_pending: bool = False) -> None:
        self.store = store
        self.conn = store.conn
        self.fsync_pending = fsync_pending
        self._open: dict[str, OutboxRecord] = {}
        self._working: dict[str, int] = {}
        self._started: datetime | None = None
        # per tag: the record as on disk, and the steps since (`mark_sent`) not yet written
        self._unsaved: dict[str, tuple[OutboxRecord, list[tuple[OutboxRecord, OutboxRecord,
                                                                  Event]]]] = {}
        self._next_seq = 1
        # Called once per record, when it becomes final (by any event, in any caller).
        self.on_final: list[Callable[[OutboxRecord], None]] = []
        self._load()

    def _load(self) -> None:
        rows = self.conn.execute(
            "SELECT * FROM outbox WHERE state IN ('PENDING', 'SENT', 'UNKNOWN') OR "
            "((state = 'ACCEPTED' OR (state = 'RESOLVED' AND outcome = 'accepted')) "
            "AND filled < size) ORDER BY seq").fetchall()
        self._open = {r.tag: r for r in map(_from_row, rows)}
        for rec in self._open.values():
            self._working[rec.contract] = self._working.get(rec.contract, 0) + rec.working
        self._next_seq = int(self.conn.execute(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM outbox").fetchone()[0])

    def _cache(self, old: OutboxRecord | None, new: OutboxRecord) -> None:
        """Bring the in-memory view up to date after `new` was committed."""
        change = new.working - (old.working if old is not None else 0)
        if change:
            self._working[new.contract] = self._working.get(new.contract, 0) + change
        if new.open:
            self._open[new.tag] = new
        else:
            self._open.pop(new.tag, None)

    def add(self, intent: OrderIntent, tag: str, epoch: int, at: datetime) -> OutboxRecord:
        """The record of `intent` (written PENDING and fsynced if new; an existing one is
        returned as is, so handing the same intent in twice never makes a second order)."""
        existing = self._open.get(tag)
        if existing is not None:
            return existing
        if self.started_at() is None:
            self.store.set_meta(_STARTED_KEY, iso(at))  # fsynced, before the first record
        rec = new_record(intent, tag, epoch, self._next_seq, at)
        try:  # a settled record of the tag is found by its PRIMARY KEY, not by a read first
            self._insert(rec, "Added", "", durable=self.fsync_pending)
        except sqlite3.IntegrityError:
            existing = self.get(tag)
            if existing is None:
                raise
            return existing
        return rec

    def recover(self, tag: str, epoch: int, intent_id: str, order: dict[str, Any],
                at: datetime) -> OutboxRecord:
        """Record a venue order whose record was lost (`recovered_record`); fsynced."""
        rec = recovered_record(tag, epoch, intent_id, self._next_seq, order, at)
        self._insert(rec, "Recovered", f"order {rec.order_id} {rec.outcome}", durable=True)
        return rec

    def _insert(self, rec: OutboxRecord, event: str, detail: str, *, durable: bool) -> None:
        with self.store.transaction(durable=durable) as c:
            c.execute(f"INSERT INTO outbox({', '.join(_COLUMNS)}) VALUES "
                      f"({', '.join('?' * len(_COLUMNS))})", _to_row(rec))
            c.execute("INSERT INTO outbox_log(tag, from_state, to_state, event, detail, at) "
                      "VALUES(?, '', ?, ?, ?, ?)", (rec.tag, rec.state.value, event, detail,
                                                    iso(rec.updated_at)))
        self._next_seq = max(self._next_seq, rec.seq) + 1
        self._cache(None, rec)

    def started_at(self) -> datetime | None:
        """When the outbox got its first record (None before that)."""
        if self._started is None:
            value = self.store.get_meta(_STARTED_KEY)
            self._started = parse_utc(value) if value else None
        return self._started

    def newest_created_at(self) -> datetime | None:
        """Creation time of the newest record, or None for an empty outbox."""
        row = self.conn.execute("SELECT created_at FROM outbox ORDER BY seq DESC LIMIT 1"
                                ).fetchone()
        return parse_utc(row[0]) if row else None

    def _current(self, tag: str) -> OutboxRecord:
        rec = self.get(tag)
        if rec is None:
            raise IllegalTransition(f"outbox: no record with tag {tag}")
        return rec

    def mark_sent(self, tag: str, at: datetime) -> OutboxRecord:
        """The record of `tag` as SENT, right before its Order/place: in memory now, written
        with the answer's event (`apply`) in one commit. Not a commit of its own, because the
        record on disk (PENDING, or UNKNOWN with a resend due) already tells a restarted
        daemon that a request may have gone out: start-up reconciliation looks every such
        record up at the venue before sending anything (see the module docstring)."""
        old = self._current(tag)
        event = Sent(at)
        new = transition(old, event)
        on_disk, steps = self._unsaved.get(tag, (old, []))
        self._unsaved[tag] = (on_disk, [*steps, (old, new, event)])
        self._open[tag] = new  # positions unchanged: a record that may be live stays so
        return new

    def apply(self, tag: str, event: Event) -> OutboxRecord:
        """Apply `event` to the record of `tag` and persist the result, with any step
        `mark_sent` kept in memory, in one transaction (crash-safe; fsynced only for BLOCKED,
        see the module docstring for why). Nothing changes, in memory or on disk, when it
        raises."""
        old = self._current(tag)
        new = transition(old, event)
        if new == old:
            return new
        on_disk, steps = self._unsaved.get(tag, (old, []))
        steps = [*steps, (old, new, event)]
        changed = [c for c in _COLUMNS[1:] if getattr(on_disk, c) != getattr(new, c)]
        with self.store.transaction(durable=isinstance(event, Blocked)) as c:
            if changed:
                c.execute(f"UPDATE outbox SET {', '.join(f'{col} = ?' for col in changed)} "
                          "WHERE tag = ?", (*(_sql(getattr(new, col)) for col in changed), tag))
            c.executemany("INSERT INTO outbox_log(tag, from_state, to_state, event, detail, "
                          "at) VALUES(?, ?, ?, ?, ?, ?)",
                          [(tag, a.state.value, b.state.value, type(e).__name__, _detail(e),
                            iso(e.at)) for a, b, e in steps])
        self._unsaved.pop(tag, None)
        self._cache(old, new)
        if new.final and not old.final:
            for hook in self.on_final:
                hook(new)
        return new

    def get(self, tag: str) -> OutboxRecord | None:
        """The record of `tag`, or None."""
        rec = self._open.get(tag)
        if rec is not None:
            return rec
        row = self.conn.execute("SELECT * FROM outbox WHERE tag = ?", (tag,)).fetchone()
        return None if row is None else _from_row(row)

    def records(self, states: frozenset[State] | set[State] | None = None) -> list[OutboxRecord]:
        """Records in the order they were added, optionally only those in `states` (reads the
        table: for reports and start-up, not for the per-bar path)."""
        rows = self.conn.execute("SELECT * FROM outbox ORDER BY seq").fetchall()
        recs = [_from_row(r) for r in rows]
        return recs if states is None else [r for r in recs if r.state in states]

    def in_flight(self) -> list[OutboxRecord]:
        """Records in PENDING, SENT or UNKNOWN, in the order they were added."""
        return sorted((r for r in self._open.values() if r.state in IN_FLIGHT),
                      key=lambda r: r.seq)

    def unfilled(self) -> list[OutboxRecord]:
        """Accepted records whose order is not fully filled (nor ended) yet, in the order they
        were added."""
        return sorted((r for r in self._open.values() if r.accepted), key=lambda r: r.seq)

    def counts(self) -> dict[str, int]:
        """Records per state."""
        rows = self.conn.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall()
        return {r[0]: r[1] for r in rows}

    def log(self, tag: str | None = None) -> list[dict[str, Any]]:
        """The transition log (every change of state, in order)."""
        if tag is None:
            rows = self.conn.execute("SELECT * FROM outbox_log ORDER BY id").fetchall()
        else:
            rows = self.conn.execute("SELECT * FROM outbox_log WHERE tag = ? ORDER BY id",
                                     (tag,)).fetchall()
        return [dict(r) for r in rows]

    # -- what our orders may still add to the position -------------------------------------
    def working_position(self, contract: str) -> int:
        """Signed contracts our orders may still fill: the whole of every order in flight and
        the unfilled rest of every accepted one (the Trader adds it to the ledger's position,
        so an order the venue may still fill is never sent twice)."""
        return self._working.get(contract, 0)

    def by_order_id(self, order_id: int) -> OutboxRecord | None:
        """Our record of the venue order `order_id` (open ones from memory), or None."""
        for rec in self._open.values():
            if rec.order_id == order_id:
                return rec
        row = self.conn.execute("SELECT * FROM outbox WHERE order_id = ?",
                                (int(order_id),)).fetchone()
        return None if row is None else _from_row(row)

    def oldest_open_at(self) -> datetime | None:
        """Creation time of the oldest open record (where a fill search must start)."""
        return min((r.created_at for r in self._open.values()), default=None)
