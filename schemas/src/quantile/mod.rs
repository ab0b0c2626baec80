//! Quantile sketches that merge exactly: logarithmic buckets with a fixed relative accuracy
//! (the DDSketch idea), built the same way by every layer.
//!
//! A value's bucket is a function of the value alone ([`Mapping`]: Braid's own arithmetic, no
//! library `ln`), a sketch is the count per bucket (positive values and negative ones in two
//! stores by magnitude, zeros apart), and a merge adds counts. So any split of the same
//! records, merged in any order, gives the same sketch and the same [`QuantileSketch::to_array`].
//! A quantile answered from it is within the relative accuracy of the exact one.
//!
//! Each store keeps at most `max_buckets` consecutive bucket indices, its largest magnitudes:
//! smaller ones fold into the lowest index kept. The window ends at the store's largest index,
//! which only grows as records and sketches merge in, and folding into a threshold and then
//! into a higher one is folding into the higher one, so the collapse is order-independent too;
//! it costs accuracy only for the values nearest zero, below 2^(-max_buckets/m) of the largest
//! of their sign (2^-1024 at the default accuracy, so never for an i64 or between validated f64
//! values within 10^308 of each other; 2^-16 at the finest accuracy).

mod level;
mod mapping;

use std::collections::BTreeMap;

pub use level::{DEFAULT_LEVELS, LevelError, QuantileLevel};
pub use mapping::{MAX_PRECISION, Mapping};

/// The relative accuracy of `quantile(field)`.
pub const DEFAULT_ACCURACY: f64 = 0.01;
/// The most bucket indices a store keeps, and the default: 1,024 powers of two at the default
/// accuracy (a store's largest magnitude 2^1024 times its smallest kept exactly, so no i64
/// value and no pair of f64 values within 10^308 of each other ever collapse), 16 at the
/// finest. Stored sketches hold only the buckets their values reach.
pub const MAX_BUCKETS: u32 = 65_536;
/// The format version that leads [`QuantileSketch::to_array`].
pub const FORMAT: i64 = 1;
/// The largest count a bucket (or the zeros) holds: counts saturate here, as PostgreSQL's
/// `bigint` would overflow past it.
const MAX_COUNT: u64 = i64::MAX as u64;

fn add_counts(a: u64, b: u64) -> u64 {
    a.saturating_add(b).min(MAX_COUNT)
}

/// What is wrong with a quantile sketch's settings.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum QuantileParamsError {
    /// An accuracy outside the supported range.
    #[error("ACCURACY {0} is outside 0.0001..=0.1 (a relative error: 0.01 is 1 %)")]
    Accuracy(f64),
    /// A bucket bound outside the supported range.
    #[error("MAX_BUCKETS {0} is outside 16..=65536")]
    MaxBuckets(i64),
}

/// A quantile sketch's settings: buckets per power of two (2^precision) and the bucket
/// indices each store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuantileParams {
    /// Buckets per power of two, as a power of two (1..=[`MAX_PRECISION`]).
    pub precision: u8,
    /// Consecutive bucket indices each store keeps.
    pub max_buckets: u32,
}

impl Default for QuantileParams {
    fn default() -> Self {
        Self::for_accuracy(DEFAULT_ACCURACY).expect("the default accuracy is supported")
    }
}

impl QuantileParams {
    /// The coarsest buckets whose representative values are within `accuracy` (relative) of
    /// every value they hold, and the default bucket bound ([`MAX_BUCKETS`]).
    pub fn for_accuracy(accuracy: f64) -> Result<Self, QuantileParamsError> {
        if !(0.0001..=0.1).contains(&accuracy) {
            return Err(QuantileParamsError::Accuracy(accuracy));
        }
        let precision = (1..=MAX_PRECISION)
            .find(|&p| Mapping::of(p).relative_accuracy() <= accuracy)
            .ok_or(QuantileParamsError::Accuracy(accuracy))?;
        Ok(Self {
            precision,
            max_buckets: MAX_BUCKETS,
        })
    }

    /// These settings with another bucket bound, checked.
    pub fn with_max_buckets(self, max_buckets: i64) -> Result<Self, QuantileParamsError> {
        let max_buckets = u32::try_from(max_buckets)
            .ok()
            .filter(|b| (16..=MAX_BUCKETS).contains(b))
            .ok_or(QuantileParamsError::MaxBuckets(max_buckets))?;
        Ok(Self {
            max_buckets,
            ..self
        })
    }

    /// The bucket mapping.
    pub fn mapping(self) -> &'static Mapping {
        Mapping::of(self.precision)
    }

    /// The relative accuracy answered quantiles keep (at most what was asked for).
    pub fn relative_accuracy(self) -> f64 {
        self.mapping().relative_accuracy()
    }
}

