"""The outbox: every live intent, its customTag and where its order stands, in SQLite.

A record is written (PENDING) before any network call, and every change of state is one
transaction (store migration 2), so after a crash at any point the outbox says what may have
reached the venue. The state machine is the pure function `transition` over plain data:

    PENDING ──send──► SENT ──answer──► ACCEPTED | REJECTED
       │                └──timeout / 5xx / reset / tag in use / crash──► UNKNOWN
       └─kill switch─► BLOCKED                                             │
    UNKNOWN ──lookup finds the tag──► RESOLVED (outcome accepted | rejected)
    UNKNOWN ──lookup absent, N times──► (resend due) ──send──► SENT   (same tag)
                                                    └─kill switch─► BLOCKED
    PENDING ──start-up lookup finds the tag──► RESOLVED   (sent by a process that died)

ACCEPTED, REJECTED, RESOLVED and BLOCKED are final; fills (from Trade/search) are recorded on
ACCEPTED and RESOLVED-accepted records without changing their state. An Order/place is only
ever sent from PENDING, or from UNKNOWN after `unknown_checks` successful lookups that did not
find the tag: never blindly.

SENT is written together with the request's outcome, in one commit (`mark_sent`), not in a
commit of its own before the request: the record on disk before the request (PENDING, or
UNKNOWN with a resend due) already says that a request may go out, and after a crash start-up
reconciliation looks every such record up at the venue before it sends anything
(daemon/execution/reconcile.py). The transition log still has every step, SENT included.

The customTag is `ax-<instance id>-<run epoch>-<intent id>`: a restart regenerates the same
tag for the same intent (the instance id is kept in the store, the epoch changes only when a
replay starts over), and another installation never produces it.

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
embargo, positions adopted at start-up): those are not re-derivable from the venue. So is the
outbox's start time (`started_at`), written before its first record: the recovery search of an
outbox that lost every record starts there.
"""

from __future__ import annotations

import dataclasses
import operator
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from daemon.errors import AnchordError
from daemon.execution.models import OrderStatus
from daemon.intent import OrderIntent, Side
from daemon.store import Store
from daemon.timeutil import iso, parse_utc


class State(StrEnum):
    PENDING = "PENDING"
    SENT = "SENT"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    UNKNOWN = "UNKNOWN"
    RESOLVED = "RESOLVED"
    BLOCKED = "BLOCKED"


FINAL = frozenset({State.ACCEPTED, State.REJECTED, State.RESOLVED, State.BLOCKED})
IN_FLIGHT = frozenset({State.PENDING, State.SENT, State.UNKNOWN})


class IllegalTransition(AnchordError):
    """An event that the outbox state machine does not allow in the record's state."""


def make_tag(instance_id: str, epoch: int, intent_id: str) -> str:
    """The customTag of an intent: same inputs, same tag; another instance, another tag."""
    return f"ax-{instance_id}-{epoch}-{intent_id}"


def parse_tag(tag: str, instance_id: str) -> tuple[int, str] | None:
    """(epoch, intent id) of a tag `make_tag(instance_id, ...)` made; None for any other tag."""
    prefix = f"ax-{instance_id}-"
    if not tag.startswith(prefix):
        return None
    epoch, sep, intent_id = tag[len(prefix):].partition("-")
    if not sep or not intent_id or not epoch.isdigit():
        return None
    return int(epoch), intent_id


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """One live intent and its order's state (plain data)."""

    tag: str
    seq: int
    intent_id: str
    epoch: int
    contract: str
    bar_ts: datetime
    side: Side
    size: int
    target_position: int
    ref_price: float
    limit_price: Decimal | None
    state: State
    created_at: datetime
    updated_at: datetime
    order_id: int | None = None
    attempts: int = 0  # Order/place requests sent
    checks: int = 0  # lookups since the last send that did not find the tag
    resend_due: bool = False
    outcome: str = ""  # RESOLVED: "accepted" | "rejected"
    reason: str = ""
    filled: int = 0  # contracts filled (unsigned), from Trade/search
    fill_price: Decimal | None = None
    sent_at: datetime | None = None

    @property
    def signed_size(self) -> int:
        return self.size if self.side == Side.BUY else -self.size

    @property
    def final(self) -> bool:
        return self.state in FINAL

    @property
    def accepted(self) -> bool:
        """The venue holds a working or filled order for this intent."""
        return self.state == State.ACCEPTED or (self.state == State.RESOLVED
                                                and self.outcome == "accepted")

    @property
    def may_be_live(self) -> bool:
        """The venue may hold an order for this intent (counted in the expected position)."""
        return self.accepted or self.state in (State.SENT, State.UNKNOWN) or (
            self.state == State.PENDING)

    @property
    def signed_filled(self) -> int:
        return self.filled if self.side == Side.BUY else -self.filled


# ---- events -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sent:
    """An Order/place request is about to go out (persisted before the request)."""

    at: datetime


@dataclass(frozen=True)
class Accepted:
    order_id: int
    at: datetime


@dataclass(frozen=True)
class Rejected:
    reason: str
    at: datetime
    order_id: int | None = None


