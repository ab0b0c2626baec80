//! HyperLogLog sketches that PostgreSQL's `hll` extension (postgresql-hll) reads and merges.
//!
//! Both layers build the same sketch from the same values: a value is hashed as the
//! extension's `hll_hash_text` / `hll_hash_bigint` hash it (MurmurHash3 x64-128 with seed 0,
//! the first 64 bits; a bigint as its 8 little-endian bytes), the low `log2m` bits choose the
//! register, and the register keeps the largest "position of the lowest set bit" of the rest,
//! capped by the register width. Sketches are written in the extension's storage format
//! (schema version 1) as FULL register arrays with explicit storage and sparse storage off
//! (`expthresh = 0`, `sparseon = 0`): the extension's own
//! `hll_add_agg(hll_hash_text(v), log2m, regwidth, 0, 0)` builds byte-identical sketches, so
//! any union of the layers' sketches equals the sketch PostgreSQL would build from all the
//! records, and its cardinality is the same number.

use serde::{Deserialize, Serialize};

use crate::record::Value;

/// The extension's default number of registers, as a power of two (2048 registers: a
/// standard error of 1.04/√2048 ≈ 2.3 %).
pub const DEFAULT_LOG2M: u8 = 11;
/// The extension's default register width in bits.
pub const DEFAULT_REGWIDTH: u8 = 5;

/// The precision of a sketch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SketchParams {
    /// log2 of the number of registers: 4 to 17.
    pub log2m: u8,
    /// Bits per register: 1 to 7 (the extension's limit).
    pub regwidth: u8,
}

impl Default for SketchParams {
    fn default() -> Self {
        Self {
            log2m: DEFAULT_LOG2M,
            regwidth: DEFAULT_REGWIDTH,
        }
    }
}

impl SketchParams {
    /// Checked parameters, or what is wrong with them.
    pub fn new(log2m: u8, regwidth: u8) -> Result<Self, String> {
        if !(4..=17).contains(&log2m) {
            return Err(format!("log2m {log2m} is outside 4..=17"));
        }
        if !(1..=7).contains(&regwidth) {
            return Err(format!("the register width {regwidth} is outside 1..=7"));
        }
        Ok(Self { log2m, regwidth })
    }

    /// The relative standard error of a cardinality estimate: 1.04 / √(2^log2m).
    pub fn standard_error(self) -> f64 {
        1.04 / f64::from(1u32 << self.log2m).sqrt()
    }
}

const C1: u64 = 0x87c3_7b91_1142_53d5;
const C2: u64 = 0x4cf5_ad43_2745_937f;

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

fn mix_k1(k1: u64) -> u64 {
    k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2)
}

fn mix_k2(k2: u64) -> u64 {
    k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1)
}

/// MurmurHash3 x64-128 of `data` with seed 0: the first 64 bits, as the extension's hash
/// functions return them.
pub fn murmur3_x64_128_h1(data: &[u8]) -> u64 {
    let (mut h1, mut h2) = (0u64, 0u64);
    let mut blocks = data.chunks_exact(16);
    for block in &mut blocks {
        let k1 = u64::from_le_bytes(block[..8].try_into().expect("8 bytes"));
        let k2 = u64::from_le_bytes(block[8..].try_into().expect("8 bytes"));
        h1 ^= mix_k1(k1);
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        h2 ^= mix_k2(k2);
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }
    let tail = blocks.remainder();
    let little_endian = |bytes: &[u8]| {
        bytes
            .iter()
            .enumerate()
            .fold(0u64, |acc, (i, &b)| acc ^ (u64::from(b) << (8 * i)))
    };
    if tail.len() > 8 {
        h2 ^= mix_k2(little_endian(&tail[8..]));
    }
    if !tail.is_empty() {
        h1 ^= mix_k1(little_endian(&tail[..tail.len().min(8)]));
    }
    let length = data.len() as u64;
    h1 ^= length;
    h2 ^= length;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix64(h1);
    h2 = fmix64(h2);
    h1.wrapping_add(h2)
}

/// The hash of a string, as `hll_hash_text` computes it.
pub fn hash_text(text: &str) -> u64 {
    murmur3_x64_128_h1(text.as_bytes())
}

/// The hash of an i64, as `hll_hash_bigint` computes it: its 8 little-endian bytes.
pub fn hash_i64(number: i64) -> u64 {
    murmur3_x64_128_h1(&number.to_le_bytes())
}

/// The hash of a field value ([`hash_text`], [`hash_i64`]); `None` for other types.
pub fn hash_value(value: &Value) -> Option<u64> {
    match value {
        Value::String(s) => Some(hash_text(s)),
        Value::I64(v) => Some(hash_i64(*v)),
        _ => None,
    }
}

/// Where a hashed value lands in a sketch: the register its low `log2m` bits name, and the
/// value it raises that register to (the position of the lowest set bit of the rest, capped
/// by the register width).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Register {
    /// The register's index, below `2^log2m`.
    pub index: u32,
    /// The value, at most `2^regwidth - 1`.
    pub value: u8,
}

