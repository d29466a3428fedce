"""Bringing the ledger and the outbox up to date with the venue: fills and ended orders.

`sync_fills`: one Trade/search from the oldest open record (or where the last search reached,
whichever is earlier; minus a margin for clock skew) to now. Every fill of the account goes to
the ledger (counted once by trade id; a fill of an order we did not place, by the order's
customTag, is a mismatch there);
the fills of our open records set their filled quantity. `sync_orders`: for accepted records
whose order is not fully filled, one Order/search over their window; an order the venue
cancelled, expired or rejected ends its record (`Ended`), with the quantity that filled kept.
Both are idempotent: a repeated or overlapping answer changes nothing. A failed request is
logged and changes nothing (the next sync covers the same window).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from daemon.clock import Clock
from daemon.execution import order_states as states
from daemon.execution.errors import GatewayError
from daemon.execution.ledger import Ledger
from daemon.execution.ledger_book import Fill
from daemon.execution.models import TERMINAL_STATUSES
from daemon.execution.outbox import Outbox
from daemon.execution.submitter import LOOKUP_MARGIN


class VenueSync:
    """Fills and order ends from the venue into the ledger and the outbox."""

    def __init__(self, *, client: Any, outbox: Outbox, ledger: Ledger, clock: Clock,
                 account_id: Callable[[], int], market_time: Callable[[], datetime | None],
                 tag_prefix: str, log: Any) -> None:
        self.client = client
        self.outbox = outbox
        self.ledger = ledger
        self.clock = clock
        self.account_id = account_id
        self.market_time = market_time
        self.tag_prefix = tag_prefix  # the customTags this installation makes start so
        self.log = log
        self.counts = {"fills": 0, "ended": 0, "failed": 0}

    def _window_start(self) -> datetime:
        candidates = [t for t in (self.outbox.oldest_open_at(), self.ledger.synced_until,
                                  ) if t is not None]
        if not candidates:
            started = self.outbox.started_at()
            candidates = [started] if started is not None else [self.clock.now()]
        return min(candidates) - LOOKUP_MARGIN

    async def sync_fills(self) -> int | None:
        """Count new fills (see the module docstring); how many, or None if Trade/search
        failed."""
        start, now = self._window_start(), self.clock.now()
        try:
            trades = await self.client.search_trades(self.account_id(), start,
                                                     now + LOOKUP_MARGIN)
        except (GatewayError, OSError) as err:
            self.counts["failed"] += 1
            self.log.warning("fill_sync_failed", error=str(err))
            return None
        fills = [Fill.from_wire(t) for t in trades]
        tags = await self._tags_of_unknown_orders(fills, start)
        if tags is None:
            return None

        def ours(order_id: int) -> bool:
            tag = tags.get(order_id) or ""
            return self.outbox.by_order_id(order_id) is not None or tag.startswith(
                self.tag_prefix)

        counted = self.ledger.count(fills, ours, self.market_time())
        self.ledger.synced_until = now
        self._record_fills(fills)
        self.counts["fills"] += len(counted)
        return len(counted)

    async def _tags_of_unknown_orders(self, fills: list[Fill],
                                      start: datetime) -> dict[int, str] | None:
        """customTags of the orders behind new fills that no record of ours names yet (an
        order whose answer was lost has no order id in its record until it is looked up), so
        that a fill of ours is never taken for someone else's; None if Order/search failed."""
        unknown = {f.order_id for f in fills if not f.voided
                   and not self.ledger.counted(f.trade_id)
                   and self.outbox.by_order_id(f.order_id) is None}
        if not unknown:
            return {}
        try:
            orders = await self.client.search_orders(self.account_id(), start,
                                                     self.clock.now() + LOOKUP_MARGIN)
        except (GatewayError, OSError) as err:
            self.counts["failed"] += 1
            self.log.warning("fill_sync_failed", error=f"order lookup: {err}")
            return None
        return {int(o["id"]): str(o.get("customTag") or "") for o in orders
                if int(o["id"]) in unknown}

    def _record_fills(self, fills: list[Fill]) -> None:
        """Set the filled quantity (and average price) of our records from their fills."""
        by_order: dict[int, list[Fill]] = {}
        for f in fills:
            if not f.voided:
                by_order.setdefault(f.order_id, []).append(f)
        now = self.clock.now()
        for rec in [*self.outbox.unfilled()]:
            mine = by_order.get(int(rec.order_id or 0))
            if not mine:
                continue
            size = sum(f.size for f in mine)
            if size == rec.filled:
                continue
            notional = sum((f.price * f.size for f in mine), Decimal(0))
            self.outbox.apply(rec.tag, states.Filled(min(size, rec.size), notional / size, now))

    async def sync_orders(self) -> int | None:
        """End the records whose order the venue ended; how many, or None if Order/search
        failed (nothing to look up: 0)."""
        working = [r for r in self.outbox.unfilled() if r.order_id is not None]
        if not working:
            return 0
        start = min(r.created_at for r in working) - LOOKUP_MARGIN
        try:
            orders = await self.client.search_orders(self.account_id(), start,
                                                     self.clock.now() + LOOKUP_MARGIN)
        except (GatewayError, OSError) as err:
            self.counts["failed"] += 1
            self.log.warning("order_sync_failed", error=str(err))
            return None
        by_id = {int(o["id"]): o for o in orders}
        ended = 0
        for seen in working:
            rec = self.outbox.get(seen.tag)  # another sync may have ended it meanwhile
            if rec is None or not rec.open:
                continue
            order = by_id.get(int(rec.order_id or 0))
            status = int(order.get("status") or 0) if order else 0
            if order is None or status not in TERMINAL_STATUSES or status == 2:
                continue  # still working, or filled (its fills come through Trade/search)
            volume = int(order.get("fillVolume") or 0)
            after = self.outbox.apply(rec.tag, states.Ended(status, volume, self.clock.now()))
            ended += 1
            self.log.warning("order_ended", tag=rec.tag, order_id=rec.order_id,
                             state=after.state.value, filled=after.filled, size=after.size)
        self.counts["ended"] += ended
        return ended

    async def sync(self) -> bool:
        """Fills, then order ends; True when both requests succeeded."""
        fills = await self.sync_fills()
        ended = await self.sync_orders()
        return fills is not None and ended is not None
