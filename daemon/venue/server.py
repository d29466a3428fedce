"""The paper venue as an object: its state, its market clock, its HTTP listener, and the three
ways to run it — in an anyio task group (`run_venue`), in a background thread with its own
event loop (`venue_in_thread`), or standalone (`anchord venue`, see daemon/venue/cli.py).

Sharing the replay clock: the venue's market moves only when told. In-process, register
`venue.on_bar` as the FIRST ingest handler (`attach_to_daemon(venue, daemon)` does that),
so that a market order placed while bar t is current fills at bar t's close. `set_bar(bar)`
is the same, synchronously; `advance(n)` steps through the venue's own data; `set_time(ts)`
jumps to the last data bar at or before ts. Every data bar passed over is matched against the
resting orders, in order. Order and trade timestamps come from the injected `clock`.

A client in another process can share the clock too: a request carrying the (non-Gateway)
header `X-Replay-Time: <ISO time of its current bar>` first moves the venue forward to the last
data bar at or before that time (never backwards). The real Gateway ignores the header.

Non-Gateway admin endpoints for tests driving a standalone venue (daemon/venue/admin.py):
GET /_venue/state, POST /_venue/clock with {"advance": n} | {"index": i} | {"time": iso}, and
POST /_venue/flatten with {"accountId", "contractId", "cancelOrders"} (a close from outside).

Order options (every default behaves as the venue did before they existed): `max_fill_per_bar`
caps the contracts a Limit or Stop order fills on one bar, so resting orders fill partially over
several bars (daemon/venue/matching.py); `order_expiry` is gtc, day or bars:N
(daemon/venue/expiry.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from anyio.abc import TaskGroup

from daemon.bars.model import Bar
from daemon.clock import Clock, WallClock
from daemon.logs import get_logger
from daemon.venue.admin import admin_routes
from daemon.venue.book import Book
from daemon.venue.catalog import Catalog
from daemon.venue.expiry import parse_expiry
from daemon.venue.faults import FaultInjector, FaultPlan, parse_faults
from daemon.venue.gateway import Gateway
from daemon.venue.httpserver import open_listener, serve_connection
from daemon.venue.market import Market
from daemon.venue.matching import parse_max_fill
from daemon.venue.ratelimit import DEFAULT_HISTORY, DEFAULT_OTHER, RateLimits
from daemon.venue.tokens import TokenIssuer


def log() -> Any:
    return get_logger("venue")  # bound at call time: configure_logging may come later
FIRST_ACCOUNT_ID = 1001


@dataclass(frozen=True)
class VenueOptions:
    """How a venue behaves; every field has a default that mimics the real Gateway."""

    contract: str = "CON.F.US.EP.Z26"
    accounts: tuple[str, ...] = ("PAPER-1",)  # ids FIRST_ACCOUNT_ID, +1, ...
    balance: str = "50000"
    fee_per_contract: str = "0"  # per half-turn fill
    token_lifetime_s: float = 86_400.0
    username: str | None = None  # with api_key: the only credentials login accepts
    api_key: str | None = None
    history_limit: str = DEFAULT_HISTORY  # "N/SECONDS" or "unlimited"
    other_limit: str = DEFAULT_OTHER
    retry_after: bool = True  # send Retry-After on 429
    faults: str = ""  # see daemon/venue/faults.py
    follow_replay_time: bool = True  # honour the X-Replay-Time request header
    max_fill_per_bar: int = 0  # contracts a Limit/Stop order fills per bar; 0 = unlimited
    order_expiry: str = "gtc"  # gtc | day | bars:N, see daemon/venue/expiry.py
    host: str = "127.0.0.1"
    port: int = 0  # 0 = a free port


class Venue:
    """A ProjectX-Gateway-compatible paper venue over a list of bars."""

    def __init__(self, bars: list[Bar], options: VenueOptions | None = None,
                 clock: Clock | None = None) -> None:
        self.options = opts = options or VenueOptions()
        self.clock = clock or WallClock()
        # The venue trades one contract; bars loaded under another label are taken as its.
        own = [b for b in bars if b.contract == opts.contract]
        self.market = Market(opts.contract, own if own else
                             [dataclasses.replace(b, contract=opts.contract) for b in bars])
        self.catalog = Catalog(opts.contract)
        self.book = Book(self.catalog, self.clock.now, Decimal(opts.fee_per_contract),
                         max_fill_per_bar=parse_max_fill(opts.max_fill_per_bar),
                         expiry=parse_expiry(opts.order_expiry))
        for i, name in enumerate(opts.accounts):
            self.book.add_account(FIRST_ACCOUNT_ID + i, name, Decimal(opts.balance))
        self.fault_injector = FaultInjector(parse_faults(opts.faults))
        self.limits = RateLimits(opts.history_limit, opts.other_limit)
        creds = (opts.username, opts.api_key) if opts.username and opts.api_key else None
        self.tokens = TokenIssuer(opts.token_lifetime_s, lambda: self.clock.now().timestamp())
        self.gateway = Gateway(market=self.market, catalog=self.catalog, book=self.book,
                               tokens=self.tokens, faults=self.fault_injector, limits=self.limits,
                               clock=self.clock, credentials=creds, retry_after=opts.retry_after,
                               extra_routes=admin_routes(self),
                               on_replay_time=self.set_time if opts.follow_replay_time else None)
        self.port = 0

    # ---- network ---------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """e.g. http://127.0.0.1:43121 — the Gateway paths are under /api/."""
        return f"http://{self.options.host}:{self.port}"

    async def start(self, tg: TaskGroup) -> None:
        """Bind the listener and serve in `tg` until its scope is cancelled."""
        listener, self.port = await open_listener(self.options.host, self.options.port)

        async def on_connection(stream: Any) -> None:
            await serve_connection(stream, self.gateway.handle)

        tg.start_soon(listener.serve, on_connection)
        log().info("venue_listening", base_url=self.base_url, port=self.port,
                 contract=self.options.contract, bars=len(self.market.bars))

    # ---- market clock --------------------------------------------------------------------
    @property
    def current_bar(self) -> Bar | None:
        return self.market.current

    def set_bar(self, bar: Bar) -> None:
        """Make `bar` the current bar. Moving forward, the data bars passed over and then `bar`
        itself are matched against resting orders, in time order. The same time again only
        replaces the current bar (no second matching); an earlier time rewinds the clock (a
        replay that starts over) and `bar` is matched as a new bar. The venue has one market:
        a bar labelled with another contract is taken as the traded contract's."""
        if bar.contract != self.market.contract_id:
            bar = dataclasses.replace(bar, contract=self.market.contract_id)
        now = self.market.now_ts
        target = self.market.index_at(bar.ts)
        if now is not None and bar.ts == now:
            self.market.current = bar
            return
        if now is None or bar.ts > now:
            for i in range(self.market.index + 1, target + 1):
                data_bar = self.market.bars[i]
                if data_bar.ts != bar.ts:
                    self.book.on_bar(self.market.contract_id, data_bar)
        self.market.index = target
        self.market.current = bar
        self.book.on_bar(self.market.contract_id, bar)

    async def on_bar(self, bar: Bar) -> None:
        """`set_bar` as a daemon ingest handler (register it first)."""
        self.set_bar(bar)

    def advance(self, n: int = 1) -> Bar | None:
        """Step `n` bars through the venue's own data; the new current bar (None at the end)."""
        for _ in range(n):
            nxt = self.market.index + 1
            if nxt >= len(self.market.bars):
                return None
            self.set_bar(self.market.bars[nxt])
        return self.market.current

    def set_time(self, ts: datetime) -> Bar | None:
        """Jump forward to the last data bar at or before `ts`."""
        target = self.market.index_at(ts)
        if target > self.market.index:
            self.set_bar(self.market.bars[target])
        return self.market.current

    # ---- inspection and control ----------------------------------------------------------
    def orders(self, account_id: int | None = None) -> list[dict[str, Any]]:
        """Every order of the run (accepted, rejected, filled, cancelled), in id order."""
        return [o.to_wire() for o in self.book.orders.values()
                if account_id is None or o.account_id == account_id]

    def positions(self) -> list[dict[str, Any]]:
        return [p.to_wire() for p in self.book.positions.values()]

    def net_position(self, account_id: int = FIRST_ACCOUNT_ID,
                     contract_id: str | None = None) -> int:
        """Signed position (long > 0) of an account in a contract (default: the traded one)."""
        pos = self.book.positions.get((account_id, contract_id or self.market.contract_id))
        return pos.net if pos else 0

    def trades(self) -> list[dict[str, Any]]:
        return [t.to_wire() for t in self.book.trades]

    def accounts(self) -> list[dict[str, Any]]:
        return [a.to_wire() for a in self.book.accounts.values()]

    def tag_counts(self) -> dict[str, int]:
        """Orders per customTag (the venue refuses duplicates, so all should be 1)."""
        counts: dict[str, int] = {}
        for o in self.book.orders.values():
            if o.custom_tag is not None:
                counts[o.custom_tag] = counts.get(o.custom_tag, 0) + 1
        return counts

    def fault_counts(self) -> dict[str, int]:
        """Injected faults so far, keyed "endpoint:kind"."""
        return self.fault_injector.counts()

    def fault_events(self) -> list[dict[str, Any]]:
        return [vars(e).copy() for e in self.fault_injector.events]

    def request_counts(self) -> dict[str, int]:
        return dict(self.gateway.requests)

    def set_faults(self, plan: FaultPlan | str) -> None:
        self.fault_injector.set_plan(plan)

    def force_fault(self, endpoint: str, kind: str, times: int = 1) -> None:
        """Inject `kind` on the next `times` requests to `endpoint` (e.g. "place", "reset")."""
        self.fault_injector.force(endpoint, kind, times)

    def flatten(self, account_id: int = FIRST_ACCOUNT_ID, contract_id: str | None = None, *,
                cancel_orders: bool = False) -> dict[str, Any]:
        """Close the account's position in the contract (default: the traded one) from outside
        the daemon, as a manual close in the platform or a prop firm's auto-liquidation would:
        a market order with no customTag at the current bar's close, after cancelling the
        account's Open orders in that contract if `cancel_orders`. The answer carries
        Position/closeContract's success / errorCode / errorMessage (2 = no position), the
        closing order's id (None when nothing was closed) and the cancelled orders' ids."""
        contract_id = contract_id or self.market.contract_id
        bar = self.market.current if contract_id == self.market.contract_id else None
        res, cancelled = self.book.flatten(account_id, contract_id, bar, cancel_orders)
        log().info("venue_flatten", account_id=account_id, contract_id=contract_id,
                   error_code=res.code, order_id=res.order_id, cancelled=cancelled)
        return {"success": res.code == 0, "errorCode": res.code, "errorMessage": res.message,
                "orderId": res.order_id, "cancelledOrderIds": cancelled}

    def set_rate_limits(self, history: str | None = None, other: str | None = None) -> None:
        self.limits.set(history, other)

    def summary(self) -> dict[str, Any]:
        """Counters for a status page: orders by status, net position, faults, requests."""
        by_status: dict[int, int] = {}
        for o in self.book.orders.values():
            by_status[o.status] = by_status.get(o.status, 0) + 1
        cur = self.market.current
        return {"base_url": self.base_url, "orders": len(self.book.orders),
                "orders_by_status": by_status, "trades": len(self.book.trades),
                "net_position": self.net_position(), "faults": self.fault_counts(),
                "requests": self.request_counts(),
                "current_bar": cur.ts.isoformat() if cur else None}

    def state(self) -> dict[str, Any]:
        """Everything a test wants to compare, as JSON-able data (Decimals stay Decimals)."""
        cur = self.market.current
        return {"orders": self.orders(), "positions": self.positions(), "trades": self.trades(),
                "accounts": self.accounts(), "faults": self.fault_counts(),
                "fault_events": self.fault_events(), "requests": self.request_counts(),
                "current": {"index": self.market.index, "ts": cur.ts if cur else None},
                "options": {"max_fill_per_bar": self.book.max_fill_per_bar,
                            "order_expiry": str(self.book.expiry)}}
