-- Braid's metadata, in the schema braid_internal. (Not `braid`: a role named braid would find
-- that schema first on its search_path and miss sqlx's migration table.) Per-view speed and
-- batch tables are created at run time from the view definitions (schemas::pg_layout); merged
-- views for BI tools live in the `serving` schema.

CREATE SCHEMA IF NOT EXISTS braid_internal;
CREATE SCHEMA IF NOT EXISTS serving;

-- The speed layer's next offset per partition, written in the same transaction as its
-- aggregate deltas. This is the only source of the speed layer's consumer positions.
CREATE TABLE braid_internal.speed_positions (
    topic       text        NOT NULL,
    partition   integer     NOT NULL CHECK (partition >= 0),
    next_offset bigint      NOT NULL CHECK (next_offset >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);

-- The current epoch: one row. Flushes hold it FOR SHARE; a cut holds it FOR UPDATE.
CREATE TABLE braid_internal.epoch (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    current_epoch bigint  NOT NULL DEFAULT 1 CHECK (current_epoch >= 1)
);
INSERT INTO braid_internal.epoch DEFAULT VALUES;

-- cut(e, p): the speed layer's next offset of partition p when epoch e was closed.
CREATE TABLE braid_internal.cuts (
    epoch      bigint      NOT NULL,
    topic      text        NOT NULL,
    partition  integer     NOT NULL,
    cut_offset bigint      NOT NULL,
    taken_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (epoch, topic, partition)
);

-- Records refused by validation, with their reason and position. Never silently dropped.
CREATE TABLE braid_internal.dead_letters (
    id          bigserial   PRIMARY KEY,
    layer       text        NOT NULL CHECK (layer IN ('speed', 'sink')),
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    reason_code text        NOT NULL,
    reason      text        NOT NULL,
    payload     bytea       NOT NULL,
    payload_len integer     NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (layer, topic, partition, "offset")
);
CREATE INDEX dead_letters_reason ON braid_internal.dead_letters (reason_code);

-- One row per batch recompute of one view definition.
CREATE TABLE braid_internal.batch_runs (
    run_id        bigserial   PRIMARY KEY,
    view_name     text        NOT NULL,
    fingerprint   text        NOT NULL,
    status        text        NOT NULL CHECK (status IN ('running', 'active', 'superseded', 'failed')),
    cut_epoch     bigint,
    covered_epoch bigint,
    delta_version bigint,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    rows_read     bigint,
    rows_written  bigint,
    error         text
);
CREATE UNIQUE INDEX batch_runs_one_active ON braid_internal.batch_runs (view_name, fingerprint) WHERE status = 'active';

-- History of scheduled and triggered jobs (batch, compact, vacuum, replays).
CREATE TABLE braid_internal.job_runs (
    id            bigserial   PRIMARY KEY,
    job           text        NOT NULL,
    trigger       text        NOT NULL DEFAULT 'schedule',
    status        text        NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    delta_version bigint,
    cut_epoch     bigint,
    rows_read     bigint,
    rows_written  bigint,
    progress      jsonb,
    error         text
);
CREATE INDEX job_runs_recent ON braid_internal.job_runs (job, started_at DESC);
