"""The outbox's state machine: records, events and `transition`, pure functions over plain data
(daemon/execution/outbox.py keeps the records in SQLite).

    PENDING ──send──► SENT ──answer──► ACCEPTED | REJECTED
       │                └──timeout / 5xx / reset / tag in use / crash──► UNKNOWN
       └─kill switch─► BLOCKED                                             │
    UNKNOWN ──lookup finds the tag──► RESOLVED (outcome accepted | rejected)
    UNKNOWN ──lookup absent, N times──► (resend due) ──send──► SENT   (same tag)
                                                    └─kill switch─► BLOCKED
    PENDING ──start-up lookup finds the tag──► RESOLVED   (sent by a process that died)
    ACCEPTED | RESOLVED-accepted ──the venue ends the order──► CANCELLED | EXPIRED | REJECTED

ACCEPTED, REJECTED, RESOLVED, BLOCKED, CANCELLED and EXPIRED are final for the submitter (no
request is ever sent for them again); fills are recorded on accepted records (and on ended
ones, for fills reported late) without changing their state. An accepted record stays open
until its order is filled or ended at the venue; an ended record keeps the quantity that
filled. An Order/place is only ever sent from PENDING, or from UNKNOWN after `unknown_checks`
successful lookups that did not find the tag: never blindly.

The customTag is `ax-<instance id>-<run epoch>-<intent id>`: a restart regenerates the same
tag for the same intent (the instance id is kept in the store, the epoch changes only when a
replay starts over), and another installation never produces it.
"""

from __future__ import annotations

import dataclasses
import operator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from daemon.errors import AnchordError
from daemon.execution.models import OrderStatus
from daemon.intent import OrderIntent, Side
from daemon.timeutil import parse_utc


class State(StrEnum):
    PENDING = "PENDING"
    SENT = "SENT"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    UNKNOWN = "UNKNOWN"
    RESOLVED = "RESOLVED"
    BLOCKED = "BLOCKED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


FINAL = frozenset({State.ACCEPTED, State.REJECTED, State.RESOLVED, State.BLOCKED,
                   State.CANCELLED, State.EXPIRED})
IN_FLIGHT = frozenset({State.PENDING, State.SENT, State.UNKNOWN})
ENDED = frozenset({State.CANCELLED, State.EXPIRED, State.REJECTED})
# The venue's terminal order statuses that end an accepted record, and the state they give.
ENDED_BY_STATUS = {int(OrderStatus.CANCELLED): State.CANCELLED,
                   int(OrderStatus.EXPIRED): State.EXPIRED,
                   int(OrderStatus.REJECTED): State.REJECTED}


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
        """The venue may hold an order for this intent that can still fill."""
        return self.accepted or self.state in IN_FLIGHT

    @property
    def open(self) -> bool:
        """The record may still change: in flight, or accepted and not fully filled."""
        return self.state in IN_FLIGHT or (self.accepted and self.filled < self.size)

    @property
    def working(self) -> int:
        """Signed contracts that may still fill (the whole order while it is in flight)."""
        if not self.may_be_live:
            return 0
        left = self.size - self.filled
        return left if self.side == Side.BUY else -left


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
class Ended:
    """The venue ended an accepted order (Order/search status Cancelled, Expired or Rejected)
    with `fill_volume` contracts filled."""

    status: int
    fill_volume: int
    at: datetime


@dataclass(frozen=True)
class Filled:
    """The total filled quantity of the order so far (idempotent), from Trade/search."""

    filled: int
    price: Decimal | None
    at: datetime


Event = (Sent | Accepted | Rejected | Unknown | Restarted | Found | Absent | Blocked | Ended
         | Filled)


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
    elif isinstance(event, Ended):
        state = ENDED_BY_STATUS.get(int(event.status))
        if rec.accepted and state is not None:
            filled = max(rec.filled, min(int(event.fill_volume), rec.size))
            return r(rec, state=state, filled=filled, updated_at=event.at,
                     reason=rec.reason or f"ended at the venue ({state.value.lower()})")
    elif isinstance(event, Filled) and (rec.accepted or rec.state in ENDED) and \
            rec.order_id is not None and 0 <= event.filled <= rec.size:
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