impl Register {
    /// The register a hash raises in sketches of `params`.
    pub fn of(params: SketchParams, hash: u64) -> Self {
        let log2m = u32::from(params.log2m);
        let index = (hash & ((1u64 << log2m) - 1)) as u32;
        let rest = hash >> log2m;
        let position = if rest == 0 {
            0
        } else {
            rest.trailing_zeros() + 1
        };
        let cap = (1u32 << params.regwidth) - 1;
        Self {
            index,
            value: position.min(cap) as u8,
        }
    }

    /// Index and value in one `u32` (`index << 8 | value`), for a column of registers.
    pub fn packed(self) -> u32 {
        (self.index << 8) | u32::from(self.value)
    }

    /// The inverse of [`Register::packed`].
    pub fn unpacked(packed: u32) -> Self {
        Self {
            index: packed >> 8,
            value: (packed & 0xff) as u8,
        }
    }
}

/// A sketch's registers, one byte each while it is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sketch {
    params: SketchParams,
    registers: Vec<u8>,
}

impl Sketch {
    /// An empty sketch.
    pub fn new(params: SketchParams) -> Self {
        Self {
            params,
            registers: vec![0; 1 << params.log2m],
        }
    }

    /// Adds one hashed value.
    pub fn add_hash(&mut self, hash: u64) {
        self.raise(Register::of(self.params, hash));
    }

    /// Raises one register to `register.value` if it is lower (adding a value whose
    /// [`Register`] was computed elsewhere, e.g. in a batch query).
    pub fn raise(&mut self, register: Register) {
        let slot = &mut self.registers[register.index as usize];
        if *slot < register.value {
            *slot = register.value;
        }
    }

    /// Folds `other` (same parameters) in: the larger of each register.
    pub fn merge(&mut self, other: &Sketch) {
        for (mine, theirs) in self.registers.iter_mut().zip(&other.registers) {
            *mine = (*mine).max(*theirs);
        }
    }

