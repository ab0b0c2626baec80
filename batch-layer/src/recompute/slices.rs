//! Time slices of a view's records, so that a batch's memory follows the slice rather than the
//! history. A view's rows are grouped by bucket, so the records of disjoint ranges of buckets
//! fold into disjoint rows: each slice is computed and COPYed before the next is read. The
//! boundaries are bucket starts, and a record's bucket is the floor of its event time, so
//! `from <= t < until` holds exactly when `from <= bucket(t) < until`: every record falls in
//! exactly one slice. The filter compares the event-time column itself with bounds of its type,
//! so the scan skips the row groups whose statistics lie outside the slice (a filter on its cast
//! to microseconds would not be checked against statistics). The per-bucket count that makes the
//! slices holds one row per bucket of the history: small beside the groups, but not bounded.

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

    /// `records` less those whose event time lies outside the slice. The bounds are literals
    /// of the column's own type (the timestamp, not its cast to microseconds), so that the scan
    /// can skip the row groups whose statistics lie outside the slice.
    pub fn of(&self, records: LazyFrame, event_time: &EventTimeColumn) -> LazyFrame {
        let column = || col(event_time.name.clone());
        let bound = |micros: i64| lit(micros).cast(event_time.column_type.clone());
        let bounds = [
            self.from.map(|from| column().gt_eq(bound(from))),
            self.until.map(|until| column().lt(bound(until))),
        ];
        match bounds.into_iter().flatten().reduce(Expr::and) {
            Some(inside) => records.filter(inside),
            None => records,
        }
    }
}

/// The event-time column of a scan and its Polars type, looked up once per run (a lookup per
/// slice would convert the scan's whole plan again each time).
#[derive(Debug, Clone)]
pub struct EventTimeColumn {
    name: PlSmallStr,
    column_type: DataType,
}

