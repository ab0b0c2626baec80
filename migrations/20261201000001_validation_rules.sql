-- The validation rules recorded for each topic (schemas::validation_rules): every setting that
-- decides whether a record is valid. The speed layer and the sink refuse to run rules that
-- differ, so both layers always accept the same records; `braid migrate` records a changed
-- config's rules, and the first layer to start records them when none are.
CREATE TABLE braid_internal.validation_rules (
    topic       text        PRIMARY KEY,
    fingerprint text        NOT NULL,
    rules       jsonb       NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
