//! Samples that merge exactly: per key and bucket, the K records whose Kafka position
//! (partition, offset) hashes lowest, with their fields.
//!
//! A record's rank is a function of its position alone ([`position_hash`]: MurmurHash3 of the
//! partition and offset, Braid's own code in every layer), so the sample of a set of records is
//! the same whichever layer saw them and in whatever order samples merge: a merge keeps the K
//! lowest of both, and a record present in both (the same position) is kept once. As positions
//! are hashed, the K lowest are a uniform sample of the records. PostgreSQL holds a sample as
//! the `jsonb` of [`SampleSketch::to_json`] and unions it with the functions of migration
//! `20261206193000_sample_sketches.sql`.

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json, json};

use crate::position::{Offset, Partition};
use crate::sketch::murmur3_x64_128_h1;

/// The most records a sample keeps per key and bucket.
pub const MAX_K: u32 = 1_000;
/// The default bound on one sampled record's fields, as JSON bytes.
pub const DEFAULT_MAX_RECORD_BYTES: u32 = 1_024;
/// The most bytes of fields one sample holds (K × MAX_RECORD_BYTES): a sample is one `jsonb`
/// value per key and bucket, merged in every flush and read, so it stays small.
pub const MAX_SAMPLE_BYTES: u64 = 4 * 1024 * 1024;

/// What is wrong with a sample's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SampleParamsError {
    /// K outside the supported range.
    #[error("K {0} is outside 1..={MAX_K}")]
    K(i64),
    /// A record bound outside the supported range.
    #[error("MAX_RECORD_BYTES {0} is outside 64..=65536")]
    MaxRecordBytes(i64),
    /// K records of the bound would make too large a sample.
    #[error(
        "K {k} × MAX_RECORD_BYTES {bytes} is over {MAX_SAMPLE_BYTES} bytes per key and bucket: keep fewer or smaller records"
    )]
    TooLarge {
        /// K.
        k: u32,
        /// The record bound.
        bytes: u32,
    },
}

/// A sample's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SampleParams {
    /// Records kept per key and bucket.
    k: u32,
    /// The largest JSON of one record's fields kept; a larger record is kept as its position
    /// and its size only.
    max_record_bytes: u32,
}

impl SampleParams {
    /// `k` records per key and bucket, each with at most the default bytes of fields.
    pub fn new(k: i64) -> Result<Self, SampleParamsError> {
        let k = u32::try_from(k)
            .ok()
            .filter(|k| (1..=MAX_K).contains(k))
            .ok_or(SampleParamsError::K(k))?;
        Ok(Self {
            k,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        })
    }

    /// These settings with another bound on a record's fields, checked.
    pub fn with_max_record_bytes(self, bytes: i64) -> Result<Self, SampleParamsError> {
        let max_record_bytes = u32::try_from(bytes)
            .ok()
            .filter(|b| (64..=65_536).contains(b))
            .ok_or(SampleParamsError::MaxRecordBytes(bytes))?;
        if u64::from(self.k) * u64::from(max_record_bytes) > MAX_SAMPLE_BYTES {
            return Err(SampleParamsError::TooLarge {
                k: self.k,
                bytes: max_record_bytes,
            });
        }
        Ok(Self {
            max_record_bytes,
            ..self
        })
    }

    /// Records kept per key and bucket.
    pub fn k(self) -> u32 {
        self.k
    }

    /// The bound on one record's fields, in JSON bytes.
    pub fn max_record_bytes(self) -> u32 {
        self.max_record_bytes
    }
}

/// A record's fields as a sample keeps them, the same in every layer: each present field by
/// name, strings and booleans as such, i64 and f64 values as JSON numbers, timestamps as
/// microseconds since the epoch.
pub fn fields_of(schema: &crate::EventSchema, record: &crate::Record) -> Map<String, Json> {
    schema
        .fields
        .iter()
        .zip(&record.values)
        .filter_map(|(field, value)| {
            let json = match value.as_ref()? {
                crate::Value::String(text) => Json::String(text.to_string()),
                crate::Value::I64(number) | crate::Value::Timestamp(number) => json!(number),
                crate::Value::F64(number) => json!(number),
                crate::Value::Bool(flag) => Json::Bool(*flag),
            };
            Some((field.name.clone(), json))
        })
        .collect()
}