impl EventTimeColumn {
    /// The event-time field of `schema` as `records` types it.
    pub fn of(records: &LazyFrame, schema: &EventSchema) -> PolarsResult<Self> {
        let name: PlSmallStr = schema.event_time_field().name.as_str().into();
        let column_type = records
            .clone()
            .collect_schema()?
            .get(&name)
            .cloned()
            .ok_or_else(|| polars_err!(ColumnNotFound: "{name}"))?;
        Ok(Self { name, column_type })
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
    use polars::prelude::*;
    use schemas::BraidConfig;

    use super::super::compute::{BUCKET_START, bucket_of, compute_view};
    use super::{BucketCount, EventTimeColumn, TimeSlice, pack, time_slices};

    const CONFIG: &str = r#"
[kafka]
topic = "slices"
[schema]
event_time = "ts"
event_time_min = "1900-01-01T00:00:00Z"
event_time_max = "2100-01-01T00:00:00Z"
fields = [
  { name = "ts", type = "timestamp" },
  { name = "name", type = "string" },
  { name = "n", type = "i64", required = false },
]
[[views]]
name = "per_minute"
filter = { field = "n", op = "ge", value = 0 }
group_by = ["name"]
bucket = "1m"
metrics = ["count", "sum(n)", "min(n)", "distinct(name)", "quantile(n)"]
"#;

    /// Microseconds around the epoch and around bucket boundaries: before 1970 (negative),
    /// exactly on a boundary, one microsecond either side.
    fn times() -> Vec<i64> {
        let minute = 60_000_000i64;
        let mut times = Vec::new();
        for m in [-3i64, -2, -1, 0, 1, 2, 5] {
            for delta in [-1, 0, 1, 17_000_000] {
                times.push(m * minute + delta);
            }
        }
        times
    }

    fn records(times: &[i64]) -> LazyFrame {
        let ts = Series::new("ts".into(), times)
            .cast(&DataType::Datetime(
                TimeUnit::Microseconds,
                Some(TimeZone::UTC),
            ))
            .unwrap();
        let names: Vec<&str> = (0..times.len()).map(|i| ["a", "b", "c"][i % 3]).collect();
        let n: Vec<Option<i64>> = (0..times.len() as i64)
            .map(|i| (i % 5 != 4).then_some(i - 2))
            .collect();
        DataFrame::new_infer_height(vec![
            ts.into_column(),
            Column::new("name".into(), names),
            Column::new("n".into(), n),
        ])
        .unwrap()
        .lazy()
    }

    /// Each record is kept by exactly one of a partition of the timeline on bucket starts, and
    /// its bucket lies in that slice: the slice filter and the bucket agree, negative times too.
    #[test]
    fn every_time_is_in_exactly_the_slice_of_its_bucket() {
        let config = BraidConfig::load_from(Some(("slices.toml", CONFIG)), []).unwrap();
        let minute = 60_000_000i64;
        let boundaries = [-2 * minute, 0, minute, 2 * minute];
        let mut slices = vec![TimeSlice {
            from: None,
            until: Some(boundaries[0]),
        }];
        for pair in boundaries.windows(2) {
            slices.push(TimeSlice {
                from: Some(pair[0]),
                until: Some(pair[1]),
            });
        }
        slices.push(TimeSlice {
            from: boundaries.last().copied(),
            until: None,
        });
        let times = times();
        let event_time = EventTimeColumn::of(&records(&times), &config.schema).unwrap();
        let mut seen = vec![0; times.len()];
        for slice in &slices {
            let kept = slice
                .of(records(&times), &event_time)
                .select([col("ts").cast(DataType::Int64)])
                .collect()
                .unwrap();
            for t in kept
                .column("ts")
                .unwrap()
                .i64()
                .unwrap()
                .into_no_null_iter()
            {
                seen[times.iter().position(|&x| x == t).unwrap()] += 1;
                let bucket = t - t.rem_euclid(minute);
                assert!(
                    slice.from.is_none_or(|from| bucket >= from),
                    "{t} in {slice:?}"
                );
                assert!(
                    slice.until.is_none_or(|until| bucket < until),
                    "{t} in {slice:?}"
                );
            }
        }
        assert_eq!(seen, vec![1; times.len()]);
        // The Polars bucket is the Euclidean floor used above.
        let buckets = records(&times)
            .select([bucket_of(col("ts").cast(DataType::Int64), minute)])
            .collect()
            .unwrap();
        let buckets: Vec<i64> = buckets
            .column("ts")
            .unwrap()
            .i64()
            .unwrap()
            .into_no_null_iter()
            .collect();
        let floors: Vec<i64> = times.iter().map(|t| t - t.rem_euclid(minute)).collect();
        assert_eq!(buckets, floors);
    }

    /// A view computed in slices of 3 records gives the rows of the view computed whole, and
    /// the slices are several: the sliced path is the one compared.
    #[test]
    fn a_view_in_slices_gives_the_rows_of_the_whole() {
        let config = BraidConfig::load_from(Some(("slices.toml", CONFIG)), []).unwrap();
        let view = &config.views[0];
        let records = records(&times());
        let text = |frame: &DataFrame| {
            let mut rows: Vec<String> = (0..frame.height())
                .map(|row| format!("{:?}", frame.get_row(row).unwrap().0))
                .collect();
            rows.sort();
            rows
        };
        let whole = compute_view(records.clone(), view, &config.schema).unwrap();
        let slices = time_slices(records.clone(), view, &config.schema, 3).unwrap();
        let event_time = EventTimeColumn::of(&records, &config.schema).unwrap();
        assert!(slices.len() >= 5, "{slices:?}");
        let mut sliced = Vec::new();
        for slice in &slices {
            let frame =
                compute_view(slice.of(records.clone(), &event_time), view, &config.schema).unwrap();
            sliced.extend(text(&frame));
        }
        sliced.sort();
        assert!(whole.height() > 5);
        assert!(
            whole
                .column(BUCKET_START)
                .unwrap()
                .i64()
                .unwrap()
                .min()
                .unwrap()
                < 0
        );
        assert_eq!(text(&whole), sliced);
    }

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
    }
}
