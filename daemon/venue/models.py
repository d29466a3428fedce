"""The venue's records — accounts, orders, fills, positions — their Gateway wire form, and the
Gateway's enum values (reference §7)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from daemon.venue.catalog import Contract

LIMIT, MARKET, STOP_LIMIT, STOP, TRAILING_STOP, JOIN_BID, JOIN_ASK = 1, 2, 3, 4, 5, 6, 7  # type
OPEN, FILLED, CANCELLED, EXPIRED, REJECTED, PENDING = 1, 2, 3, 4, 5, 6  # status
BUY, SELL = 0, 1  # side


@dataclass
class Account:
    id: int
    name: str
    balance: Decimal
    can_trade: bool = True
    simulated: bool = True

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "balance": self.balance,
                "canTrade": self.can_trade, "isVisible": True, "simulated": self.simulated}


@dataclass
class Order:
    id: int
    account_id: int
    contract: Contract
    created: datetime
    updated: datetime
    status: int
    type: int
    side: int
    size: int
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    fill_volume: int = 0
    filled_price: Decimal | None = None
    custom_tag: str | None = None
    reason: str | None = None  # why it was rejected (not on the wire)
    # Venue bookkeeping, not on the wire either:
    fill_notional: Decimal = Decimal(0)  # sum of price x size of the fills (exact VWAP)
    bar_ts: datetime | None = None  # the bar of the latest fill, and how much filled on it
    bar_filled: int = 0
    home_ts: datetime | None = None  # expiry counts from this bar (daemon/venue/expiry.py)
    bars_after_home: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "accountId": self.account_id, "contractId": self.contract.id,
                "symbolId": self.contract.symbol_id, "creationTimestamp": self.created,
                "updateTimestamp": self.updated, "status": self.status, "type": self.type,
                "side": self.side, "size": self.size, "limitPrice": self.limit_price,
                "stopPrice": self.stop_price, "fillVolume": self.fill_volume,
                "filledPrice": self.filled_price, "customTag": self.custom_tag}


@dataclass
class Trade:
    id: int
    account_id: int
    contract_id: str
    created: datetime
    price: Decimal
    pnl: Decimal | None
    fees: Decimal
    side: int
    size: int
    order_id: int
    voided: bool = False

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "accountId": self.account_id, "contractId": self.contract_id,
                "creationTimestamp": self.created, "price": self.price,
                "profitAndLoss": self.pnl, "fees": self.fees, "side": self.side,
                "size": self.size, "voided": self.voided, "orderId": self.order_id}


@dataclass
class Position:
    id: int
    account_id: int
    contract: Contract
    created: datetime
    net: int  # signed: > 0 long, < 0 short
    avg: Decimal

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "accountId": self.account_id, "contractId": self.contract.id,
                "contractDisplayName": self.contract.name, "creationTimestamp": self.created,
                "type": 1 if self.net > 0 else 2, "size": abs(self.net), "averagePrice": self.avg}
