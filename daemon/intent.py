"""OrderIntent: what the decision stage wants the submitter to do, with a deterministic id.

The id depends only on the contract, the bar that produced the intent and the order itself,
so replaying the same bars gives the same ids, and the submitter's customTag (id + instance id
+ run epoch) is the same after a restart.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import IntEnum

from daemon.timeutil import iso


class Side(IntEnum):
    """ProjectX OrderSide values."""

    BUY = 0  # Bid
    SELL = 1  # Ask


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """One order the strategy wants: `size` contracts on `side`, moving the position toward
    `target_position`. `limit_price` None means a market order."""

    intent_id: str
    contract: str
    bar_ts: datetime
    side: Side
    size: int
    target_position: int
    ref_price: float
    limit_price: Decimal | None = None
    reason: str = ""

    @property
    def signed_size(self) -> int:
        return self.size if self.side == Side.BUY else -self.size


def make_intent_id(contract: str, bar_ts: datetime, side: Side, size: int,
                   target_position: int) -> str:
    """Deterministic 16-hex id of an intent (same bar and order → same id)."""
    key = f"{contract}|{iso(bar_ts)}|{int(side)}|{size}|{target_position}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def intent_for_target(contract: str, bar_ts: datetime, position: int, target: int,
                      ref_price: float, reason: str = "",
                      limit_price: Decimal | None = None) -> OrderIntent | None:
    """The intent that moves `position` to `target`, or None when they are equal."""
    delta = target - position
    if delta == 0:
        return None
    side = Side.BUY if delta > 0 else Side.SELL
    size = abs(delta)
    return OrderIntent(
        intent_id=make_intent_id(contract, bar_ts, side, size, target),
        contract=contract, bar_ts=bar_ts, side=side, size=size, target_position=target,
        ref_price=ref_price, limit_price=limit_price, reason=reason,
    )
