-- The newest event time each partition's flushes have covered: the API reports it as the
-- speed layer's freshness.
ALTER TABLE braid_internal.speed_positions ADD COLUMN newest_event_time timestamptz;
