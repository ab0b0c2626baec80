//! The manifest a Spark job writes last into its staging folder (`_braid_manifest.json`):
//! the records it read below the cut and, per view, the rows its Parquet files hold (counted
//! back from the written files). Braid publishes a job's rows only when the manifest is there
//! and every view's rows found equal its count: output that cannot be found (a staging folder
//! Braid does not reach, a `file://` URI read as a path) or is partial is never taken for an
//! empty result.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::super::BatchError;

/// What the job reports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Manifest {
    /// The job's name for the run (`run-<N>`).
    pub run: String,
    /// Records below the cut the job read.
    pub records_read: u64,
    /// Each view's output.
    pub views: BTreeMap<String, ViewOutput>,
}

/// One view's output, as the job counted it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ViewOutput {
    /// Rows in its Parquet files.
    pub rows: u64,
}

impl Manifest {
    /// Parses the manifest read from `uri` (`None`: there was none) of the job named `run`.
    pub fn parse(uri: &str, run: &str, bytes: Option<&[u8]>) -> Result<Self, BatchError> {
        let bytes = bytes.ok_or_else(|| BatchError::SparkManifestMissing { uri: uri.into() })?;
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|source| BatchError::SparkManifestInvalid {
                uri: uri.into(),
                source,
            })?;
        if manifest.run != run {
            return Err(BatchError::SparkOutputIncomplete {
                view: String::new(),
                reason: format!("the manifest is of job `{}`, not `{run}`", manifest.run),
            });
        }
        Ok(manifest)
    }

    /// Checks that `found` rows of `view` are what the job wrote.
    pub fn check(&self, view: &str, found: u64) -> Result<(), BatchError> {
        let incomplete = |reason: String| BatchError::SparkOutputIncomplete {
            view: view.into(),
            reason,
        };
        match self.views.get(view) {
            None => Err(incomplete("the manifest does not list it".into())),
            Some(written) if written.rows != found => Err(incomplete(format!(
                "the job wrote {} rows, {found} were found",
                written.rows
            ))),
            Some(_) => Ok(()),
        }
    }

    /// The error of a view whose folder was not found at all.
    pub fn folder_missing(&self, view: &str) -> BatchError {
        BatchError::SparkOutputIncomplete {
            view: view.into(),
            reason: match self.views.get(view) {
                Some(written) => format!(
                    "the job wrote {} rows but its folder was not found",
                    written.rows
                ),
                None => "the manifest does not list it and its folder was not found".into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_complete_only_when_every_views_rows_are_found() {
        let text = br#"{"run": "run-3", "records_read": 10, "views": {"a": {"rows": 4}, "b": {"rows": 0}}}"#;
        assert!(matches!(
            Manifest::parse("m", "run-3", None),
            Err(BatchError::SparkManifestMissing { .. })
        ));
        assert!(matches!(
            Manifest::parse("m", "run-3", Some(b"{")),
            Err(BatchError::SparkManifestInvalid { .. })
        ));
        assert!(matches!(
            Manifest::parse("m", "run-4", Some(text)),
            Err(BatchError::SparkOutputIncomplete { .. })
        ));
        let manifest = Manifest::parse("m", "run-3", Some(text)).unwrap();
        assert_eq!(manifest.records_read, 10);
        assert!(manifest.check("a", 4).is_ok());
        assert!(manifest.check("b", 0).is_ok());
        for (view, found) in [("a", 3), ("a", 5), ("c", 0)] {
            assert!(
                matches!(
                    manifest.check(view, found),
                    Err(BatchError::SparkOutputIncomplete { .. })
                ),
                "{view} {found}"
            );
        }
    }
}
