"""What the Gateway's answers mean: HTTP statuses and envelopes mapped to the typed errors of
daemon/execution/errors.py, and the Order/place answer read into an order id."""

from __future__ import annotations

from typing import Any

import httpx

from daemon.execution.errors import (
    AuthError,
    BadRequest,
    EnvelopeError,
    GatewayUnavailable,
    OrderOutcomeUnknown,
    OrderRejected,
    RateLimited,
    TagInUse,
)
from daemon.execution.models import loads

TAG_IN_USE_WORDS = ("custom tag", "in use")


def retry_after(resp: httpx.Response) -> float | None:
    """The Retry-After header in seconds (None when absent or an HTTP date)."""
    value = resp.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare, fall back to backoff


def is_tag_in_use(message: str | None) -> bool:
    """True for the Gateway's "custom tag already in use" refusal."""
    text = (message or "").lower()
    return all(w in text for w in TAG_IN_USE_WORDS)


def raise_for_status(resp: httpx.Response, endpoint: str) -> None:
    """Map a non-200 answer to its typed error (429, 5xx, other 4xx)."""
    status = resp.status_code
    if status == 200:
        return
    if status == 429:
        raise RateLimited(endpoint, retry_after(resp))
    if status >= 500:
        raise GatewayUnavailable(endpoint, f"HTTP {status}", status)
    detail = resp.text[:300]
    try:
        body = loads(resp.content)
        if isinstance(body, dict):
            detail = str(body.get("detail") or body.get("title") or body.get("errorMessage")
                          or detail)
    except ValueError:
        pass
    raise BadRequest(endpoint, status, detail)


def parse_envelope(resp: httpx.Response, endpoint: str) -> dict[str, Any]:
    """The answer's JSON envelope; GatewayUnavailable when it is not one."""
    try:
        body = loads(resp.content)
    except ValueError:
        raise GatewayUnavailable(endpoint, "answer is not JSON", resp.status_code) from None
    if not isinstance(body, dict) or "success" not in body:
        raise GatewayUnavailable(endpoint, "answer is not a Gateway envelope",
                                 resp.status_code)
    return body


def check_envelope(body: dict[str, Any], endpoint: str) -> dict[str, Any]:
    """`body` if it says success, else EnvelopeError with the endpoint's own errorCode."""
    if not body.get("success"):
        raise EnvelopeError(endpoint, int(body.get("errorCode") or -1),
                            body.get("errorMessage"))
    return body


def place_answer(resp: httpx.Response, tag: str | None, log: Any) -> int:
    """The order id an Order/place answer gives; the typed error of `place_order`'s
    docstring otherwise (5xx and unreadable answers: OrderOutcomeUnknown)."""
    status = resp.status_code
    if status == 401:
        raise AuthError("Order/place: HTTP 401 again right after a fresh login")
    if status == 429:
        raise RateLimited("Order/place", retry_after(resp))
    if status >= 500:
        log.warning("order_outcome_unknown", custom_tag=tag, reason=f"HTTP {status}")
        raise OrderOutcomeUnknown(tag, f"HTTP {status}")
    if status != 200:
        raise_for_status(resp, "Order/place")
    try:
        body = loads(resp.content)
        if not isinstance(body, dict) or "success" not in body:
            raise ValueError("not an envelope")
    except ValueError:
        raise OrderOutcomeUnknown(tag, "unreadable answer") from None
    order_id = body.get("orderId")
    order_id = int(order_id) if order_id is not None else None
    if not body.get("success"):
        code, message = int(body.get("errorCode") or -1), body.get("errorMessage")
        cls = TagInUse if is_tag_in_use(message) else OrderRejected
        raise cls("Order/place", code, message, order_id, tag)
    if order_id is None:
        raise OrderOutcomeUnknown(tag, "success without an orderId")
    return order_id