/// The bytes of `fields` as PostgreSQL's `jsonb` prints them, at most: the compact JSON, a
/// space after each `:` and `,`, and each f64 widened to its full decimal digits (`jsonb` keeps a number as `numeric`, which
/// prints 1e300 as 301 digits and 5e-324 as 326 characters).
pub fn rendered_size(fields: &Map<String, Json>) -> usize {
    let widening: usize = fields
        .values()
        .filter_map(|value| {
            let number = value.as_f64().filter(|_| value.is_f64())?;
            let compact = value.to_string().len();
            Some(number.to_string().len().saturating_sub(compact))
        })
        .sum();
    // jsonb also prints `": "` and `", "` between members.
    serde_json::to_string(fields).map_or(0, |text| text.len()) + widening + 2 * fields.len()
}

/// The rank of the record at a position: MurmurHash3 x64-128 (seed 0, first 64 bits) of the
/// partition's 4 and the offset's 8 little-endian bytes, as a signed integer (PostgreSQL's
/// `bigint` orders it the same way).
pub fn position_hash(partition: Partition, offset: Offset) -> i64 {
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&partition.to_le_bytes());
    bytes[4..].copy_from_slice(&offset.to_le_bytes());
    murmur3_x64_128_h1(&bytes) as i64
}

/// Where a sampled record sorts: its hash, then its position (equal hashes of two positions
/// are kept apart and ordered alike everywhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    hash: i64,
    partition: Partition,
    offset: Offset,
}

impl Rank {
    fn of(partition: Partition, offset: Offset) -> Self {
        Self {
            hash: position_hash(partition, offset),
            partition,
            offset,
        }
    }
}

/// A record's fields as a sample keeps them.
#[derive(Debug, Clone, PartialEq)]
pub enum Kept {
    /// The fields, a JSON object.
    Fields(Json),
    /// Fields whose compact JSON (serde_json's, no spaces) was longer than the bound: only
    /// its length in bytes.
    Omitted(usize),
}

/// A text value with a NUL character, which PostgreSQL's `jsonb` cannot hold (validation
/// refuses such records before any layer samples them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}` holds a NUL character, which a stored sample cannot hold")]
pub struct NulInField {
    /// The field.
    pub field: String,
}

/// Whether a JSON value holds a NUL character in a string or a key.
fn has_nul(value: &Json) -> bool {
    match value {
        Json::String(text) => text.contains('\0'),
        Json::Array(items) => items.iter().any(has_nul),
        Json::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        Json::Null | Json::Bool(_) | Json::Number(_) => false,
    }
}

/// Why a JSON value is not a sample.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a sample: {what}")]
pub struct DecodeError {
    what: &'static str,
}

/// A sample being built or merged.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleSketch {
    params: SampleParams,
    records: BTreeMap<Rank, Kept>,
}

impl SampleSketch {
    /// An empty sample.
    pub fn new(params: SampleParams) -> Self {
        Self {
            params,
            records: BTreeMap::new(),
        }
    }

    /// Its settings.
    pub fn params(&self) -> SampleParams {
        self.params
    }

    /// The records kept, lowest hash first: (partition, offset, fields).
    pub fn records(&self) -> impl Iterator<Item = (Partition, Offset, &Kept)> {
        self.records
            .iter()
            .map(|(rank, fields)| (rank.partition, rank.offset, fields))
    }

    /// Whether a record at this position would be kept (lets a layer skip building its
    /// fields when it would not).
    pub fn would_keep(&self, partition: Partition, offset: Offset) -> bool {
        self.keeps(&Rank::of(partition, offset))
    }

    fn keeps(&self, rank: &Rank) -> bool {
        self.records.len() < self.params.k as usize
            || self
                .records
                .last_key_value()
                .is_some_and(|(largest, _)| rank < largest)
    }

    /// Offers the record at a position with its fields (a JSON object of the record's
    /// values); kept if it ranks among the K lowest. Fields longer than the bound as
    /// PostgreSQL prints them ([`rendered_size`]) are kept as [`Kept::Omitted`]. The fields of a position must be a function of
    /// its record (each layer builds them alike), as a merge keeps one record per position.
    pub fn add(
        &mut self,
        partition: Partition,
        offset: Offset,
        fields: Map<String, Json>,
    ) -> Result<(), NulInField> {
        if let Some((field, _)) = fields.iter().find(|(k, v)| k.contains('\0') || has_nul(v)) {
            return Err(NulInField {
                field: field.clone(),
            });
        }
        let rank = Rank::of(partition, offset);
        if !self.keeps(&rank) {
            return Ok(());
        }
        let size = rendered_size(&fields);
        let fields = Json::Object(fields);
        let fields = if size > self.params.max_record_bytes as usize {
            Kept::Omitted(size)
        } else {
            Kept::Fields(fields)
        };
        self.insert(rank, fields);
        Ok(())
    }