    /// The extension's storage format: a 3-byte header (version 1 and type FULL; register
    /// width and log2m; sparse off and explicit threshold 0), then the registers packed
    /// most significant bit first, padded to a whole byte.
    pub fn to_bytes(&self) -> Vec<u8> {
        const VERSION_1_FULL: u8 = (1 << 4) | 4;
        let width = usize::from(self.params.regwidth);
        let mut bytes = Vec::with_capacity(3 + (width * self.registers.len()).div_ceil(8));
        bytes.push(VERSION_1_FULL);
        bytes.push(((self.params.regwidth - 1) << 5) | self.params.log2m);
        bytes.push(0); // sparseon = 0, expthresh = 0
        let mut accumulator: u32 = 0;
        let mut bits = 0;
        for &register in &self.registers {
            accumulator = (accumulator << width) | u32::from(register);
            bits += width;
            while bits >= 8 {
                bits -= 8;
                bytes.push((accumulator >> bits) as u8);
            }
            accumulator &= (1 << bits) - 1;
        }
        if bits > 0 {
            bytes.push((accumulator << (8 - bits)) as u8);
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_matches_the_reference_vectors() {
        // Published test vectors of MurmurHash3_x64_128 with seed 0 (first 64 bits).
        assert_eq!(murmur3_x64_128_h1(b""), 0);
        assert_eq!(
            murmur3_x64_128_h1(b"The quick brown fox jumps over the lazy dog"),
            0xe34b_bc7b_bc07_1b6c
        );
    }

    #[test]
    fn registers_pack_most_significant_bit_first() {
        let mut sketch = Sketch::new(SketchParams::new(4, 5).unwrap());
        sketch.registers[0] = 0b10101;
        sketch.registers[1] = 0b00011;
        let bytes = sketch.to_bytes();
        assert_eq!(bytes.len(), 3 + 10);
        assert_eq!(&bytes[..3], &[0x14, (4 << 5) | 4, 0]);
        assert_eq!(bytes[3], 0b1010_1000);
        assert_eq!(bytes[4], 0b1100_0000);
    }

    #[test]
    fn a_packed_register_unpacks_to_itself_at_the_largest_parameters() {
        let params = SketchParams::new(17, 7).unwrap();
        for hash in [
            0,
            1,
            u64::MAX,
            0x8000_0000_0000_0000,
            (1 << 17) - 1,
            1 << 40,
        ] {
            let register = Register::of(params, hash);
            assert!(register.index < 1 << 17, "index of {hash:#x}");
            assert_eq!(Register::unpacked(register.packed()), register, "{hash:#x}");
        }
        // Adding a hash and raising its register are the same thing.
        let (mut added, mut raised) = (Sketch::new(params), Sketch::new(params));
        added.add_hash(0xdead_beef_0000_0001);
        raised.raise(Register::of(params, 0xdead_beef_0000_0001));
        assert_eq!(added, raised);
    }

    #[test]
    fn a_register_keeps_the_largest_capped_run() {
        let mut sketch = Sketch::new(SketchParams::new(4, 3).unwrap());
        sketch.add_hash(0b1000_0011); // register 3, rest 0b1000: position 4
        sketch.add_hash(0b0001_0011); // register 3, rest 0b1: position 1
        assert_eq!(sketch.registers[3], 4);
        sketch.add_hash(1 << 63 | 0b0011); // register 3, position 60, capped at 7
        assert_eq!(sketch.registers[3], 7);
        sketch.add_hash(0b0101); // register 5, rest 0: position 0
        assert_eq!(sketch.registers[5], 0);
    }
}

/// The sketches built here against the ones PostgreSQL's `hll` extension builds.
#[cfg(all(test, feature = "postgres"))]
mod postgres_tests {
    use sqlx::PgPool;

    use super::*;

    /// The extension's text form of a sketch.
    fn hex(bytes: &[u8]) -> String {
        let digits: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("\\x{digits}")
    }

    async fn built_by_postgres(pool: &PgPool, sql: &str, params: SketchParams) -> String {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .bind(i32::from(params.log2m))
            .bind(i32::from(params.regwidth))
            .fetch_one(pool)
            .await
            .unwrap()
    }

    #[sqlx::test(migrations = false)]
    async fn a_sketch_built_here_is_byte_for_byte_the_one_hll_add_agg_builds(pool: PgPool) {
        sqlx::query("CREATE EXTENSION IF NOT EXISTS hll")
            .execute(&pool)
            .await
            .expect("the hll extension (scripts/services.sh installs postgresql-NN-hll)");
        let mut texts: Vec<String> = (0..6000)
            .map(|i| format!("user-{}", (i * 7919) % 4001))
            .collect();
        texts.extend([
            "".into(),
            "é".into(),
            "x".repeat(1000),
            "tab\there".into(),
            "17-bytes-exactly!".into(),
        ]);
        let numbers: Vec<i64> = (0..6000_i64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15_u64 as i64) % 50_000)
            .chain([0, -1, i64::MIN, i64::MAX])
            .collect();
        for (log2m, regwidth) in [(11, 5), (4, 3), (14, 6), (17, 7), (8, 1), (12, 4)] {
            let params = SketchParams::new(log2m, regwidth).unwrap();
            for n in [1, 7, 300, texts.len()] {
                let mut sketch = Sketch::new(params);
                for text in &texts[..n] {
                    sketch.add_hash(murmur3_x64_128_h1(text.as_bytes()));
                }
                let values: Vec<&str> = texts[..n].iter().map(String::as_str).collect();
                let sql = "SELECT hll_add_agg(hll_hash_text(v), $1, $2, 0, 0)::text FROM unnest($3::text[]) AS v";
                let expected: String = sqlx::query_scalar(sql)
                    .bind(i32::from(log2m))
                    .bind(i32::from(regwidth))
                    .bind(&values)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                assert_eq!(
                    hex(&sketch.to_bytes()),
                    expected,
                    "text, log2m {log2m}, regwidth {regwidth}, {n} values"
                );
            }
            for n in [1, 300, numbers.len()] {
                let mut sketch = Sketch::new(params);
                for number in &numbers[..n] {
                    sketch.add_hash(hash_value(&Value::I64(*number)).unwrap());
                }
                let sql = "SELECT hll_add_agg(hll_hash_bigint(v), $1, $2, 0, 0)::text FROM unnest($3::bigint[]) AS v";
                let expected: String = sqlx::query_scalar(sql)
                    .bind(i32::from(log2m))
                    .bind(i32::from(regwidth))
                    .bind(&numbers[..n])
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                assert_eq!(
                    hex(&sketch.to_bytes()),
                    expected,
                    "bigint, log2m {log2m}, regwidth {regwidth}, {n} values"
                );
            }
            // A union of sketches is the sketch of the union.
            let (mut left, mut right) = (Sketch::new(params), Sketch::new(params));
            for (i, text) in texts.iter().enumerate() {
                let sketch = if i % 3 == 0 { &mut left } else { &mut right };
                sketch.add_hash(murmur3_x64_128_h1(text.as_bytes()));
            }
            left.merge(&right);
            let all = built_by_postgres(
                &pool,
                &format!(
                    "SELECT hll_add_agg(hll_hash_text(v), $1, $2, 0, 0)::text FROM unnest(ARRAY[{}]) AS v",
                    texts.iter().map(|t| format!("'{}'", t.replace('\'', "''"))).collect::<Vec<_>>().join(",")
                ),
                params,
            )
            .await;
            assert_eq!(
                hex(&left.to_bytes()),
                all,
                "union, log2m {log2m}, regwidth {regwidth}"
            );
        }
    }
}
