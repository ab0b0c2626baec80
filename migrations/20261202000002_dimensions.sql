-- Dimensions followed from a compacted Kafka topic: the next offset per partition, written in
-- the same transaction as the rows it covers (schemas::pg::dimensions owns it). A message a
-- follower refuses is a dead letter of layer 'dimension'.
CREATE TABLE braid_internal.dimension_positions (
    dimension   text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dimension, topic, partition)
);

ALTER TABLE braid_internal.dead_letters DROP CONSTRAINT dead_letters_layer_check;
ALTER TABLE braid_internal.dead_letters ADD CONSTRAINT dead_letters_layer_check
    CHECK (layer IN ('speed', 'sink', 'dimension'));