/// A value a quantile sketch cannot hold.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("{0} is not a finite number")]
pub struct NotFinite(pub f64);

/// Why an array is not a quantile sketch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Too short, or not as long as its counts say.
    #[error("a quantile sketch array of {0} elements does not match its header")]
    Length(usize),
    /// Another format version, or settings this version does not support.
    #[error("unsupported quantile sketch header {0:?}")]
    Header([i64; 3]),
    /// Indices not strictly ascending, a count not positive, or a store wider than its bound.
    #[error("quantile sketch bucket {index} is out of order, empty or outside the store's window")]
    Bucket {
        /// The offending index.
        index: i64,
    },
}

/// Counts per bucket index of one sign's magnitudes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Store {
    counts: BTreeMap<i64, u64>,
}

impl Store {
    fn add(&mut self, index: i64, count: u64, max_buckets: u32) {
        let slot = self.counts.entry(index).or_insert(0);
        *slot = add_counts(*slot, count);
        self.collapse(max_buckets);
    }

    /// Folds the indices below the window of `max_buckets` ending at the largest index into
    /// the window's lowest.
    fn collapse(&mut self, max_buckets: u32) {
        let (Some((&lowest, _)), Some((&highest, _))) =
            (self.counts.first_key_value(), self.counts.last_key_value())
        else {
            return;
        };
        let floor = highest.saturating_sub(i64::from(max_buckets) - 1);
        if lowest >= floor {
            return;
        }
        let kept = self.counts.split_off(&floor);
        let folded = self
            .counts
            .values()
            .fold(0u64, |sum, &count| add_counts(sum, count));
        self.counts = kept;
        let slot = self.counts.entry(floor).or_insert(0);
        *slot = add_counts(*slot, folded);
    }

    /// The exact total (at most 2 × 65,536 buckets of at most 2^63 each).
    fn total(&self) -> u128 {
        self.counts.values().map(|&count| u128::from(count)).sum()
    }
}

/// A quantile sketch being built or merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantileSketch {
    params: QuantileParams,
    zeros: u64,
    positive: Store,
    negative: Store,
}

impl QuantileSketch {
    /// An empty sketch.
    pub fn new(params: QuantileParams) -> Self {
        Self {
            params,
            zeros: 0,
            positive: Store::default(),
            negative: Store::default(),
        }
    }

    /// Its settings.
    pub fn params(&self) -> QuantileParams {
        self.params
    }

    /// Counts one value. NaN and infinities are refused (validation never passes them).
    pub fn add(&mut self, value: f64) -> Result<(), NotFinite> {
        if !value.is_finite() {
            return Err(NotFinite(value));
        }
        if value == 0.0 {
            self.zeros = add_counts(self.zeros, 1);
            return Ok(());
        }
        let index = self.params.mapping().index(value.abs());
        let store = if value > 0.0 {
            &mut self.positive
        } else {
            &mut self.negative
        };
        store.add(index, 1, self.params.max_buckets);
        Ok(())
    }

    /// Folds `other` in: the sketch of both sets of values. Both must have the same settings
    /// (a view's metric has one).
    pub fn merge(&mut self, other: &QuantileSketch) {
        assert_eq!(
            self.params, other.params,
            "quantile sketches of different settings cannot be merged"
        );
        self.zeros = add_counts(self.zeros, other.zeros);
        for (mine, theirs) in [
            (&mut self.positive, &other.positive),
            (&mut self.negative, &other.negative),
        ] {
            for (&index, &count) in &theirs.counts {
                let slot = mine.counts.entry(index).or_insert(0);
                *slot = add_counts(*slot, count);
            }
            mine.collapse(self.params.max_buckets);
        }
    }

    /// How many values it counted (exactly: counts saturate per bucket at 2^63 − 1 only).
    pub fn count(&self) -> u128 {
        u128::from(self.zeros) + self.positive.total() + self.negative.total()
    }