    /// Offers the record at a position whose fields a layer measured ([`rendered_size`]) at
    /// `size` bytes, above the bound, without building them: kept, if it ranks among the K
    /// lowest, as [`Kept::Omitted`] exactly as [`SampleSketch::add`] would keep it. A size
    /// within the bound is a caller's error and keeps nothing.
    pub fn add_omitted(&mut self, partition: Partition, offset: Offset, size: usize) {
        let rank = Rank::of(partition, offset);
        if size > self.params.max_record_bytes as usize && self.keeps(&rank) {
            self.insert(rank, Kept::Omitted(size));
        }
    }

    fn insert(&mut self, rank: Rank, fields: Kept) {
        self.records.entry(rank).or_insert(fields);
        while self.records.len() > self.params.k as usize {
            self.records.pop_last();
        }
    }

    /// Folds `other` in: the K lowest of both. Both must have the same settings.
    pub fn merge(&mut self, other: &SampleSketch) {
        assert_eq!(
            self.params, other.params,
            "samples of different settings cannot be merged"
        );
        for (rank, fields) in &other.records {
            self.insert(*rank, fields.clone());
        }
    }

    /// The JSON PostgreSQL stores: `{"k": K, "b": max_record_bytes, "records": [{"h": hash,
    /// "p": partition, "o": offset, "f": fields}, …]}`, lowest hash first; an omitted record
    /// has `"f": null, "n": its fields' bytes`.
    pub fn to_json(&self) -> Json {
        self.clone().into_json()
    }

    /// [`SampleSketch::to_json`], moving the kept fields instead of copying them.
    pub fn into_json(self) -> Json {
        let records: Vec<Json> = self
            .records
            .into_iter()
            .map(|(rank, kept)| {
                let mut record = Map::with_capacity(5);
                record.insert("h".into(), rank.hash.into());
                record.insert("p".into(), rank.partition.into());
                record.insert("o".into(), rank.offset.into());
                match kept {
                    Kept::Fields(fields) => {
                        record.insert("f".into(), fields);
                    }
                    Kept::Omitted(bytes) => {
                        record.insert("f".into(), Json::Null);
                        record.insert("n".into(), bytes.into());
                    }
                }
                Json::Object(record)
            })
            .collect();
        json!({ "k": self.params.k, "b": self.params.max_record_bytes, "records": records })
    }

    /// [`SampleSketch::to_json`] in PostgreSQL's binary `jsonb` format (what binary COPY
    /// sends): the version byte 1, then the JSON text.
    pub fn to_pg_binary(&self) -> Vec<u8> {
        let mut bytes = vec![1u8];
        bytes.extend_from_slice(self.to_json().to_string().as_bytes());
        bytes
    }

    /// Whether it keeps no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The sample a stored JSON holds, with the record bound of `params`.
    pub fn from_json(params: SampleParams, value: &Json) -> Result<Self, DecodeError> {
        Self::from_owned_json(params, value.clone())
    }

    /// [`SampleSketch::from_json`], moving the kept fields out of `value` instead of copying
    /// them.
    pub fn from_owned_json(params: SampleParams, mut value: Json) -> Result<Self, DecodeError> {
        let error = |what| DecodeError { what };
        if value.get("k").and_then(Json::as_u64) != Some(u64::from(params.k))
            || value.get("b").and_then(Json::as_u64) != Some(u64::from(params.max_record_bytes))
        {
            return Err(error("its k or record bound is not the metric's"));
        }
        let records = value
            .get_mut("records")
            .and_then(Json::as_array_mut)
            .ok_or(error("no records array"))?;
        let count = records.len();
        let mut sample = Self::new(params);
        for record in records {
            let int = |key: &str| record.get(key).and_then(Json::as_i64);
            let (Some(hash), Some(partition), Some(offset)) = (int("h"), int("p"), int("o")) else {
                return Err(error("a record without h, p and o"));
            };
            let partition =
                Partition::try_from(partition).map_err(|_| error("a partition out of range"))?;
            if hash != position_hash(partition, offset) {
                return Err(error("a record whose hash is not its position's"));
            }
            let omitted = record.get("n").and_then(Json::as_u64);
            let fields = match (record.get_mut("f"), omitted) {
                (Some(fields @ Json::Object(_)), None) => Kept::Fields(fields.take()),
                (Some(Json::Null), Some(bytes)) => Kept::Omitted(bytes as usize),
                _ => return Err(error("a record without fields or their omitted size")),
            };
            sample.insert(
                Rank {
                    hash,
                    partition,
                    offset,
                },
                fields,
            );
        }
        if sample.records.len() != count {
            return Err(error("repeated or too many records"));
        }
        Ok(sample)
    }
}

#[cfg(test)]
mod tests;

#[cfg(all(test, feature = "postgres"))]
mod postgres_tests;
