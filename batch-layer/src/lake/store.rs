//! Where the table lives: a local folder or an S3-compatible object store, and what such a
//! store must do for concurrent writers to be safe.
//!
//! delta-rs commits version N by writing `_delta_log/N.json` with a conditional put
//! (`If-None-Match: *`): of two writers racing for the same version, the store must refuse the
//! second. A store that silently overwrites instead loses the first writer's commit, and with
//! it records (two sinks during a rebalance, a sink and a compaction). Braid therefore probes the
//! store once per process before it uses an S3 table, and refuses one that overwrites, unless
//! the storage options carry delta-rs's own unsafe switch, `AWS_S3_ALLOW_UNSAFE_RENAME =
//! "true"`, by which the operator says that only one writer ever runs.

use std::collections::{HashMap, HashSet};
use std::str::FromStr as _;
use std::sync::{Mutex, OnceLock};

use deltalake::DeltaTable;
use object_store::aws::AmazonS3ConfigKey;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload, path::Path};

use super::LakeError;

/// delta-rs's storage option for stores without conditional put (it then commits by copy and
/// delete, which is safe only with a single writer). Braid accepts such a store only with it.
pub const ALLOW_UNSAFE_RENAME: &str = "AWS_S3_ALLOW_UNSAFE_RENAME";

/// Whether the storage options set [`ALLOW_UNSAFE_RENAME`] to true (keys in any case).
pub fn allows_unsafe_writes(storage_options: &HashMap<String, String>) -> bool {
    option(storage_options, &[ALLOW_UNSAFE_RENAME]).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The value of the first of `names` among the storage options, keys compared in any case (as
/// delta-rs and object_store take them).
pub fn option<'a>(storage_options: &'a HashMap<String, String>, names: &[&str]) -> Option<&'a str> {
    storage_options
        .iter()
        .find(|(k, _)| names.iter().any(|n| k.eq_ignore_ascii_case(n)))
        .map(|(_, v)| v.as_str())
}

/// The storage options that object_store's S3 client knows, typed (delta-rs's own keys, such
/// as [`ALLOW_UNSAFE_RENAME`], are left out): what Braid's own S3 clients (Polars' reads, the
/// Spark staging folder) are configured with, beside the `AWS_*` environment.
pub fn s3_config(storage_options: &HashMap<String, String>) -> Vec<(AmazonS3ConfigKey, String)> {
    storage_options
        .iter()
        .filter_map(|(key, value)| {
            AmazonS3ConfigKey::from_str(&key.to_ascii_lowercase())
                .ok()
                .map(|key| (key, value.clone()))
        })
        .collect()
}

/// Whether `uri` names an object store (as opposed to a local folder).
pub fn is_object_store(uri: &str) -> bool {
    schemas::lake_uri::S3Scheme::of(uri).is_some()
}

/// What the conditional-put probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionalPut {
    /// A second create of the same object was refused: concurrent commits are safe.
    Enforced,
    /// A second create overwrote the first: concurrent commits can lose data.
    Ignored,
}

/// Writes a probe object twice with `PutMode::Create` (what a Delta commit does) under
/// `_braid_probe/`, then deletes it. Errors other than the expected refusal are returned.
pub async fn probe_conditional_put(store: &dyn ObjectStore) -> Result<ConditionalPut, LakeError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let path = Path::from(format!(
        "_braid_probe/conditional-put-{}-{nanos}.json",
        std::process::id()
    ));
    let create = || PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    store
        .put_opts(
            &path,
            PutPayload::from_static(b"{\"first\":true}"),
            create(),
        )
        .await
        .map_err(probe_failed)?;
    let second = store
        .put_opts(
            &path,
            PutPayload::from_static(b"{\"second\":true}"),
            create(),
        )
        .await;
    let found = match second {
        Err(
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
        ) => ConditionalPut::Enforced,
        Ok(_) => ConditionalPut::Ignored,
        Err(other) => {
            let _ = store.delete(&path).await;
            return Err(probe_failed(other));
        }
    };
    store.delete(&path).await.map_err(probe_failed)?;
    Ok(found)
}

