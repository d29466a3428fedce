"""Shared pieces of the paper-venue tests: real sample bars, made-up bars with a chosen path, a
logged-in raw httpx client."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

import httpx
import pytest

from daemon.bars.model import Bar
from daemon.bars.replay import load_bars

CONTRACT = "CON.F.US.EP.Z26"
ACCOUNT = 1001
EPOCH = "1900-01-01T00:00:00Z"


@lru_cache(maxsize=1)
def sp500() -> list[Bar]:
    """The real S&P 500 daily sample (arch), loaded once per test session."""
    return load_bars("sample:sp500", CONTRACT)


def path_bars(start: datetime, lows: list[float], step: timedelta = timedelta(hours=1),
              level: float = 100.0) -> list[Bar]:
    """Made-up bars, one per `step` from `start`: each opens and closes at `level` with a high
    of level + 1 and the given low, so a buy limit at P is crossed exactly by the bars whose
    low is <= P (and fills at P, under the open)."""
    return [Bar(CONTRACT, start + i * step, level, level + 1, low, level, 100)
            for i, low in enumerate(lows)]


def d(value: Any) -> Decimal:
    """A wire number as an exact Decimal."""
    return Decimal(str(value))


@pytest.fixture
def bars() -> list[Bar]:
    return sp500()[:400]


class Client:
    """A raw Gateway client: httpx over 127.0.0.1, JSON in, the envelope out."""

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=timeout)
        self.token: str | None = None

    async def login(self, user: str = "trader", key: str = "k3y") -> str:
        r = await self.http.post("/api/Auth/loginKey", json={"userName": user, "apiKey": key})
        assert r.status_code == 200, r.text
        self.token = r.json()["token"]
        return self.token

    async def raw(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return await self.http.post(path, json=body if body is not None else {}, headers=headers)

    async def call(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        r = await self.raw(path, body)
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()

    async def place(self, **fields: Any) -> dict[str, Any]:
        body = {"accountId": ACCOUNT, "contractId": CONTRACT, "type": 2, "side": 0, "size": 1}
        body.update(fields)
        return await self.call("/api/Order/place", body)

    async def orders(self, account: int = ACCOUNT) -> list[dict[str, Any]]:
        """Order/search over all time: every order of the account, in id order."""
        return (await self.call("/api/Order/search", {"accountId": account,
                                                      "startTimestamp": EPOCH}))["orders"]

    async def trades(self, account: int = ACCOUNT) -> list[dict[str, Any]]:
        """Trade/search over all time."""
        return (await self.call("/api/Trade/search", {"accountId": account,
                                                      "startTimestamp": EPOCH}))["trades"]

    async def positions(self, account: int = ACCOUNT) -> list[dict[str, Any]]:
        return (await self.call("/api/Position/searchOpen", {"accountId": account}))[
            "positions"]

    async def aclose(self) -> None:
        await self.http.aclose()
