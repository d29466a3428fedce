"""The Gateway endpoints of the paper venue: request fields in, envelope out.

Each method takes the parsed JSON body (and the request, for the bearer token) and returns the
response body — HTTP 200 with the envelope — or a Response for the few non-envelope answers.
Field names, payload names and error codes follow /work/shared/reference/projectx-gateway.md.

Choices where the reference is silent or unsure: an expired token gets HTTP 401 on every
endpoint, Auth/validate included (clients fall back to loginKey); a duplicate customTag creates
no order (orderId null) while other validation rejects create a Rejected order and return its
id; Order/searchOpen includes customTag; Status/ping needs no token and answers "pong";
Order/v2/query caps a page at 100 rows and takes `pageOffset` as a row offset.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from daemon.logs import get_logger
from daemon.venue.book import Book
from daemon.venue.catalog import Catalog
from daemon.venue.httpserver import Request, Response
from daemon.venue.market import Market
from daemon.venue.tokens import TokenIssuer
from daemon.venue.wire import (
    dumps,
    envelope,
    get_bool,
    get_dec,
    get_int,
    get_str,
    get_time,
    problem,
)

BRACKETS_REJECTED = ("Brackets cannot be used with Position Brackets. "
                     "You must enable Auto OCO Brackets.")
FAR_PAST = datetime(1900, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


def log() -> Any:
    return get_logger("venue")  # bound at call time: configure_logging may come later


def json_response(status: int, body: Any,
                  headers: list[tuple[str, str]] | None = None) -> Response:
    """A JSON answer (Decimals with 9 fractional digits)."""
    return Response(status, dumps(body), headers or [])


class Endpoints:
    """The endpoint handlers; Gateway supplies the state and the dispatch."""

    market: Market
    catalog: Catalog
    book: Book
    tokens: TokenIssuer
    credentials: tuple[str, str] | None

    # ---- Auth and status -------------------------------------------------------------------
    def login_key(self, body: dict[str, Any], req: Request) -> Any:
        user, key = body.get("userName"), body.get("apiKey")
        if not isinstance(user, str) or not isinstance(key, str):
            return json_response(400, problem("The userName and apiKey fields are required."))
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

    def order_query(self, body: dict[str, Any], req: Request) -> Any:
        """Order/v2/query (Swagger only): filtered, sorted, paged orders with totalCount."""
        flt = body.get("filter")
        if not isinstance(flt, dict):
            return json_response(400, problem("JSON deserialization for type "
                                              "'OrderQueryRequest' was missing required "
                                              "properties including: 'filter'."))
        account_id = get_int(flt, "accountId")
        statuses = flt.get("statuses") or []
        after = get_time(flt, "createdAfter", required=False) or FAR_PAST
        before = get_time(flt, "createdBefore", required=False) or FAR_FUTURE
        if account_id not in self.book.accounts:
            return envelope({"orders": [], "totalCount": 0}, 1, "Account not found")
        found = [o for o in self.book.orders.values() if o.account_id == account_id
                 and (not statuses or o.status in statuses) and after <= o.created <= before]
        by_id = get_int(body, "sortBy", required=False) == 1
        found.sort(key=(lambda o: o.id) if by_id else (lambda o: (o.created, o.id)),
                   reverse=get_int(body, "sortDirection", required=False) == 1)
        size = min(get_int(body, "pageSize", required=False) or 100, 100)
        offset = max(get_int(body, "pageOffset", required=False) or 0, 0)
        total = len(found) if get_bool(body, "includeTotalCount", required=False) else None
        return envelope({"orders": [o.to_wire() for o in found[offset:offset + size]],
                         "totalCount": total})

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

