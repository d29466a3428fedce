"""The SQLite state store: migrations, persistence, and consistency after a hard kill."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from daemon.risk import RiskState
from daemon.store import LEGACY_MIGRATIONS, MIGRATIONS, Store


def test_migrations_are_applied_once(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.sqlite")
    assert s.schema_version() == max(MIGRATIONS)
    s.close()
    s = Store(tmp_path / "a.sqlite")  # reopening does not re-run migrations
    assert s.schema_version() == max(MIGRATIONS)
    assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s.applied_migrations() == set(MIGRATIONS)
    s.close()


def test_a_store_from_before_later_numbers_gets_the_missing_migrations(tmp_path: Path) -> None:
    # A file made when only migrations 1 and 5 existed (user_version 5, no tracking table):
    # the numbers reserved for other components (2, 3, 4) must still be applied on open.
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    for version in LEGACY_MIGRATIONS:
        for statement in MIGRATIONS[version].split(";"):
            if statement.strip():
                conn.execute(statement)
    conn.execute("INSERT INTO meta(key, value) VALUES('instance_id', 'abc')")
    conn.execute(f"PRAGMA user_version = {max(LEGACY_MIGRATIONS)}")
    conn.close()
    s = Store(path)
    assert s.applied_migrations() == set(MIGRATIONS)
    assert s.instance_id() == "abc"  # existing rows are kept
    s.close()


def test_the_leaner_outbox_migration_keeps_the_transition_log(tmp_path: Path,
                                                              monkeypatch) -> None:
    from daemon import store as store_module
    from daemon.execution import order_states as states
    from daemon.execution.outbox import Outbox
    from daemon.intent import OrderIntent, Side

    t0 = datetime(2024, 1, 2, tzinfo=UTC)
    before = {k: v for k, v in MIGRATIONS.items() if k < 6}
    monkeypatch.setattr(store_module, "MIGRATIONS", before)  # a file from before migration 6
    s = Store(tmp_path / "o.sqlite")
    box = Outbox(s)
    intent = OrderIntent("i1", "C", t0, Side.BUY, 1, 1, 100.0)
    box.add(intent, "t1", 1, t0)
    box.apply("t1", states.Blocked("kill_switch", t0))
    old_log = box.log("t1")
    s.close()
    monkeypatch.setattr(store_module, "MIGRATIONS", MIGRATIONS)
    s = Store(tmp_path / "o.sqlite")
    assert s.applied_migrations() == set(MIGRATIONS)
    indexes = {r[0] for r in s.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert not indexes & {"outbox_state", "outbox_intent", "outbox_log_tag"}
    box = Outbox(s)
    assert box.log("t1") == old_log and box.get("t1").state == states.State.BLOCKED
    box.add(OrderIntent("i2", "C", t0, Side.SELL, 1, 0, 100.0), "t2", 1, t0)
    ids = [row["id"] for row in box.log()]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) == 3  # still in order, no reuse
    s.close()


def test_kill_switch_and_news_survive_reopen(tmp_path: Path) -> None:
    now = datetime(2021, 3, 1, tzinfo=UTC)
    s = Store(tmp_path / "a.sqlite")
    r = RiskState.load(s, 15, 15)
    r.engage_kill("test", now)
    r.mark_news(datetime(2021, 3, 1, 14, 30, tzinfo=UTC))
    s.close()
    s = Store(tmp_path / "a.sqlite")
    r2 = RiskState.load(s, 15, 15)
    assert r2.kill_switch and r2.kill_reason == "test"
    assert r2.embargo_active(datetime(2021, 3, 1, 14, 40, tzinfo=UTC))
    assert not r2.embargo_active(datetime(2021, 3, 1, 15, 0, tzinfo=UTC))
    assert s.instance_id() == s.instance_id()



def test_run_epochs_are_never_reused_across_sources_and_restarts(tmp_path: Path,
                                                                  monkeypatch) -> None:
    from daemon import store as store_module
    from daemon.bars.replay import ReplayData
    from daemon.execution.outbox import Outbox
    from daemon.ingest import ReplayCursor
    from daemon.intent import OrderIntent, Side

    # A store from before run epochs were kept: two sources, epochs 1 and 3, and an outbox
    # record of epoch 4 (written under a source whose cursor row is gone).
    monkeypatch.setattr(store_module, "MIGRATIONS", {k: v for k, v in MIGRATIONS.items()
                                                     if k < 7})
    path = tmp_path / "e.sqlite"
    s = Store(path)
    s.set_cursor("a", 1, 10, 10)
    s.set_cursor("b", 3, 4, 10)
    t0 = datetime(2024, 1, 2, tzinfo=UTC)
    Outbox(s).add(OrderIntent("i1", "C", t0, Side.BUY, 1, 1, 100.0), "t1", 4, t0)
    s.close()
    monkeypatch.setattr(store_module, "MIGRATIONS", MIGRATIONS)

    def cursor(source_id: str, rows: int = 10) -> ReplayCursor:
        store = Store(path)  # a restart each time
        try:
            return ReplayCursor(store, ReplayData(source_id, [{}] * rows))
        finally:
            store.close()

    new = cursor("c")  # a source never run here
    assert (new.epoch, new.start, new.resumed) == (5, 0, False)
    assert cursor("a").epoch == 6  # finished before: starts over in a new epoch
    resumed = cursor("b")  # stopped part-way: keeps its epoch
    assert (resumed.epoch, resumed.start, resumed.resumed) == (3, 4, True)
    s = Store(path)
    s.set_cursor("b", 3, 10, 10)  # ...until it finished
    s.close()
    assert cursor("b").epoch == 7
    s = Store(path)
    taken = [r[0] for r in s.conn.execute("SELECT epoch FROM run_epochs ORDER BY epoch")]
    assert taken == [5, 6, 7]
    s.close()


WRITER = """
import sys
from datetime import UTC, datetime
from daemon.store import Store
s = Store(sys.argv[1])
i = 0
print("ready", flush=True)
while True:
    s.quarantine("C", str(i), {"i": i}, "test", datetime.now(UTC))
    s.set_cursor("src", 1, i + 1, 10**9)
    i += 1
