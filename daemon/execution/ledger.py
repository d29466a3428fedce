"""The account ledger: the one book that decides orders.

Per contract (daemon/execution/ledger_book.py): position, average price, realised and unrealised
P&L, fees, per trading day of the exchange calendar. It is fed only by the venue's fills (each
counted once, by trade id, whatever order it came in) and by adoptions of the venue's position,
and is checked against the venue's positions (daemon/execution/reconcile.py).

Persistence: every fill is written when it is counted (`ledger_fills`, in counting order); the
books are committed with each bar (`Store.commit_bar`, key "ledger") together with the sequence
number of the last fill they include. Start-up takes the committed books and counts again the
fills written after them, so a restart resumes from exactly what was counted, before the first
decision.

A position mismatch (fills we did not place; a venue position that differs from the ledger when
no order of ours is in flight) is persisted at once and blocks new risk until an operator
adopts or the policy (`[execution].on_mismatch = "adopt"`) adopts it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson

from daemon.execution import ledger_book as lb
from daemon.execution.ledger_book import Book, Fill
from daemon.intent import Side
from daemon.store import Store
from daemon.timeutil import iso, parse_utc
from daemon.trading_calendar import TradingCalendar

STATE_KEY = "ledger"
MISMATCH_KEY = "ledger_mismatch"


@dataclass(frozen=True)
class Mismatch:
    """Why the ledger does not trust itself to add risk: `kind` "foreign_fill" (the ledger
    counted fills we did not place: it equals the venue, but someone else trades the account)
    or "position" (the venue holds another position than the ledger: nothing may be sized
    from the ledger until it adopts the venue's)."""

    kind: str
    reason: str
    at: str
    venue_position: int | None = None
    ledger_position: int | None = None

    @property
    def blocks_all(self) -> bool:
        """True when even risk-reducing intents are refused (the ledger is not the venue)."""
        return self.kind == "position"


class Ledger:
    """The books of one account (see the module docstring)."""

    def __init__(self, store: Store, calendar: TradingCalendar, point_value: float,
                 log: Any) -> None:
        self.store = store
        self.calendar = calendar
        self.default_point_value = float(point_value)
        self.log = log
        self.books: dict[str, Book] = {}
        self.point_values: dict[str, float] = {}
        self.synced_until: datetime | None = None  # venue time the last Trade/search reached
        self._seq = 0  # the last ledger_fills row counted into `books`
        self._known: set[int] = set()  # trade ids counted (recent ones; the table has all)
        self.mismatch: Mismatch | None = None
        self.on_mismatch: list[Callable[[Mismatch], None]] = []
        self._restore()
        store.bar_writers[STATE_KEY] = self.snapshot

    # -- restore / snapshot ----------------------------------------------------------------
    def _restore(self) -> None:
        raw = self.store.bar_state(STATE_KEY)
        if raw is not None:
            state = orjson.loads(raw)
            self.books = {c: Book.from_dict(b) for c, b in state["books"].items()}
            self.point_values = {c: b.point_value for c, b in self.books.items()}
            self._seq = int(state["seq"])
            synced = state.get("synced_until")
            self.synced_until = parse_utc(synced) if synced else None
        rows = self.store.conn.execute(
            "SELECT * FROM ledger_fills WHERE seq > ? ORDER BY seq", (self._seq,)).fetchall()
        for row in rows:  # counted after the last bar commit: count them again, in order
            self._replay_row(dict(row))
        horizon = self.store.conn.execute(
            "SELECT trade_id FROM ledger_fills WHERE trade_id IS NOT NULL ORDER BY seq DESC "
            "LIMIT 5000").fetchall()
        self._known = {int(r[0]) for r in horizon}
        mismatch = self.store.get_meta(MISMATCH_KEY)
        self.mismatch = Mismatch(**orjson.loads(mismatch)) if mismatch else None

    def _replay_row(self, row: dict[str, Any]) -> None:
        contract, day = row["contract"], date.fromisoformat(row["day"])
        book = self.book(contract)
        if row["kind"] == "adjust":
            self.books[contract] = lb.adjusted(lb.roll_day(book, day), int(row["size"]),
                                               Decimal(row["price"]))
        else:
            fill = Fill(int(row["trade_id"] or 0), int(row["order_id"] or 0), contract,
                        Side(row["side"]), int(row["size"]), Decimal(row["price"]),
                        Decimal(row["fees"]), parse_utc(row["at"]))
            self.books[contract] = lb.apply_fill(book, fill, day)
        self._seq = int(row["seq"])

    def snapshot(self) -> bytes:
        """The books as committed with a bar (with the last fill they include)."""
        return orjson.dumps({"seq": self._seq,
                             "books": {c: b.to_dict() for c, b in self.books.items()},
                             "synced_until": iso(self.synced_until) if self.synced_until
                             else None})

    # -- reading ------------------------------------------------------------------------------
    def book(self, contract: str) -> Book:
        """The book of `contract` (an empty one if the ledger never saw it)."""
        book = self.books.get(contract)
        if book is None:
            pv = self.point_values.get(contract, self.default_point_value)
            book = self.books[contract] = Book(contract, pv)
        return book

    def position(self, contract: str) -> int:
        """The signed position the venue's fills made (long > 0)."""
        book = self.books.get(contract)
        return book.position if book is not None else 0

    def counted(self, trade_id: int) -> bool:
        """True when the fill with this trade id is in the books already."""
        return trade_id in self._known

    def day_pnl(self, contract: str, at: datetime) -> float:
        """P&L of the trading day `at` is in: realised + unrealised − fees since its start."""
        return lb.day_pnl(lb.roll_day(self.book(contract), self.calendar.trading_day(at)))

    def equity(self, contract: str) -> float:
        """Realised + unrealised − fees since the ledger began."""
        return lb.equity(self.book(contract))

    # -- changing -----------------------------------------------------------------------------
    def set_point_value(self, contract: str, point_value: float) -> None:
        """The contract's currency per point (tick value / tick size, from the venue)."""
        import dataclasses

        self.point_values[contract] = float(point_value)
        book = self.books.get(contract)
        if book is not None and book.point_value != point_value:
            self.books[contract] = dataclasses.replace(book, point_value=float(point_value))

    def mark(self, contract: str, price: float, at: datetime) -> None:
        """Mark the book at `price` (a bar's close) at market time `at` (rolls the day)."""
        self.books[contract] = lb.mark(self.book(contract), price,
                                       self.calendar.trading_day(at))

    def count(self, fills: Iterable[Fill], ours: Callable[[int], bool],
              at: datetime | None = None) -> list[Fill]:
        """Count the fills not counted before (by trade id), in trade id order; returns them.
        Each is counted in the trading day of market time `at` (a replay's bar time), or of
        its own time when `at` is None (live). A voided trade is never counted, and one
        counted before it was voided is undone. `ours(order_id)` says whether we placed the
        order (a fill we did not place raises a "foreign_fill" mismatch). One transaction."""
        new: list[tuple[Fill, str, bool]] = []
        for fill in sorted(fills, key=lambda f: f.trade_id):
            if fill.voided:
                if fill.trade_id in self._known and not self._voided(fill.trade_id):
                    new.append((lb.reversed_fill(fill), "void", True))
                continue
            if fill.trade_id in self._known:
                continue
            new.append((fill, "fill", ours(fill.order_id)))
        if not new:
            return []
        counted = self._write(new, at)
        foreign = [f for f, kind, mine in counted if kind == "fill" and not mine]
        for fill, kind, _ in counted:
            self.log.info("ledger_fill", kind=kind, **lb.fill_to_dict(fill),
                          position=self.position(fill.contract))
        if foreign:
            ids = [f.trade_id for f in foreign]
            self.raise_mismatch("foreign_fill", f"fills not placed by this daemon: trades "
                                f"{ids}", at or foreign[-1].at)
        return [f for f, _, _ in counted]

    def _voided(self, trade_id: int) -> bool:
        return self.store.conn.execute(
            "SELECT 1 FROM ledger_fills WHERE kind = 'void' AND trade_id = ?",
            (-trade_id,)).fetchone() is not None

    def _write(self, items: list[tuple[Fill, str, bool]],
               at: datetime | None) -> list[tuple[Fill, str, bool]]:
        """Insert the fills (a trade id already in the table is skipped) and count them."""
        counted = []
        with self.store.transaction() as c:
            for fill, kind, mine in items:
                day = self.calendar.trading_day(at or fill.at)
                trade_id = fill.trade_id if kind == "fill" else -fill.trade_id
                c.execute("INSERT OR IGNORE INTO ledger_fills(kind, trade_id, order_id, "
                          "contract, side, size, price, fees, at, day, ours) "
                          "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                          (kind, trade_id, fill.order_id, fill.contract, int(fill.side),
                           fill.size, str(fill.price), str(fill.fees), iso(fill.at),
                           day.isoformat(), int(mine)))
                if c.rowcount:
                    counted.append((fill, kind, mine, c.lastrowid, day))
        for fill, _kind, _mine, seq, day in counted:
            self.books[fill.contract] = lb.apply_fill(self.book(fill.contract), fill, day)
            self._seq = int(seq)
            self._known.add(fill.trade_id)
        return [(f, k, m) for f, k, m, _, _ in counted]

    def adopt(self, contract: str, position: int, avg_price: Decimal, at: datetime,
              reason: str) -> None:
        """Take the venue's position (and average price) into the book, and clear the
        mismatch. Written at once."""
        before = self.position(contract)
        day = self.calendar.trading_day(at)
        with self.store.transaction() as c:
            c.execute("INSERT INTO ledger_fills(kind, contract, side, size, price, fees, at, "
                      "day, ours, detail) VALUES('adjust', ?, 0, ?, ?, '0', ?, ?, 0, ?)",
                      (contract, int(position), str(avg_price), iso(at), day.isoformat(),
                       reason))
            seq = c.lastrowid
        self.books[contract] = lb.adjusted(lb.roll_day(self.book(contract), day), int(position),
                                           avg_price)
        self._seq = int(seq)
        self.log.warning("ledger_adopted", contract=contract, position=position,
                         before=before, avg_price=str(avg_price), reason=reason)
        self.clear_mismatch(f"adopted: {reason}")

    def raise_mismatch(self, kind: str, reason: str, at: datetime,
                       venue_position: int | None = None,
                       ledger_position: int | None = None) -> Mismatch:
        """Record a mismatch (persisted at once, logged, hooks called: alert, policy)."""
        found = Mismatch(kind, reason, iso(at), venue_position, ledger_position)
        if self.mismatch is None or self.mismatch.blocks_all <= found.blocks_all:
            self.mismatch = found
            self.store.set_meta(MISMATCH_KEY, orjson.dumps(vars(found)).decode())
        self.log.error("position_mismatch", kind=kind, reason=reason,
                       venue_position=venue_position, ledger_position=ledger_position)
        for hook in self.on_mismatch:
            hook(found)
        return found

    def clear_mismatch(self, why: str) -> None:
        """Trust the ledger again (after an adoption or an operator's decision)."""
        if self.mismatch is None:
            return
        self.store.set_meta(MISMATCH_KEY, "")
        self.log.warning("position_mismatch_cleared", kind=self.mismatch.kind, why=why)
        self.mismatch = None

    def status(self, contract: str, at: datetime) -> dict[str, Any]:
        """The "ledger" block of `anchord ctl status`."""
        book = self.book(contract)
        rolled = lb.roll_day(book, self.calendar.trading_day(at))
        last = None if math.isnan(book.last_price) else book.last_price
        return {"contract": contract, "position": book.position,
                "avg_price": str(book.avg_price), "last_price": last,
                "realised": round(float(book.realised), 2),
                "unrealised": round(lb.unrealised(book), 2),
                "fees": round(float(book.fees), 2), "equity": round(lb.equity(book), 2),
                "trading_day": rolled.day.isoformat() if rolled.day else None,
                "day_pnl": round(lb.day_pnl(rolled), 2), "fills": book.fills,
                "calendar": self.calendar.name,
                "mismatch": vars(self.mismatch) if self.mismatch else None}
