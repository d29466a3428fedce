"""While the kill switch is on, no order of ours rests at the venue.

When the switch engages (`[execution].cancel_open_on_kill`), every open order at the venue under
this installation's tags is cancelled (Order/searchOpen: this also finds orders whose records
were lost); then, for as long as the switch stays on, every accepted record of ours that still
has contracts to fill is cancelled once (an order that was in flight when the switch engaged
and was acknowledged after the sweep). The submitter also cancels such an order the moment it
is acknowledged; this watch is the backstop, polled every `KILL_POLL_S`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from daemon.execution.outbox import Outbox
from daemon.execution.submitter import Submitter
from daemon.risk import RiskState

KILL_POLL_S = 0.25


class KillWatch:
    """Cancels our resting orders while the kill switch is on (see the module docstring)."""

    def __init__(self, risk: RiskState, submitter: Submitter, outbox: Outbox, tag_prefix: str,
                 enabled: Callable[[], bool], log: Any) -> None:
        self.risk = risk
        self.submitter = submitter
        self.outbox = outbox
        self.tag_prefix = tag_prefix
        self.enabled = enabled
        self.log = log
        self._swept = False
        self._cancelled: set[str] = set()

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            await self.step()
            await anyio.sleep(KILL_POLL_S)

    async def step(self) -> None:
        """One poll: the sweep when the switch has just engaged, then the records."""
        if not self.risk.kill_switch:
            self._swept = False
            self._cancelled.clear()
            return
        if not self.enabled():
            return
        if not self._swept:
            self._swept = True
            n = await self.submitter.cancel_open_orders(self.tag_prefix)
            self.log.warning("kill_switch_orders_cancelled", cancelled=n)
        for rec in self.outbox.unfilled():
            if rec.tag not in self._cancelled and await self.submitter.cancel(rec,
                                                                             "kill_switch"):
                self._cancelled.add(rec.tag)