fn probe_failed(source: object_store::Error) -> LakeError {
    LakeError::Store {
        operation: "probing conditional put",
        source,
    }
}

/// Probes the store of an S3 table once per process and URI; refuses one that overwrites
/// unless the options allow unsafe writes. Local tables are not probed (delta-rs commits them by an
/// atomic rename that fails if the target exists).
pub async fn check_store(
    uri: &str,
    table: &DeltaTable,
    storage_options: &HashMap<String, String>,
) -> Result<(), LakeError> {
    static CHECKED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    if !is_object_store(uri) {
        return Ok(());
    }
    let checked = CHECKED.get_or_init(Default::default);
    if checked.lock().map(|set| set.contains(uri)).unwrap_or(false) {
        return Ok(());
    }
    match probe_conditional_put(table.object_store().as_ref()).await? {
        ConditionalPut::Enforced => {
            tracing::debug!(
                uri,
                "the object store refuses a second create: commits are safe"
            );
        }
        ConditionalPut::Ignored if allows_unsafe_writes(storage_options) => {
            tracing::warn!(
                uri,
                "the object store overwrites on a conditional put; continuing because {ALLOW_UNSAFE_RENAME} = true: run one writer (one sink, no compaction while it runs) or commits can be lost"
            );
        }
        ConditionalPut::Ignored => {
            return Err(LakeError::NoConditionalPut {
                uri: uri.to_string(),
            });
        }
    }
    if let Ok(mut set) = checked.lock() {
        set.insert(uri.to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
        PutMultipartOptions, PutResult,
    };

    use super::*;

    /// A store that ignores `PutMode::Create` and overwrites, as a server without conditional
    /// writes does.
    #[derive(Debug, Default)]
    struct Overwriting(InMemory);

    impl std::fmt::Display for Overwriting {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Overwriting")
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Overwriting {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            mut options: PutOptions,
        ) -> object_store::Result<PutResult> {
            options.mode = PutMode::Overwrite;
            self.0.put_opts(location, payload, options).await
        }
        async fn put_multipart_opts(
            &self,
            location: &Path,
            options: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.0.put_multipart_opts(location, options).await
        }
        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            self.0.get_opts(location, options).await
        }
        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            self.0.delete_stream(locations)
        }
        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.0.list(prefix)
        }
        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
            self.0.list_with_delimiter(prefix).await
        }
        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.0.copy_opts(from, to, options).await
        }
    }

    #[tokio::test]
    async fn the_probe_tells_a_store_that_refuses_a_second_create_from_one_that_overwrites() {
        let enforcing = InMemory::new();
        assert_eq!(
            probe_conditional_put(&enforcing).await.unwrap(),
            ConditionalPut::Enforced
        );
        let overwriting = Overwriting::default();
        assert_eq!(
            probe_conditional_put(&overwriting).await.unwrap(),
            ConditionalPut::Ignored
        );
        // The probe cleans up after itself.
        use futures::TryStreamExt as _;
        for store in [&enforcing as &dyn ObjectStore, &overwriting] {
            let left: Vec<ObjectMeta> = store.list(None).try_collect().await.unwrap();
            assert!(left.is_empty(), "{left:?}");
        }
    }

    #[test]
    fn only_an_explicit_true_allows_unsafe_writes() {
        let options = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(!allows_unsafe_writes(&options(&[])));
        assert!(!allows_unsafe_writes(&options(&[(
            "AWS_S3_ALLOW_UNSAFE_RENAME",
            "false"
        )])));
        assert!(allows_unsafe_writes(&options(&[(
            "aws_s3_allow_unsafe_rename",
            "TRUE"
        )])));
        assert!(is_object_store("s3://b/p") && is_object_store("s3a://b/p"));
        assert!(!is_object_store("/tmp/lake") && !is_object_store("file:///tmp/lake"));
        // The scheme's case does not matter, as when lake.uri is validated.
        assert!(is_object_store("S3://b/p") && is_object_store("S3A://b/p"));
    }
}
