"""The venue's non-Gateway admin endpoints, for tests that drive a venue over HTTP.

    GET  /_venue/state    orders (with status and fillVolume), positions, trades, accounts,
                          faults, requests, the current bar and the order options
    POST /_venue/clock    {"advance": n} | {"index": i} | {"time": iso}: move the market
    POST /_venue/flatten  {"accountId": int, "contractId": str, "cancelOrders": bool = false}:
                          close that position from outside the daemon (see Venue.flatten)

They need no token, are not rate-limited and never get an injected fault. A body that is not a
JSON object with the fields above is answered HTTP 400 with ProblemDetails; flatten answers a
wrong method with 405.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from daemon.timeutil import parse_utc
from daemon.venue.endpoints import json_response
from daemon.venue.httpserver import Request, Response
from daemon.venue.wire import BadRequest, get_bool, get_int, get_str, problem

if TYPE_CHECKING:
    from daemon.venue.server import Venue

Handler = Callable[[Request], Awaitable[Any]]


def _body(req: Request) -> dict[str, Any]:
    try:
        body = json.loads(req.body or b"{}")
    except ValueError:
        raise BadRequest("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


def admin_routes(venue: Venue) -> dict[str, Handler]:
    """The admin handlers of `venue`, by path, for Gateway(extra_routes=...)."""

    async def state(req: Request) -> Any:
        return json_response(200, venue.state())

    async def clock(req: Request) -> Any:
        body = json.loads(req.body or b"{}")
        if "advance" in body:
            venue.advance(int(body["advance"]))
        elif "index" in body:
            venue.set_bar(venue.market.bars[int(body["index"])])
        elif "time" in body:
            venue.set_time(parse_utc(body["time"]))
        return json_response(200, venue.state()["current"])

    async def flatten(req: Request) -> Any:
        if req.method != "POST":
            return Response(405, headers=[("allow", "POST")])
        try:
            body = _body(req)
            account_id = get_int(body, "accountId")
            contract_id = get_str(body, "contractId")
            cancel = bool(get_bool(body, "cancelOrders", required=False))
        except BadRequest as err:
            return json_response(400, problem(str(err)))
        return json_response(200, venue.flatten(account_id, contract_id, cancel_orders=cancel))

    return {"/_venue/state": state, "/_venue/clock": clock, "/_venue/flatten": flatten}
