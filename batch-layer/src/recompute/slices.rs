//! Time slices of a view's records, so that a batch's memory follows the slice rather than the
//! history. A view's rows are grouped by bucket, so the records of disjoint ranges of buckets
//! fold into disjoint rows: each slice is computed and COPYed before the next is read. The
//! boundaries are bucket starts, and a record's bucket is the floor of its event time, so
//! `from <= t < until` holds exactly when `from <= bucket(t) < until`: every record falls in
//! exactly one slice. A filter on the event time also lets the scan skip the row groups whose
//! statistics lie outside the slice.

use polars::prelude::*;
use schemas::EventSchema;
use schemas::view::View;

use super::compute::{bucket_of, collect_streaming, view_records};

/// A range of bucket starts `[from, until)` in microseconds since the epoch; `None` is
/// unbounded. Bounds are bucket starts of the view it was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeSlice {
    /// The first bucket start in the slice, or every earlier one.
    pub from: Option<i64>,
    /// The first bucket start after the slice, or none.
    pub until: Option<i64>,
}

impl TimeSlice {
    /// Every record: no filter.
    pub const ALL: Self = Self {
        from: None,
        until: None,
    };

    /// `records` less those whose event time lies outside the slice.
    pub fn of(&self, records: LazyFrame, schema: &EventSchema) -> LazyFrame {
        let event_time = schema.event_time_field().name.as_str();
        let micros = || col(event_time).cast(DataType::Int64);
        let bounds = [
            self.from.map(|from| micros().gt_eq(lit(from))),
            self.until.map(|until| micros().lt(lit(until))),
        ];
        match bounds.into_iter().flatten().reduce(Expr::and) {
            Some(inside) => records.filter(inside),
            None => records,
        }
    }
}

/// The view's slices of at most `max_records` records each (a bucket holding more is a slice of
/// its own), counted by one scan of the event times of the view's records. The first slice
/// starts unbounded and the last ends unbounded, so a record of any time is in one slice.
pub fn time_slices(
    records: LazyFrame,
    view: &View,
    schema: &EventSchema,
    max_records: u64,
) -> PolarsResult<Vec<TimeSlice>> {
    let event_time = schema.event_time_field().name.as_str();
    let bucket = bucket_of(col(event_time).cast(DataType::Int64), view.bucket.micros());
    let counted = collect_streaming(
        view_records(records, view, schema)
            .group_by([bucket.alias("bucket")])
            .agg([len().cast(DataType::UInt64).alias("records")]),
    )?;
    let starts = counted.column("bucket")?.i64()?;
    let counts = counted.column("records")?.u64()?;
    let mut buckets: Vec<BucketCount> = starts
        .iter()
        .zip(counts.iter())
        .filter_map(|(start, records)| {
            Some(BucketCount {
                start: start?,
                records: records?,
            })
        })
        .collect();
    buckets.sort_unstable_by_key(|bucket| bucket.start);
    Ok(pack(&buckets, max_records))
}

/// The records of one bucket.
#[derive(Debug, Clone, Copy)]
struct BucketCount {
    start: i64,
    records: u64,
}

/// Consecutive buckets (sorted by start) joined while their records stay within `max_records`.
fn pack(buckets: &[BucketCount], max_records: u64) -> Vec<TimeSlice> {
    let mut boundaries = Vec::new();
    let mut held = 0u64;
    for bucket in buckets {
        if held > 0 && held.saturating_add(bucket.records) > max_records {
            boundaries.push(bucket.start);
            held = 0;
        }
        held = held.saturating_add(bucket.records);
    }
    let mut slices = Vec::with_capacity(boundaries.len() + 1);
    let mut from = None;
    for boundary in boundaries {
        slices.push(TimeSlice {
            from,
            until: Some(boundary),
        });
        from = Some(boundary);
    }
    slices.push(TimeSlice { from, until: None });
    slices
}

#[cfg(test)]
mod tests {
    use super::{BucketCount, TimeSlice, pack};

    fn packed(counts: &[(i64, u64)], max: u64) -> Vec<(Option<i64>, Option<i64>)> {
        let buckets: Vec<BucketCount> = counts
            .iter()
            .map(|&(start, records)| BucketCount { start, records })
            .collect();
        pack(&buckets, max)
            .into_iter()
            .map(|slice| (slice.from, slice.until))
            .collect()
    }

    #[test]
    fn buckets_join_while_they_fit_and_the_ends_are_open() {
        assert_eq!(packed(&[], 10), vec![(None, None)]);
        assert_eq!(packed(&[(0, 4), (60, 6)], 10), vec![(None, None)]);
        assert_eq!(
            packed(&[(0, 4), (60, 6), (120, 1)], 10),
            vec![(None, Some(120)), (Some(120), None)]
        );
        // A bucket over the bound is a slice of its own; none is empty.
        assert_eq!(
            packed(&[(-60, 3), (0, 25), (60, 2), (120, 2)], 10),
            vec![(None, Some(0)), (Some(0), Some(60)), (Some(60), None)]
        );
        assert_eq!(packed(&[(i64::MIN, u64::MAX), (0, u64::MAX)], 1).len(), 2);
    }

    #[test]
    fn the_slices_cover_every_time_once() {
        let counts: Vec<(i64, u64)> = (0..50)
            .map(|i| (i * 60 - 600, (i as u64 * 7) % 13))
            .collect();
        for max in [1, 5, 12, 13, 40, 1_000] {
            let slices = packed(&counts, max);
            assert_eq!(slices.first().unwrap().0, None);
            assert_eq!(slices.last().unwrap().1, None);
            for pair in slices.windows(2) {
                assert_eq!(pair[0].1, pair[1].0, "adjacent slices share their boundary");
                assert!(pair[0].1.is_some());
            }
            // Each slice holds at most `max` records unless it is one bucket.
            for (from, until) in &slices {
                let inside: Vec<u64> = counts
                    .iter()
                    .filter(|(start, _)| {
                        from.is_none_or(|f| *start >= f) && until.is_none_or(|u| *start < u)
                    })
                    .map(|&(_, n)| n)
                    .collect();
                let total: u64 = inside.iter().sum();
                assert!(total <= max || inside.iter().filter(|&&n| n > 0).count() == 1);
            }
        }
        let _ = TimeSlice::ALL;
    }
}
