"""Start-up reconciliation (before any order) and the periodic in-flight check.

At start: every record that was in flight when the daemon stopped (PENDING, UNKNOWN; SENT in
files written before SENT was folded into the answer's commit) is looked up by tag, in one
Order/search over the outbox's window, before anything is sent: found → RESOLVED; an UNKNOWN
not found counts one absent lookup; the rest are driven to a final state (more lookups after a
settle delay, then a resend with the same tag; a PENDING that never reached the venue is sent
as usual); fills are read from Trade/search; orders at the venue under this installation's tags
that the outbox does not hold (their records were lost to a power cut, see
daemon/execution/outbox.py) are recorded as RESOLVED; then the venue's open orders and position
are compared with what the outbox explains. An unexplained position or a foreign open order in
our contract refuses trading (status and log say why) unless
`[execution].adopt_venue_position = true`, in which case the difference is adopted as the
outbox's base position.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from daemon.execution import order_states as states
from daemon.execution.errors import GatewayError
from daemon.execution.order_states import State, parse_tag
from daemon.execution.outbox import Outbox
from daemon.execution.submitter import LOOKUP_MARGIN, Submitter, field_of, order_id, order_tag


@dataclass
class ReconcileReport:
    """What start-up reconciliation found; `ok` False means trading is refused."""

    ok: bool = True
    reason: str = ""
    venue_position: int = 0
    outbox_position: int = 0
    adopted: int = 0
    restarted: int = 0  # in flight at start (looked up before anything was sent)
    recovered: int = 0  # orders of ours at the venue whose outbox records were lost
    resolved_by_lookup: int = 0
    driven: int = 0  # in-flight records driven to a final state
    foreign_open_orders: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def venue_net_position(positions: list[Any], contract: str) -> int:
    """Signed net position (long > 0) in `contract` from Position/searchOpen rows."""
    net = 0
    for p in positions:
        if str(field_of(p, "contractId", "contract_id")) != contract:
            continue
        size = int(field_of(p, "size") or 0)
        kind = int(field_of(p, "type") or 0)
        net += size if kind == 1 else -size if kind == 2 else 0
    return net


async def recover_lost_records(*, submitter: Submitter, outbox: Outbox, instance_id: str,
                               log: Any) -> int:
    """Record every order at the venue under this installation's tags that the outbox does not
    hold (RESOLVED, the venue's outcome), searching from the newest surviving record (a power
    cut loses only a suffix of commits) or the outbox's start; how many. Raises GatewayError
    when the venue cannot be read."""
    since = outbox.newest_created_at() or outbox.started_at()
    if since is None:
        return 0  # nothing was ever recorded, so nothing was ever sent
    now = submitter.clock.now()
    try:
        orders = await submitter.client.search_orders(submitter.account_id(),
                                                      since - LOOKUP_MARGIN, now + LOOKUP_MARGIN)
    except OSError as err:
        raise GatewayError(f"reconciliation: Order/search failed: {err}") from err
    n = 0
    for order in orders:
        tag = order_tag(order) or ""
        parsed = parse_tag(tag, instance_id)
        if parsed is None or outbox.get(tag) is not None:
            continue
        rec = outbox.recover(tag, *parsed, dict(order), now)
        n += 1
        log.warning("outbox_record_recovered", tag=tag, order_id=rec.order_id,
                    outcome=rec.outcome, side=int(rec.side), size=rec.size,
                    reason="an order of ours at the venue had no outbox record (lost write)")
    return n


async def reconcile(*, submitter: Submitter, outbox: Outbox, contract: str, instance_id: str,
                    adopt: bool, log: Any) -> ReconcileReport:
    """Bring the outbox and the venue into agreement before the first order (see module doc).
    Raises GatewayError when the venue cannot be read (the caller retries)."""
    report = ReconcileReport()
    clock = submitter.clock
    # Any in-flight record may have reached the venue: SENT is never written before its
    # request (only with the answer), so a request whose answer was not written left PENDING,
    # or UNKNOWN with a resend due. One Order/search looks them all up before anything is sent.
    in_flight = outbox.in_flight()
    limit = submitter.settings().unknown_checks
    if in_flight:
        found = await submitter.find_orders(in_flight)
        if found is None:
            raise GatewayError("reconciliation: Order/search failed")
        report.restarted = len(in_flight)
        for rec in in_flight:
            if rec.state == State.SENT:  # a file from before SENT was written with the answer
                rec = outbox.apply(rec.tag, states.Restarted(clock.now()))
            order = found.get(rec.tag)
            if order is None and (rec.state == State.PENDING or rec.resend_due):
                continue  # never reached the venue: sent as usual
            after = submitter.resolve(rec, order, limit)
            report.resolved_by_lookup += int(after.state == State.RESOLVED)
    report.driven = submitter.requeue_in_flight()
    await submitter.drain()
    if outbox.in_flight():
        raise GatewayError("reconciliation: in-flight orders left (stopping?)")
    report.recovered = await recover_lost_records(submitter=submitter, outbox=outbox,
                                                  instance_id=instance_id, log=log)
    await submitter.sync_fills()
    account = submitter.account_id()
    positions = await submitter.client.search_open_positions(account)
    open_orders = await submitter.client.search_open_orders(account)
    report.venue_position = venue_net_position(positions, contract)
    report.outbox_position = outbox.filled_position(contract)
    report.foreign_open_orders = [
        order_id(o) for o in open_orders
        if str(field_of(o, "contractId", "contract_id")) == contract
        and (parse_tag(order_tag(o) or "", instance_id) is None
             or outbox.get(order_tag(o)) is None)]
    problems = []
    diff = report.venue_position - report.outbox_position
    if diff:
        problems.append(f"venue position {report.venue_position} in {contract} but the outbox "
                        f"explains {report.outbox_position}")
    if report.foreign_open_orders:
        problems.append(f"open orders not placed by this installation: "
                        f"{report.foreign_open_orders}")
    if problems and adopt:
        if diff:
            outbox.set_base_position(contract, outbox.base_position(contract) + diff)
            report.adopted = diff
            report.outbox_position = outbox.filled_position(contract)
        log.warning("reconcile_adopted_venue_state", problems=problems, adopted=diff)
    elif problems:
        report.ok = False
        report.reason = "; ".join(problems) + (" (set [execution].adopt_venue_position = true "
                                               "to adopt the venue's position)")
        log.error("reconcile_mismatch_refusing_to_trade", reason=report.reason)
    log.info("reconciled", **report.to_dict())
    return report


async def check_in_flight(*, submitter: Submitter, outbox: Outbox, contract: str,
                          log: Any) -> dict[str, Any]:
    """The periodic check while running: queue any in-flight record nobody drives, record
    fills, and when nothing is in flight compare the venue's position with the outbox's."""
    requeued = submitter.requeue_in_flight()
    await submitter.sync_fills()
    result: dict[str, Any] = {"requeued": requeued}
    busy = outbox.in_flight() or outbox.unfilled()
    if not busy:
        try:
            positions = await submitter.client.search_open_positions(submitter.account_id())
        except (GatewayError, OSError) as err:
            log.warning("position_check_failed", error=str(err))
            return result
        venue = venue_net_position(positions, contract)
        ours = outbox.filled_position(contract)
        result.update(venue_position=venue, outbox_position=ours)
        if venue != ours:
            log.warning("position_mismatch", venue_position=venue, outbox_position=ours)
    return result
