"""The state store: one SQLite file (WAL) at `<state_dir>/store.sqlite`.

Schema changes are numbered migrations (daemon/store_schema.py) applied in order inside a
transaction, so a crash at any point leaves either the old or the new schema. Every write is
its own transaction with `synchronous=FULL`: once a method returns, the row survives a crash or
power loss. The one exception is the outbox's records and transitions
(`transaction(durable=False)`, see daemon/execution/outbox.py), which survive a process crash
and are recovered from the venue after a power cut. WAL checkpoints run inside commits unless
`checkpoint_loop` runs them in a worker thread (the daemon does, with execution on).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from daemon.store_schema import LEGACY_MIGRATIONS, MIGRATIONS
from daemon.timeutil import iso, parse_utc

CHECKPOINT_INTERVAL_S = 5.0
BUSY_TIMEOUT_S = 10.0  # how long a write waits for another connection's lock
RISK_WRITE_WAIT_S = 0.2  # ... for the risk state (see `impatient`)
_CURSOR_UPSERT = ("INSERT INTO replay_cursor(source_id, epoch, next_index, total) "
                  "VALUES(?, ?, ?, ?) ON CONFLICT(source_id) DO UPDATE SET epoch = "
                  "excluded.epoch, next_index = excluded.next_index, total = excluded.total")
# Commits between two background checkpoints. A checkpoint makes the next commit restart the
# WAL and, run beside it, competes with it: at SQLite's own pace (about its 1000-page mark),
# not on a clock, so that it touches few orders.
CHECKPOINT_COMMITS = 200


class Store:
    """Typed access to the state store. Use from one thread (the event loop's)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_S)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self._synchronous_full = True
        # Every write goes through this one cursor: `conn.execute` makes a cursor per call and
        # the sqlite3 module keeps a weak reference to each, GC-tracked objects that pile up
        # and make a garbage collection fall due inside some order's write.
        self._writer = self.conn.cursor()
        self._checkpoint_conn: sqlite3.Connection | None = None
        self.commits = 0  # write transactions committed through `transaction`
        self.bar_writers: dict[str, Callable[[], bytes | None]] = {}
        self.before_commit: list[Callable[[], None]] = []
        self._bar_journal: list[tuple[str, str, str]] = []
        self.checkpointed_at = 0  # `commits` when the last checkpoint started
        self.conn.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    # -- plumbing -------------------------------------------------------------------------
    @contextmanager
    def transaction(self, durable: bool = True) -> Iterator[sqlite3.Cursor]:
        """A write transaction on the store's one write cursor: committed on exit, rolled back
        on any exception.

        `durable=False` commits with `synchronous=NORMAL` (WAL: the commit survives a crash of
        the process but may be lost to a power cut until the next durable commit, which fsyncs
        the WAL and so makes it durable too). Only for writes whose loss the caller can
        recover from (see daemon/execution/outbox.py); everything else stays FULL."""
        w = self._writer
        if durable != self._synchronous_full:  # every write comes through here and sets it
            w.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._synchronous_full = durable
        w.execute("BEGIN IMMEDIATE")
        try:
            yield w
        except BaseException:
            w.execute("ROLLBACK")
            raise
        w.execute("COMMIT")
        self.commits += 1

    def schema_version(self) -> int:
        """The highest migration applied."""
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def applied_migrations(self) -> set[int]:
        """Numbers of the migrations applied to this file."""
        return {int(r[0]) for r in self.conn.execute("SELECT version FROM schema_migrations")}

    def _migrate(self) -> None:
        # Migration numbers were reserved per component and land in any order, so a store at
        # version 5 may still lack 2-4: apply every missing number, not only the higher ones.
        self.conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER "
                          "PRIMARY KEY)")
        applied = self.applied_migrations()
        if not applied and self.schema_version() > 0:
            # A file from before this table: it holds the migrations that existed then.
            applied = {v for v in LEGACY_MIGRATIONS if v <= self.schema_version()}
            with self.transaction() as c:
                c.executemany("INSERT INTO schema_migrations(version) VALUES(?)",
                              [(v,) for v in sorted(applied)])
        for version in sorted(set(MIGRATIONS) - applied):
            with self.transaction() as c:
                for statement in MIGRATIONS[version].split(";"):
                    if statement.strip():
                        c.execute(statement)
                c.execute("INSERT INTO schema_migrations(version) VALUES(?)", (version,))
                c.execute(f"PRAGMA user_version = {max(version, self.schema_version())}")

    def integrity_ok(self) -> bool:
        """True when SQLite's own integrity check passes."""
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        """Checkpoint the WAL and close."""
        try:
            if self._checkpoint_conn is not None:
                self._checkpoint_conn.close()
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self.conn.close()

    def checkpoint_off_path(self) -> None:
        """Stop checkpointing the WAL inside commits (SQLite does it every 1000 pages, in the
        commit that crosses the mark: an fsync of the database file, milliseconds, on whatever
        write is unlucky, an order's included); `checkpoint_loop` does it instead."""
        self.conn.execute("PRAGMA wal_autocheckpoint=0")

    def checkpoint(self) -> tuple[int, int]:
        """Copy the WAL into the database file (PASSIVE: it neither waits for nor blocks the
        writer); (frames in the WAL, frames copied). Its own connection, so it may run in a
        worker thread beside the writer. When everything was copied it also restarts the WAL
        (a one-row write to `meta`): the first commit after a complete checkpoint rewrites the
        WAL header and fsyncs it, even with synchronous=NORMAL, which put 0.4 ms into
        whichever order's commit came next."""
        if str(self.path) == ":memory:":
            return 0, 0
        self.checkpointed_at = self.commits
        conn = self._checkpoint_conn
        if conn is None:
            conn = self._checkpoint_conn = sqlite3.connect(
                self.path, isolation_level=None, timeout=10.0, check_same_thread=False)
            conn.execute("PRAGMA synchronous=NORMAL")
        _, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if frames > 0 and frames == copied:
            conn.execute("INSERT INTO meta(key, value) VALUES('wal_restarted_at', "
                         "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value")
        return int(frames), int(copied)

    # -- meta -----------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT INTO meta(key, value) VALUES(?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def instance_id(self) -> str:
        """This installation's id: made once, then the same for every restart."""
        existing = self.get_meta("instance_id")
        if existing:
            return existing
        new = uuid.uuid4().hex[:10]
        with self.transaction() as c:
            c.execute("INSERT OR IGNORE INTO meta(key, value) VALUES('instance_id', ?)", (new,))
        return self.get_meta("instance_id") or new

    # -- risk state ----------------------------------------------------------------------
    def load_kill_switch(self) -> tuple[bool, str]:
        row = self.conn.execute("SELECT kill_switch, kill_reason FROM risk_state").fetchone()
        return (False, "") if row is None else (bool(row[0]), row[1])

    @contextmanager
    def impatient(self, wait_s: float = RISK_WRITE_WAIT_S) -> Iterator[None]:
        """Writes inside wait at most `wait_s` for a lock held by another connection (then
        raise sqlite3.OperationalError) instead of the store's usual 10 s: for writes that a
        caller must not be held up by (the kill switch is in force before it is written)."""
        self.conn.execute(f"PRAGMA busy_timeout = {int(wait_s * 1000)}")
        try:
            yield
        finally:
            self.conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")

    def save_kill_switch(self, on: bool, reason: str, at: datetime) -> None:
        with self.impatient(), self.transaction() as c:
            c.execute(
                "INSERT INTO risk_state(id, kill_switch, kill_reason, updated_at) "
                "VALUES(1, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                "kill_switch = excluded.kill_switch, kill_reason = excluded.kill_reason, "
                "updated_at = excluded.updated_at",
                (int(on), reason, iso(at)),
            )

    def add_news_mark(self, ts: datetime, source: str) -> None:
        with self.impatient(), self.transaction() as c:
            c.execute("INSERT OR IGNORE INTO news_marks(ts, source) VALUES(?, ?)",
                      (iso(ts), source))

    def news_marks(self) -> list[datetime]:
        rows = self.conn.execute("SELECT ts FROM news_marks ORDER BY ts").fetchall()
        return [parse_utc(r[0]) for r in rows]

    # -- quarantine ----------------------------------------------------------------------
    def quarantine(self, contract: str, ts: str | None, raw: Any, reason: str,
                   received_at: datetime) -> None:
        """Keep a refused bar with its reason (never dropped silently)."""
        payload = orjson.dumps(raw, default=str).decode()
        with self.transaction() as c:
            c.execute(
                "INSERT INTO quarantine(contract, ts, raw, reason, received_at) "
                "VALUES(?, ?, ?, ?, ?)",
                (contract, ts, payload, reason, iso(received_at)),
            )

    def quarantined(self) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM quarantine ORDER BY id").fetchall()
        return [dict(r) for r in rows]

    def quarantine_count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0])

    # -- replay cursor and run epochs ----------------------------------------------------
    def new_epoch(self, source_id: str) -> int:
        """Take a run epoch for a replay that starts from its first bar: greater than every
        epoch this store ever recorded (taken epochs, replay cursors, outbox records), whatever
        the source, and recorded before it is returned, so no later call gives it again."""
        with self.transaction() as c:
            row = c.execute(
                "SELECT MAX(e) FROM (SELECT MAX(epoch) AS e FROM run_epochs"
                " UNION ALL SELECT MAX(epoch) FROM replay_cursor"
                " UNION ALL SELECT MAX(epoch) FROM outbox)").fetchone()
            epoch = int(row[0] or 0) + 1
            c.execute("INSERT INTO run_epochs(epoch, source_id, started_at) VALUES(?, ?, "
                      "strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))", (epoch, source_id))
        return epoch

    def get_cursor(self, source_id: str) -> tuple[int, int, int] | None:
        """(epoch, next_index, total) of a replay, or None if it never ran."""
        row = self.conn.execute(
            "SELECT epoch, next_index, total FROM replay_cursor WHERE source_id = ?",
            (source_id,),
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def set_cursor(self, source_id: str, epoch: int, next_index: int, total: int) -> None:
        with self.transaction() as c:
            c.execute(_CURSOR_UPSERT, (source_id, epoch, next_index, total))

    # -- run journal (what the run report is rebuilt from) -----------------------------------
    def journal(self, kind: str, ts: datetime, payload: dict[str, Any]) -> None:
        """Append one record of what happened in the run (a bar, a cycle, a canary step...)."""
        with self.transaction() as c:
            c.execute("INSERT INTO journal(kind, ts, payload) VALUES(?, ?, ?)",
                      (kind, iso(ts), orjson.dumps(payload, default=str).decode()))

    # -- the bar commit: what a bar changed, written in one transaction ------------------------
    def journal_bar(self, kind: str, ts: datetime, payload: dict[str, Any]) -> None:
        """A journal record of the bar being handled, written with the bar's commit (so a bar
        handled again after a crash does not leave it twice)."""
        self._bar_journal.append((kind, iso(ts), orjson.dumps(payload, default=str).decode()))

    def commit_bar(self, cursor: tuple[str, int, int, int] | None = None) -> None:
        """Commit the bar just handled: after the `before_commit` hooks (work the bar left to
        do that changes state), its journal records, the current value of every bar state
        writer (`bar_writers`: key -> function returning bytes, or None for no change) and the
        replay cursor (source id, epoch, next index, total), all in one durable
        transaction: after a crash the store holds every part of a bar, or none."""
        for hook in self.before_commit:
            hook()
        states = [(key, value) for key, write in self.bar_writers.items()
                  if (value := write()) is not None]
        with self.transaction() as c:
            if self._bar_journal:
                c.executemany("INSERT INTO journal(kind, ts, payload) VALUES(?, ?, ?)",
                              self._bar_journal)
            if states:
                c.executemany("INSERT INTO bar_state(key, value) VALUES(?, ?) ON CONFLICT(key) "
                              "DO UPDATE SET value = excluded.value", states)
            if cursor is not None:
                c.execute(_CURSOR_UPSERT, cursor)
        self._bar_journal.clear()

    def bar_state(self, key: str) -> bytes | None:
        """The value a bar state writer committed last under `key` (None if never)."""
        row = self.conn.execute("SELECT value FROM bar_state WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def journal_rows(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Journal records in order, each as {seq, kind, ts, **payload}."""
        if kind is None:
            rows = self.conn.execute("SELECT * FROM journal ORDER BY seq").fetchall()
        else:
            rows = self.conn.execute("SELECT * FROM journal WHERE kind = ? ORDER BY seq",
                                     (kind,)).fetchall()
        return [{"seq": r["seq"], "kind": r["kind"], "ts": r["ts"], **orjson.loads(r["payload"])}
                for r in rows]

    # -- audit index (issue 6): one row per audit record of the adapter worker -------------
    def index_audit(self, record: dict[str, Any]) -> None:
        """Index one audit record (the JSONL file under <state_dir>/audit/ is the source)."""
        self._ensure_audit_table()
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO audit_index(id, seq, kind, ts, cycle, decision, reason,"
                " version, adapter_checksum, anchor_suite_hash)"
                " VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record["id"], int(record["seq"]), record.get("kind", "candidate"),
                 record["ts"], record.get("cycle"), record.get("decision"),
                 record.get("reason"), record.get("version"), record.get("adapter_checksum"),
                 record.get("anchor_suite_hash")),
            )

    def audit_index(self) -> list[dict[str, Any]]:
        """The indexed audit records in order."""
        self._ensure_audit_table()
        rows = self.conn.execute("SELECT * FROM audit_index ORDER BY seq").fetchall()
        return [dict(r) for r in rows]

    def _ensure_audit_table(self) -> None:
        # A store created before migration 4 existed is already past version 4: create the
        # table here (same DDL) instead of renumbering a released migration.
        exists = self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                   "name = 'audit_index'").fetchone()
        if exists is None:
            with self.transaction() as c:
                for statement in MIGRATIONS[4].split(";"):
                    if statement.strip():
                        c.execute(statement)
    # -- recalibration history (issue 4, migration 3) ------------------------------------------
    def add_recalibration(self, *, ts: datetime, reason: str, applied: bool,
                          ece_before: float | None, ece_after: float | None, n_fit: int,
                          n_holdout: int, path: str, sha256: str, artifact_dir: str = "") -> int:
        """Record one recalibration attempt (applied or not); returns its version number
        (1, 2, ... in order, never reused)."""
        with self.transaction() as c:
            row = c.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM recalibrations").fetchone()
            version = int(row[0])
            c.execute(
                "INSERT INTO recalibrations(version, ts, reason, applied, ece_before, ece_after,"
                " n_fit, n_holdout, path, sha256, artifact_dir)"
                " VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (version, iso(ts), reason, int(applied), ece_before, ece_after, n_fit,
                 n_holdout, path, sha256, artifact_dir),
            )
        return version

    def next_recalibration_version(self) -> int:
        """The version number the next recalibration will get."""
        row = self.conn.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM recalibrations")
        return int(row.fetchone()[0])

    def recalibrations(self) -> list[dict[str, Any]]:
        """All recalibration records, oldest first."""
        rows = self.conn.execute("SELECT * FROM recalibrations ORDER BY version").fetchall()
        return [dict(r) | {"applied": bool(r["applied"])} for r in rows]


async def checkpoint_loop(store: Store, interval_s: float = CHECKPOINT_INTERVAL_S,
                          every_commits: int = CHECKPOINT_COMMITS) -> None:
    """Keep the WAL short off the hot path: every `interval_s` (wall time), once at least
    `every_commits` commits were made since the last checkpoint, checkpoint in a worker
    thread; until cancelled. Turns off the in-commit checkpoints (`checkpoint_off_path`)."""
    import anyio

    store.checkpoint_off_path()
    while True:
        await anyio.sleep(interval_s)
        if store.commits - store.checkpointed_at >= every_commits:
            await anyio.to_thread.run_sync(store.checkpoint)
