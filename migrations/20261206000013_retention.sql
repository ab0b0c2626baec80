-- Bounded growth (issue 35, item 13).
-- An evaluation reads the live instances of its rule (partial index) and the keys it read
-- (primary key); /v1/alerts pages in (rule, fingerprint) order.
CREATE INDEX alert_instances_live ON braid_internal.alert_instances (rule)
    WHERE state IN ('pending', 'firing');
CREATE INDEX alert_instances_rule_fingerprint ON braid_internal.alert_instances (rule, fingerprint);
DROP INDEX braid_internal.alert_instances_rule;
-- The prune job: old resolved and inactive instances, old transitions (not the last of an
-- instance still stored), old dead letters.
CREATE INDEX alert_instances_prunable ON braid_internal.alert_instances (evaluated_at)
    WHERE state IN ('resolved', 'inactive');
CREATE INDEX alert_instances_last_transition ON braid_internal.alert_instances (last_transition_id);
CREATE INDEX alert_transitions_at ON braid_internal.alert_transitions (at);
CREATE INDEX dead_letters_received_at ON braid_internal.dead_letters (received_at);

-- Dead letters counted per layer and reason, kept in the transaction of every insert and
-- every prune (schemas::pg::dead_letters), so that GET /v1/dead-letters reads a few rows.
CREATE TABLE braid_internal.dead_letter_counts (
    layer       text        NOT NULL,
    reason_code text        NOT NULL,
    count       bigint      NOT NULL CHECK (count >= 0),
    newest      timestamptz NOT NULL,
    PRIMARY KEY (layer, reason_code)
);
INSERT INTO braid_internal.dead_letter_counts (layer, reason_code, count, newest)
SELECT layer, reason_code, count(*), max(received_at)
FROM braid_internal.dead_letters GROUP BY layer, reason_code;
