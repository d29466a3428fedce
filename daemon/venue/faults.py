"""Fault injection for the paper venue: a spec grammar, deterministic draws, and counters.

Grammar (comma-separated items, no spaces needed):

    SPEC  := ITEM ("," ITEM)*
    ITEM  := "seed=" INT                      draws are a pure function of (seed, endpoint, n)
           | "stall_s=" SECONDS               how long a timeout stalls before closing (15)
           | [SCOPE ":"] "latency_ms=" MS     extra delay before every request of the scope
           | SCOPE ":" KIND "=" PROBABILITY   inject KIND on that fraction of requests
    SCOPE := "any" | an endpoint name: login validate logout (Auth/*), accounts
             (Account/search), contracts (Contract/search, /available), contract
             (Contract/searchById), bars (History/retrieveBars), place cancel modify
             (Order/*), orders (Order/search), open_orders (Order/searchOpen), order
             (Order/searchById), order_query (Order/v2/query), positions
             (Position/searchOpen), close partial_close (Position/*CloseContract),
             trades (Trade/search), ping (Status/ping)

KIND, and what the client sees:
    429                   HTTP 429 (with Retry-After), request not processed
    500 | 503 | 5xx       HTTP 500 / 503 / either, request not processed
    reset                 connection closed with RST before the request is processed
    timeout               no answer for stall_s, then the connection is closed; not processed
    5xx_after_accept      request processed (an order IS placed), then HTTP 500
    reset_after_accept    request processed, then RST without an answer
    timeout_after_accept  request processed, then no answer for stall_s, then closed
    dup_tag               place only: the order IS placed, but the answer is errorCode 2
                          "Specified custom tag is already in use" (what a retry of a landed
                          order would see); orderId null

Example: `place:timeout_after_accept=0.1,place:reset=0.05,place:5xx=0.1,any:429=0.05,
latency_ms=5,seed=7`. Each request gets at most one fault: one uniform draw u per request, and
the endpoint's own rules, then the `any` rules, take consecutive slices of [0, 1) in spec
order; probabilities of one endpoint must sum to at most 1. The n-th request to an endpoint
always gets the same fault for a given seed, whatever the timing. `force()` queues a fault for
the next request(s) of an endpoint (tests). Every injected fault is recorded and counted.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field

from daemon.errors import AnchordError

ENDPOINTS = ("login", "validate", "logout", "accounts", "contracts", "contract", "bars",
             "place", "cancel", "modify", "orders", "open_orders", "order", "order_query",
             "positions", "close", "partial_close", "trades", "ping")
KINDS = ("429", "500", "503", "5xx", "reset", "timeout", "5xx_after_accept",
         "reset_after_accept", "timeout_after_accept", "dup_tag")
AFTER_ACCEPT = ("5xx_after_accept", "reset_after_accept", "timeout_after_accept", "dup_tag")


class FaultSpecError(AnchordError):
    """A --faults spec that does not follow the grammar."""


@dataclass(frozen=True)
class FaultPlan:
    rules: tuple[tuple[str, str, float], ...] = ()  # (scope, kind, probability)
    latency_ms: tuple[tuple[str, float], ...] = ()  # (scope, ms)
    seed: int = 0
    stall_s: float = 15.0

    def latency_for(self, endpoint: str) -> float:
        return sum(ms for scope, ms in self.latency_ms if scope in ("any", endpoint))


def _number(text: str, item: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise FaultSpecError(f"fault spec item {item!r}: {text!r} is not a number") from None


def parse_faults(spec: str) -> FaultPlan:
    """The FaultPlan for a spec string (empty = no faults); FaultSpecError when malformed."""
    rules: list[tuple[str, str, float]] = []
    latency: list[tuple[str, float]] = []
    seed, stall = 0, 15.0
    for item in (s.strip() for s in (spec or "").split(",")):
        if not item:
            continue
        if "=" not in item:
            raise FaultSpecError(f"fault spec item {item!r}: expected NAME=VALUE")
        name, value = item.split("=", 1)
        scope, _, kind = name.rpartition(":")
        scope = scope or "any"
        if scope not in ENDPOINTS and scope != "any":
            raise FaultSpecError(f"fault spec item {item!r}: unknown scope {scope!r} "
                                 f"(known: any, {', '.join(ENDPOINTS)})")
        if kind == "seed" and ":" not in name:
            seed = int(_number(value, item))
        elif kind == "stall_s" and ":" not in name:
            stall = _number(value, item)
        elif kind == "latency_ms":
            latency.append((scope, _number(value, item)))
        elif kind in KINDS:
            if ":" not in name:
                raise FaultSpecError(f"fault spec item {item!r}: say the scope (any:{kind}=...)")
            if kind == "dup_tag" and scope not in ("place", "any"):
                raise FaultSpecError(f"fault spec item {item!r}: dup_tag applies to place only")
            p = _number(value, item)
            if not 0 <= p <= 1:
                raise FaultSpecError(f"fault spec item {item!r}: probability outside [0, 1]")
            rules.append((scope, kind, p))
        else:
            raise FaultSpecError(f"fault spec item {item!r}: unknown kind {kind!r} "
                                 f"(known: {', '.join(KINDS)}, latency_ms, seed, stall_s)")
    plan = FaultPlan(tuple(rules), tuple(latency), seed, stall)
    for endpoint in ENDPOINTS:
        total = sum(p for _, _, p in _rules_for(plan, endpoint))
        if total > 1 + 1e-9:
            raise FaultSpecError(f"fault probabilities for {endpoint} sum to {total:g} > 1")
    return plan


def _rules_for(plan: FaultPlan, endpoint: str) -> list[tuple[str, str, float]]:
    own = [r for r in plan.rules if r[0] == endpoint]
    shared = [r for r in plan.rules if r[0] == "any"
              and (r[1] != "dup_tag" or endpoint == "place")]
    return own + shared


@dataclass
class FaultEvent:
    endpoint: str
    kind: str
    seq: int  # the n-th request to this endpoint (0-based)
    detail: str = ""  # e.g. the customTag of a place


@dataclass
class FaultInjector:
    """Decides the fault of each request and keeps the record of what it injected."""

    plan: FaultPlan = field(default_factory=FaultPlan)
    events: list[FaultEvent] = field(default_factory=list)
    _seq: Counter = field(default_factory=Counter)
    _forced: defaultdict = field(default_factory=lambda: defaultdict(deque))

    def set_plan(self, plan: FaultPlan | str) -> None:
        """Replace the plan (a FaultPlan or a spec string); counters are kept."""
        self.plan = parse_faults(plan) if isinstance(plan, str) else plan

    def force(self, endpoint: str, kind: str, times: int = 1) -> None:
        """Inject `kind` on the next `times` requests to `endpoint`, before any random draw."""
        if endpoint not in ENDPOINTS or kind not in KINDS:
            raise FaultSpecError(f"cannot force {endpoint}:{kind}")
        self._forced[endpoint].extend([kind] * times)

    def draw(self, endpoint: str) -> tuple[int, str | None]:
        """(sequence number, fault kind or None) for the next request to `endpoint`."""
        seq = self._seq[endpoint]
        self._seq[endpoint] += 1
        if self._forced[endpoint]:
            return seq, self._forced[endpoint].popleft()
        rules = _rules_for(self.plan, endpoint)
        if not rules:
            return seq, None
        digest = hashlib.sha256(f"{self.plan.seed}|{endpoint}|{seq}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        edge = 0.0
        for _, kind, p in rules:
            edge += p
            if u < edge:
                return seq, kind
        return seq, None

    def record(self, endpoint: str, kind: str, seq: int, detail: str = "") -> None:
        self.events.append(FaultEvent(endpoint, kind, seq, detail))

    def counts(self) -> dict[str, int]:
        """Injected faults so far, keyed "endpoint:kind"."""
        return dict(Counter(f"{e.endpoint}:{e.kind}" for e in self.events))
