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
from datetime import datetime
from typing import Any

import anyio

from daemon.clock import Clock
from daemon.timeutil import parse_utc
from daemon.venue.book import DUPLICATE_TAG, Book
from daemon.venue.catalog import Catalog
from daemon.venue.endpoints import Endpoints, json_response
from daemon.venue.faults import FaultInjector
from daemon.venue.httpserver import Reply, Request, Reset, Response, Stall
from daemon.venue.market import Market
from daemon.venue.ratelimit import RateLimits
from daemon.venue.tokens import TokenIssuer
from daemon.venue.wire import BadRequest, envelope, problem

REPLAY_TIME_HEADER = "x-replay-time"


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
    "/api/Order/v2/query": Route("order_query", "POST", True, "order_query"),
    "/api/Position/searchOpen": Route("positions", "POST", True, "position_search_open"),
    "/api/Position/closeContract": Route("close", "POST", True, "position_close"),
    "/api/Position/partialCloseContract": Route("partial_close", "POST", True,
                                                "position_partial_close"),
    "/api/Trade/search": Route("trades", "POST", True, "trade_search"),
    "/api/Status/ping": Route("ping", "GET", False, "ping"),
}


class Gateway(Endpoints):
    """Venue state behind the Gateway's HTTP contract; the endpoints are in Endpoints."""

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
            return json_response(400, problem(str(err)))
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
            return json_response(200, result)
        detail = str(body.get("customTag") or "") if endpoint == "place" else ""
        if fault == "dup_tag":
            if not result.get("success"):
                return json_response(200, result)  # nothing was placed: no lie to tell
            self.faults.record(endpoint, fault, seq, detail)
            return json_response(200, envelope({"orderId": None}, 2, DUPLICATE_TAG))
        self.faults.record(endpoint, fault, seq, detail)
        if fault == "5xx_after_accept":
            return Response(500, b"", [], "text/plain")
        if fault == "reset_after_accept":
            return Reset()
        return Stall(self.faults.plan.stall_s)
