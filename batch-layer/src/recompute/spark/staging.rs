//! The staging folder of a Spark job: where it is, what it holds, and its removal.
//!
//! A job's folder is `<batch.spark.staging_uri or lake.uri>/_braid_staging/run-<N>`, N the
//! run's id, and it is recorded on the run (`batch_runs.staging_uri`) before the job starts.
//! Removal reads the folder from that record only and refuses (a typed error, nothing deleted)
//! any that does not end in `_braid_staging/run-<N>` of the run that recorded it: whatever a
//! URI's scheme, Braid deletes nothing it did not create.

use std::collections::HashMap;

use futures::TryStreamExt as _;
use object_store::{ObjectStore as _, ObjectStoreExt as _};
use schemas::lake_uri::LakeUri;
use schemas::pg::batch_runs;
use sqlx::PgPool;

use super::super::BatchError;

/// The folder that holds every job's staging folder.
pub const STAGING_DIR: &str = "_braid_staging";

/// The file a job writes last, beside the views' folders: what it read and wrote.
pub const MANIFEST: &str = "_braid_manifest.json";

/// A job's staging folder: `…/_braid_staging/run-<run_id>`, checked on construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagingFolder {
    uri: LakeUri,
    run_id: i64,
}

impl StagingFolder {
    /// The folder of run `run_id`: under `staging_uri`, or under `lake_uri` when it is empty.
    pub fn for_run(lake_uri: &str, staging_uri: &str, run_id: i64) -> Result<Self, BatchError> {
        let (key, root) = if staging_uri.trim().is_empty() {
            ("lake.uri", lake_uri)
        } else {
            ("batch.spark.staging_uri", staging_uri)
        };
        let root = LakeUri::parse(root).map_err(|source| BatchError::LakeUri { key, source })?;
        Ok(Self {
            uri: root.join(STAGING_DIR).join(&format!("run-{run_id}")),
            run_id,
        })
    }

    /// The folder recorded on run `run_id`, if it is one Braid creates for that run.
    pub fn recorded(recorded: &str, run_id: i64) -> Result<Self, BatchError> {
        let refused = |reason: &'static str| BatchError::StagingRefused {
            uri: recorded.to_string(),
            reason,
        };
        let uri = LakeUri::parse(recorded).map_err(|_| refused("it is not a lake URI"))?;
        if uri.last_segment() != format!("run-{run_id}") {
            return Err(refused("it is not named after the run that recorded it"));
        }
        if uri.parent().as_ref().map(LakeUri::last_segment) != Some(STAGING_DIR) {
            return Err(refused("it is not inside a `_braid_staging` folder"));
        }
        Ok(Self { uri, run_id })
    }

    /// The folder.
    pub fn uri(&self) -> &LakeUri {
        &self.uri
    }

    /// The run it belongs to.
    pub fn run_id(&self) -> i64 {
        self.run_id
    }

    /// The folder of `view`'s rows.
    pub fn view(&self, view: &str) -> LakeUri {
        self.uri.join(view)
    }

    /// The job's manifest.
    pub fn manifest(&self) -> LakeUri {
        self.uri.join(MANIFEST)
    }
}

/// The S3 store of `bucket`, configured as delta-rs and Polars configure theirs: the `AWS_*`
/// environment, then the table's storage options.
fn store(
    bucket: &str,
    options: &HashMap<String, String>,
) -> Result<object_store::aws::AmazonS3, BatchError> {
    let builder = crate::lake::store::s3_config(options).into_iter().fold(
        object_store::aws::AmazonS3Builder::from_env(),
        |builder, (key, value)| builder.with_config(key, value),
    );
    builder
        .with_bucket_name(bucket)
        .build()
        .map_err(|source| BatchError::Staging {
            operation: format!("opening the bucket {bucket}"),
            source,
        })
}

/// Every object strictly inside `key/` of `bucket`.
async fn list(
    bucket: &str,
    key: &str,
    options: &HashMap<String, String>,
) -> Result<(object_store::aws::AmazonS3, Vec<object_store::ObjectMeta>), BatchError> {
    let store = store(bucket, options)?;
    let prefix = object_store::path::Path::from(key);
    let inside = format!("{key}/");
    let listed: Vec<object_store::ObjectMeta> = store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|source| BatchError::Staging {
            operation: format!("listing s3://{bucket}/{key}"),
            source,
        })?;
    // object_store lists `key/…` only; checked again, since deletion follows.
    let listed = listed
        .into_iter()
        .filter(|m| m.location.as_ref().starts_with(&inside))
        .collect();
    Ok((store, listed))
}

/// The Parquet part files in `folder`, as paths or `s3://` URIs Polars reads; `None` when the
/// folder does not exist.
pub async fn part_files(
    folder: &LakeUri,
    options: &HashMap<String, String>,
) -> Result<Option<Vec<String>>, BatchError> {
    let is_part = |name: &str| name.starts_with("part-") && name.ends_with(".parquet");
    let mut files: Vec<String> = match folder {
        LakeUri::Local { path, .. } => {
            let entries = match std::fs::read_dir(path) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(source) => {
                    return Err(BatchError::SparkFiles {
                        operation: format!("listing {folder}"),
                        source,
                    });
                }
            };
            entries
                .filter_map(Result::ok)
                .filter(|e| is_part(&e.file_name().to_string_lossy()))
                .map(|e| e.path().to_string_lossy().into_owned())
                .collect()
        }
        LakeUri::S3 { bucket, key, .. } => {
            let (_, listed) = list(bucket, key, options).await?;
            if listed.is_empty() {
                return Ok(None);
            }
            listed
                .into_iter()
                .filter(|m| m.location.filename().is_some_and(is_part))
                .map(|m| format!("s3://{bucket}/{}", m.location))
                .collect()
        }
    };
    files.sort();
    Ok(Some(files))
}

