"""The state store's schema: numbered migrations (daemon/store.py applies them in order)."""

from __future__ import annotations

# Numbered migrations. Never edit a released one; add a new number.
# Reserved numbers so parallel work does not collide: 2 execution (outbox), 3 pipeline
# (recalibration history), 4 adapters (audit index), 5 run journal, 6 outbox (leaner),
# 7 run epochs, 8 ledger and bar state.
# The migrations released before applied numbers were tracked (a file's user_version said
# which of these it had).
LEGACY_MIGRATIONS = (1, 5)
MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE risk_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        kill_switch INTEGER NOT NULL DEFAULT 0,
        kill_reason TEXT NOT NULL DEFAULT '',
        updated_at TEXT NOT NULL
    );
    CREATE TABLE news_marks (ts TEXT PRIMARY KEY, source TEXT NOT NULL);
    CREATE TABLE quarantine (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        contract TEXT NOT NULL,
        ts TEXT,
        raw TEXT NOT NULL,
        reason TEXT NOT NULL,
        received_at TEXT NOT NULL
    );
    CREATE TABLE replay_cursor (
        source_id TEXT PRIMARY KEY,
        epoch INTEGER NOT NULL,
        next_index INTEGER NOT NULL,
        total INTEGER NOT NULL
    );
    """,
    # --- 2: execution outbox (issue 5; daemon/execution/outbox.py reads and writes it) ---
    2: """
    CREATE TABLE outbox (
        tag TEXT PRIMARY KEY,
        seq INTEGER NOT NULL UNIQUE,
        intent_id TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        contract TEXT NOT NULL,
        bar_ts TEXT NOT NULL,
        side INTEGER NOT NULL,
        size INTEGER NOT NULL,
        target_position INTEGER NOT NULL,
        ref_price REAL NOT NULL,
        limit_price TEXT,
        state TEXT NOT NULL,
        order_id INTEGER,
        attempts INTEGER NOT NULL DEFAULT 0,
        checks INTEGER NOT NULL DEFAULT 0,
        resend_due INTEGER NOT NULL DEFAULT 0,
        outcome TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '',
        filled INTEGER NOT NULL DEFAULT 0,
        fill_price TEXT,
        created_at TEXT NOT NULL,
        sent_at TEXT,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX outbox_state ON outbox(state, seq);
    CREATE INDEX outbox_intent ON outbox(intent_id, epoch);
    CREATE TABLE outbox_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tag TEXT NOT NULL,
        from_state TEXT NOT NULL,
        to_state TEXT NOT NULL,
        event TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        at TEXT NOT NULL
    );
    CREATE INDEX outbox_log_tag ON outbox_log(tag, id);
    """,
    3: """
    CREATE TABLE recalibrations (
        version INTEGER PRIMARY KEY,
        ts TEXT NOT NULL,
        reason TEXT NOT NULL,
        applied INTEGER NOT NULL,
        ece_before REAL,
        ece_after REAL,
        n_fit INTEGER NOT NULL,
        n_holdout INTEGER NOT NULL,
        path TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        artifact_dir TEXT NOT NULL DEFAULT ''
    );
    """,
    # --- 4: adapter audit index (issue 6; adapters/audit.py) ---
    4: """
    CREATE TABLE audit_index (
        id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        ts TEXT NOT NULL,
        cycle INTEGER,
        decision TEXT,
        reason TEXT,
        version TEXT,
        adapter_checksum TEXT,
        anchor_suite_hash TEXT
    );
    CREATE INDEX audit_index_cycle ON audit_index(cycle);
    """,
    5: """
    CREATE TABLE journal (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        ts TEXT NOT NULL,
        payload TEXT NOT NULL
    );
    CREATE INDEX journal_kind ON journal(kind, seq);
    """,
    # --- 6: fewer pages per outbox write (an order's path): the outbox's in-memory view
    # answers what the state and intent indexes served; the transition log is append-only
    # (never deleted from), so its ids stay increasing without AUTOINCREMENT's extra page,
    # and it is read by tag only for reports, where a scan will do ---
    6: """
    DROP INDEX outbox_state;
    DROP INDEX outbox_intent;
    DROP INDEX outbox_log_tag;
    CREATE TABLE outbox_log_v6 (
        id INTEGER PRIMARY KEY,
        tag TEXT NOT NULL,
        from_state TEXT NOT NULL,
        to_state TEXT NOT NULL,
        event TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        at TEXT NOT NULL
    );
    INSERT INTO outbox_log_v6 SELECT id, tag, from_state, to_state, event, detail, at
        FROM outbox_log;
    DROP TABLE outbox_log;
    ALTER TABLE outbox_log_v6 RENAME TO outbox_log;
    DELETE FROM sqlite_sequence WHERE name = 'outbox_log';
    """,
    # --- 7: every run epoch ever taken, so that a replay that starts from its first bar gets an
    # epoch no earlier run in this store used, whatever its source (the customTag holds it) ---
    7: """
    CREATE TABLE run_epochs (
        epoch INTEGER PRIMARY KEY,
        source_id TEXT NOT NULL,
        started_at TEXT NOT NULL
    );
    """,
    # --- 8: the account ledger (daemon/execution/ledger.py): every venue fill it counted, in
    # the order it counted them, and the state that is committed with each bar (ledger books,
    # Trader and pipeline state), so that a restart resumes from the last bar exactly ---
    8: """
    CREATE TABLE ledger_fills (
        seq INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        trade_id INTEGER UNIQUE,
        order_id INTEGER,
        contract TEXT NOT NULL,
        side INTEGER NOT NULL,
        size INTEGER NOT NULL,
        price TEXT NOT NULL,
        fees TEXT NOT NULL,
        at TEXT NOT NULL,
        day TEXT NOT NULL,
        ours INTEGER NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE bar_state (key TEXT PRIMARY KEY, value BLOB NOT NULL);
    """,
}
