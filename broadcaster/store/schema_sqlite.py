"""The SQLite schema and its forward migrations (``schema_postgres`` has the same versions).

``MIGRATIONS[n]`` takes a database from version n to n+1. A database is migrated
forward on open, one transaction per step; a database newer than this code is
refused (downgrades lose data). Times are UTC ISO 8601 text with microseconds and a
Z, so they sort as text.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 0 → 1: the first released schema
    """
    CREATE TABLE alerts (
        id              TEXT PRIMARY KEY,          -- ULID
        template        TEXT NOT NULL,
        template_sha256 TEXT NOT NULL,
        variables       TEXT NOT NULL,             -- JSON object of the values entered
        mode            TEXT NOT NULL CHECK (mode IN ('live', 'exercise')),
        kind            TEXT NOT NULL CHECK (kind IN ('alert', 'update', 'allclear', 'correction')),
        severity        TEXT NOT NULL,
        references_id   TEXT REFERENCES alerts (id),
        created_by      TEXT NOT NULL,
        created_at      TEXT NOT NULL,
        send_at         TEXT,
        hold            TEXT,              -- why deliveries wait: scheduled, awaiting_approval
        idempotency_key TEXT,
        request_hash    TEXT
    );
    CREATE INDEX alerts_references ON alerts (references_id);
    CREATE UNIQUE INDEX alerts_idempotency ON alerts (created_by, idempotency_key)
        WHERE idempotency_key IS NOT NULL;

    CREATE TABLE deliveries (
        id               TEXT PRIMARY KEY,         -- ULID; the idempotency key sent out
        alert_id         TEXT NOT NULL REFERENCES alerts (id),
        channel          TEXT NOT NULL,
        state            TEXT NOT NULL CHECK (state IN
                            ('queued', 'sending', 'delivered', 'failed', 'unknown', 'cancelled')),
        attempts         INTEGER NOT NULL DEFAULT 0,
        headline         TEXT NOT NULL,
        text             TEXT NOT NULL,            -- exactly what is posted
        error            TEXT,
        remote_id        TEXT,
        url              TEXT,
        receipt_extra    TEXT,                     -- JSON: what edit/reply/retract need
        queued_at        TEXT NOT NULL,
        not_before       TEXT,
        first_attempt_at TEXT,
        delivered_at     TEXT,
        updated_at       TEXT NOT NULL,
        UNIQUE (alert_id, channel)
    );
    CREATE INDEX deliveries_due ON deliveries (channel, state, not_before);

    CREATE TABLE attempts (
        delivery_id TEXT NOT NULL REFERENCES deliveries (id),
        number      INTEGER NOT NULL,
        started_at  TEXT NOT NULL,
        duration    REAL,
        result      TEXT,                          -- NULL while under way
        error_class TEXT,
        message     TEXT,
        PRIMARY KEY (delivery_id, number)
    );

    CREATE TABLE users (
        id            TEXT PRIMARY KEY,
        name          TEXT NOT NULL UNIQUE,
        role          TEXT NOT NULL CHECK (role IN ('viewer', 'officer', 'admin')),
        token_hash    TEXT,
        password_hash TEXT,
        disabled      INTEGER NOT NULL DEFAULT 0,
        created_at    TEXT NOT NULL
    );

    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );

    CREATE TABLE audit_events (
        seq       INTEGER PRIMARY KEY,
        at        TEXT NOT NULL,
        actor     TEXT NOT NULL,
        address   TEXT,
        action    TEXT NOT NULL,
        subject   TEXT,
        details   TEXT NOT NULL,                   -- JSON
        prev_hash TEXT NOT NULL,
        hash      TEXT NOT NULL
    );
    """,
    # 1 → 2: web console sessions (survive a restart) and the login throttle
    """
    CREATE TABLE console_sessions (
        id_hash      TEXT PRIMARY KEY,             -- sha256 of the cookie's id; never the id
        user_id      TEXT NOT NULL REFERENCES users (id),
        created_at   TEXT NOT NULL,
        last_seen_at TEXT NOT NULL,
        expires_at   TEXT NOT NULL,                -- idle expiry, moved on while in use
        address      TEXT
    );
    CREATE INDEX console_sessions_user ON console_sessions (user_id);

    CREATE TABLE login_throttle (
        subject      TEXT PRIMARY KEY,             -- 'account:<name>' or 'address:<ip>'
        failures     INTEGER NOT NULL,             -- wrong passwords since window_start
        window_start TEXT NOT NULL,
        locked_until TEXT
    );
    """,
    # 2 → 3: scheduled sends, reminder series, expiry, retention
    """
    ALTER TABLE alerts ADD COLUMN fired_at TEXT;          -- a scheduled alert was released
    ALTER TABLE alerts ADD COLUMN late_seconds REAL;      -- how late (the daemon was down)
    ALTER TABLE alerts ADD COLUMN repeat TEXT;            -- JSON {"every", "until"}: reminders
    ALTER TABLE alerts ADD COLUMN repeat_of TEXT REFERENCES alerts (id);
    ALTER TABLE alerts ADD COLUMN expires_at TEXT;        -- when the template says it lapses
    ALTER TABLE alerts ADD COLUMN expired_at TEXT;        -- it lapsed without an all-clear
    ALTER TABLE alerts ADD COLUMN pruned_at TEXT;         -- texts removed by retention
    CREATE INDEX alerts_hold ON alerts (hold) WHERE hold IS NOT NULL;
    """,
    # 3 → 4: indexes that keep claims, start-up and retention flat as the ledger grows
    """
    CREATE INDEX deliveries_queue ON deliveries (channel, queued_at, id) WHERE state = 'queued';
    CREATE INDEX deliveries_sending ON deliveries (channel) WHERE state = 'sending';
    CREATE INDEX deliveries_active ON deliveries (channel, state)
        WHERE state IN ('queued', 'sending', 'unknown');
    CREATE INDEX alerts_unpruned ON alerts (created_at) WHERE pruned_at IS NULL;
    CREATE INDEX alerts_series ON alerts (id) WHERE repeat IS NOT NULL;
    CREATE INDEX alerts_expiring ON alerts (expires_at)
        WHERE expires_at IS NOT NULL AND expired_at IS NULL;
    CREATE INDEX alerts_repeat_of ON alerts (repeat_of) WHERE repeat_of IS NOT NULL;
    """,
    # 4 → 5: several nodes on one ledger: leases, the node registry, cluster-wide
    # rate budgets, duties that run once in the cluster, shared channel health
    """
    ALTER TABLE deliveries ADD COLUMN lease_node TEXT;    -- the node whose attempt runs
    ALTER TABLE deliveries ADD COLUMN lease_until TEXT;   -- renewed while it runs
    CREATE TABLE nodes (
        name         TEXT PRIMARY KEY,
        instance     TEXT NOT NULL,               -- one process's run, new at each start
        version      TEXT NOT NULL,
        address      TEXT,                        -- where its API listens
        started_at   TEXT NOT NULL,
        last_seen_at TEXT NOT NULL,               -- heartbeat
        stopped_at   TEXT                         -- a clean stop
    );
    CREATE TABLE channel_budgets (
        channel    TEXT PRIMARY KEY,
        tokens     REAL NOT NULL,                 -- messages that may go now (token bucket)
        updated_at TEXT NOT NULL
    );
    CREATE TABLE duties (
        name        TEXT PRIMARY KEY,             -- health:<channel>, retention
        node        TEXT NOT NULL,
        last_run_at TEXT NOT NULL
    );
    CREATE TABLE channel_health (
        channel        TEXT PRIMARY KEY,
        up             INTEGER NOT NULL,
        credentials_ok INTEGER NOT NULL,
        message        TEXT NOT NULL,
        checked_at     TEXT NOT NULL,
        node           TEXT NOT NULL
    );
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
