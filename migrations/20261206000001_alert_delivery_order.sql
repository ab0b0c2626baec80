-- One instance's transitions by id: a delivery waits for the same instance's earlier ones to the
-- same receiver (schemas::pg::alerts::due_deliveries), and a silence's end compares an
-- instance's state with the last one delivered (release_silenced).
CREATE INDEX alert_transitions_fingerprint ON braid_internal.alert_transitions (fingerprint, id);
