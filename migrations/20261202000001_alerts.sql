-- Alerts (schemas::pg::alerts owns these tables). An instance is one rule and one value of its
-- group fields; every change of its state is a transition; every transition is delivered to
-- each of the rule's receivers at least once, recorded per receiver with its attempts.
CREATE TABLE braid_internal.alert_instances (
    fingerprint        text             PRIMARY KEY,
    rule               text             NOT NULL,
    labels             jsonb            NOT NULL,
    state              text             NOT NULL CHECK (state IN ('pending', 'firing', 'resolved', 'inactive')),
    value              double precision,
    active_since       timestamptz,
    last_true_at       timestamptz,
    last_transition_id bigint,
    evaluated_at       timestamptz      NOT NULL
);
CREATE INDEX alert_instances_rule ON braid_internal.alert_instances (rule);

CREATE TABLE braid_internal.alert_transitions (
    id           bigserial        PRIMARY KEY,
    fingerprint  text             NOT NULL,
    rule         text             NOT NULL,
    labels       jsonb            NOT NULL,
    from_state   text             NOT NULL,
    to_state     text             NOT NULL,
    value        double precision,
    metric       text             NOT NULL,
    op           text             NOT NULL,
    threshold    double precision NOT NULL,
    window_start timestamptz      NOT NULL,
    window_end   timestamptz      NOT NULL,
    batch        jsonb,
    speed        jsonb            NOT NULL,
    at           timestamptz      NOT NULL
);
CREATE INDEX alert_transitions_rule ON braid_internal.alert_transitions (rule, id);

CREATE TABLE braid_internal.alert_deliveries (
    transition_id   bigint      NOT NULL REFERENCES braid_internal.alert_transitions (id) ON DELETE CASCADE,
    receiver        text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('pending', 'delivered', 'silenced')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    delivered_at    timestamptz,
    PRIMARY KEY (transition_id, receiver)
);
CREATE INDEX alert_deliveries_due ON braid_internal.alert_deliveries (receiver, next_attempt_at)
    WHERE status = 'pending';

CREATE TABLE braid_internal.alert_silences (
    rule       text        PRIMARY KEY,
    until      timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The last evaluation of each rule and the merged answer's provenance it read.
CREATE TABLE braid_internal.alert_evaluations (
    rule         text        PRIMARY KEY,
    evaluated_at timestamptz NOT NULL,
    evaluations  bigint      NOT NULL,
    batch        jsonb,
    speed        jsonb       NOT NULL,
    instances    integer     NOT NULL
);
