"""The Gateway contract of the paper venue: routes, auth, rate limits, faults and envelopes.

Order of checks for each request, as a client would meet them: unknown path 404 / wrong method
405 → injected fault (before processing) → rate limit 429 → bearer token 401 → the optional
`X-Replay-Time` header and the JSON body, 400 ProblemDetails when malformed → the endpoint
(HTTP 200, envelope, its own error codes) → injected fault after processing (the work is done,
the answer is lost or wrong).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio

from daemon.clock import Clock
from daemon.logs import get_logger
from daemon.timeutil import parse_utc
from daemon.venue.book import DUPLICATE_TAG, Book
from daemon.venue.catalog import Catalog
from daemon.venue.faults import FaultInjector
from daemon.venue.httpserver import Reply, Request, Reset, Response, Stall
from daemon.venue.market import Market
from daemon.venue.ratelimit import RateLimits
from daemon.venue.tokens import TokenIssuer
from daemon.venue.wire import (
    BadRequest,
    dumps,
    envelope,
    get_bool,
    get_dec,
    get_int,
    get_str,
    get_time,
    problem,
)


def log() -> Any:
    return get_logger("venue")  # bound at call time: configure_logging may come later
BRACKETS_REJECTED = ("Brackets cannot be used with Position Brackets. "
                     "You must enable Auto OCO Brackets.")
REPLAY_TIME_HEADER = "x-replay-time"
FAR_PAST = datetime(1900, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Route:
    endpoint: str  # the name used by fault specs and counters
    method: str
    auth: bool
    handler: str  # Gateway method name


ROUTES = {
    "/api/Auth/loginKey": Route("login", "POST", False, "login_key"),
    "/api/Auth/validate": Route("validate", "POST", True, "validate"),
    "/api/Auth/logout": Route("logout", "POST", True, "logout"),
    "/api/Account/search": Route("accounts", "POST", True, "account_search"),
    "/api/Contract/search": Route("contracts", "POST", True, "contract_search"),
    "/api/Contract/available": Route("contracts", "POST", True, "contract_available"),
    "/api/Contract/searchById": Route("contract", "POST", True, "contract_by_id"),
    "/api/History/retrieveBars": Route("bars", "POST", True, "retrieve_bars"),
    "/api/Order/place": Route("place", "POST", True, "order_place"),
    "/api/Order/cancel": Route("cancel", "POST", True, "order_cancel"),
    "/api/Order/modify": Route("modify", "POST", True, "order_modify"),
    "/api/Order/search": Route("orders", "POST", True, "order_search"),
    "/api/Order/searchOpen": Route("open_orders", "POST", True, "order_search_open"),
    "/api/Order/searchById": Route("order", "POST", True, "order_by_id"),
    "/api/Position/searchOpen": Route("positions", "POST", True, "position_search_open"),
    "/api/Position/closeContract": Route("close", "POST", True, "position_close"),
    "/api/Position/partialCloseContract": Route("partial_close", "POST", True,
                                                "position_partial_close"),
    "/api/Trade/search": Route("trades", "POST", True, "trade_search"),
    "/api/Status/ping": Route("ping", "GET", False, "ping"),
}


def _json(status: int, body: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, dumps(body).encode(), headers or [])


class Gateway:
    """Venue state behind the Gateway's HTTP contract."""

    def __init__(self, *, market: Market, catalog: Catalog, book: Book, tokens: TokenIssuer,
                 faults: FaultInjector, limits: RateLimits, clock: Clock,
                 credentials: tuple[str, str] | None = None, retry_after: bool = True,
                 extra_routes: dict[str, Callable[[Request], Any]] | None = None,
                 on_replay_time: Callable[[datetime], Any] | None = None) -> None:
        self.market, self.catalog, self.book, self.tokens = market, catalog, book, tokens
        self.faults, self.limits, self.clock = faults, limits, clock
        self.credentials = credentials
        self.retry_after = retry_after
        self.extra_routes = extra_routes or {}
        self.on_replay_time = on_replay_time
        self.requests: Counter[str] = Counter()

    async def handle(self, req: Request) -> Reply:
        """Answer one HTTP request (see the module docstring for the order of checks)."""
        path = req.path.split("?", 1)[0]
        if path in self.extra_routes:
            return await self.extra_routes[path](req)
        route = ROUTES.get(path)
        if route is None:
            return Response(404)
        if req.method != route.method:
            return Response(405, headers=[("allow", route.method)])
        self.requests[route.endpoint] += 1
        seq, fault = self.faults.draw(route.endpoint)
        delay = self.faults.plan.latency_for(route.endpoint)
        if delay > 0:
            await anyio.sleep(delay / 1000)
        before = self._fault_before(route.endpoint, seq, fault)
        if before is not None:
            return before
        ok, wait = self.limits.admit(route.endpoint)
        if not ok:
            return self._too_many(wait)
        user = None
        if route.auth:
            token = req.headers.get("authorization", "")
            user = self.tokens.check(token[7:]) if token[:7].lower() == "bearer " else None
            if user is None:
                return Response(401, headers=[("www-authenticate", "Bearer")])
        try:
            self._follow_replay_time(req)
            body = json.loads(req.body) if req.body.strip() else {}
            if not isinstance(body, dict):
                raise BadRequest("The request body must be a JSON object.")
            result = getattr(self, route.handler)(body, req)
        except (BadRequest, ValueError) as err:
            return _json(400, problem(str(err)))
        if isinstance(result, Response):
            return result
        return self._fault_after(route.endpoint, seq, fault, body, result)

    def _follow_replay_time(self, req: Request) -> None:
        # Not part of the Gateway (which ignores unknown headers): a client replaying bars in
        # another process may say which bar is current, so its orders fill deterministically.
        stamp = req.headers.get(REPLAY_TIME_HEADER)
        if stamp and self.on_replay_time is not None:
            try:
                when = parse_utc(stamp)
            except ValueError:
                raise BadRequest(f"{REPLAY_TIME_HEADER}: not an ISO time: {stamp!r}") from None
            self.on_replay_time(when)

    def _too_many(self, wait: int) -> Response:
        headers = [("retry-after", str(wait))] if self.retry_after else []
        return Response(429, b"", headers, "text/plain")

    def _fault_before(self, endpoint: str, seq: int, fault: str | None) -> Reply | None:
        if fault is None or fault in ("5xx_after_accept", "reset_after_accept",
                                      "timeout_after_accept", "dup_tag"):
            return None
        self.faults.record(endpoint, fault, seq)
        if fault == "429":
            return self._too_many(1)
        if fault in ("500", "503", "5xx"):
            status = int(fault) if fault != "5xx" else (500 if seq % 2 == 0 else 503)
            return Response(status, b"", [], "text/plain")
        if fault == "reset":
            return Reset()
        return Stall(self.faults.plan.stall_s)

    def _fault_after(self, endpoint: str, seq: int, fault: str | None, body: dict[str, Any],
                     result: dict[str, Any]) -> Reply:
        if fault is None:
            return _json(200, result)
        detail = str(body.get("customTag") or "") if endpoint == "place" else ""
        if fault == "dup_tag":
            if not result.get("success"):
                return _json(200, result)  # nothing was placed: no lie to tell
            self.faults.record(endpoint, fault, seq, detail)
            return _json(200, envelope({"orderId": None}, 2, DUPLICATE_TAG))
        self.faults.record(endpoint, fault, seq, detail)
        if fault == "5xx_after_accept":
            return Response(500, b"", [], "text/plain")
        if fault == "reset_after_accept":
            return Reset()
        return Stall(self.faults.plan.stall_s)

    # ---- Auth and status -------------------------------------------------------------------
    def login_key(self, body: dict[str, Any], req: Request) -> Any:
        user, key = body.get("userName"), body.get("apiKey")
        if not isinstance(user, str) or not isinstance(key, str):
            return _json(400, problem("The userName and apiKey fields are required."))
        if self.credentials and (user.lower(), key) != (self.credentials[0].lower(),
                                                        self.credentials[1]):
            return envelope({"token": None}, 3, "Invalid credentials")
        return envelope({"token": self.tokens.issue(user)})

    def _bearer(self, req: Request) -> str:
        return req.headers.get("authorization", "")[7:]

    def validate(self, body: dict[str, Any], req: Request) -> Any:
        user = self.tokens.check(self._bearer(req)) or ""
        return envelope({"newToken": self.tokens.issue(user)})

    def logout(self, body: dict[str, Any], req: Request) -> Any:
        self.tokens.revoke(self._bearer(req))
        return envelope()

    def ping(self, body: dict[str, Any], req: Request) -> Any:
        return Response(200, b"pong", [], "text/plain; charset=utf-8")

    # ---- Accounts and contracts ------------------------------------------------------------
    def account_search(self, body: dict[str, Any], req: Request) -> Any:
        only_active = get_bool(body, "onlyActiveAccounts")
        accounts = [a.to_wire() for a in self.book.accounts.values()
                    if a.can_trade or not only_active]
        return envelope({"accounts": accounts})

    def contract_search(self, body: dict[str, Any], req: Request) -> Any:
        text = get_str(body, "searchText", required=False) or ""
        live = get_bool(body, "live")
        return envelope({"contracts": [c.to_wire() for c in self.catalog.search(text, live)]})

    def contract_available(self, body: dict[str, Any], req: Request) -> Any:
        live = get_bool(body, "live")
        found = [] if live else [c for c in self.catalog.contracts.values() if c.active]
        return envelope({"contracts": [c.to_wire() for c in found]})

    def contract_by_id(self, body: dict[str, Any], req: Request) -> Any:
        contract = self.catalog.get(get_str(body, "contractId") or "")
        if contract is None:
            return envelope({"contract": None}, 1, "Contract not found")
        return envelope({"contract": contract.to_wire()})

    # ---- History ------------------------------------------------------------------------
    def retrieve_bars(self, body: dict[str, Any], req: Request) -> Any:
        raw_id = body.get("contractId")
        contract_id = str(raw_id) if isinstance(raw_id, str | int) else get_str(body, "contractId")
        start, end = get_time(body, "startTime"), get_time(body, "endTime")
        unit, number = get_int(body, "unit"), get_int(body, "unitNumber")
        limit = get_int(body, "limit", required=False)
        partial = bool(get_bool(body, "includePartialBar", required=False))
        get_bool(body, "live", required=False)
        if self.catalog.get(contract_id) is None:
            return envelope({"bars": None}, 1, "Contract not found")
        if contract_id != self.market.contract_id:
            return envelope({"bars": []})  # a known contract the venue has no data for
        answer = self.market.retrieve(start=start, end=end, unit=unit, unit_number=number,
                                      limit=20_000 if limit is None else limit,
                                      include_partial=partial)
        return envelope({"bars": answer.bars if answer.code == 0 else None}, answer.code,
                        answer.message)

    # ---- Orders ------------------------------------------------------------------------
    def _bar_for(self, contract_id: str) -> Any:
        return self.market.current if contract_id == self.market.contract_id else None

    def order_place(self, body: dict[str, Any], req: Request) -> Any:
        contract_id = get_str(body, "contractId")
        tag = get_str(body, "customTag", required=False) or None  # "" = no tag
        brackets = body.get("stopLossBracket") is not None or \
            body.get("takeProfitBracket") is not None
        res = self.book.place(
            account_id=get_int(body, "accountId"), contract_id=contract_id,
            type_=get_int(body, "type"), side=get_int(body, "side"), size=get_int(body, "size"),
            limit=get_dec(body, "limitPrice"), stop=get_dec(body, "stopPrice"), tag=tag,
            bar=self._bar_for(contract_id), reject=BRACKETS_REJECTED if brackets else None)
        if res.code and res.order_id is not None:
            log().info("venue_order_rejected", order_id=res.order_id, reason=res.message)
        return envelope({"orderId": res.order_id}, res.code, res.message)

    def order_cancel(self, body: dict[str, Any], req: Request) -> Any:
        res = self.book.cancel(get_int(body, "accountId"), get_int(body, "orderId"))
        return envelope(None, res.code, res.message)

    def order_modify(self, body: dict[str, Any], req: Request) -> Any:
        order = self.book.orders.get(get_int(body, "orderId"))
        bar = self._bar_for(order.contract.id) if order else None
        res = self.book.modify(get_int(body, "accountId"), get_int(body, "orderId"),
                               get_int(body, "size", required=False),
                               get_dec(body, "limitPrice"), get_dec(body, "stopPrice"), bar)
        return envelope(None, res.code, res.message)

    def _account(self, body: dict[str, Any]) -> int | None:
        account_id = get_int(body, "accountId")
        return account_id if account_id in self.book.accounts else None

    def order_search(self, body: dict[str, Any], req: Request) -> Any:
        account_id = self._account(body)
        start = get_time(body, "startTimestamp")
        end = get_time(body, "endTimestamp", required=False) or FAR_FUTURE
        if account_id is None:
            return envelope({"orders": []}, 1, "Account not found")
        found = [o.to_wire() for o in self.book.orders.values()
                 if o.account_id == account_id and start <= o.created <= end]
        return envelope({"orders": found})

    def order_search_open(self, body: dict[str, Any], req: Request) -> Any:
        account_id = self._account(body)
        if account_id is None:
            return envelope({"orders": []}, 1, "Account not found")
        found = [o.to_wire() for o in self.book.orders.values()
                 if o.account_id == account_id and o.status == 1]
        return envelope({"orders": found})

    def order_by_id(self, body: dict[str, Any], req: Request) -> Any:
        account_id = self._account(body)
        order = self.book.orders.get(get_int(body, "orderId"))
        if account_id is None or order is None or order.account_id != account_id:
            return envelope({"order": None}, 1, "Order not found")
        return envelope({"order": order.to_wire()})

    # ---- Positions and trades --------------------------------------------------------------
    def position_search_open(self, body: dict[str, Any], req: Request) -> Any:
        account_id = self._account(body)
        if account_id is None:
            return envelope({"positions": []}, 1, "Account not found")
        found = [p.to_wire() for (acct, _), p in self.book.positions.items()
                 if acct == account_id]
        return envelope({"positions": found})

    def position_close(self, body: dict[str, Any], req: Request) -> Any:
        contract_id = get_str(body, "contractId")
        res = self.book.close_contract(get_int(body, "accountId"), contract_id,
                                       self._bar_for(contract_id))
        return envelope(None, res.code, res.message)

    def position_partial_close(self, body: dict[str, Any], req: Request) -> Any:
        contract_id = get_str(body, "contractId")
        res = self.book.close_contract(get_int(body, "accountId"), contract_id,
                                       self._bar_for(contract_id), size=get_int(body, "size"))
        return envelope(None, res.code, res.message)

    def trade_search(self, body: dict[str, Any], req: Request) -> Any:
        account_id = self._account(body)
        start = get_time(body, "startTimestamp", required=False) or FAR_PAST
        end = get_time(body, "endTimestamp", required=False) or FAR_FUTURE
        contract_id = get_str(body, "contractId", required=False)  # project-x-py sends it
        if account_id is None:
            return envelope({"trades": []}, 1, "Account not found")
        found = [t.to_wire() for t in self.book.trades
                 if t.account_id == account_id and start <= t.created <= end
                 and contract_id in (None, t.contract_id)]
        return envelope({"trades": found})

