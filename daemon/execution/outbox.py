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

ACCEPTED, REJECTED, RESOLVED and BLOCKED are final; fills (from Trade/search) are recorded on
ACCEPTED and RESOLVED-accepted records without changing their state. An Order/place is only
ever sent from PENDING, or from UNKNOWN after `unknown_checks` successful lookups that did not
find the tag: never blindly.

The customTag is `ax-<instance id>-<run epoch>-<intent id>`: a restart regenerates the same
tag for the same intent (the instance id is kept in the store, the epoch changes only when a
replay starts over), and another installation never produces it.

Durability (what must reach the disk, and when). Exactly-once rests on two facts: the venue
refuses a second order with a customTag already in use, and we never send an intent under a tag
other than its own. So the one write that must be durable (fsynced, `synchronous=FULL`) before
an Order/place is the one that makes the intent and its tag known: `add` (PENDING). Every later
transition (SENT, ACCEPTED, REJECTED, UNKNOWN, RESOLVED, lookups, fills) is committed with
`synchronous=NORMAL` under WAL: it survives a crash of the process (SIGKILL, the chaos test),
because the commit is in the WAL file before `apply` returns; only a power cut or kernel crash
can lose it, and then only until the next FULL commit (which fsyncs the WAL, earlier frames
included). What such a loss can do:
- a lost SENT/ACCEPTED/REJECTED/UNKNOWN leaves the record PENDING (or SENT/UNKNOWN): the
  submitter sends again under the same tag; if the first request landed, the venue answers "tag
  in use", the record goes UNKNOWN and the lookup by tag resolves it. Never a second order.
- a lost RESOLVED/lookup/fill is repeated by the next lookup or Trade/search (idempotent).
BLOCKED (the kill switch stopped a send) stays FULL, like every risk-state write (kill switch,
news embargo, positions adopted at start-up): those are not re-derivable from the venue. This
takes the per-order fsyncs from three (PENDING, SENT, ACCEPTED) to one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from daemon.errors import AnchordError
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


def transition(rec: OutboxRecord, event: Event) -> OutboxRecord:
    """The record after `event`; IllegalTransition when the state machine forbids it."""
    s = rec.state
    r = dataclasses.replace
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
        if s == State.UNKNOWN:
            return r(rec, state=State.RESOLVED, order_id=event.order_id,
                     outcome="rejected" if event.rejected else "accepted", resend_due=False,
                     updated_at=event.at)
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


# ---- persistence ----------------------------------------------------------------------------
_COLUMNS = ("tag", "seq", "intent_id", "epoch", "contract", "bar_ts", "side", "size",
            "target_position", "ref_price", "limit_price", "state", "order_id", "attempts",
            "checks", "resend_due", "outcome", "reason", "filled", "fill_price", "created_at",
            "sent_at", "updated_at")


def _to_row(rec: OutboxRecord) -> tuple[Any, ...]:
    def conv(name: str) -> Any:
        v = getattr(rec, name)
        if isinstance(v, datetime):
            return iso(v)
        if isinstance(v, Decimal):
            return str(v)
        if isinstance(v, bool):
            return int(v)
        if isinstance(v, State | Side):
            return v.value
        return v

    return tuple(conv(c) for c in _COLUMNS)


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


class Outbox:
    """The outbox table of a Store: add intents, apply events, read records."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.conn = store.conn

    def add(self, intent: OrderIntent, tag: str, epoch: int, at: datetime) -> OutboxRecord:
        """The record of `intent` (written PENDING if new; an existing one is returned as is,
        so handing the same intent in twice never makes a second order)."""
        existing = self.get(tag)
        if existing is not None:
            return existing
        with self.store.transaction() as c:
            seq = int(c.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM outbox").fetchone()[0])
            rec = new_record(intent, tag, epoch, seq, at)
            c.execute(f"INSERT INTO outbox({', '.join(_COLUMNS)}) VALUES "
                      f"({', '.join('?' * len(_COLUMNS))})", _to_row(rec))
            c.execute("INSERT INTO outbox_log(tag, from_state, to_state, event, detail, at) "
                      "VALUES(?, '', ?, 'Added', '', ?)", (tag, rec.state.value, iso(at)))
        return rec

    def apply(self, tag: str, event: Event) -> OutboxRecord:
        """Apply `event` to the record of `tag` and persist the result in one transaction
        (crash-safe; fsynced only for BLOCKED, see the module docstring for why)."""
        with self.store.transaction(durable=isinstance(event, Blocked)) as c:
            row = c.execute("SELECT * FROM outbox WHERE tag = ?", (tag,)).fetchone()
            if row is None:
                raise IllegalTransition(f"outbox: no record with tag {tag}")
            old = _from_row(row)
            new = transition(old, event)
            if new != old:
                sets = ", ".join(f"{col} = ?" for col in _COLUMNS[1:])
                c.execute(f"UPDATE outbox SET {sets} WHERE tag = ?", (*_to_row(new)[1:], tag))
                detail = getattr(event, "reason", "") or str(getattr(event, "order_id", "")
                                                             or "")
                c.execute("INSERT INTO outbox_log(tag, from_state, to_state, event, detail, at)"
                          " VALUES(?, ?, ?, ?, ?, ?)", (tag, old.state.value, new.state.value,
                                                       type(event).__name__, detail,
                                                       iso(event.at)))
        return new

    def get(self, tag: str) -> OutboxRecord | None:
        row = self.conn.execute("SELECT * FROM outbox WHERE tag = ?", (tag,)).fetchone()
        return None if row is None else _from_row(row)

    def records(self, states: frozenset[State] | set[State] | None = None) -> list[OutboxRecord]:
        """Records in the order they were added, optionally only those in `states`."""
        rows = self.conn.execute("SELECT * FROM outbox ORDER BY seq").fetchall()
        recs = [_from_row(r) for r in rows]
        return recs if states is None else [r for r in recs if r.state in states]

    def in_flight(self) -> list[OutboxRecord]:
        return self.records(IN_FLIGHT)

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
        row = self.conn.execute(
            "SELECT COALESCE(SUM(CASE side WHEN 0 THEN size ELSE -size END), 0) FROM outbox "
            "WHERE contract = ? AND (state IN ('PENDING', 'SENT', 'UNKNOWN', 'ACCEPTED') "
            "OR (state = 'RESOLVED' AND outcome = 'accepted'))", (contract,)).fetchone()
        return self.base_position(contract) + int(row[0])

    def filled_position(self, contract: str) -> int:
        """Base position plus the fills recorded from Trade/search (compare with the venue)."""
        row = self.conn.execute(
            "SELECT COALESCE(SUM(CASE side WHEN 0 THEN filled ELSE -filled END), 0) FROM outbox"
            " WHERE contract = ?", (contract,)).fetchone()
        return self.base_position(contract) + int(row[0])

    def base_position(self, contract: str) -> int:
        """A venue position adopted at start-up (`adopt_venue_position`), else 0."""
        value = self.store.get_meta(f"outbox_base_position:{contract}")
        return int(value) if value else 0

    def set_base_position(self, contract: str, value: int) -> None:
        self.store.set_meta(f"outbox_base_position:{contract}", str(int(value)))
