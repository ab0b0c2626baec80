-- The staging folder of a batch run's Spark job (`…/_braid_staging/run-N`), recorded before
-- the job starts and cleared once the folder is removed: Braid removes only folders recorded
-- here, and the next run removes those a dead run left behind.
ALTER TABLE braid_internal.batch_runs ADD COLUMN staging_uri text;
