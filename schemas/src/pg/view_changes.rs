//! "A view's merged answer may have changed": a PostgreSQL notification on one channel, sent
//! inside the transaction that changed the rows (a speed flush, a batch publish), so that it
//! is delivered only if the change committed. The alert evaluator and the API's answer cache
//! listen.
//!
//! The payload is the view's name, followed, when only some buckets changed (a speed flush),
//! by the first and last bucket start it touched in microseconds: `page_views 1767225600000000
//! 1767225660000000`. A name alone means anything may have changed (a batch publish).

use sqlx::{Postgres, Transaction};

/// The channel.
pub const CHANNEL: &str = "braid_view_changed";

/// The buckets a change touched: bucket starts from `first_micros` to `last_micros`, both
/// included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketRange {
    /// The earliest bucket start touched.
    pub first_micros: i64,
    /// The latest bucket start touched.
    pub last_micros: i64,
}

/// One view's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewChange {
    /// The view.
    pub view: String,
    /// The buckets touched; `None`: any.
    pub buckets: Option<BucketRange>,
}

impl ViewChange {
    /// A change that may touch any of `view`'s rows.
    pub fn whole(view: impl Into<String>) -> Self {
        Self {
            view: view.into(),
            buckets: None,
        }
    }

    /// The notification's payload.
    pub fn payload(&self) -> String {
        match self.buckets {
            Some(b) => format!("{} {} {}", self.view, b.first_micros, b.last_micros),
            None => self.view.clone(),
        }
    }

    /// Reads a payload. Unreadable bucket bounds read as a change of the whole view.
    pub fn parse(payload: &str) -> Self {
        let mut parts = payload.split(' ');
        let view = parts.next().unwrap_or_default().to_string();
        let first = parts.next().and_then(|p| p.parse().ok());
        let last = parts.next().and_then(|p| p.parse().ok());
        let buckets = match (first, last) {
            (Some(first_micros), Some(last_micros)) if first_micros <= last_micros => {
                Some(BucketRange {
                    first_micros,
                    last_micros,
                })
            }
            _ => None,
        };
        Self { view, buckets }
    }
}

/// Notifies that `changes` happened, when `tx` commits (PostgreSQL folds identical payloads in
/// one transaction into one notification).
pub async fn notify(
    tx: &mut Transaction<'_, Postgres>,
    changes: &[ViewChange],
) -> Result<(), sqlx::Error> {
    if changes.is_empty() {
        return Ok(());
    }
    let payloads: Vec<String> = changes.iter().map(ViewChange::payload).collect();
    sqlx::query("SELECT pg_notify($1, v) FROM unnest($2::text[]) AS v")
        .bind(CHANNEL)
        .bind(&payloads)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_read_back() {
        let ranged = ViewChange {
            view: "page_views".into(),
            buckets: Some(BucketRange {
                first_micros: -60,
                last_micros: 120,
            }),
        };
        assert_eq!(ViewChange::parse(&ranged.payload()), ranged);
        assert_eq!(ViewChange::parse("sales"), ViewChange::whole("sales"));
        assert_eq!(ViewChange::parse("sales 5 x"), ViewChange::whole("sales"));
        assert_eq!(ViewChange::parse("sales 9 5"), ViewChange::whole("sales"));
    }
}
