"""One contract's book as the venue's fills make it: pure functions over plain data.

A `Book` holds the signed position, its average price, realised P&L and fees since the ledger
began, the last price it was marked at, and the current trading day's figures. P&L is in
currency: price points × the contract's point value (tick value / tick size).

The day's P&L is marked to market from the day's start:

    day_pnl = day_realised + unrealised(now) − unrealised(at the day's start) − day_fees

so a position carried over the day boundary counts only the move since the boundary, and a
position closed today counts what it made today (its realised P&L minus what was already
unrealised at the boundary). Fees are the venue's per fill.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from daemon.intent import Side
from daemon.timeutil import iso, parse_utc

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Fill:
    """One half-turn fill from the venue (Trade/search or the user hub)."""

    trade_id: int
    order_id: int
    contract: str
    side: Side
    size: int
    price: Decimal
    fees: Decimal
    at: datetime
    voided: bool = False

    @property
    def signed_size(self) -> int:
        return self.size if self.side == Side.BUY else -self.size

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> Fill:
        """A Fill from a Gateway trade record (`fees` plus `commissions` where given)."""
        at = raw.get("creationTimestamp")
        fees = Decimal(str(raw.get("fees") or 0)) + Decimal(str(raw.get("commissions") or 0))
        return cls(trade_id=int(raw["id"]), order_id=int(raw["orderId"]),
                   contract=str(raw["contractId"]), side=Side(int(raw["side"])),
                   size=int(raw["size"]), price=Decimal(str(raw["price"])), fees=fees,
                   at=parse_utc(at) if isinstance(at, str) else at,
                   voided=bool(raw.get("voided")))


@dataclass(frozen=True, slots=True)
class Book:
    """One contract's position and P&L (see the module docstring)."""

    contract: str
    point_value: float
    position: int = 0
    avg_price: Decimal = ZERO
    realised: Decimal = ZERO
    fees: Decimal = ZERO
    last_price: float = math.nan
    day: date | None = None
    day_realised: Decimal = ZERO
    day_fees: Decimal = ZERO
    day_open_unrealised: float = 0.0
    fills: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("avg_price", "realised", "fees", "day_realised", "day_fees"):
            d[key] = str(d[key])
        d["day"] = self.day.isoformat() if self.day else None
        d["last_price"] = None if math.isnan(self.last_price) else self.last_price
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Book:
        d = dict(d)
        for key in ("avg_price", "realised", "fees", "day_realised", "day_fees"):
            d[key] = Decimal(d[key])
        d["day"] = date.fromisoformat(d["day"]) if d.get("day") else None
        d["last_price"] = math.nan if d.get("last_price") is None else float(d["last_price"])
        return cls(**d)


def unrealised(book: Book) -> float:
    """Open P&L at the last price (0 when flat or never marked)."""
    if book.position == 0 or math.isnan(book.last_price):
        return 0.0
    return book.position * (book.last_price - float(book.avg_price)) * book.point_value


def day_pnl(book: Book) -> float:
    """The current trading day's P&L: realised + unrealised − fees since the day began."""
    return (float(book.day_realised) + unrealised(book) - book.day_open_unrealised
            - float(book.day_fees))


def equity(book: Book) -> float:
    """Everything the book made since the ledger began: realised + unrealised − fees."""
    return float(book.realised) + unrealised(book) - float(book.fees)


def roll_day(book: Book, day: date, *, backwards: bool = False) -> Book:
    """The book in trading day `day`: a new day starts its figures at zero, with the open
    position's unrealised P&L at the last price as the day's starting mark. An earlier day
    leaves the book in its day (a fill reported late is counted in the day the book is in)
    unless `backwards` (a mark: the market itself went back, as when a replay starts over)."""
    if book.day == day:
        return book
    if book.day is not None and day < book.day and not backwards:
        return book
    return dataclasses.replace(book, day=day, day_realised=ZERO, day_fees=ZERO,
                               day_open_unrealised=unrealised(book))


def mark(book: Book, price: float, day: date) -> Book:
    """The book marked at `price` in trading day `day` (the market's day: it rolls the book
    to it, backwards too)."""
    rolled = roll_day(book, day, backwards=True)
    if not math.isfinite(price) or price <= 0:
        return rolled
    return dataclasses.replace(rolled, last_price=float(price))


def apply_fill(book: Book, fill: Fill, day: date) -> Book:
    """The book after one (non-voided) fill in trading day `day`: the closing part realises
    (price − average) × size × point value, the opening part moves the average price; a fill
    through zero does both. Fees are charged to the day."""
    book = roll_day(book, day)
    pv = Decimal(repr(book.point_value))
    signed = fill.signed_size
    position, avg, realised = book.position, book.avg_price, ZERO
    if position and (position > 0) != (signed > 0):
        closing = min(abs(position), abs(signed))
        direction = 1 if position > 0 else -1
        realised = (fill.price - avg) * closing * direction * pv
        position -= direction * closing
        signed += direction * closing
        if position == 0:
            avg = ZERO
    if signed:
        total = abs(position) + abs(signed)
        avg = (avg * abs(position) + fill.price * abs(signed)) / total
        position += signed
    last = book.last_price if not math.isnan(book.last_price) else float(fill.price)
    return dataclasses.replace(
        book, position=position, avg_price=avg, realised=book.realised + realised,
        fees=book.fees + fill.fees, day_realised=book.day_realised + realised,
        day_fees=book.day_fees + fill.fees, last_price=last, fills=book.fills + 1)


def reversed_fill(fill: Fill) -> Fill:
    """The fill that undoes `fill` (a trade the venue voided after we counted it)."""
    side = Side.SELL if fill.side == Side.BUY else Side.BUY
    return dataclasses.replace(fill, side=side, fees=-fill.fees, voided=False)


def adjusted(book: Book, position: int, avg_price: Decimal) -> Book:
    """The book holding `position` at `avg_price` (an adopted venue position): P&L so far is
    kept; the day's starting mark moves by the change in unrealised P&L, so adopting does not
    itself show as a day's gain or loss."""
    before = unrealised(book)
    new = dataclasses.replace(book, position=position,
                              avg_price=avg_price if position else ZERO)
    return dataclasses.replace(new, day_open_unrealised=book.day_open_unrealised
                               + unrealised(new) - before)


def fill_to_dict(fill: Fill) -> dict[str, Any]:
    """A fill as JSON-friendly data (for the store and logs)."""
    return {"trade_id": fill.trade_id, "order_id": fill.order_id, "contract": fill.contract,
            "side": int(fill.side), "size": fill.size, "price": str(fill.price),
            "fees": str(fill.fees), "at": iso(fill.at), "voided": fill.voided}