@dataclass(frozen=True)
class Unknown:
    """The answer to a place was lost (timeout, 5xx, reset, 429) or said "tag in use"."""

    reason: str
    at: datetime


@dataclass(frozen=True)
class Restarted:
    """The daemon started: a request in flight when it stopped may or may not have landed."""

    at: datetime


@dataclass(frozen=True)
class Found:
    """A lookup (Order/search filtered by tag) found the order."""

    order_id: int
    rejected: bool
    at: datetime


@dataclass(frozen=True)
class Absent:
    """A lookup that succeeded did not find the tag; `limit` lookups make a resend due."""

    limit: int
    at: datetime


@dataclass(frozen=True)
class Blocked:
    reason: str
    at: datetime


@dataclass(frozen=True)
class Filled:
    """The total filled quantity of the order so far (idempotent), from Trade/search."""

    filled: int
    price: Decimal | None
    at: datetime


Event = Sent | Accepted | Rejected | Unknown | Restarted | Found | Absent | Blocked | Filled


def _illegal(rec: OutboxRecord, event: Event) -> IllegalTransition:
    return IllegalTransition(f"outbox {rec.tag}: {type(event).__name__} not allowed in "
                             f"{rec.state}")


_FIELDS = tuple(f.name for f in dataclasses.fields(OutboxRecord))
_ALL_FIELDS = operator.attrgetter(*_FIELDS)
_FIELD_INDEX = {name: i for i, name in enumerate(_FIELDS)}


def _evolve(rec: OutboxRecord, **changes: Any) -> OutboxRecord:
    """`dataclasses.replace(rec, **changes)`, a third cheaper (two run in every order)."""
    values = list(_ALL_FIELDS(rec))
    for name, value in changes.items():
        values[_FIELD_INDEX[name]] = value
    return OutboxRecord(*values)


def transition(rec: OutboxRecord, event: Event) -> OutboxRecord:
    """The record after `event`; IllegalTransition when the state machine forbids it."""
    s = rec.state
    r = _evolve
    if isinstance(event, Sent):
        if s == State.PENDING or (s == State.UNKNOWN and rec.resend_due):
            return r(rec, state=State.SENT, attempts=rec.attempts + 1, checks=0,
                     resend_due=False, sent_at=event.at, updated_at=event.at)
    elif isinstance(event, Accepted):
        if s == State.SENT:
            return r(rec, state=State.ACCEPTED, order_id=event.order_id, updated_at=event.at)
    elif isinstance(event, Rejected):
        if s == State.SENT:
            return r(rec, state=State.REJECTED, order_id=event.order_id, reason=event.reason,
                     updated_at=event.at)
    elif isinstance(event, Unknown):
        if s == State.SENT:
            return r(rec, state=State.UNKNOWN, reason=event.reason, checks=0,
                     resend_due=False, updated_at=event.at)
    elif isinstance(event, Restarted):
        if s == State.SENT:
            return r(rec, state=State.UNKNOWN, reason="restarted while sent", checks=0,
                     resend_due=False, updated_at=event.at)
        return rec
    elif isinstance(event, Found):
        # PENDING: found by start-up reconciliation, sent by a process that died before
        # writing its answer (so at least one request went out)
        if s in (State.UNKNOWN, State.PENDING):
            return r(rec, state=State.RESOLVED, order_id=event.order_id,
                     outcome="rejected" if event.rejected else "accepted", resend_due=False,
                     attempts=max(1, rec.attempts), updated_at=event.at)
    elif isinstance(event, Absent):
        if s == State.UNKNOWN and not rec.resend_due:
            checks = rec.checks + 1
            return r(rec, checks=checks, resend_due=checks >= event.limit, updated_at=event.at)
    elif isinstance(event, Blocked):
        if s == State.PENDING or (s == State.UNKNOWN and rec.resend_due):
            return r(rec, state=State.BLOCKED, reason=event.reason, updated_at=event.at)
    elif isinstance(event, Filled) and rec.accepted and 0 <= event.filled <= rec.size:
        return r(rec, filled=event.filled, fill_price=event.price, updated_at=event.at)
    raise _illegal(rec, event)


def next_action(rec: OutboxRecord) -> str | None:
    """What the submitter does next with a record: "send" (first time), "lookup", "resend",
    or None when it is final. SENT has no action: its request is in flight."""
    if rec.state == State.PENDING:
        return "send"
    if rec.state == State.UNKNOWN:
        return "resend" if rec.resend_due else "lookup"
    return None


def new_record(intent: OrderIntent, tag: str, epoch: int, seq: int, at: datetime
               ) -> OutboxRecord:
    """A PENDING record for an intent."""
    return OutboxRecord(tag=tag, seq=seq, intent_id=intent.intent_id, epoch=epoch,
                        contract=intent.contract, bar_ts=intent.bar_ts, side=Side(intent.side),
                        size=intent.size, target_position=intent.target_position,
                        ref_price=float(intent.ref_price), limit_price=intent.limit_price,
                        state=State.PENDING, created_at=at, updated_at=at)


