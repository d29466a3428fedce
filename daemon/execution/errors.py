"""Errors of the ProjectX Gateway client, one class per way a call can end badly.

All are `GatewayError` (an `AnchordError`: one line for the operator, no traceback). What a
caller may do next depends on the class: `OrderOutcomeUnknown` means the order may or may not
exist (look its customTag up, never resend blindly); `TagInUse` means an order with that tag
already exists on the account; `OrderRejected` and `RateLimited` on `Order/place` mean the
Gateway answered and nothing new was placed (a rejected order may still have an id).
"""

from __future__ import annotations

from daemon.errors import AnchordError


class GatewayError(AnchordError):
    """Any failure talking to the ProjectX Gateway."""


class InsecureBaseURL(GatewayError):
    """The configured base URL is not https and not on loopback."""


class MissingCredential(GatewayError):
    """No ProjectX API key in the environment or the systemd credential directory."""


class AuthError(GatewayError):
    """Login or token refresh failed; `error_code` is the Gateway's LoginErrorCode if any."""

    def __init__(self, message: str, error_code: int | None = None) -> None:
        self.error_code = error_code
        super().__init__(message)


class RateLimited(GatewayError):
    """HTTP 429: the request was not processed; `retry_after` seconds if the server said."""

    def __init__(self, endpoint: str, retry_after: float | None) -> None:
        self.endpoint = endpoint
        self.retry_after = retry_after
        after = f" (Retry-After {retry_after:g} s)" if retry_after is not None else ""
        super().__init__(f"{endpoint}: rate limited by the Gateway{after}")


class GatewayUnavailable(GatewayError):
    """A read failed on the transport or with HTTP 5xx, after its bounded retries."""

    def __init__(self, endpoint: str, reason: str, status: int | None = None) -> None:
        self.endpoint = endpoint
        self.reason = reason
        self.status = status
        super().__init__(f"{endpoint}: Gateway unavailable ({reason})")


class BadRequest(GatewayError):
    """HTTP 4xx other than 401/429 (e.g. 400 ProblemDetails): the request was refused as is."""

    def __init__(self, endpoint: str, status: int, detail: str) -> None:
        self.endpoint = endpoint
        self.status = status
        self.detail = detail
        super().__init__(f"{endpoint}: HTTP {status}: {detail}")


class EnvelopeError(GatewayError):
    """HTTP 200 with `success: false`: `error_code` is the endpoint's own error code."""

    def __init__(self, endpoint: str, error_code: int, message: str | None) -> None:
        self.endpoint = endpoint
        self.error_code = error_code
        self.message = message
        super().__init__(f"{endpoint}: errorCode {error_code}: {message or '(no message)'}")


class OrderRejected(EnvelopeError):
    """Order/place answered `success: false`; `order_id` is set when a rejected order exists."""

    def __init__(self, endpoint: str, error_code: int, message: str | None,
                 order_id: int | None, custom_tag: str | None) -> None:
        self.order_id = order_id
        self.custom_tag = custom_tag
        super().__init__(endpoint, error_code, message)


class TagInUse(OrderRejected):
    """Order/place: "custom tag already in use" — an order with this tag exists (or existed)."""


class OrderOutcomeUnknown(GatewayError):
    """Order/place timed out, got HTTP 5xx or lost its connection: the order may exist.

    Resolve by looking `custom_tag` up (Order/search); never by resending blindly.
    """

    def __init__(self, custom_tag: str | None, reason: str) -> None:
        self.custom_tag = custom_tag
        self.reason = reason
        super().__init__(f"Order/place outcome unknown for tag {custom_tag!r}: {reason}")


class OrderNotSent(GatewayError):
    """Order/place was not written: the caller's last check before the request said no
    (`reason`: "kill_switch", "stopping"). Nothing reached the venue."""

    def __init__(self, custom_tag: str | None, reason: str) -> None:
        self.custom_tag = custom_tag
        self.reason = reason
        super().__init__(f"Order/place for tag {custom_tag!r} not sent: {reason}")


class ContractNotFound(GatewayError):
    """No contract matches exactly (a substring match is never taken)."""

    def __init__(self, wanted: str, candidates: list[str] | None = None) -> None:
        self.wanted = wanted
        self.candidates = candidates or []
        near = f" (similar: {', '.join(self.candidates[:8])})" if self.candidates else ""
        super().__init__(f"no contract is exactly {wanted!r}{near}")


class AccountNotFound(GatewayError):
    """No active account matches `[projectx].account` exactly (or it is ambiguous)."""
