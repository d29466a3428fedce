"""Accounts, orders, positions and fills of the paper venue.

Pure state over plain data; no I/O. Given the same bars and the same orders in the same
order, it produces the same order ids, fill prices and trades.

When a bar fills an order, at what price and how much: daemon/venue/matching.py. When a resting
order expires: daemon/venue/expiry.py. Each new bar first expires, then matches the resting
orders of its contract, in id order.

Fills are half-turns: an opening fill has profitAndLoss null; a fill that reduces a position
realises (price − avg) × size × tickValue / tickSize; a fill through zero is two trades. A
partial fill is a fill like any other (its own trades, position change and fees per
contract); the order stays Open with fillVolume < size and filledPrice the volume-weighted
average so far. Cancelling a partly filled order keeps its fillVolume.

customTag is unique per account forever: a rejected order keeps its tag. A duplicate is
answered errorCode 2 "Specified custom tag is already in use" and creates no order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from daemon.bars.model import Bar
from daemon.venue.catalog import Catalog, Contract
from daemon.venue.expiry import ExpiryRule, expires_on
from daemon.venue.matching import bar_price, fill_quantity, note_fill, placement_price
from daemon.venue.models import (
    BUY,
    CANCELLED,
    EXPIRED,
    FILLED,
    JOIN_ASK,
    JOIN_BID,
    LIMIT,
    MARKET,
    OPEN,
    REJECTED,
    SELL,
    STOP,
    STOP_LIMIT,
    TRAILING_STOP,
    Account,
    Order,
    Position,
    Trade,
)
from daemon.venue.wire import dec

DUPLICATE_TAG = "Specified custom tag is already in use"


@dataclass(frozen=True)
class Result:
    """An endpoint's answer: errorCode (0 = success), message, and the order id if any."""

    code: int
    message: str | None = None
    order_id: int | None = None


