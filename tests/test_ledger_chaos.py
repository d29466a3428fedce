"""Ledger chaos: `anchord run` (a real subprocess) trades 300+ bars on the paper venue over real
HTTP with every fault kind of the execution chaos test, resting limit orders that partly fill,
that the daemon cancels and that the venue expires, fees, a reload mid-run, a flatten at the
venue mid-run (halted, then adopted with `anchord ctl adopt`), a kill switch engaged by SIGUSR1
while a token refresh is under way and released with `ctl resume`, and a SIGKILL with an open
position followed by a restart. Every bar crosses a CME trading-day boundary with the position
open. It must end with: no order placed while the switch was on, the ledger's position equal to
the venue's at the end of every bar where no order of ours was in flight, no duplicate, no lost
intent, and the day's loss never past `max_daily_loss` plus one bar's move of the position."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

from daemon.execution.order_states import IN_FLIGHT
from daemon.execution.outbox import Outbox
from daemon.store import Store
from daemon.timeutil import iso, parse_utc
from daemon.venue import venue_in_thread
from tests.execution_support import ALL_FAULTS, API_KEY, CONTRACT, execution_doc, toml_text
from tests.helpers import DaemonProcess, cli_env, run_cli, write_config
from tests.venue_support import sp500

START, END = "1999-01-01", "2000-04-28"  # 335 bars
MAX_DAILY_LOSS = 1500.0
POINT_VALUE = 50.0
# Every bar reads Trade/search once or more: its latency paces the run so that the signals and
# `ctl` commands of the scenario land within a few bars of where they are meant to.
FAULTS = ALL_FAULTS + ",validate:latency_ms=200,trades:latency_ms=120,seed=17"


def _doc(tmp: Path, base_url: str, ttl: int) -> dict[str, dict[str, Any]]:
    return execution_doc(tmp, base_url, start=START, end=END, extra={
        "execution": {"order_type": "limit", "limit_offset_ticks": 2, "limit_ttl_bars": ttl},
        "limits": {"max_daily_loss": MAX_DAILY_LOSS, "max_orders_per_minute": 0},
        "projectx": {"token_refresh_margin_s": 298.0}})


def _cursor(state: Path) -> int:
    import sqlite3

    try:
        conn = sqlite3.connect(f"file:{state / 'store.sqlite'}?mode=ro", uri=True, timeout=1)
        try:
            row = conn.execute("SELECT MAX(next_index) FROM replay_cursor").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return 0
    return int(row[0] or 0)


class Run:
    """The daemon under test, with the waits the scenario needs."""

    def __init__(self, tmp: Path, venue: Any) -> None:
        self.tmp, self.venue = tmp, venue
        self.config = write_config(tmp, toml_text(_doc(tmp, venue.base_url, ttl=2)))
        self.env = cli_env(PROJECTX_API_KEY=API_KEY)
        self.proc = DaemonProcess(self.config, env=self.env)
        self.events: list[dict[str, Any]] = []

    def until_bar(self, n: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while _cursor(self.tmp / "state") < n:
            self.proc.assert_running()
            assert time.monotonic() < deadline, f"bar {n} not reached"
            time.sleep(0.01)

    def ctl(self, *args: str) -> str:
        out = run_cli("ctl", "--config", str(self.config), *args, env=self.env)
        if out.returncode != 0:
            self.proc.assert_running()
        assert out.returncode == 0, out.stderr
        return out.stdout

    def restart(self) -> None:
        self.events += self.proc.events
        self.proc.kill()  # SIGKILL
        self.proc = DaemonProcess(self.config, env=self.env)


def test_the_ledger_stays_the_venues_through_every_ordinary_event_of_an_account(tmp_path):
    with venue_in_thread(sp500(), contract=CONTRACT, faults=FAULTS, other_limit="unlimited",
                         max_fill_per_bar=1, order_expiry="bars:2", fee_per_contract="1.25",
                         token_lifetime_s=303.0) as venue:
        venue.set_time(sp500()[0].ts)
        run = Run(tmp_path, venue)
        try:
            run.proc.wait_for("execution_ready", timeout=60)
            run.until_bar(40)  # resting orders: cancelled by the daemon after 2 bars so far;
            run.config.write_text(toml_text(_doc(tmp_path, venue.base_url, ttl=6)))
            run.proc.signal(signal.SIGHUP)  # from now on the venue expires them first
            run.proc.wait_for("config_reloaded", timeout=30)
            run.until_bar(80)
            deadline = time.monotonic() + 60
            while venue.net_position() == 0:  # something to flatten
                assert time.monotonic() < deadline
                time.sleep(0.002)
            flat = venue.flatten(1001, CONTRACT)  # a manual close in the platform
            run.proc.wait_for("position_mismatch", timeout=60)
            run.until_bar(95)
            run.ctl("adopt")
            run.until_bar(130)
            validates = venue.request_counts().get("validate", 0)
            deadline = time.monotonic() + 60
            while venue.request_counts().get("validate", 0) == validates:  # a refresh starts
                assert time.monotonic() < deadline
                time.sleep(0.002)
            run.proc.signal(signal.SIGUSR1)  # the kill lands while Auth/validate is under way
            engaged = run.proc.wait_for("kill_switch_engaged", timeout=30)
            run.until_bar(150)
            run.ctl("resume")
            released = run.proc.wait_for("kill_switch_released", timeout=30)
            run.until_bar(200)
            deadline = time.monotonic() + 60
            while venue.net_position() == 0:  # SIGKILL with a position open
                assert time.monotonic() < deadline
                time.sleep(0.005)
            run.restart()
            run.proc.wait_for("reconciled", timeout=60)
            assert run.proc.exit_code(600) == 0
            run.events += run.proc.events
        finally:
            run.proc.kill()
        orders = venue.orders()
        faults = venue.fault_counts()
        venue_net = venue.net_position()
        trades = venue.venue.book.trades

    store = Store(tmp_path / "state" / "store.sqlite")
    try:
        recs = Outbox(store).records()
        bars = store.journal_rows("bar")
        store_orders = store.journal_rows("order")
        fills = store.conn.execute("SELECT kind, COUNT(*) FROM ledger_fills GROUP BY kind"
                                   ).fetchall()
    finally:
        store.close()
    states = Counter(r.state.value for r in recs)
    tags = Counter(o["customTag"] for o in orders if o["customTag"])
    mismatches = [e for e in run.events if e.get("event") == "position_mismatch"]
    print(f"\nLEDGER CHAOS bars={len(bars)} intents={len(recs)} venue_orders={len(orders)} "
          f"states={dict(states)} fills={dict(fills)} venue_trades={len(trades)} "
          f"partial={sum(1 for r in recs if 0 < r.filled < r.size)} "
          f"mismatches={len(mismatches)} venue_position={venue_net} faults={dict(faults)}")
    assert len(bars) >= 300
    # the ordinary events all happened
    assert states["CANCELLED"] >= 3 and states["EXPIRED"] >= 3, states
    assert any(0 < r.filled < r.size for r in recs)
    assert flat["success"] and mismatches
    kinds = {k.split(":")[1] for k in faults}
    assert {"timeout_after_accept", "reset_after_accept", "5xx_after_accept", "dup_tag",
            "reset", "timeout", "429"} <= kinds, faults
    # exactly once: no duplicate, no lost intent
    assert all(n == 1 for n in tags.values())
    ours = {r.tag for r in recs}
    assert {t for t in tags if t.startswith("ax-")} <= ours
    assert not any(r.state in IN_FLIGHT for r in recs), states
    # still working at the end: only resting orders of the last bars, which the venue expires
    placed = {o["tag"]: o["ts"] for o in store_orders}
    last_bars = {b["ts"] for b in bars[-2:]}
    assert all(placed[r.tag] in last_bars for r in recs if r.open), states
    # nothing was placed while the kill switch was on
    t_on, t_off = parse_utc(engaged["ts"]), parse_utc(released["ts"])
    during = [o for o in orders
              if t_on < parse_utc(str(o["creationTimestamp"])) < t_off]
    assert during == [], during
    # the ledger is the venue's at the end of every bar where nothing of ours was in flight
    checked = [b for b in bars if b.get("venue_position") is not None]
    assert len(checked) >= 100
    assert all(b["position"] == b["venue_position"] for b in checked), \
        [(b["ts"], b["position"], b["venue_position"]) for b in checked
         if b["position"] != b["venue_position"]][:5]
    assert bars[-1]["position"] == venue_net
    # the day's loss never went past the limit plus one bar's move of the position: the one
    # held into the bar or the one opened in it (filled anywhere in the bar's range)
    ranges = {iso(b.ts): b.high - b.low for b in sp500()}
    for before, bar in zip(bars, bars[1:], strict=False):
        held = max(abs(before["position"]), abs(bar["position"]))
        reach = abs(bar["close"] - before["close"]) + ranges[bar["ts"]]
        move = reach * held * POINT_VALUE
        fees = 1.25 * 4 * 2  # at most two fills of up to two contracts in a bar
        assert bar["day_pnl"] >= -(MAX_DAILY_LOSS + move + fees), (bar, before)