    /// The `q`-quantile (0 ≤ q ≤ 1): the value at rank min(⌊q·(n − 1)⌋, n − 1) of the n
    /// counted (the product in f64, as `serving.quantile` computes it), within the relative
    /// accuracy. `None` when empty or when `q` is outside [0, 1].
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = ((q * (count - 1) as f64).floor() as u128).min(count - 1);
        let mapping = self.params.mapping();
        let mut seen = 0u128;
        // Ascending values: negatives from the largest magnitude, zeros, positives.
        for (&index, &n) in self.negative.counts.iter().rev() {
            seen += u128::from(n);
            if seen > rank {
                return Some(-mapping.value(index));
            }
        }
        seen += u128::from(self.zeros);
        if seen > rank {
            return Some(0.0);
        }
        for (&index, &n) in &self.positive.counts {
            seen += u128::from(n);
            if seen > rank {
                return Some(mapping.value(index));
            }
        }
        None // unreachable: the counts add up to `count` > `rank`
    }

    /// The canonical array: `[FORMAT, precision, max_buckets, zeros, positive buckets,
    /// negative buckets]`, then each positive (index, count) by ascending index, then each
    /// negative one. Equal sketches give equal arrays.
    pub fn to_array(&self) -> Vec<i64> {
        let clamp = |count: u64| i64::try_from(count.min(MAX_COUNT)).unwrap_or(i64::MAX);
        let mut array =
            Vec::with_capacity(6 + 2 * (self.positive.counts.len() + self.negative.counts.len()));
        array.extend([
            FORMAT,
            i64::from(self.params.precision),
            i64::from(self.params.max_buckets),
            clamp(self.zeros),
            self.positive.counts.len() as i64,
            self.negative.counts.len() as i64,
        ]);
        for store in [&self.positive, &self.negative] {
            for (&index, &count) in &store.counts {
                array.extend([index, clamp(count)]);
            }
        }
        array
    }

    /// [`QuantileSketch::to_array`] in PostgreSQL's binary `bigint[]` format (what binary COPY
    /// sends): one dimension, no NULLs, element type int8 (oid 20), lower bound 1, then each
    /// element's length (8) and big-endian value.
    pub fn to_pg_binary(&self) -> Vec<u8> {
        let values = self.to_array();
        let mut bytes = Vec::with_capacity(20 + 12 * values.len());
        for header in [1_i32, 0, 20, values.len() as i32, 1] {
            bytes.extend_from_slice(&header.to_be_bytes());
        }
        for value in values {
            bytes.extend_from_slice(&8_i32.to_be_bytes());
            bytes.extend_from_slice(&value.to_be_bytes());
        }
        bytes
    }

    /// The sketch an array of [`QuantileSketch::to_array`] holds, checked.
    pub fn from_array(array: &[i64]) -> Result<Self, DecodeError> {
        let [
            format,
            precision,
            max_buckets,
            zeros,
            positives,
            negatives,
            ref buckets @ ..,
        ] = *array
        else {
            return Err(DecodeError::Length(array.len()));
        };
        let header = DecodeError::Header([format, precision, max_buckets]);
        let params = match (format, u8::try_from(precision)) {
            (FORMAT, Ok(p)) if (1..=MAX_PRECISION).contains(&p) => QuantileParams {
                precision: p,
                max_buckets: MAX_BUCKETS,
            }
            .with_max_buckets(max_buckets)
            .map_err(|_| header.clone())?,
            _ => return Err(header),
        };
        let (Ok(positives), Ok(negatives), Ok(zeros)) = (
            usize::try_from(positives),
            usize::try_from(negatives),
            u64::try_from(zeros),
        ) else {
            return Err(DecodeError::Length(array.len()));
        };
        if positives
            .checked_add(negatives)
            .and_then(|n| n.checked_mul(2))
            != Some(buckets.len())
        {
            return Err(DecodeError::Length(array.len()));
        }
        let mut sketch = Self::new(params);
        sketch.zeros = zeros;
        let (positive, negative) = buckets.split_at(2 * positives);
        let m = params.mapping().buckets_per_octave();
        // The indices of finite magnitudes: 2^-1074 up to f64::MAX.
        let indices = -1074 * m..1024 * m;
        for (store, pairs) in [
            (&mut sketch.positive, positive),
            (&mut sketch.negative, negative),
        ] {
            for pair in pairs.chunks_exact(2) {
                let (index, count) = (pair[0], pair[1]);
                if !indices.contains(&index) {
                    return Err(DecodeError::Bucket { index });
                }
                let ascending = store
                    .counts
                    .last_key_value()
                    .is_none_or(|(&last, _)| last < index);
                let Ok(count) = u64::try_from(count) else {
                    return Err(DecodeError::Bucket { index });
                };
                if !ascending || count == 0 {
                    return Err(DecodeError::Bucket { index });
                }
                store.counts.insert(index, count);
            }
            let window = i64::from(params.max_buckets);
            if let (Some((&lowest, _)), Some((&highest, _))) = (
                store.counts.first_key_value(),
                store.counts.last_key_value(),
            ) && highest.saturating_sub(lowest) >= window
            {
                return Err(DecodeError::Bucket { index: lowest });
            }
        }
        Ok(sketch)
    }
}

#[cfg(test)]
mod tests;

#[cfg(all(test, feature = "postgres"))]
mod postgres_tests;
