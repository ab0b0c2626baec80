//! Where a lake (or a folder beside it) lives, parsed once for every scheme the configuration
//! accepts: a local path, `file://…`, `s3://…` and `s3a://…` (the same bucket and key; Spark's
//! S3A connector names it so). Every reader, writer and cleaner of Braid's own folders parses
//! a URI here, so that no scheme is mistaken for a path or a bucket's root.

use std::fmt;
use std::path::{Component, Path, PathBuf};

/// Why a lake URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LakeUriError {
    /// Nothing given.
    #[error("the URI is empty")]
    Empty,
    /// A scheme other than `file`, `s3` and `s3a`.
    #[error("scheme `{scheme}` is not supported; use a local path, file:// or s3://")]
    UnsupportedScheme {
        /// The scheme found.
        scheme: String,
    },
    /// `s3://` or `s3a://` without a bucket.
    #[error("`{uri}` names no bucket; use s3://bucket/prefix")]
    NoBucket {
        /// The URI.
        uri: String,
    },
    /// `file://host/…`: only local files (`file:///path`) are read.
    #[error("`{uri}` names a host; a file URI must be file:///absolute/path")]
    FileHost {
        /// The URI.
        uri: String,
    },
    /// A `..` segment (or a `.` or empty one inside an object key): the URI would not name the
    /// folder it seems to.
    #[error("`{uri}` has a `..` segment (or a `.` or empty one in its key)")]
    BadSegment {
        /// The URI.
        uri: String,
    },
}

/// How an object store URI was spelled; the bucket and key are the same either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Scheme {
    /// `s3://`.
    S3,
    /// `s3a://` (Hadoop's S3A connector).
    S3a,
}

impl S3Scheme {
    /// The object-store scheme `uri` is written with (case-insensitive), if any: the one rule
    /// for "is this an object store" that parsing and every other reader of a URI share.
    pub fn of(uri: &str) -> Option<S3Scheme> {
        let (scheme, _) = uri.trim().split_once("://")?;
        if scheme.eq_ignore_ascii_case("s3") {
            Some(S3Scheme::S3)
        } else if scheme.eq_ignore_ascii_case("s3a") {
            Some(S3Scheme::S3a)
        } else {
            None
        }
    }
}

/// A parsed lake URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LakeUri {
    /// A local folder, written as a path or as `file:///path`.
    Local {
        /// The folder.
        path: PathBuf,
        /// Whether it was written as `file://…` (kept when printed).
        file_scheme: bool,
    },
    /// A prefix in an S3-compatible bucket.
    S3 {
        /// How it was spelled.
        scheme: S3Scheme,
        /// The bucket.
        bucket: String,
        /// The key prefix, without leading or trailing `/` (empty: the bucket's root).
        key: String,
    },
}

impl LakeUri {
    /// Parses `uri` (surrounding whitespace and trailing `/` ignored).
    pub fn parse(uri: &str) -> Result<Self, LakeUriError> {
        let uri = uri.trim();
        if uri.is_empty() {
            return Err(LakeUriError::Empty);
        }
        let Some((scheme, rest)) = uri.split_once("://") else {
            return Self::local(uri, Path::new(uri), false);
        };
        match scheme.to_ascii_lowercase().as_str() {
            "file" => {
                let Some(path) = rest.strip_prefix('/') else {
                    return Err(LakeUriError::FileHost { uri: uri.into() });
                };
                Self::local(uri, &Path::new("/").join(path), true)
            }
            "s3" | "s3a" => {
                let scheme = S3Scheme::of(uri).expect("an s3 or s3a scheme");
                let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(LakeUriError::NoBucket { uri: uri.into() });
                }
                let key = key.trim_end_matches('/');
                if !key.is_empty() && key.split('/').any(|s| matches!(s, "" | "." | "..")) {
                    return Err(LakeUriError::BadSegment { uri: uri.into() });
                }
                Ok(LakeUri::S3 {
                    scheme,
                    bucket: bucket.into(),
                    key: key.into(),
                })
            }
            other => Err(LakeUriError::UnsupportedScheme {
                scheme: other.into(),
            }),
        }
    }

    fn local(uri: &str, path: &Path, file_scheme: bool) -> Result<Self, LakeUriError> {
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(LakeUriError::BadSegment { uri: uri.into() });
        }
        let text = path.to_string_lossy();
        let trimmed = match text.trim_end_matches('/') {
            "" => "/",
            t => t,
        };
        Ok(LakeUri::Local {
            path: PathBuf::from(trimmed),
            file_scheme,
        })
    }

    /// Whether it names an object store.
    pub fn is_object_store(&self) -> bool {
        matches!(self, LakeUri::S3 { .. })
    }

    /// The URI of `segment` inside this folder (`segment` is one plain name).
    pub fn join(&self, segment: &str) -> LakeUri {
        match self {
            LakeUri::Local { path, file_scheme } => LakeUri::Local {
                path: path.join(segment),
                file_scheme: *file_scheme,
            },
            LakeUri::S3 {
                scheme,
                bucket,
                key,
            } => LakeUri::S3 {
                scheme: *scheme,
                bucket: bucket.clone(),
                key: if key.is_empty() {
                    segment.into()
                } else {
                    format!("{key}/{segment}")
                },
            },
        }
    }

    /// The last segment of the path or key (empty at a root).
    pub fn last_segment(&self) -> &str {
        match self {
            LakeUri::Local { path, .. } => path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default(),
            LakeUri::S3 { key, .. } => key.rsplit('/').next().unwrap_or_default(),
        }
    }

    /// The folder holding this one (`None` at a root).
    pub fn parent(&self) -> Option<LakeUri> {
        match self {
            LakeUri::Local { path, file_scheme } => path.parent().map(|p| LakeUri::Local {
                path: p.to_path_buf(),
                file_scheme: *file_scheme,
            }),
            LakeUri::S3 {
                scheme,
                bucket,
                key,
            } => (!key.is_empty()).then(|| LakeUri::S3 {
                scheme: *scheme,
                bucket: bucket.clone(),
                key: key.rsplit_once('/').map(|(k, _)| k).unwrap_or("").into(),
            }),
        }
    }

    /// The URI as Spark reads it: S3 through the S3A connector (`s3a://`), a local folder as
    /// given.
    pub fn for_spark(&self) -> String {
        match self {
            LakeUri::S3 { bucket, key, .. } => Self::s3_text("s3a", bucket, key),
            local => local.to_string(),
        }
    }

    /// The URI as Braid's own readers (delta-rs, Polars, object_store) read it: `s3://` for S3.
    pub fn for_braid(&self) -> String {
        match self {
            LakeUri::S3 { bucket, key, .. } => Self::s3_text("s3", bucket, key),
            local => local.to_string(),
        }
    }

    fn s3_text(scheme: &str, bucket: &str, key: &str) -> String {
        if key.is_empty() {
            format!("{scheme}://{bucket}")
        } else {
            format!("{scheme}://{bucket}/{key}")
        }
    }
}

