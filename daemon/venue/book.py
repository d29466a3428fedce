"""Accounts, orders, positions and fills of the paper venue, and the deterministic matching.

Pure state over plain data; no I/O. Given the same bars and the same orders in the same
order, it produces the same order ids, fill prices and trades.

Matching rules (prices rounded to the contract's tick, half-even):
- On placement with a current bar of close C: Market fills at C; a buy Limit at L >= C (sell
  L <= C) fills at C; a Stop already through C fills at C; otherwise the order rests (Open).
- On each later bar (open O, high H, low L): a buy Limit at P fills when L <= P at min(P, O);
  a sell Limit when H >= P at max(P, O); a buy Stop at S when H >= S at max(S, O); a sell Stop
  when L <= S at min(S, O). Resting orders are checked in id order.
- Fills are half-turns: an opening fill has profitAndLoss null; a fill that reduces a position
  realises (price − avg) × size × tickValue / tickSize; a fill through zero is two trades.

customTag is unique per account forever: a rejected order keeps its tag. A duplicate is
answered errorCode 2 "Specified custom tag is already in use" and creates no order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from daemon.bars.model import Bar
from daemon.venue.catalog import Catalog, Contract
from daemon.venue.models import Account, Order, Position, Trade
from daemon.venue.wire import dec

LIMIT, MARKET, STOP_LIMIT, STOP, TRAILING_STOP, JOIN_BID, JOIN_ASK = 1, 2, 3, 4, 5, 6, 7
OPEN, FILLED, CANCELLED, EXPIRED, REJECTED, PENDING = 1, 2, 3, 4, 5, 6
BUY, SELL = 0, 1
DUPLICATE_TAG = "Specified custom tag is already in use"


@dataclass(frozen=True)
class Result:
    """An endpoint's answer: errorCode (0 = success), message, and the order id if any."""

    code: int
    message: str | None = None
    order_id: int | None = None


def to_tick(price: float | Decimal, tick: Decimal) -> Decimal:
    """`price` rounded half-even to a multiple of `tick`."""
    p = price if isinstance(price, Decimal) else Decimal(repr(float(price)))
    return dec((p / tick).to_integral_value(ROUND_HALF_EVEN) * tick)


@dataclass
class Book:
    """Everything the venue remembers about accounts, for the whole run."""

    catalog: Catalog
    now: Callable[[], datetime]
    fee_per_contract: Decimal = Decimal(0)
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
                      custom_tag=tag, reason=reason)
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
        c = to_tick(bar.close, order.contract.tick_size)
        buy = order.side == BUY
        if order.type == MARKET or (order.type == LIMIT and (
                order.limit_price >= c if buy else order.limit_price <= c)) or (
                order.type == STOP and (order.stop_price <= c if buy else order.stop_price >= c)):
            self._fill(order, c)

    def on_bar(self, contract_id: str, bar: Bar) -> None:
        """A new bar of `contract_id` happened: fill the resting orders it crosses."""
        resting = [o for o in self.orders.values()
                   if o.status == OPEN and o.contract.id == contract_id]
        for order in resting:
            tick = order.contract.tick_size
            o, h, lo = (to_tick(x, tick) for x in (bar.open, bar.high, bar.low))
            buy = order.side == BUY
            if order.type == LIMIT:
                p = order.limit_price
                if buy and lo <= p:
                    self._fill(order, min(p, o))
                elif not buy and h >= p:
                    self._fill(order, max(p, o))
            elif order.type == STOP:
                s = order.stop_price
                if buy and h >= s:
                    self._fill(order, max(s, o))
                elif not buy and lo <= s:
                    self._fill(order, min(s, o))

    def cancel(self, account_id: int, order_id: int) -> Result:
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
        or reduce with a market order. The two endpoints number their codes differently."""
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
        return Result(0) if res.code == 0 else Result(rejected, res.message)

    # ---- fills ---------------------------------------------------------------------------
    def _fill(self, order: Order, price: Decimal) -> None:
        now = self.now()
        order.status, order.fill_volume, order.filled_price, order.updated = (
            FILLED, order.size, price, now)
        key = (order.account_id, order.contract.id)
        signed = order.size if order.side == BUY else -order.size
        pos = self.positions.get(key)
        remaining = order.size
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
