"""The contract catalogue: a handful of real-looking CME contracts around the replayed one.

Contract/search matches the text as a case-insensitive substring of name, description or
symbol, like the real Gateway (searching "ES" also finds MESZ6), and returns at most 20, so a
client has to pick its contract exactly. `live: true` returns nothing, as on simulated accounts.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

SEARCH_MAX = 20


@dataclass(frozen=True)
class Contract:
    id: str
    name: str
    description: str
    tick_size: Decimal
    tick_value: Decimal
    active: bool
    symbol_id: str

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "description": self.description,
                "tickSize": self.tick_size, "tickValue": self.tick_value,
                "activeContract": self.active, "symbolId": self.symbol_id}


_ROOTS = {  # symbol root → (ticker, product, tick size, tick value $)
    "EP": ("ES", "E-mini S&P 500", "0.25", "12.5"),
    "MES": ("MES", "Micro E-mini S&P 500", "0.25", "1.25"),
    "ENQ": ("NQ", "E-mini NASDAQ-100", "0.25", "5"),
    "MNQ": ("MNQ", "Micro E-mini Nasdaq-100", "0.25", "0.5"),
    "RTY": ("RTY", "E-mini Russell 2000", "0.1", "5"),
    "YM": ("YM", "E-mini Dow Jones $5", "1", "5"),
    "QG": ("QG", "E-mini Natural Gas", "0.005", "12.5"),
    "QM": ("QM", "E-mini Crude Oil", "0.025", "12.5"),
    "GMET": ("MGC", "Micro Gold", "0.1", "1"),
}
_MONTHS = {"F": "January", "G": "February", "H": "March", "J": "April", "K": "May", "M": "June",
           "N": "July", "Q": "August", "U": "September", "V": "October", "X": "November",
           "Z": "December"}


def contract_from_id(contract_id: str, active: bool = True) -> Contract:
    """A Contract for an id of the form CON.F.US.<root>.<month><yy> (unknown roots get a
    generic product with tick 0.25 / $1)."""
    parts = contract_id.split(".")
    root = parts[3] if len(parts) >= 5 else contract_id
    code = parts[4] if len(parts) >= 5 else "Z26"
    ticker, product, tick, value = _ROOTS.get(root, (root, root, "0.25", "1"))
    month = _MONTHS.get(code[:1], code[:1])
    year = code[1:]
    return Contract(id=contract_id, name=f"{ticker}{code[:1]}{year[-1:]}",
                    description=f"{product}: {month} 20{year}", tick_size=Decimal(tick),
                    tick_value=Decimal(value), active=active, symbol_id=f"F.US.{root}")


class Catalog:
    """All contracts the venue knows, active and expired, with the traded one among them."""

    def __init__(self, traded: str) -> None:
        ids = [f"CON.F.US.{root}.{m}" for root in _ROOTS for m in ("Z26", "H27", "M27")]
        self.contracts: dict[str, Contract] = {i: contract_from_id(i) for i in ids}
        for expired in ("CON.F.US.EP.U26", "CON.F.US.ENQ.U26"):
            self.contracts[expired] = contract_from_id(expired, active=False)
        self.contracts[traded] = contract_from_id(traded, active=True)

    def get(self, contract_id: str) -> Contract | None:
        return self.contracts.get(contract_id)

    def search(self, text: str, live: bool) -> list[Contract]:
        """Active contracts whose name, description or symbol contains `text` (max 20)."""
        if live:
            return []
        needle = (text or "").lower()
        hits = [c for c in self.contracts.values() if c.active and (
            needle in c.name.lower() or needle in c.description.lower()
            or needle in c.symbol_id.lower())]
        return hits[:SEARCH_MAX]
