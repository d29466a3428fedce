"""Reconciliation with the venue: at start-up (before any order), after every bar and
periodically.

At start: every record that was in flight when the daemon stopped (PENDING, UNKNOWN; SENT in
files written before SENT was folded into the answer's commit) is looked up by tag, in one
Order/search over the outbox's window, before anything is sent: found → RESOLVED; an UNKNOWN
not found counts one absent lookup. A PENDING that never reached the venue is not sent blindly:
it goes through the gate again with the state of now (kill switch, embargo, session, daily
loss...) and is sent only if it passes and is younger than `[execution].max_pending_age_s`;
otherwise it is BLOCKED (never sent), logged and journalled as `not_sent`. Then: the rest is
driven to a final state; orders at the venue under this installation's tags that the outbox
does not hold (records lost to a power cut, see daemon/execution/outbox.py) are recorded as
RESOLVED; fills and order ends go to the ledger and the outbox (daemon/execution/
venue_sync.py); and the ledger's position is checked against the venue's.

The position check (`verify_position`, whenever no order of ours is in flight or working):
the venue's net position from Position/searchOpen against the ledger's; a difference that a
fresh fill sync does not explain is a mismatch. `[execution].on_mismatch = "halt"` (default)
records it in the ledger, which blocks every intent until the venue and the ledger agree again
or an operator adopts (`anchord ctl adopt`); "adopt" takes the venue's position into the ledger
and trading goes on from it. Never from a position the venue does not hold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from daemon.execution import order_states as states
from daemon.execution.errors import GatewayError
from daemon.execution.ledger import Ledger
from daemon.execution.order_states import OutboxRecord, State, parse_tag
from daemon.execution.outbox import Outbox
from daemon.execution.submitter import (
    LOOKUP_MARGIN,
    Submitter,
    field_of,
    order_id,
    order_tag,
)
from daemon.execution.venue_sync import VenueSync


@dataclass
class ReconcileReport:
    """What start-up reconciliation found; `ok` False means trading is refused."""

    ok: bool = True
    reason: str = ""
    venue_position: int = 0
    ledger_position: int = 0
    adopted: int = 0
    restarted: int = 0  # in flight at start (looked up before anything was sent)
    recovered: int = 0  # orders of ours at the venue whose outbox records were lost
    resolved_by_lookup: int = 0
    not_sent: int = 0  # PENDING records the gate (or their age) stopped at start
    driven: int = 0  # in-flight records driven to a final state
    foreign_open_orders: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def venue_net_position(positions: list[Any], contract: str) -> int:
    """Signed net position (long > 0) in `contract` from Position/searchOpen rows."""
    return venue_position_of(positions, contract)[0]


def venue_position_of(positions: list[Any], contract: str) -> tuple[int, Decimal]:
    """(signed net position, average price) in `contract` from Position/searchOpen rows."""
    net, notional = 0, Decimal(0)
    for p in positions:
        if str(field_of(p, "contractId", "contract_id")) != contract:
            continue
        size = int(field_of(p, "size") or 0)
        kind = int(field_of(p, "type") or 0)
        signed = size if kind == 1 else -size if kind == 2 else 0
        net += signed
        notional += abs(signed) * Decimal(str(field_of(p, "averagePrice") or 0))
    total = sum(abs(int(field_of(p, "size") or 0)) for p in positions
                if str(field_of(p, "contractId", "contract_id")) == contract)
    return net, (notional / total if total else Decimal(0))


@dataclass
class Reconciler:
    """Start-up reconciliation and the position checks of one account and contract."""

    submitter: Submitter
    outbox: Outbox
    sync: VenueSync
    ledger: Ledger
    contract: str
    instance_id: str
    log: Any
    on_mismatch: Callable[[], str] = lambda: "halt"
    # the gate's verdict on a PENDING found at start ("" = send it)
    recheck: Callable[[OutboxRecord], str] = lambda rec: ""
    journal: Callable[[str, dict[str, Any]], None] = lambda kind, payload: None

    async def at_start(self) -> ReconcileReport:
        """Bring the outbox and the ledger into agreement with the venue before the first
        order (see the module docstring). Raises GatewayError when the venue cannot be read
        (the caller retries)."""
        report = ReconcileReport()
        sub, outbox = self.submitter, self.outbox
        in_flight = outbox.in_flight()
        limit = sub.settings().unknown_checks
        if in_flight:
            found = await sub.find_orders(in_flight)
            if found is None:
                raise GatewayError("reconciliation: Order/search failed")
            report.restarted = len(in_flight)
            for rec in in_flight:
                if rec.state == State.SENT:  # a file from before SENT was written with the answer
                    rec = outbox.apply(rec.tag, states.Restarted(sub.clock.now()))
                order = found.get(rec.tag)
                if order is None and rec.state == State.PENDING:
                    report.not_sent += self._recheck_pending(rec)
                    continue
                if order is None and rec.resend_due:
                    continue  # never reached the venue: sent as usual
                after = sub.resolve(rec, order, limit)
                report.resolved_by_lookup += int(after.state == State.RESOLVED)
        report.driven = sub.requeue_in_flight()
        await sub.drain()
        if outbox.in_flight():
            raise GatewayError("reconciliation: in-flight orders left (stopping?)")
        report.recovered = await self._recover_lost_records()
        if not await self.sync.sync():
            raise GatewayError("reconciliation: Trade/search or Order/search failed")
        account = sub.account_id()
        open_orders = await sub.client.search_open_orders(account)
        report.foreign_open_orders = [
            order_id(o) for o in open_orders
            if str(field_of(o, "contractId", "contract_id")) == self.contract
            and (parse_tag(order_tag(o) or "", self.instance_id) is None
                 or outbox.get(order_tag(o)) is None)]
        check = await self.verify_position()
        report.venue_position = int(check.get("venue_position", 0))
        report.ledger_position = self.ledger.position(self.contract)
        report.adopted = int(check.get("adopted", 0))
        if report.foreign_open_orders:
            reason = f"open orders not placed by this installation: {report.foreign_open_orders}"
            if self.on_mismatch() == "adopt":
                self.log.warning("reconcile_foreign_orders_adopted", reason=reason)
            else:
                self.ledger.raise_mismatch("foreign_orders", reason, sub.clock.now())
        mismatch = self.ledger.mismatch
        if mismatch is not None:
            report.reason = mismatch.reason
        self.log.info("reconciled", **report.to_dict())
        return report

    def _recheck_pending(self, rec: OutboxRecord) -> int:
        """A PENDING found at start that never reached the venue: 1 if the gate of now (or
        its age) stops it (BLOCKED, journalled `not_sent`), 0 if it may be sent."""
        reason = self.recheck(rec)
        if not reason:
            return 0
        self.outbox.apply(rec.tag, states.Blocked(reason, self.submitter.clock.now()))
        fields = {"tag": rec.tag, "intent_id": rec.intent_id, "reason": reason,
                  "bar_ts": rec.bar_ts.isoformat(), "created_at": rec.created_at.isoformat()}
        self.log.warning("pending_not_sent", **fields)
        self.journal("not_sent", fields)
        return 1

    async def _recover_lost_records(self) -> int:
        """Record every order at the venue under this installation's tags that the outbox
        does not hold (RESOLVED, the venue's outcome), searching from the newest surviving
        record (a power cut loses only a suffix of commits) or the outbox's start; how many.
        Raises GatewayError when the venue cannot be read."""
        outbox, sub = self.outbox, self.submitter
        since = outbox.newest_created_at() or outbox.started_at()
        if since is None:
            return 0  # nothing was ever recorded, so nothing was ever sent
        now = sub.clock.now()
        try:
            orders = await sub.client.search_orders(sub.account_id(), since - LOOKUP_MARGIN,
                                                    now + LOOKUP_MARGIN)
        except OSError as err:
            raise GatewayError(f"reconciliation: Order/search failed: {err}") from err
        n = 0
        for order in orders:
            tag = order_tag(order) or ""
            parsed = parse_tag(tag, self.instance_id)
            if parsed is None or outbox.get(tag) is not None:
                continue
            rec = outbox.recover(tag, *parsed, dict(order), now)
            n += 1
            self.log.warning("outbox_record_recovered", tag=tag, order_id=rec.order_id,
                             outcome=rec.outcome, side=int(rec.side), size=rec.size,
                             reason="an order of ours at the venue had no outbox record "
                                    "(lost write)")
        return n

    async def verify_position(self) -> dict[str, Any]:
        """Compare the venue's position with the ledger's when no order of ours is in flight
        or working; a difference a fresh fill sync does not explain is a mismatch (halt) or
        is adopted (see the module docstring). Returns what it saw."""
        if self.outbox.in_flight() or self.outbox.unfilled():
            return {"checked": False}
        venue, avg = await self._venue_position()
        if venue is None:
            return {"checked": False}
        if venue != self.ledger.position(self.contract):
            await self.sync.sync_fills()  # a fill may have landed since the last sync
            venue, avg = await self._venue_position()
            if venue is None:
                return {"checked": False}
        ours = self.ledger.position(self.contract)
        result: dict[str, Any] = {"checked": True, "venue_position": venue,
                                  "ledger_position": ours}
        mismatch = self.ledger.mismatch
        if venue == ours:
            if mismatch is not None and mismatch.kind == "position":
                self.ledger.clear_mismatch("the venue and the ledger agree again")
            return result
        now = self.submitter.clock.now()
        reason = (f"venue position {venue} in {self.contract} but the ledger holds {ours} "
                  f"with no order of ours in flight")
        if self.on_mismatch() == "adopt":
            self.ledger.adopt(self.contract, venue, avg, now, reason)
            result["adopted"] = venue - ours
        elif mismatch is None or (mismatch.kind, mismatch.venue_position,
                                  mismatch.ledger_position) != ("position", venue, ours):
            self.ledger.raise_mismatch("position", reason, now, venue, ours)
        return result

    async def _venue_position(self) -> tuple[int | None, Decimal]:
        try:
            positions = await self.submitter.client.search_open_positions(
                self.submitter.account_id())
        except (GatewayError, OSError) as err:
            self.log.warning("position_check_failed", error=str(err))
            return None, Decimal(0)
        return venue_position_of(positions, self.contract)

    async def periodic(self) -> dict[str, Any]:
        """The check while running: queue any in-flight record nobody drives, sync fills and
        order ends, and check the position."""
        requeued = self.submitter.requeue_in_flight()
        await self.sync.sync()
        return {"requeued": requeued, **await self.verify_position()}