def recovered_record(tag: str, epoch: int, intent_id: str, seq: int, order: dict[str, Any],
                     at: datetime) -> OutboxRecord:
    """The RESOLVED record of an order found at the venue under one of our tags whose record
    was lost (see Durability): its outcome, side, size and price as the venue has them; the
    intent's bar time is unknown and taken as the order's creation time."""
    created = order.get("creationTimestamp")
    created = parse_utc(created) if isinstance(created, str) else (created or at)
    limit = order.get("limitPrice")
    rejected = int(order.get("status") or 0) == OrderStatus.REJECTED
    return OutboxRecord(
        tag=tag, seq=seq, intent_id=intent_id, epoch=epoch, contract=str(order["contractId"]),
        bar_ts=created, side=Side(int(order["side"])), size=int(order["size"]),
        target_position=0, ref_price=float(limit or 0),
        limit_price=Decimal(str(limit)) if limit is not None else None,
        state=State.RESOLVED, created_at=created, updated_at=at, order_id=int(order["id"]),
        attempts=1, outcome="rejected" if rejected else "accepted",
        reason="recovered from the venue: the record was lost (power cut?)", sent_at=created)


# ---- persistence ----------------------------------------------------------------------------
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


def _open(rec: OutboxRecord) -> bool:
    """The record may still change: in flight, or accepted and not fully filled."""
    return rec.state in IN_FLIGHT or (rec.accepted and rec.filled < rec.size)


def _contribution(rec: OutboxRecord) -> tuple[int, int]:
    """What the record adds to (expected position, filled position)."""
    return (rec.signed_size if rec.may_be_live else 0), rec.signed_filled


_STARTED_KEY = "outbox_started_at"


class Outbox:
    """The outbox table of a Store: add intents, apply events, read records.

    The Outbox is the table's only writer in the process, so it keeps in memory what the hot
    path reads (every record that may still change, the next seq, and the positions the
    records explain) and writes through to SQLite: an order's transitions and a bar's position
    check cost no table scan and no row parsing. Settled records (final and, if accepted,
    fully filled) live only in the table."""

    def __init__(self, store: Store, *, fsync_pending: bool = False) -> None:
        self.store = store
        self.conn = store.conn
        self.fsync_pending = fsync_pending
        self._open: dict[str, OutboxRecord] = {}
        self._expected: dict[str, int] = {}
        self._filled: dict[str, int] = {}
        self._base: dict[str, int] = {}
        self._started: datetime | None = None
        # per tag: the record as on disk, and the steps since (`mark_sent`) not yet written
        self._unsaved: dict[str, tuple[OutboxRecord, list[tuple[OutboxRecord, OutboxRecord,
                                                                  Event]]]] = {}
        self._next_seq = 1
        self._load()

    def _load(self) -> None:
        rows = self.conn.execute(
            "SELECT * FROM outbox WHERE state IN ('PENDING', 'SENT', 'UNKNOWN') OR "
            "((state = 'ACCEPTED' OR (state = 'RESOLVED' AND outcome = 'accepted')) "
            "AND filled < size) ORDER BY seq").fetchall()
        self._open = {r.tag: r for r in map(_from_row, rows)}
        for contract, expected, filled in self.conn.execute(
                "SELECT contract, SUM(CASE WHEN state IN ('PENDING', 'SENT', 'UNKNOWN', "
                "'ACCEPTED') OR (state = 'RESOLVED' AND outcome = 'accepted') THEN "
                "(CASE side WHEN 0 THEN size ELSE -size END) ELSE 0 END), "
                "SUM(CASE side WHEN 0 THEN filled ELSE -filled END) FROM outbox "
                "GROUP BY contract"):
            self._expected[contract], self._filled[contract] = int(expected), int(filled)
        self._next_seq = int(self.conn.execute(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM outbox").fetchone()[0])

    def _cache(self, old: OutboxRecord | None, new: OutboxRecord) -> None:
        """Bring the in-memory view up to date after `new` was committed."""
        exp, fil = _contribution(new)
        if old is not None:
            old_exp, old_fil = _contribution(old)
            exp, fil = exp - old_exp, fil - old_fil
        c = new.contract
        self._expected[c] = self._expected.get(c, 0) + exp
        self._filled[c] = self._filled.get(c, 0) + fil
        if _open(new):
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
        """Accepted records whose order is not fully filled yet, in the order they were
        added."""
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

    # -- the positions the outbox explains ----------------------------------------------------
    def expected_position(self, contract: str) -> int:
        """Base position plus every order that is or may be at the venue (for new intents)."""
        return self.base_position(contract) + self._expected.get(contract, 0)

    def filled_position(self, contract: str) -> int:
        """Base position plus the fills recorded from Trade/search (compare with the venue)."""
        return self.base_position(contract) + self._filled.get(contract, 0)

    def base_position(self, contract: str) -> int:
        """A venue position adopted at start-up (`adopt_venue_position`), else 0."""
        if contract not in self._base:
            value = self.store.get_meta(f"outbox_base_position:{contract}")
            self._base[contract] = int(value) if value else 0
        return self._base[contract]

    def set_base_position(self, contract: str, value: int) -> None:
        self.store.set_meta(f"outbox_base_position:{contract}", str(int(value)))
        self._base[contract] = int(value)
