"""The PostgreSQL schema and its forward migrations, version for version as SQLite's.

``MIGRATIONS[n]`` takes a database from version n to n+1; the version is kept in
``meta`` (key ``schema_version``). The tables match the SQLite schema column for
column, with PostgreSQL's own types: times are ``timestamptz`` (the backend reads
them back in the ledger's text form), flags are ``boolean``, JSON stays the exact
text that was stored. Keys and names use the "C" collation, so ULIDs and names sort
by their bytes as in SQLite, whatever the database's locale. The audit trail keeps
``at`` as the exact text its hash covers.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 0 → 1: the first released schema
    """
    CREATE TABLE alerts (
        id              text COLLATE "C" PRIMARY KEY,   -- ULID
        template        text NOT NULL,
        template_sha256 text NOT NULL,
        variables       text NOT NULL,                  -- JSON object of the values entered
        mode            text NOT NULL CHECK (mode IN ('live', 'exercise')),
        kind            text NOT NULL
                        CHECK (kind IN ('alert', 'update', 'allclear', 'correction')),
        severity        text NOT NULL,
        references_id   text COLLATE "C" REFERENCES alerts (id),
        created_by      text NOT NULL,
        created_at      timestamptz NOT NULL,
        send_at         timestamptz,
        hold            text,       -- why deliveries wait: scheduled, awaiting_approval
        idempotency_key text,
        request_hash    text
    );
    CREATE INDEX alerts_references ON alerts (references_id);
    CREATE UNIQUE INDEX alerts_idempotency ON alerts (created_by, idempotency_key)
        WHERE idempotency_key IS NOT NULL;

    CREATE TABLE deliveries (
        id               text COLLATE "C" PRIMARY KEY,  -- ULID; the idempotency key sent out
        alert_id         text COLLATE "C" NOT NULL REFERENCES alerts (id),
        channel          text COLLATE "C" NOT NULL,
        state            text NOT NULL CHECK (state IN
                            ('queued', 'sending', 'delivered', 'failed', 'unknown', 'cancelled')),
        attempts         integer NOT NULL DEFAULT 0,
        headline         text NOT NULL,
        text             text NOT NULL,                 -- exactly what is posted
        error            text,
        remote_id        text,
        url              text,
        receipt_extra    text,                          -- JSON: what edit/reply/retract need
        queued_at        timestamptz NOT NULL,
        not_before       timestamptz,
        first_attempt_at timestamptz,
        delivered_at     timestamptz,
        updated_at       timestamptz NOT NULL,
        UNIQUE (alert_id, channel)
    );
    CREATE INDEX deliveries_due ON deliveries (channel, state, not_before);

    CREATE TABLE attempts (
        delivery_id text COLLATE "C" NOT NULL REFERENCES deliveries (id),
        number      integer NOT NULL,
        started_at  timestamptz NOT NULL,
        duration    double precision,
        result      text,                               -- NULL while under way
        error_class text,
        message     text,
        PRIMARY KEY (delivery_id, number)
    );

    CREATE TABLE users (
        id            text COLLATE "C" PRIMARY KEY,
        name          text COLLATE "C" NOT NULL UNIQUE,
        role          text NOT NULL CHECK (role IN ('viewer', 'officer', 'admin')),
        token_hash    text,
        password_hash text,
        disabled      boolean NOT NULL DEFAULT false,
        created_at    timestamptz NOT NULL
    );

    CREATE TABLE meta (
        key   text PRIMARY KEY,
        value text NOT NULL
    );

    CREATE TABLE audit_events (
        seq       bigint PRIMARY KEY,
        at        text NOT NULL,                        -- exactly the text the hash covers
        actor     text NOT NULL,
        address   text,
        action    text NOT NULL,
        subject   text,
        details   text NOT NULL,                        -- JSON, canonical
        prev_hash text NOT NULL,
        hash      text NOT NULL
    );
    """,
    # 1 → 2: web console sessions (survive a restart) and the login throttle
    """
    CREATE TABLE console_sessions (
        id_hash      text PRIMARY KEY,                  -- sha256 of the cookie's id
        user_id      text COLLATE "C" NOT NULL REFERENCES users (id),
        created_at   timestamptz NOT NULL,
        last_seen_at timestamptz NOT NULL,
        expires_at   timestamptz NOT NULL,              -- idle expiry, moved on while in use
        address      text
    );
    CREATE INDEX console_sessions_user ON console_sessions (user_id);

    CREATE TABLE login_throttle (
        subject      text PRIMARY KEY,                  -- 'account:<name>' or 'address:<ip>'
        failures     integer NOT NULL,                  -- wrong passwords since window_start
        window_start timestamptz NOT NULL,
        locked_until timestamptz
    );
    """,
    # 2 → 3: scheduled sends, reminder series, expiry, retention
    """
    ALTER TABLE alerts ADD COLUMN fired_at timestamptz;
    ALTER TABLE alerts ADD COLUMN late_seconds double precision;
    ALTER TABLE alerts ADD COLUMN repeat text;          -- JSON {"every", "until"}: reminders
    ALTER TABLE alerts ADD COLUMN repeat_of text COLLATE "C" REFERENCES alerts (id);
    ALTER TABLE alerts ADD COLUMN expires_at timestamptz;
    ALTER TABLE alerts ADD COLUMN expired_at timestamptz;
    ALTER TABLE alerts ADD COLUMN pruned_at timestamptz;
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
    ALTER TABLE deliveries ADD COLUMN lease_node text COLLATE "C";
    ALTER TABLE deliveries ADD COLUMN lease_until timestamptz;
    CREATE TABLE nodes (
        name         text COLLATE "C" PRIMARY KEY,
        instance     text NOT NULL,
        version      text NOT NULL,
        address      text,
        started_at   timestamptz NOT NULL,
        last_seen_at timestamptz NOT NULL,
        stopped_at   timestamptz
    );
    CREATE TABLE channel_budgets (
        channel    text COLLATE "C" PRIMARY KEY,
        tokens     double precision NOT NULL,
        updated_at timestamptz NOT NULL
    );
    CREATE TABLE duties (
        name        text COLLATE "C" PRIMARY KEY,
        node        text NOT NULL,
        last_run_at timestamptz NOT NULL
    );
    CREATE TABLE channel_health (
        channel        text COLLATE "C" PRIMARY KEY,
        up             boolean NOT NULL,
        credentials_ok boolean NOT NULL,
        message        text NOT NULL,
        checked_at     timestamptz NOT NULL,
        node           text NOT NULL
    );
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
