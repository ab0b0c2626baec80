-- Every view definition (name and fingerprint) `braid migrate` has seen. A definition first
-- seen after the pipeline had consumed records lacks that history in its speed rows: it is
-- "backfilling" until a batch run of that fingerprint is active (batch runs read the whole lake).
CREATE TABLE braid_internal.view_definitions (
    view_name      text        NOT NULL,
    fingerprint    text        NOT NULL,
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    needs_backfill boolean     NOT NULL,
    PRIMARY KEY (view_name, fingerprint)
);
