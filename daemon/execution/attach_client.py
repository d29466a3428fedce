"""Wiring of the Gateway client into a running daemon: the API key, the rate limiter, the
`rate-limit` control command, the SIGHUP reload of `[projectx].rate_limit_qps`, and status.

`build_client(daemon)` is what the execution attach (issue 5 part 2) calls; it returns a
client that is not logged in yet (the first request logs in).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from daemon.config import Change, RuntimeConfig
from daemon.control import CommandError
from daemon.execution.client import ProjectXClient
from daemon.execution.credentials import load_api_key
from daemon.execution.ratelimit import LimitSpec, RateLimiter, RateLimitError

QPS_KEY = "[projectx].rate_limit_qps"


def limiter_for(cfg: RuntimeConfig, clock: Any) -> RateLimiter:
    """A RateLimiter with the budgets of `[projectx]`, on `clock`."""
    px = cfg.projectx
    return RateLimiter(clock, LimitSpec(order_qps=px.rate_limit_qps, history=px.history_limit,
                                        general=px.general_limit))


def register_rate_limit_command(daemon: Any, limiter: RateLimiter) -> None:
    """Make the order QPS adjustable without a restart: `anchord ctl rate-limit QPS` and a
    SIGHUP / `ctl reload` that changes `[projectx].rate_limit_qps`. Both refuse values outside
    (0, 5] (ctl answers the error; a bad file is refused by config validation)."""

    async def rate_limit(args: dict[str, Any]) -> dict[str, Any]:
        old = limiter.order_qps
        try:
            new = limiter.set_order_qps(args.get("qps"))
        except RateLimitError as err:
            raise CommandError(f"rate-limit: {err}") from None
        daemon.log.warning("rate_limit_changed", source="ctl", old_qps=old, new_qps=new)
        return {"rate_limit_qps": new, "previous": old}

    def on_reload(cfg: RuntimeConfig, changes: list[Change]) -> None:
        if any(c.key == QPS_KEY for c in changes):
            old = limiter.order_qps
            new = limiter.set_order_qps(cfg.projectx.rate_limit_qps)
            daemon.log.warning("rate_limit_changed", source="reload", old_qps=old, new_qps=new)

    daemon.control.register("rate-limit", rate_limit)
    daemon.reload_hooks.append(on_reload)
    daemon.status_providers["rate_limit"] = limiter.snapshot


def get_client(daemon: Any, env: Mapping[str, str] | None = None) -> ProjectXClient:
    """The daemon's one Gateway client (built on first use, then shared as `daemon.gateway`),
    so that live bars and the submitter draw on the same rate budgets and session."""
    client = getattr(daemon, "gateway", None)
    if client is None:
        client = build_client(daemon, env)
        daemon.gateway = client
    return client


def build_client(daemon: Any, env: Mapping[str, str] | None = None) -> ProjectXClient:
    """The daemon's Gateway client: key from the environment / credential file (never the
    config), limiter on the daemon's clock with the rate-limit command registered, and a
    `gateway` status entry. MissingCredential when there is no key."""
    env = os.environ if env is None else env
    key = load_api_key(env)
    px = daemon.cfg.projectx
    limiter = limiter_for(daemon.cfg, daemon.clock)
    client = ProjectXClient(px, key, clock=daemon.clock, limiter=limiter,
                            username=px.username or env.get("PROJECTX_USERNAME", ""))
    register_rate_limit_command(daemon, limiter)
    daemon.status_providers["gateway"] = lambda: {
        "base_url": px.base_url, "token_expires_at": client.token_expires_at,
        **client.counters}
    return client
