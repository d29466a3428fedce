"""The ProjectX Gateway client: async httpx, typed errors, token refresh, rate limits.

What it promises:
- Session: `Auth/loginKey` once; the token is refreshed with `Auth/validate` when it is within
  `token_refresh_margin_s` of its `exp`, falling back to a fresh login if validate fails; an
  HTTP 401 triggers exactly one re-login and one resend (the Gateway refuses a 401 before doing
  anything, so even an order is safe to resend then).
- Envelope: HTTP 200 with `success: false` raises EnvelopeError carrying the endpoint's own
  errorCode (subclasses for orders and auth); other statuses raise typed errors (errors.py).
- Reads (searches, bars, login/validate) are retried with tenacity on 429, 5xx and transport
  errors, a bounded number of times, with exponential backoff and jitter, honouring Retry-After.
- `Order/place` is never retried: a timeout, 5xx, dropped connection or unreadable answer raises
  OrderOutcomeUnknown (look the customTag up); "custom tag already in use" raises TagInUse.
  Order/cancel is not retried either.
- Every request first waits for its rate class (ratelimit.py) on the injected clock.
- Contracts are resolved exactly (id, or exact name / symbol id), never by substring.
- Prices are Decimal and tick-aligned before they are sent.
- TLS verification stays on; a non-https base URL is refused unless it is loopback. The API key
  and every token are registered with the log redaction before anything could log them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

import anyio
import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_random_exponential

from daemon.clock import Clock, WallClock
from daemon.config import ProjectXSection
from daemon.execution.answers import (
    check_envelope,
    parse_envelope,
    place_answer,
    raise_for_status,
)
from daemon.execution.errors import (
    AccountNotFound,
    AuthError,
    ContractNotFound,
    EnvelopeError,
    GatewayError,
    GatewayUnavailable,
    InsecureBaseURL,
    OrderNotSent,
    OrderOutcomeUnknown,
    RateLimited,
)
from daemon.execution.models import (
    Account,
    Contract,
    OrderSide,
    OrderType,
    dumps,
    jwt_expiry,
    parse_bar,
    tick_align,
    to_decimal,
)
from daemon.execution.ratelimit import LimitSpec, RateLimiter
from daemon.execution.urls import base_url_problem
from daemon.logs import get_logger, register_secret
from daemon.timeutil import iso

T = TypeVar("T")
DEFAULT_TOKEN_LIFETIME_S = 86_400.0  # when a token's exp cannot be read
PLACE_PATH = "/api/Order/place"
REPLAY_TIME_HEADER = "X-Replay-Time"
LastCheck = Callable[[], str | None]


def rate_class(path: str) -> str:
    """The client-side rate class of an endpoint path."""
    if path.startswith("/api/History/"):
        return "history"
    if path == PLACE_PATH:
        return "orders"
    return "general"


class ProjectXClient:
    """One Gateway session. Async; use from one event loop; `aclose()` when done."""

    def __init__(self, cfg: ProjectXSection, api_key: str, *, clock: Clock | None = None,
                 limiter: RateLimiter | None = None, username: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        problem = base_url_problem(cfg.base_url)
        if problem:
            raise InsecureBaseURL(f"[projectx].base_url {problem}")
        if not api_key:
            raise AuthError("no ProjectX API key given")
        register_secret(api_key)
        self.cfg = cfg
        self.clock = clock or WallClock()
        self.limiter = limiter or RateLimiter(self.clock, LimitSpec(
            order_qps=cfg.rate_limit_qps, history=cfg.history_limit, general=cfg.general_limit))
        self.username = username if username is not None else cfg.username
        self._api_key = api_key
        self._token: str | None = None
        self._token_exp = 0.0
        self._auth_lock = anyio.Lock()
        self._contracts: dict[str, Contract] = {}
        self.log = get_logger("projectx")
        self._http = httpx.AsyncClient(
            base_url=cfg.base_url.rstrip("/"), verify=True, follow_redirects=False,
            timeout=httpx.Timeout(cfg.request_timeout_s, connect=cfg.connect_timeout_s),
            headers={"Content-Type": "application/json", "Accept": "application/json",
                     **(headers or {})})
        # Timing of the last Order/place, for `anchord bench submit`: ns spent in the client
        # itself (its limiter bookkeeping included, the limiter's sleep and the HTTP exchange
        # excluded), on the wire, and asleep in the limiter. Per call: with several tasks
        # placing at once, the numbers mix.
        self.last_place_overhead_ns = 0
        self.last_place_wire_ns = 0
        self.last_place_wait_ns = 0
        self._wire_ns = 0
        self._wait_ns = 0
        self._order_slot_ns: int | None = None  # a slot taken by wait_for_order_slot
        self._slot_wait_ns = 0  # its wait, once an Order/place used it
        self.counters = {"logins": 0, "validates": 0, "relogins_401": 0, "retries": 0}
        # A replay's market time, sent as X-Replay-Time so that the paper venue's market
        # follows the replay's bars (the real Gateway ignores the header); None live.
        self.market_time: Callable[[], datetime | None] | None = None

    # ---- plumbing ---------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close the HTTP connections (the token is left to expire)."""
        await self._http.aclose()

    async def __aenter__(self) -> ProjectXClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def _now(self) -> float:
        return self.clock.now().timestamp()

    async def _send(self, path: str, body: dict[str, Any] | None, token: str | None,
                    last_check: LastCheck | None = None) -> httpx.Response:
        """Wait for the rate class, then one HTTP POST; raw httpx exceptions pass through.
        `last_check` runs after every wait, as the last statement before the request is
        written: a reason it returns raises OrderNotSent and nothing goes out."""
        if path == PLACE_PATH and self._order_slot_ns is not None:
            # the wait happened before place_order (wait_for_order_slot), not inside it
            self._slot_wait_ns, self._order_slot_ns, waited_s = self._order_slot_ns, None, 0.0
        else:
            waited_s = await self.limiter.acquire(rate_class(path))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if self.market_time is not None and (at := self.market_time()) is not None:
            headers[REPLAY_TIME_HEADER] = iso(at)
        content = dumps(body) if body is not None else b""
        t2 = time.perf_counter_ns()
        try:
            if last_check is not None and (reason := last_check()):
                raise OrderNotSent((body or {}).get("customTag"), reason)
            resp = await self._http.post(path, content=content, headers=headers or None)
            # httpx 0.28 leaves the read response in a reference cycle with its stream
            # wrapper (encode/httpx#3733), which holds the request, URL, headers and the
            # connection's streams: ~40 objects per call that only a garbage collection frees,
            # and the collections they caused fell inside orders. The body is read, so a
            # plain stream over it loses nothing, and refcounting frees the rest at once.
            resp.stream = httpx.ByteStream(resp.content)
            return resp
        finally:
            self._wait_ns += int(waited_s * 1e9)
            self._wire_ns += time.perf_counter_ns() - t2

    def _retrying(self) -> AsyncRetrying:
        return AsyncRetrying(
            stop=stop_after_attempt(self.cfg.read_retries),
            wait=self._backoff,
            retry=retry_if_exception_type((RateLimited, GatewayUnavailable)),
            sleep=self.clock.sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )

    def _backoff(self, state: Any) -> float:
        """Exponential backoff with full jitter; a 429's Retry-After is a floor, not a hint."""
        expo = wait_random_exponential(multiplier=0.5, max=self.cfg.max_backoff_s)(state)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return exc.retry_after + random.uniform(0, min(1.0, 0.1 * exc.retry_after + 0.1))
        return expo

    def _log_retry(self, state: Any) -> None:
        exc = state.outcome.exception() if state.outcome else None
        self.counters["retries"] += 1
        wait = state.next_action.sleep if state.next_action else None
        self.log.warning("gateway_retry", attempt=state.attempt_number, error=str(exc),
                         wait_s=round(wait, 3) if wait is not None else None)

    async def _retry(self, fn: Callable[[], Awaitable[T]]) -> T:
        return await self._retrying()(fn)

    # ---- session ----------------------------------------------------------------------------
    def _set_token(self, token: str) -> None:
        register_secret(token)  # before anything could log it
        self._token = token
        exp = jwt_expiry(token)
        self._token_exp = exp if exp is not None else self._now() + DEFAULT_TOKEN_LIFETIME_S

    @property
    def token_expires_at(self) -> float:
        """Epoch seconds when the current token expires (0 before login)."""
        return self._token_exp

    async def _auth_call(self, path: str, body: dict[str, Any] | None, token: str | None,
                         field: str) -> None:
        """Auth/loginKey or Auth/validate (retried as a read): take the token in `field` of
        the answer, or raise AuthError with the endpoint's error code."""
        endpoint = path.removeprefix("/api/")

        async def once() -> dict[str, Any]:
            resp = await self._send(path, body, token)
            if resp.status_code == 401:
                raise AuthError(f"{endpoint}: token refused (HTTP 401)")
            raise_for_status(resp, endpoint)
            return parse_envelope(resp, endpoint)

        answer = await self._transport_guard(endpoint, once)
        new = answer.get(field)
        if isinstance(new, str) and new:
            register_secret(new)
        if not answer.get("success") or not isinstance(new, str) or not new:
            code = int(answer.get("errorCode") or -1)
            raise AuthError(f"{endpoint} refused (errorCode {code}: "
                            f"{answer.get('errorMessage') or 'no message'})", code)
        self._set_token(new)

    async def login(self) -> None:
        """Auth/loginKey; AuthError with the LoginErrorCode when the Gateway says no."""
        if not self.username:
            raise AuthError("no ProjectX username: set [projectx].username or "
                            "$PROJECTX_USERNAME")
        await self._auth_call("/api/Auth/loginKey",
                              {"userName": self.username, "apiKey": self._api_key}, None, "token")
        self.counters["logins"] += 1
        self.log.info("gateway_login", user=self.username,
                      expires_in_s=round(self._token_exp - self._now()))

    async def validate(self) -> None:
        """Auth/validate: swap the current token for a fresh one; AuthError when refused."""
        if not self._token:
            raise AuthError("Auth/validate needs a token: log in first")
        await self._auth_call("/api/Auth/validate", None, self._token, "newToken")
        self.counters["validates"] += 1
        self.log.info("gateway_token_refreshed", expires_in_s=round(self._token_exp - self._now()))

    async def _transport_guard(self, endpoint: str,
                               once: Callable[[], Awaitable[T]]) -> T:
        """Retry `once` as a read, turning transport failures into GatewayUnavailable."""

        async def guarded() -> T:
            try:
                return await once()
            except httpx.TimeoutException as err:
                raise GatewayUnavailable(endpoint, f"timeout ({type(err).__name__})") from None
            except httpx.TransportError as err:
                raise GatewayUnavailable(endpoint, f"transport ({type(err).__name__})") from None

        return await self._retry(guarded)

    def _token_fresh(self) -> bool:
        return bool(self._token) and self._now() < self._token_exp - \
            self.cfg.token_refresh_margin_s

    async def ensure_token(self) -> None:
        """A usable token: log in if none; refresh with validate when near expiry; log in again
        if validate fails or the token has already expired."""
        if self._token_fresh():
            return
        async with self._auth_lock:
            if self._token_fresh():
                return
            if self._token and self._now() < self._token_exp:
                try:
                    await self.validate()
                    return
                except GatewayError as err:
                    self.log.warning("gateway_validate_failed", error=str(err),
                                     fallback="login")
            await self.login()

    async def _relogin_after_401(self, stale: str | None, endpoint: str) -> None:
        async with self._auth_lock:
            if self._token != stale:
                return  # someone else already replaced it
            self.counters["relogins_401"] += 1
            self.log.warning("gateway_401_relogin", endpoint=endpoint)
            await self.login()

    async def _authed(self, path: str, body: dict[str, Any] | None) -> httpx.Response:
        """One request with a valid token; on HTTP 401 one re-login and one resend."""
        await self.ensure_token()
        token = self._token
        resp = await self._send(path, body, token)
        if resp.status_code == 401:
            await self._relogin_after_401(token, path)
            resp = await self._send(path, body, self._token)
            if resp.status_code == 401:
                raise AuthError(f"{path}: HTTP 401 again right after a fresh login")
        return resp

    async def _read(self, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        """A read: authed, retried on 429/5xx/transport, envelope checked (not retried)."""
        endpoint = path.removeprefix("/api/")

        async def once() -> dict[str, Any]:
            resp = await self._authed(path, body)
            raise_for_status(resp, endpoint)
            return parse_envelope(resp, endpoint)

        return check_envelope(await self._transport_guard(endpoint, once), endpoint)

    # ---- accounts and contracts -------------------------------------------------------------
    async def search_accounts(self, only_active: bool = True) -> list[Account]:
        """Account/search: the accounts this login can see."""
        body = await self._read("/api/Account/search", {"onlyActiveAccounts": only_active})
        return [Account.from_wire(a) for a in body.get("accounts") or []]

    async def resolve_account(self, wanted: str | None = None) -> Account:
        """The active account whose id or name is exactly `wanted` (default
        `[projectx].account`); with none configured, the only active account.
        AccountNotFound otherwise (the message lists what there is)."""
        wanted = (self.cfg.account if wanted is None else wanted).strip()
        accounts = await self.search_accounts(only_active=True)
        names = ", ".join(f"{a.name} ({a.id})" for a in accounts) or "none"
        if not wanted:
            if len(accounts) == 1:
                return accounts[0]
            raise AccountNotFound(f"[projectx].account is empty and there are {len(accounts)} "
                                  f"active accounts: {names}")
        hits = [a for a in accounts if str(a.id) == wanted] or \
               [a for a in accounts if a.name == wanted] or \
               [a for a in accounts if a.name.lower() == wanted.lower()]
        if len(hits) != 1:
            why = "no" if not hits else "more than one"
            raise AccountNotFound(f"{why} active account is exactly {wanted!r} (active: {names})")
        self.log.info("gateway_account", account_id=hits[0].id, name=hits[0].name,
                      can_trade=hits[0].can_trade, simulated=hits[0].simulated)
        return hits[0]

    async def search_contracts(self, text: str, live: bool | None = None) -> list[Contract]:
        """Contract/search: what the Gateway matches (a substring search, at most 20)."""
        body = await self._read("/api/Contract/search", {
            "searchText": text, "live": self.cfg.live if live is None else live})
        return [Contract.from_wire(c) for c in body.get("contracts") or []]

    async def contract_by_id(self, contract_id: str) -> Contract | None:
        """Contract/searchById (expired contracts too); None for ContractNotFound."""
        try:
            body = await self._read("/api/Contract/searchById", {"contractId": contract_id})
        except EnvelopeError as err:
            if err.error_code == 1:
                return None
            raise
        raw = body.get("contract")
        return Contract.from_wire(raw) if raw else None

    async def resolve_contract(self, wanted: str) -> Contract:
        """The contract that is exactly `wanted`: its id (searchById), else the one active
        search hit whose id, name or symbol id equals it. A substring hit is never taken;
        ContractNotFound names the near misses."""
        wanted = wanted.strip()
        if wanted in self._contracts:
            return self._contracts[wanted]
        found = await self.contract_by_id(wanted)
        if found is None or found.id != wanted:
            hits = await self.search_contracts(wanted)
            exact = [c for c in hits if wanted in (c.id, c.name, c.symbol_id)]
            if len(exact) != 1:
                raise ContractNotFound(wanted, [c.name or c.id for c in hits])
            found = exact[0]
        self._contracts[wanted] = self._contracts[found.id] = found
        self.log.info("gateway_contract", contract_id=found.id, name=found.name,
                      tick_size=str(found.tick_size), active=found.active)
        return found

    # ---- history ------------------------------------------------------------------------
    async def retrieve_bars(self, contract_id: str, *, start: datetime, end: datetime,
                            unit: int = 2, unit_number: int = 1, limit: int = 20_000,
                            include_partial: bool = False,
                            live: bool | None = None) -> list[dict[str, Any]]:
        """History/retrieveBars as the Gateway orders them (newest first): each bar
        `{t: datetime, o, h, l, c: Decimal, v: int}`."""
        body = await self._read("/api/History/retrieveBars", {
            "contractId": contract_id, "live": self.cfg.live if live is None else live,
            "startTime": start, "endTime": end, "unit": int(unit), "unitNumber": int(unit_number),
            "limit": int(limit), "includePartialBar": include_partial})
        return [parse_bar(b) for b in body.get("bars") or []]

    # ---- orders ------------------------------------------------------------------------
    async def tick_size(self, contract_id: str) -> Decimal:
        """The contract's tick size (resolved once, then cached)."""
        return (await self.resolve_contract(contract_id)).tick_size

    async def wait_for_order_slot(self) -> None:
        """Wait for and take the next Order/place slot of the rate limits now, so that the
        caller's last checks (the kill switch) come after the wait, right before the request;
        the next `place_order` uses this slot instead of waiting again."""
        if self._order_slot_ns is None:
            self._order_slot_ns = int(await self.limiter.acquire(rate_class(PLACE_PATH)) * 1e9)

    async def place_order(self, *, account_id: int, contract_id: str, type: int, side: int,
                          size: int, limit_price: Any = None, stop_price: Any = None,
                          custom_tag: str | None, last_check: LastCheck | None = None) -> int:
        """Order/place; the new order's id. NEVER retried: timeout, HTTP 5xx, a dropped
        connection or an unreadable answer raise OrderOutcomeUnknown (resolve by the tag).
        TagInUse for "custom tag already in use", OrderRejected for any other refusal (with
        the rejected order's id if one was created). Nothing was placed when it raises
        RateLimited (HTTP 429), BadRequest (other 4xx), AuthError, ContractNotFound or
        GatewayUnavailable (the last three come from the token refresh or the tick-size
        lookup before the request is sent), or ValueError (a bad type, side or size).
        Prices are aligned to the tick away from the market (a buy limit down, a sell limit
        up; stops the other way), so an order never gets a worse price than asked.
        `last_check()` runs after everything that can wait (tick size, token, rate slot, a
        re-login after a 401), immediately before each write of the request; a reason it
        returns raises OrderNotSent and nothing is sent."""
        t_start = time.perf_counter_ns()
        self._wire_ns = self._wait_ns = self._slot_wait_ns = 0
        order_type, order_side = OrderType(type), OrderSide(side)
        if int(size) != size or size <= 0:
            raise ValueError(f"order size must be a positive integer, got {size!r}")
        body: dict[str, Any] = {"accountId": int(account_id), "contractId": contract_id,
                                "type": int(order_type), "side": int(order_side),
                                "size": int(size)}
        buy = order_side == OrderSide.BID
        if limit_price is not None or stop_price is not None:
            tick = await self.tick_size(contract_id)
            if limit_price is not None:
                body["limitPrice"] = tick_align(limit_price, tick, "down" if buy else "up")
            if stop_price is not None:
                body["stopPrice"] = tick_align(stop_price, tick, "up" if buy else "down")
        if custom_tag is not None:
            body["customTag"] = custom_tag
        await self.ensure_token()
        try:
            answer = await self._place_exchange(body, custom_tag, last_check)
            return place_answer(answer, custom_tag, self.log)
        finally:
            total = time.perf_counter_ns() - t_start
            self.last_place_wire_ns = self._wire_ns
            self.last_place_wait_ns = self._wait_ns + self._slot_wait_ns  # both limiter waits
            self.last_place_overhead_ns = total - self._wire_ns - self._wait_ns

    async def _place_exchange(self, body: dict[str, Any], tag: str | None,
                              last_check: LastCheck | None) -> httpx.Response:
        path = PLACE_PATH
        try:
            token = self._token
            resp = await self._send(path, body, token, last_check)
            if resp.status_code == 401:  # refused before processing: safe to resend once
                await self._relogin_after_401(token, path)
                resp = await self._send(path, body, self._token, last_check)
        except httpx.TimeoutException as err:
            self.log.warning("order_outcome_unknown", custom_tag=tag, reason=type(err).__name__)
            raise OrderOutcomeUnknown(tag, f"timeout ({type(err).__name__})") from None
        except httpx.TransportError as err:
            self.log.warning("order_outcome_unknown", custom_tag=tag, reason=type(err).__name__)
            raise OrderOutcomeUnknown(tag, f"connection lost ({type(err).__name__})") from None
        return resp

    async def cancel_order(self, account_id: int, order_id: int) -> None:
        """Order/cancel (not retried: GatewayUnavailable on transport/5xx, then look the order
        up); EnvelopeError with the cancel error code when refused."""
        path = "/api/Order/cancel"
        try:
            resp = await self._authed(path, {"accountId": int(account_id),
                                             "orderId": int(order_id)})
        except httpx.TimeoutException as err:
            raise GatewayUnavailable("Order/cancel", f"timeout ({type(err).__name__})") from None
        except httpx.TransportError as err:
            raise GatewayUnavailable("Order/cancel",
                                     f"transport ({type(err).__name__})") from None
        raise_for_status(resp, "Order/cancel")
        check_envelope(parse_envelope(resp, "Order/cancel"), "Order/cancel")

    async def search_orders(self, account_id: int, start: datetime,
                            end: datetime | None = None) -> list[dict[str, Any]]:
        """Order/search: the account's orders created in [start, end] (Decimal prices)."""
        body: dict[str, Any] = {"accountId": int(account_id), "startTimestamp": start}
        if end is not None:
            body["endTimestamp"] = end
        return list((await self._read("/api/Order/search", body)).get("orders") or [])

    async def search_open_orders(self, account_id: int) -> list[dict[str, Any]]:
        """Order/searchOpen: the account's working orders."""
        body = await self._read("/api/Order/searchOpen", {"accountId": int(account_id)})
        return list(body.get("orders") or [])

    async def search_open_positions(self, account_id: int) -> list[dict[str, Any]]:
        """Position/searchOpen: open positions (`size` positive, `type` 1 long / 2 short)."""
        body = await self._read("/api/Position/searchOpen", {"accountId": int(account_id)})
        return list(body.get("positions") or [])

    async def search_trades(self, account_id: int, start: datetime,
                            end: datetime | None = None) -> list[dict[str, Any]]:
        """Trade/search: half-turn fills in [start, end] (Decimal prices)."""
        body: dict[str, Any] = {"accountId": int(account_id), "startTimestamp": start}
        if end is not None:
            body["endTimestamp"] = end
        return list((await self._read("/api/Trade/search", body)).get("trades") or [])


__all__ = ["ProjectXClient", "rate_class", "to_decimal"]
