"""The kill switch holds at the wire: everything an order waits for (rate slot, token, login)
comes before the last check, which is the last thing before the request is written; an order
in flight when the switch engages is cancelled when it is acknowledged; a stop during the rate
slot's wait sends nothing; and the switch is in force before it is written, whatever the
store says (real paper venue over loopback HTTP, real SQLite)."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from decimal import Decimal

import anyio

from daemon.app import Daemon
from daemon.config import load_config
from daemon.execution.order_states import State, make_tag
from daemon.intent import OrderIntent, Side, make_intent_id
from daemon.risk import RiskState
from daemon.store import Store
from tests.execution_support import CONTRACT, paper_submitter
from tests.helpers import basic_config, write_config


def _intent(bar, side: Side = Side.BUY, size: int = 1,
            limit: Decimal | None = None) -> OrderIntent:
    target = size if side == Side.BUY else -size
    return OrderIntent(make_intent_id(CONTRACT, bar.ts, side, size, target), CONTRACT,
                       bar.ts, side, size, target, bar.close, limit)


def risk_now() -> datetime:
    return datetime.now(UTC)


async def _kill_after(risk: RiskState, seconds: float) -> None:
    await anyio.sleep(seconds)
    risk.engage_kill("test", risk_now())


async def test_a_kill_during_the_login_before_an_order_sends_nothing(tmp_path):
    async with paper_submitter(tmp_path, faults="login:latency_ms=250") as px:
        px.client._token_exp = 0.0  # the token has expired: the order logs in first
        rec = px.sub.enqueue(_intent(px.bar), make_tag("inst", 1, _intent(px.bar).intent_id), 1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_kill_after, px.risk, 0.1)  # while Auth/loginKey is under way
            done = await px.sub.drive(rec.tag)
        assert done.state == State.BLOCKED and done.attempts == 0
        assert px.venue.tag_counts().get(rec.tag, 0) == 0  # nothing reached the venue
        assert px.client.counters["logins"] >= 2  # the login did happen, before the check


async def test_an_order_in_flight_at_the_kill_is_cancelled_when_acknowledged(tmp_path):
    async with paper_submitter(tmp_path, faults="place:latency_ms=250") as px:
        resting = _intent(px.bar, limit=Decimal("100.00"))  # far below the market: it rests
        rec = px.sub.enqueue(resting, make_tag("inst", 1, resting.intent_id), 1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_kill_after, px.risk, 0.1)  # the request is on the wire by then
            done = await px.sub.drive(rec.tag)
        assert done.state == State.ACCEPTED  # it went out before the switch engaged ...
        [order] = [o for o in px.venue.orders() if o["customTag"] == rec.tag]
        assert order["status"] == 3  # ... and was cancelled the moment it was acknowledged


async def test_a_stop_during_the_rate_slot_wait_sends_nothing(tmp_path):
    async with paper_submitter(tmp_path) as px:
        px.client.limiter.set_order_qps(0.5)  # one order per 2 s
        first = _intent(px.bar, Side.BUY, 1)
        second = _intent(px.bar, Side.SELL, 1)
        a = px.sub.enqueue(first, make_tag("inst", 1, first.intent_id), 1)
        b = px.sub.enqueue(second, make_tag("inst", 1, second.intent_id), 1)
        assert (await px.sub.drive(a.tag)).state == State.ACCEPTED  # takes the slot
        t0 = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(px.sub.drive, b.tag)  # now waits up to 2 s for its slot
            await anyio.sleep(0.3)
            px.sub.stop()  # SIGTERM
            with anyio.fail_after(3):
                while px.sub.outbox.get(b.tag).state == State.PENDING and \
                        time.monotonic() - t0 < 2.5:
                    await anyio.sleep(0.05)
        assert px.sub.outbox.get(b.tag).state == State.PENDING  # left for the next start
        assert px.venue.tag_counts().get(b.tag, 0) == 0


async def test_final_hooks_run_once_per_record(tmp_path):
    async with paper_submitter(tmp_path) as px:
        finals: list[str] = []
        px.sub.outbox.on_final.append(lambda rec: finals.append(rec.tag))
        rec = px.sub.enqueue(_intent(px.bar), make_tag("inst", 1, _intent(px.bar).intent_id), 1)
        await px.sub.drive(rec.tag)
        await px.sub.drive(rec.tag)  # driven again (requeued by a check, drained at exit)
        px.sub.requeue_in_flight()
        await px.sub.drain()
        assert finals == [rec.tag]


def _locked(path) -> sqlite3.Connection:
    """Another connection holding the store's write lock (as a stuck backup or a second
    process would)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=0.1)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def test_the_kill_switch_is_in_force_before_the_store_takes_it(tmp_path):
    path = tmp_path / "s.sqlite"
    store = Store(path)
    errors: list[str] = []
    risk = RiskState.load(store, 15, 15)
    risk.on_persist_error = lambda what, err: errors.append(what)
    lock = _locked(path)
    t0 = time.monotonic()
    assert risk.engage_kill("SIGUSR1", risk_now())  # never raises
    risk.mark_news(risk_now(), "ctl")
    assert time.monotonic() - t0 < 2.0  # a locked store does not hold the caller up
    assert risk.kill_switch and risk.news and errors  # in force, and said loudly
    assert set(risk.unsaved) >= {"kill_switch"} and "locked" in risk.persist_error
    try:  # releasing cannot be written either: the switch stays on
        risk.release_kill(risk_now())
        raise AssertionError("release_kill wrote through a locked store")
    except sqlite3.OperationalError:
        assert risk.kill_switch
    lock.execute("ROLLBACK")
    lock.close()
    assert risk.retry_persist() and not risk.unsaved and risk.persist_error == ""
    store.close()
    again = Store(path)
    assert again.load_kill_switch()[0] and again.news_marks()  # on disk now
    again.close()


async def test_ctl_kill_answers_in_force_with_the_store_locked(tmp_path):
    cfg_path = write_config(tmp_path, basic_config(metrics='listen = ""'))
    daemon = Daemon(load_config(cfg_path))
    lock = _locked(tmp_path / "state" / "store.sqlite")
    try:
        answer = await daemon.control.dispatch({"cmd": "kill", "args": {"reason": "ctl"}})
        assert answer["ok"] and answer["result"]["kill_switch"] is True
        assert answer["result"]["persisted"] is False
        assert daemon.status()["risk_unsaved"] == ["kill_switch"]
        refused = await daemon.control.dispatch({"cmd": "resume", "args": {}})
        assert not refused["ok"] and "stays on" in refused["error"]
        assert daemon.risk.kill_switch
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert daemon.risk.retry_persist()
    daemon.store.close()
