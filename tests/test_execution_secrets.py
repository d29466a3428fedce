"""No log line of a client session carries the API key or a session token; the key comes from
the environment or the systemd credential directory, never from runtime.toml."""

from __future__ import annotations

import io
import logging
from datetime import timedelta

import pytest

from daemon.execution.credentials import load_api_key
from daemon.execution.errors import (
    AuthError,
    GatewayError,
    MissingCredential,
    OrderOutcomeUnknown,
    TagInUse,
)
from daemon.logs import configure_logging
from tests.exec_support import API_KEY, START, session
from tests.venue_support import ACCOUNT, CONTRACT, bars  # noqa: F401

MARKET = {"account_id": ACCOUNT, "contract_id": CONTRACT, "type": 2, "side": 0, "size": 1}


async def test_logs_of_a_session_never_show_the_key_or_a_token(bars):  # noqa: F811
    out = io.BytesIO()
    configure_logging("debug", stream=out)
    stdlib = io.StringIO()  # httpx/httpcore log through stdlib logging: capture that too
    handler = logging.StreamHandler(stdlib)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    issued: list[str] = []
    errors: list[str] = []
    try:
        async with session(bars, venue_opts={"token_lifetime_s": 600.0},
                           token_refresh_margin_s=300.0) as (venue, client, clock):
            real_issue = venue.tokens.issue

            def issue(user: str) -> str:
                token = real_issue(user)
                issued.append(token)
                return token

            venue.tokens.issue = issue  # type: ignore[method-assign]
            await client.resolve_account()
            await client.resolve_contract(CONTRACT)
            clock.advance(400)  # refresh via validate
            await client.place_order(**MARKET, custom_tag="s-1")
            venue.tokens.revoke(client._token)  # 401 → re-login
            await client.search_orders(ACCOUNT, START - timedelta(days=1))
            venue.force_fault("place", "reset_after_accept")
            for tag in ("s-2", "s-2"):
                try:
                    await client.place_order(**MARKET, custom_tag=tag)
                except (OrderOutcomeUnknown, TagInUse) as err:
                    errors.append(str(err))
            venue.force_fault("accounts", "429")
            await client.search_accounts()
            client._api_key = "not-the-key"  # a refused login logs and raises too
            venue.tokens.revoke(client._token)
            with pytest.raises(AuthError) as err:
                await client.search_accounts()
            errors.append(str(err.value))
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        configure_logging("info")
    assert len(issued) >= 3 and venue.request_counts()["validate"] == 1
    text = out.getvalue().decode() + stdlib.getvalue() + "\n".join(errors)
    lines = text.splitlines()
    assert len(lines) > 10
    events = {"gateway_login", "gateway_token_refreshed", "gateway_401_relogin",
              "order_outcome_unknown", "gateway_retry"}
    assert all(e in text for e in events), text
    for line in lines:
        assert API_KEY not in line
        for token in issued:
            assert token not in line
            assert token.split(".")[2] not in line  # not even the signature part


def test_api_key_from_env_then_credentials_dir(tmp_path):
    assert load_api_key({"PROJECTX_API_KEY": " k-env-123 \n"}) == "k-env-123"
    (tmp_path / "projectx_api_key").write_text("k-file-456\n")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    assert load_api_key(env) == "k-file-456"
    assert load_api_key({**env, "PROJECTX_API_KEY": "k-env-123"}) == "k-env-123"
    for empty in ({}, {"PROJECTX_API_KEY": "  "}, {"CREDENTIALS_DIRECTORY": str(tmp_path / "x")}):
        with pytest.raises(MissingCredential) as err:
            load_api_key(empty)
        assert "PROJECTX_API_KEY" in str(err.value) and isinstance(err.value, GatewayError)