@dataclass
class Book:
    """Everything the venue remembers about accounts, for the whole run."""

    catalog: Catalog
    now: Callable[[], datetime]
    fee_per_contract: Decimal = Decimal(0)
    max_fill_per_bar: int = 0  # contracts per Limit/Stop order and bar; 0 = unlimited
    expiry: ExpiryRule = field(default_factory=ExpiryRule)
    accounts: dict[int, Account] = field(default_factory=dict)
    orders: dict[int, Order] = field(default_factory=dict)
    trades: list[Trade] = field(default_factory=list)
    positions: dict[tuple[int, str], Position] = field(default_factory=dict)
    tags: dict[tuple[int, str], int] = field(default_factory=dict)
    _next: dict[str, int] = field(default_factory=lambda: {"order": 7_000_001, "trade": 400_001,
                                                            "position": 90_001})

    def _id(self, kind: str) -> int:
        self._next[kind] += 1
        return self._next[kind] - 1

    def add_account(self, account_id: int, name: str, balance: Decimal) -> Account:
        self.accounts[account_id] = Account(account_id, name, balance)
        return self.accounts[account_id]

    # ---- orders ------------------------------------------------------------------------
    def place(self, *, account_id: int, contract_id: str, type_: int, side: int, size: int,
              limit: Decimal | None, stop: Decimal | None, tag: str | None,
              bar: Bar | None, reject: str | None = None) -> Result:
        """Order/place. `bar` is the current bar of this contract (None: no market data);
        `reject` forces a validation reject with that message (e.g. brackets)."""
        if account_id not in self.accounts:
            return Result(1, "Account not found")
        contract = self.catalog.get(contract_id)
        if contract is None:
            return Result(8, "Contract not found")
        if not contract.active:
            return Result(9, "Contract is not active")
        if tag is not None and (account_id, tag) in self.tags:
            return Result(2, DUPLICATE_TAG)
        reason = reject or self._invalid(contract, type_, side, size, limit, stop, bar)
        now = self.now()
        order = Order(self._id("order"), account_id, contract, now, now,
                      REJECTED if reason else OPEN, type_, side, size,
                      limit_price=dec(limit) if limit is not None else None,
                      stop_price=dec(stop) if stop is not None else None,
                      custom_tag=tag, reason=reason,
                      home_ts=bar.ts if bar is not None else None)
        self.orders[order.id] = order
        if tag is not None:
            self.tags[(account_id, tag)] = order.id  # rejected orders keep their tag too
        if reason:
            return Result(2, reason, order.id)
        if bar is not None:
            self._try_fill_now(order, bar)
        return Result(0, None, order.id)

    def _invalid(self, contract: Contract, type_: int, side: int, size: int,
                 limit: Decimal | None, stop: Decimal | None, bar: Bar | None) -> str | None:
        if type_ not in (LIMIT, MARKET, STOP_LIMIT, STOP, TRAILING_STOP, JOIN_BID, JOIN_ASK):
            return f"Invalid order type {type_}"
        if type_ not in (LIMIT, MARKET, STOP):
            return f"Order type {type_} is not supported by the paper venue"
        if side not in (BUY, SELL):
            return f"Invalid order side {side}"
        if size < 1:
            return f"Invalid order size {size}"
        for name, price, needed in (("limit", limit, type_ == LIMIT),
                                    ("stop", stop, type_ == STOP)):
            if needed and price is None:
                return f"Missing {name} price"
            if needed and (price <= 0 or price % contract.tick_size != 0):
                return f"Invalid {name} price. Price is not aligned to tick size."
        if type_ == MARKET and bar is None:
            return "No market data to fill a market order"
        return None

    def _try_fill_now(self, order: Order, bar: Bar) -> None:
        price = placement_price(order, bar)
        if price is not None:
            self._fill(order, price, bar.ts)

    def on_bar(self, contract_id: str, bar: Bar) -> None:
        """A new bar of `contract_id` happened: expire the resting orders whose time is up,
        then fill the ones the bar crosses (each at most max_fill_per_bar contracts)."""
        resting = [o for o in self.orders.values()
                   if o.status == OPEN and o.contract.id == contract_id]
        live = []
        for order in resting:  # all expiry first: an order never fills on its expiry bar
            if expires_on(order, bar.ts, self.expiry):
                order.status, order.updated = EXPIRED, self.now()
            else:
                live.append(order)
        for order in live:
            price = bar_price(order, bar)
            if price is not None:
                self._fill(order, price, bar.ts)

    def cancel(self, account_id: int, order_id: int) -> Result:
        """Order/cancel: an Open order, partly filled or not, becomes Cancelled and keeps its
        fillVolume; anything else is answered with the Gateway's code."""
        if account_id not in self.accounts:
            return Result(1, "Account not found")
        order = self.orders.get(order_id)
        if order is None or order.account_id != account_id:
            return Result(2, "Order not found")
        if order.status != OPEN:
            return Result(3, "Order is not open")
        order.status, order.updated = CANCELLED, self.now()
        return Result(0)

    def modify(self, account_id: int, order_id: int, size: int | None, limit: Decimal | None,
               stop: Decimal | None, bar: Bar | None) -> Result:
        """Order/modify of an Open order: omitted fields stay; the new size must exceed what
        has filled; an order made marketable fills against `bar` as at placement."""
        if account_id not in self.accounts:
            return Result(1, "Account not found")
        order = self.orders.get(order_id)
        if order is None or order.account_id != account_id:
            return Result(2, "Order not found")
        if order.status != OPEN:
            return Result(3, "Order is not open")
        new_limit = limit if limit is not None else order.limit_price
        new_stop = stop if stop is not None else order.stop_price
        new_size = size if size is not None else order.size
        reason = self._invalid(order.contract, order.type, order.side, new_size, new_limit,
                               new_stop, bar)
        if not reason and new_size <= order.fill_volume:
            reason = f"Size {new_size} must exceed the filled volume {order.fill_volume}"
        if reason:
            return Result(3, reason)
        order.size, order.updated = new_size, self.now()
        order.limit_price = dec(new_limit) if new_limit is not None else None
        order.stop_price = dec(new_stop) if new_stop is not None else None
        if bar is not None:
            self._try_fill_now(order, bar)
        return Result(0)

    def close_contract(self, account_id: int, contract_id: str, bar: Bar | None,
                       size: int | None = None) -> Result:
        """Position/closeContract (size None) or partialCloseContract (size given): flatten
        or reduce with a market order without a customTag, which fills at once; its id is
        Result.order_id. The two endpoints number their codes differently."""
        partial = size is not None
        if account_id not in self.accounts:
            return Result(1, "Account not found")
        contract = self.catalog.get(contract_id)
        if contract is None:
            return Result(3, "Contract not found")
        if not contract.active:
            return Result(4, "Contract is not active")
        pos = self.positions.get((account_id, contract_id))
        if pos is None:
            return Result(2, "Position not found")
        if partial and not 0 < size <= abs(pos.net):
            return Result(5, "Invalid close size")
        rejected = 6 if partial else 5
        if bar is None:
            return Result(rejected, "No market data to close the position")
        side = SELL if pos.net > 0 else BUY
        res = self.place(account_id=account_id, contract_id=contract_id, type_=MARKET, side=side,
                         size=size if partial else abs(pos.net), limit=None, stop=None, tag=None,
                         bar=bar)
        return Result(0, None, res.order_id) if res.code == 0 else Result(rejected, res.message)

    def flatten(self, account_id: int, contract_id: str, bar: Bar | None,
                cancel_orders: bool = False) -> tuple[Result, list[int]]:
        """A close from outside the daemon (a manual close in the platform, a prop firm's
        auto-liquidation): with `cancel_orders`, first cancel the account's Open orders in the
        contract; then closeContract (its codes; the closing order has no customTag). Returns
        the close's Result and the ids of the cancelled orders."""
        cancelled = []
        if cancel_orders and account_id in self.accounts:
            for order in list(self.orders.values()):
                if (order.account_id, order.contract.id, order.status) == (
                        account_id, contract_id, OPEN):
                    self.cancel(account_id, order.id)
                    cancelled.append(order.id)
        return self.close_contract(account_id, contract_id, bar), cancelled

    # ---- fills ---------------------------------------------------------------------------
    def _fill(self, order: Order, price: Decimal, bar_ts: datetime) -> None:
        qty = fill_quantity(order, bar_ts, self.max_fill_per_bar)
        if qty == 0:
            return
        now = self.now()
        note_fill(order, bar_ts, qty, price)
        order.status = FILLED if order.fill_volume == order.size else OPEN
        order.updated = now
        key = (order.account_id, order.contract.id)
        signed = qty if order.side == BUY else -qty
        pos = self.positions.get(key)
        remaining = qty
        if pos is not None and (pos.net > 0) != (signed > 0):
            closing = min(abs(pos.net), remaining)
            direction = 1 if pos.net > 0 else -1
            per_point = order.contract.tick_value / order.contract.tick_size
            pnl = dec((price - pos.avg) * closing * direction * per_point)
            self._trade(order, price, closing, pnl, now)
            pos.net -= direction * closing
            remaining -= closing
            if pos.net == 0:
                del self.positions[key]
                pos = None
        if remaining:
            if pos is None:
                pos = Position(self._id("position"), order.account_id, order.contract, now, 0,
                               price)
                self.positions[key] = pos
            add = remaining if signed > 0 else -remaining
            pos.avg = dec((pos.avg * abs(pos.net) + price * remaining) / (abs(pos.net) + remaining))
            pos.net += add
            self._trade(order, price, remaining, None, now)

    def _trade(self, order: Order, price: Decimal, size: int, pnl: Decimal | None,
               now: datetime) -> None:
        fees = dec(self.fee_per_contract * size)
        self.trades.append(Trade(self._id("trade"), order.account_id, order.contract.id, now,
                                 price, pnl, fees, order.side, size, order.id))
        acct = self.accounts[order.account_id]
        acct.balance = dec(acct.balance + (pnl or 0) - fees)