/// The contents of the file `uri`; `None` when it does not exist.
pub async fn read(
    uri: &LakeUri,
    options: &HashMap<String, String>,
) -> Result<Option<Vec<u8>>, BatchError> {
    match uri {
        LakeUri::Local { path, .. } => match std::fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(BatchError::SparkFiles {
                operation: format!("reading {uri}"),
                source,
            }),
        },
        LakeUri::S3 { bucket, key, .. } => {
            let failed = |source| BatchError::Staging {
                operation: format!("reading {uri}"),
                source,
            };
            let store = store(bucket, options)?;
            match store
                .get(&object_store::path::Path::from(key.as_str()))
                .await
            {
                Ok(got) => Ok(Some(got.bytes().await.map_err(failed)?.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(other) => Err(failed(other)),
            }
        }
    }
}

/// Deletes everything inside `folder`.
async fn remove(
    folder: &StagingFolder,
    options: &HashMap<String, String>,
) -> Result<(), BatchError> {
    match folder.uri() {
        LakeUri::Local { path, .. } => match std::fs::remove_dir_all(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(BatchError::SparkFiles {
                operation: format!("removing {}", folder.uri()),
                source: e,
            }),
            _ => Ok(()),
        },
        LakeUri::S3 { bucket, key, .. } => {
            let (store, listed) = list(bucket, key, options).await?;
            for meta in listed {
                store
                    .delete(&meta.location)
                    .await
                    .map_err(|source| BatchError::Staging {
                        operation: format!("deleting s3://{bucket}/{}", meta.location),
                        source,
                    })?;
            }
            Ok(())
        }
    }
}

/// Records `folder` on every run of its job, before the job starts.
pub async fn record(
    pool: &PgPool,
    run_ids: &[i64],
    folder: &StagingFolder,
) -> Result<(), BatchError> {
    batch_runs::record_staging(pool, run_ids, &folder.uri().to_string()).await?;
    Ok(())
}

/// Removes the staging folder recorded on `run_id` (nothing when none is), then forgets it.
/// Refuses, deleting nothing, a recorded folder that is not `_braid_staging/run-<run_id>`.
pub async fn remove_recorded(
    pool: &PgPool,
    run_id: i64,
    options: &HashMap<String, String>,
) -> Result<(), BatchError> {
    let Some(recorded) = batch_runs::recorded_staging(pool, run_id).await? else {
        return Ok(());
    };
    let folder = StagingFolder::recorded(&recorded, run_id)?;
    remove(&folder, options).await?;
    batch_runs::clear_staging(pool, &recorded).await?;
    Ok(())
}

/// Removes the staging folders that runs no longer running left recorded (a process killed
/// during its job, a removal that failed). Only called while holding the batch lock. A folder
/// that cannot be removed is reported and kept recorded, for the next run to try again.
pub async fn remove_left_behind(
    pool: &PgPool,
    options: &HashMap<String, String>,
) -> Result<(), BatchError> {
    for left in batch_runs::staging_left_behind(pool).await? {
        match remove_recorded(pool, left.run_id, options).await {
            Ok(()) => tracing::info!(
                run_id = left.run_id,
                staging = left.staging_uri,
                "removed the staging folder a dead batch run left behind"
            ),
            Err(error) => tracing::warn!(
                run_id = left.run_id,
                staging = left.staging_uri,
                %error,
                "could not remove a staging folder a batch run left behind; the next run tries again"
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folder_is_under_braid_staging_for_every_scheme_and_never_the_bucket_root() {
        for (lake, staging, expected) in [
            (
                "s3a://bucket/some/events",
                "",
                "s3a://bucket/some/events/_braid_staging/run-7",
            ),
            ("s3://bucket", "", "s3://bucket/_braid_staging/run-7"),
            (
                "file:///tmp/lake/",
                "",
                "file:///tmp/lake/_braid_staging/run-7",
            ),
            ("/tmp/lake", "s3a://b", "s3a://b/_braid_staging/run-7"),
        ] {
            let folder = StagingFolder::for_run(lake, staging, 7).unwrap();
            assert_eq!(folder.uri().to_string(), expected);
            assert_eq!(StagingFolder::recorded(expected, 7).unwrap(), folder);
        }
        match StagingFolder::for_run("s3a://bucket/some/events", "", 7)
            .unwrap()
            .uri()
        {
            LakeUri::S3 { bucket, key, .. } => {
                assert_eq!(
                    (bucket.as_str(), key.as_str()),
                    ("bucket", "some/events/_braid_staging/run-7")
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_recorded_folder_that_braid_does_not_create_for_the_run_is_refused() {
        for recorded in [
            "s3a://bucket",
            "s3a://bucket/some/events",
            "s3://bucket/_braid_staging",
            "s3://bucket/_braid_staging/run-8",
            "s3://bucket/other/run-7",
            "s3://bucket/_braid_staging/run-7/..",
            "/tmp/lake/_braid_staging/run-7/../../x",
            "/",
            "gs://bucket/_braid_staging/run-7",
        ] {
            assert!(
                matches!(
                    StagingFolder::recorded(recorded, 7),
                    Err(BatchError::StagingRefused { .. })
                ),
                "{recorded}"
            );
        }
    }
}