impl fmt::Display for LakeUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LakeUri::Local {
                path,
                file_scheme: true,
            } => write!(f, "file://{}", path.display()),
            LakeUri::Local { path, .. } => write!(f, "{}", path.display()),
            LakeUri::S3 {
                scheme,
                bucket,
                key,
            } => {
                let scheme = match scheme {
                    S3Scheme::S3 => "s3",
                    S3Scheme::S3a => "s3a",
                };
                f.write_str(&Self::s3_text(scheme, bucket, key))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_accepted_scheme_parses_to_its_bucket_and_key_or_its_folder() {
        for (uri, bucket, key) in [
            ("s3://b/some/events", "b", "some/events"),
            ("s3a://b/some/events/", "b", "some/events"),
            ("S3A://b", "b", ""),
        ] {
            match LakeUri::parse(uri).unwrap() {
                LakeUri::S3 {
                    bucket: b, key: k, ..
                } => assert_eq!((b.as_str(), k.as_str()), (bucket, key), "{uri}"),
                other => panic!("{uri}: {other:?}"),
            }
        }
        assert_eq!(
            LakeUri::parse("file:///tmp/lake/").unwrap(),
            LakeUri::Local {
                path: "/tmp/lake".into(),
                file_scheme: true
            }
        );
        assert_eq!(
            LakeUri::parse("lake").unwrap(),
            LakeUri::Local {
                path: "lake".into(),
                file_scheme: false
            }
        );
        let staging = LakeUri::parse("s3a://b/some/events")
            .unwrap()
            .join("_braid_staging");
        assert_eq!(staging.to_string(), "s3a://b/some/events/_braid_staging");
        assert_eq!(staging.for_braid(), "s3://b/some/events/_braid_staging");
        assert_eq!(staging.for_spark(), "s3a://b/some/events/_braid_staging");
        assert_eq!(staging.last_segment(), "_braid_staging");
        assert_eq!(staging.parent().unwrap().to_string(), "s3a://b/some/events");
        let file = LakeUri::parse("file:///tmp/l").unwrap().join("x");
        assert_eq!(
            (file.to_string(), file.for_spark()),
            ("file:///tmp/l/x".into(), "file:///tmp/l/x".into())
        );
    }

    #[test]
    fn uris_that_do_not_name_one_folder_are_refused() {
        assert_eq!(LakeUri::parse(" "), Err(LakeUriError::Empty));
        assert!(matches!(
            LakeUri::parse("gs://b/x"),
            Err(LakeUriError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            LakeUri::parse("s3:///x"),
            Err(LakeUriError::NoBucket { .. })
        ));
        assert!(matches!(
            LakeUri::parse("file://host/x"),
            Err(LakeUriError::FileHost { .. })
        ));
        for bad in [
            "s3://b/a//c",
            "s3://b/a/../c",
            "/tmp/a/../b",
            "file:///a/../b",
        ] {
            assert!(
                matches!(LakeUri::parse(bad), Err(LakeUriError::BadSegment { .. })),
                "{bad}"
            );
        }
    }
}