"""


def test_hard_kill_mid_write_leaves_store_consistent(tmp_path: Path) -> None:
    db = tmp_path / "k.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE,
                            cwd=Path(__file__).resolve().parents[1])
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    time.sleep(0.5)
    proc.kill()
    proc.wait()
    s = Store(db)
    assert s.integrity_ok()
    n = s.quarantine_count()
    cursor = s.get_cursor("src")
    assert n > 0 and cursor is not None
    # Each committed quarantine row was followed by its cursor write: they differ by at most 1.
    assert cursor[1] in (n, n - 1)
    s.close()


def test_checkpoints_leave_commits_and_run_from_a_worker_thread(tmp_path: Path) -> None:
    import anyio

    from daemon.store import checkpoint_loop

    store = Store(tmp_path / "s.sqlite")
    store.checkpoint_off_path()
    for i in range(1500):  # past SQLite's 1000-page mark: no commit checkpoints now
        with store.transaction(durable=False) as c:
            c.execute("INSERT INTO journal(kind, ts, payload) VALUES('t', ?, ?)",
                      (str(i), "x" * 3000))
    wal, db = Path(f"{tmp_path / 's.sqlite'}-wal"), tmp_path / "s.sqlite"
    assert wal.stat().st_size > 1000 * 4096 and db.stat().st_size < 1500 * 3000

    async def run_once(every_commits: int) -> None:
        with anyio.move_on_after(1.0):
            await checkpoint_loop(store, interval_s=0.2, every_commits=every_commits)

    anyio.run(run_once, 2000)
    assert db.stat().st_size < 1500 * 3000  # fewer commits than asked for: no checkpoint yet
    anyio.run(run_once, 1500)
    assert db.stat().st_size > 1500 * 3000  # the loop copied the WAL into the file
    frames, copied = store.checkpoint()
    assert frames == copied > 0  # everything in the (restarted) WAL is in the database file
    reader = sqlite3.connect(tmp_path / "s.sqlite")
    assert reader.execute("SELECT COUNT(*) FROM journal WHERE kind = 't'").fetchone()[0] == 1500
    reader.close()
    # The WAL was restarted by the checkpoint (its header's checkpoint sequence number moved),
    # not by the writer's next commit, which would fsync the new header on its own path.
    def wal_sequence() -> int:
        return int.from_bytes(wal.read_bytes()[12:16], "big")

    before = wal_sequence()
    with store.transaction(durable=False) as c:
        c.execute("INSERT INTO journal(kind, ts, payload) VALUES('t', 'x', 'y')")
    store.checkpoint()
    restarted = wal_sequence()
    with store.transaction(durable=False) as c:
        c.execute("INSERT INTO journal(kind, ts, payload) VALUES('t', 'x', 'y')")
    assert restarted != before and wal_sequence() == restarted
    store.close()
