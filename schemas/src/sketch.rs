//! HyperLogLog sketches that PostgreSQL's `hll` extension (postgresql-hll) reads and merges,
//! in the extension's own storage forms.
//!
//! Both layers build the same sketch from the same values: a value is hashed as the
//! extension's `hll_hash_text` / `hll_hash_bigint` hash it (MurmurHash3 x64-128 with seed 0,
//! the first 64 bits; a bigint as its 8 little-endian bytes). A sketch then takes the form the
//! extension gives it (schema version 1, its `STORAGE.markdown`):
//!
//! - **EMPTY** before the first value;
//! - **EXPLICIT**, the distinct hashes themselves (ascending as signed integers), while there
//!   are at most the explicit cutoff of them: its cardinality is exact. The default cutoff
//!   (`expthresh = -1`, auto) is as many hashes as fit in the FULL form's bytes: 160 at the
//!   default precision;
//! - past the cutoff, registers: the low `log2m` bits of a hash choose the register, which
//!   keeps the largest "position of the lowest set bit" of the rest, capped by the register
//!   width. They are written **SPARSE** (index and value of each non-zero register) while that
//!   is smaller than **FULL** (every register) and sparse storage is on (`sparseon = 1`), FULL
//!   otherwise.
//!
//! A sketch's form is a function of its set of values alone (the explicit set is sorted,
//! registers are maxima), so every order of adding and merging builds the same bytes, and they
//! are the bytes of the extension's `hll_add_agg(hll_hash_text(v), log2m, regwidth,
//! expthresh, sparseon)` over the same values and of its `hll_union` of such sketches. The
//! extension refuses to union sketches whose four parameters differ, so every sketch of a
//! metric is built with the metric's [`SketchParams`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::record::Value;

/// The extension's default number of registers, as a power of two (2048 registers: a
/// standard error of 1.04/√2048 ≈ 2.3 %).
pub const DEFAULT_LOG2M: u8 = 11;
/// The extension's default register width in bits.
pub const DEFAULT_REGWIDTH: u8 = 5;
/// The largest explicit cutoff the extension accepts (its explicit sets hold at most 16,383
/// hashes, and a cutoff is a power of two).
pub const MAX_EXPLICIT_CUTOFF: u16 = 8192;

/// How many distinct hashes a sketch lists before it keeps registers instead: the
/// extension's `expthresh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExplicitCutoff {
    /// As many as fit in the FULL form's bytes (`expthresh = -1`, the extension's default).
    Auto,
    /// At most this many: 0 (never explicit) or a power of two up to
    /// [`MAX_EXPLICIT_CUTOFF`].
    Values(u16),
}

impl ExplicitCutoff {
    /// The cutoff of the extension's `expthresh` argument, or what is wrong with it.
    pub fn of_expthresh(expthresh: i64) -> Result<Self, SketchParamsError> {
        match expthresh {
            -1 => Ok(Self::Auto),
            0 => Ok(Self::Values(0)),
            n if n > 0 && n <= i64::from(MAX_EXPLICIT_CUTOFF) && n.count_ones() == 1 => {
                Ok(Self::Values(n as u16))
            }
            _ => Err(SketchParamsError::ExplicitCutoff(expthresh)),
        }
    }

    /// The extension's `expthresh` argument: -1 for [`ExplicitCutoff::Auto`].
    pub fn expthresh(self) -> i64 {
        match self {
            Self::Auto => -1,
            Self::Values(n) => i64::from(n),
        }
    }

    /// The six low bits of a sketch's cutoff byte: 63 for auto, 0 for none, else
    /// log2(cutoff) + 1.
    fn encoded(self) -> u8 {
        match self {
            Self::Auto => 63,
            Self::Values(0) => 0,
            Self::Values(n) => n.trailing_zeros() as u8 + 1,
        }
    }
}

/// What is wrong with a sketch's precision or storage settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SketchParamsError {
    /// log2m outside the extension's range.
    #[error("LOG2M {0} is outside 4..=17")]
    Log2m(i64),
    /// A register width outside the extension's range.
    #[error("REGWIDTH {0} is outside 1..=7")]
    RegisterWidth(i64),
    /// An explicit cutoff the extension refuses.
    #[error(
        "EXPTHRESH {0} is not -1 (auto), 0 (never explicit) or a power of two up to {MAX_EXPLICIT_CUTOFF}"
    )]
    ExplicitCutoff(i64),
    /// A sparse setting other than 0 or 1.
    #[error("SPARSEON {0} is not 0 or 1")]
    Sparse(i64),
    /// SPARSE on at a precision whose SPARSE form the extension misreads.
    #[error(
        "SPARSEON 1 cannot be used at LOG2M {log2m} and REGWIDTH {regwidth}: postgresql-hll reads the zero \
         padding of some SPARSE sketches this narrow as one more register and then undercounts; turn SPARSE \
         off (LOG2M, REGWIDTH, -1, 0) or give LOG2M + REGWIDTH at least 8"
    )]
    SparseMisread {
        /// The log2m asked for.
        log2m: u8,
        /// The register width asked for.
        regwidth: u8,
    },
}

/// The precision of a sketch (`log2m`, `regwidth`) and its storage forms (`expthresh`,
/// `sparseon`): the four parameters of the extension's `hll_add_agg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SketchParams {
    /// log2 of the number of registers: 4 to 17.
    pub log2m: u8,
    /// Bits per register: 1 to 7 (the extension's limit).
    pub regwidth: u8,
    /// How many distinct hashes are listed before the sketch keeps registers.
    pub explicit_cutoff: ExplicitCutoff,
    /// Whether registers are written SPARSE while that is smaller than FULL.
    pub sparse: bool,
}

impl Default for SketchParams {
    /// The extension's defaults: `hll_add_agg(h)` is `hll_add_agg(h, 11, 5, -1, 1)`.
    fn default() -> Self {
        Self {
            log2m: DEFAULT_LOG2M,
            regwidth: DEFAULT_REGWIDTH,
            explicit_cutoff: ExplicitCutoff::Auto,
            sparse: true,
        }
    }
}

impl SketchParams {
    /// Checked precision with the extension's default storage forms (auto explicit cutoff,
    /// sparse on), or what is wrong with it.
    pub fn new(log2m: i64, regwidth: i64) -> Result<Self, SketchParamsError> {
        Self::checked(log2m, regwidth, -1, 1)
    }

    /// The extension's four arguments (`log2m`, `regwidth`, `expthresh`, `sparseon`), checked.
    pub fn checked(
        log2m: i64,
        regwidth: i64,
        expthresh: i64,
        sparseon: i64,
    ) -> Result<Self, SketchParamsError> {
        let log2m = u8::try_from(log2m)
            .ok()
            .filter(|l| (4..=17).contains(l))
            .ok_or(SketchParamsError::Log2m(log2m))?;
        let regwidth = u8::try_from(regwidth)
            .ok()
            .filter(|r| (1..=7).contains(r))
            .ok_or(SketchParamsError::RegisterWidth(regwidth))?;
        let sparse = match sparseon {
            0 => false,
            1 => true,
            other => return Err(SketchParamsError::Sparse(other)),
        };
        let params = Self {
            log2m,
            regwidth,
            explicit_cutoff: ExplicitCutoff::of_expthresh(expthresh)?,
            sparse,
        };
        if params.sparse && params.sparse_padding_can_be_misread() {
            return Err(SketchParamsError::SparseMisread { log2m, regwidth });
        }
        Ok(params)
    }

    /// These parameters with the extension's `expthresh` and `sparseon` arguments, checked.
    pub fn with_storage(self, expthresh: i64, sparseon: i64) -> Result<Self, SketchParamsError> {
        Self::checked(
            i64::from(self.log2m),
            i64::from(self.regwidth),
            expthresh,
            sparseon,
        )
    }

    /// Whether some SPARSE sketch of this precision ends in at least one whole (zero) entry of
    /// padding: the extension counts `bytes * 8 / entry_bits` entries, so it would read that
    /// padding as "register 0 is 0" and overwrite register 0 (entries narrower than a byte,
    /// at LOG2M 4–6 with narrow registers).
    fn sparse_padding_can_be_misread(self) -> bool {
        let entry_bits = usize::from(self.log2m + self.regwidth);
        let full_bits = self.registers() * usize::from(self.regwidth);
        entry_bits < 8
            && (1..)
                .take_while(|filled| filled * entry_bits < full_bits)
                .any(|filled| (8 - filled * entry_bits % 8) % 8 >= entry_bits)
    }

    /// Whether these are the extension's default storage forms (auto cutoff, sparse on).
    pub fn has_default_storage(self) -> bool {
        self.explicit_cutoff == ExplicitCutoff::Auto && self.sparse
    }

    /// The relative standard error of a cardinality estimate: 1.04 / √(2^log2m).
    pub fn standard_error(self) -> f64 {
        1.04 / f64::from(1u32 << self.log2m).sqrt()
    }

    fn registers(self) -> usize {
        1 << self.log2m
    }

    /// Bytes of the FULL form's registers.
    fn full_bytes(self) -> usize {
        (usize::from(self.regwidth) * self.registers()).div_ceil(8)
    }

    /// How many distinct hashes an EXPLICIT sketch holds at most.
    pub fn explicit_limit(self) -> usize {
        match self.explicit_cutoff {
            ExplicitCutoff::Auto => self.full_bytes() / 8,
            ExplicitCutoff::Values(n) => usize::from(n),
        }
    }

    /// The 3-byte header of a sketch of `form`: version 1 and the form; register width and
    /// log2m; sparse flag and explicit cutoff.
    fn header(self, form: StoredForm) -> [u8; 3] {
        [
            (1 << 4) | form as u8,
            ((self.regwidth - 1) << 5) | self.log2m,
            (u8::from(self.sparse) << 6) | self.explicit_cutoff.encoded(),
        ]
    }
}

impl fmt::Display for SketchParams {
    /// As the extension's arguments: `11, 5, -1, 1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, {}, {}, {}",
            self.log2m,
            self.regwidth,
            self.explicit_cutoff.expthresh(),
            u8::from(self.sparse)
        )
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

/// Where a hashed value lands in a sketch's registers: the register its low `log2m` bits
/// name, and the value it raises that register to (the position of the lowest set bit of the
/// rest, capped by the register width).
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
}

/// The forms of the storage format, as its type nibble numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StoredForm {
    /// No value yet.
    Empty = 1,
    /// The distinct hashes.
    Explicit = 2,
    /// The non-zero registers.
    Sparse = 3,
    /// Every register.
    Full = 4,
}

/// A sketch's contents while it is built.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Contents {
    Empty,
    /// Distinct hashes, ascending as signed integers (the extension's order).
    Explicit(Vec<i64>),
    /// One byte per register.
    Registers(Box<[u8]>),
}

/// A distinct-count sketch being built; [`Sketch::to_bytes`] writes the extension's form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sketch {
    params: SketchParams,
    contents: Contents,
}

impl Sketch {
    /// An empty sketch.
    pub fn new(params: SketchParams) -> Self {
        Self {
            params,
            contents: Contents::Empty,
        }
    }

    /// The parameters it was built with.
    pub fn params(&self) -> SketchParams {
        self.params
    }

    /// The form [`Sketch::to_bytes`] writes.
    pub fn form(&self) -> StoredForm {
        match &self.contents {
            Contents::Empty => StoredForm::Empty,
            Contents::Explicit(_) => StoredForm::Explicit,
            Contents::Registers(registers) => {
                if self.sparse_is_smaller(filled(registers)) {
                    StoredForm::Sparse
                } else {
                    StoredForm::Full
                }
            }
        }
    }

    /// Adds one hashed value: listed while the explicit set has room, else in the registers.
    pub fn add_hash(&mut self, hash: u64) {
        let limit = self.params.explicit_limit();
        match &mut self.contents {
            Contents::Registers(registers) => raise(registers, self.params, hash),
            Contents::Explicit(hashes) => {
                let signed = hash as i64;
                let Err(at) = hashes.binary_search(&signed) else {
                    return; // already listed
                };
                if hashes.len() < limit {
                    hashes.insert(at, signed);
                } else {
                    self.promote();
                    self.add_hash(hash);
                }
            }
            Contents::Empty => {
                if limit == 0 {
                    self.contents = Contents::Registers(self.zeroed_registers());
                    self.add_hash(hash);
                } else {
                    self.contents = Contents::Explicit(vec![hash as i64]);
                }
            }
        }
    }

    /// Folds `other` in: the sketch of the union of both sets of values (as the extension's
    /// `hll_union`). Both must have the same parameters, as the extension requires.
    pub fn merge(&mut self, other: &Sketch) {
        assert_eq!(
            self.params, other.params,
            "sketches of different parameters cannot be merged"
        );
        match (&mut self.contents, &other.contents) {
            (_, Contents::Empty) => {}
            (Contents::Empty, _) => self.contents = other.contents.clone(),
            (Contents::Registers(mine), Contents::Registers(theirs)) => {
                for (mine, theirs) in mine.iter_mut().zip(theirs.iter()) {
                    *mine = (*mine).max(*theirs);
                }
            }
            (Contents::Registers(mine), Contents::Explicit(hashes)) => {
                for &hash in hashes {
                    raise(mine, self.params, hash as u64);
                }
            }
            (Contents::Explicit(mine), Contents::Registers(theirs)) => {
                let mut registers = theirs.clone();
                for &hash in mine.iter() {
                    raise(&mut registers, self.params, hash as u64);
                }
                self.contents = Contents::Registers(registers);
            }
            (Contents::Explicit(mine), Contents::Explicit(theirs)) => {
                let union = sorted_union(mine, theirs);
                if union.len() <= self.params.explicit_limit() {
                    *mine = union;
                } else {
                    let mut registers = self.zeroed_registers();
                    for hash in union {
                        raise(&mut registers, self.params, hash as u64);
                    }
                    self.contents = Contents::Registers(registers);
                }
            }
        }
    }

    /// The extension's storage bytes: the 3-byte header, then the form's data.
    pub fn to_bytes(&self) -> Vec<u8> {
        let form = self.form();
        let header = self.params.header(form);
        match &self.contents {
            Contents::Empty => header.to_vec(),
            Contents::Explicit(hashes) => {
                let mut bytes = Vec::with_capacity(3 + 8 * hashes.len());
                bytes.extend_from_slice(&header);
                for hash in hashes {
                    bytes.extend_from_slice(&hash.to_be_bytes());
                }
                bytes
            }
            Contents::Registers(registers) => {
                let width = u32::from(self.params.regwidth);
                let mut bits = BitWriter::new(&header, self.params.full_bytes());
                if form == StoredForm::Sparse {
                    let log2m = u32::from(self.params.log2m);
                    for (index, &value) in registers.iter().enumerate() {
                        if value != 0 {
                            bits.push(((index as u64) << width) | u64::from(value), log2m + width);
                        }
                    }
                } else {
                    for &value in registers.iter() {
                        bits.push(u64::from(value), width);
                    }
                }
                bits.finish()
            }
        }
    }

    fn zeroed_registers(&self) -> Box<[u8]> {
        vec![0; self.params.registers()].into_boxed_slice()
    }

    /// From EXPLICIT to registers (the hashes raised into them).
    fn promote(&mut self) {
        let mut registers = self.zeroed_registers();
        if let Contents::Explicit(hashes) = &self.contents {
            for &hash in hashes {
                raise(&mut registers, self.params, hash as u64);
            }
        }
        self.contents = Contents::Registers(registers);
    }

    /// Whether SPARSE is on and strictly fewer bits than FULL for `filled` non-zero registers
    /// (the extension's rule with its default `hll_set_max_sparse(-1)`).
    fn sparse_is_smaller(&self, filled: usize) -> bool {
        let params = self.params;
        let sparse_bits = filled * usize::from(params.log2m + params.regwidth);
        let full_bits = params.registers() * usize::from(params.regwidth);
        params.sparse && sparse_bits < full_bits
    }
}

/// Raises the register `hash` lands in.
fn raise(registers: &mut [u8], params: SketchParams, hash: u64) {
    let register = Register::of(params, hash);
    let slot = &mut registers[register.index as usize];
    if *slot < register.value {
        *slot = register.value;
    }
}

fn filled(registers: &[u8]) -> usize {
    registers.iter().filter(|&&r| r != 0).count()
}

/// The union of two ascending lists without duplicates, ascending.
fn sorted_union(a: &[i64], b: &[i64]) -> Vec<i64> {
    let mut union = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => {
                union.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                union.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                union.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    union.extend_from_slice(&a[i..]);
    union.extend_from_slice(&b[j..]);
    union
}

/// Packs words most significant bit first after a header, padding the last byte with zeros.
struct BitWriter {
    bytes: Vec<u8>,
    accumulator: u64,
    bits: u32,
}

impl BitWriter {
    fn new(header: &[u8; 3], capacity: usize) -> Self {
        let mut bytes = Vec::with_capacity(3 + capacity);
        bytes.extend_from_slice(header);
        Self {
            bytes,
            accumulator: 0,
            bits: 0,
        }
    }

    /// Appends the low `width` bits of `word` (`width` ≤ 24).
    fn push(&mut self, word: u64, width: u32) {
        self.accumulator = (self.accumulator << width) | word;
        self.bits += width;
        while self.bits >= 8 {
            self.bits -= 8;
            self.bytes.push((self.accumulator >> self.bits) as u8);
        }
        self.accumulator &= (1 << self.bits) - 1;
    }

    fn finish(mut self) -> Vec<u8> {
        if self.bits > 0 {
            self.bytes.push((self.accumulator << (8 - self.bits)) as u8);
        }
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator for the merge-order tests (xorshift64*).
    pub(super) struct Shuffler(u64);

    impl Shuffler {
        pub(super) fn new(seed: u64) -> Self {
            Self(seed | 1)
        }

        pub(super) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        pub(super) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        pub(super) fn shuffle<T>(&mut self, items: &mut [T]) {
            for i in (1..items.len()).rev() {
                items.swap(i, self.below(i + 1));
            }
        }
    }

    fn sketch_of(params: SketchParams, hashes: impl IntoIterator<Item = u64>) -> Sketch {
        let mut sketch = Sketch::new(params);
        for hash in hashes {
            sketch.add_hash(hash);
        }
        sketch
    }

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
    fn headers_carry_the_four_parameters() {
        assert_eq!(
            Sketch::new(SketchParams::default()).to_bytes(),
            [0x11, 0x8b, 0x7f]
        );
        let old = SketchParams::default().with_storage(0, 0).unwrap();
        assert_eq!(Sketch::new(old).to_bytes(), [0x11, 0x8b, 0x00]);
        let p = SketchParams::new(14, 6)
            .unwrap()
            .with_storage(8192, 1)
            .unwrap();
        assert_eq!(Sketch::new(p).to_bytes(), [0x11, (5 << 5) | 14, 0x40 | 14]);
        assert_eq!(p.to_string(), "14, 6, 8192, 1");
    }

    #[test]
    fn storage_settings_the_extension_refuses_are_refused() {
        let p = SketchParams::default();
        for bad in [-2, 3, 6, 16384, i64::MAX, i64::MIN] {
            assert_eq!(
                p.with_storage(bad, 1),
                Err(SketchParamsError::ExplicitCutoff(bad))
            );
        }
        assert_eq!(p.with_storage(-1, 2), Err(SketchParamsError::Sparse(2)));
        assert_eq!(SketchParams::new(3, 5), Err(SketchParamsError::Log2m(3)));
        assert_eq!(SketchParams::new(18, 5), Err(SketchParamsError::Log2m(18)));
        assert_eq!(
            SketchParams::new(11, 0),
            Err(SketchParamsError::RegisterWidth(0))
        );
        assert_eq!(
            SketchParams::new(11, 8),
            Err(SketchParamsError::RegisterWidth(8))
        );
        for good in [-1, 0, 1, 2, 1024, 8192] {
            assert_eq!(
                p.with_storage(good, 0).unwrap().explicit_cutoff.expthresh(),
                good
            );
        }
        assert_eq!(
            SketchParams::new(300, 5),
            Err(SketchParamsError::Log2m(300))
        );
        assert_eq!(
            SketchParams::new(11, -1),
            Err(SketchParamsError::RegisterWidth(-1))
        );
        assert_eq!(SketchParams::default().explicit_limit(), 160);
        let narrow = SketchParams::checked(4, 1, -1, 0).unwrap();
        assert_eq!(narrow.explicit_limit(), 0);
    }

    #[test]
    fn sparse_is_refused_where_the_extension_misreads_its_padding() {
        // Entries narrower than a byte: some SPARSE sketch ends in a whole zero entry of
        // padding (checked against the extension: hll_union(s, s) <> s for these).
        for (log2m, regwidth) in [(4, 1), (4, 2), (5, 1), (5, 2), (6, 1)] {
            assert_eq!(
                SketchParams::new(log2m, regwidth),
                Err(SketchParamsError::SparseMisread {
                    log2m: log2m as u8,
                    regwidth: regwidth as u8
                })
            );
            assert!(SketchParams::checked(log2m, regwidth, -1, 0).is_ok());
        }
        // Narrow entries whose SPARSE form never holds enough of them to end so.
        for (log2m, regwidth) in [(4, 3), (6, 2), (7, 1), (4, 4), (11, 5)] {
            assert!(
                SketchParams::new(log2m, regwidth).is_ok(),
                "{log2m}, {regwidth}"
            );
        }
    }

    #[test]
    fn explicit_sets_list_distinct_hashes_in_signed_order_until_the_cutoff() {
        let params = SketchParams::default();
        let sketch = sketch_of(params, [5, u64::MAX, 5, 1 << 63, 0]);
        assert_eq!(sketch.form(), StoredForm::Explicit);
        let bytes = sketch.to_bytes();
        let listed: Vec<i64> = bytes[3..]
            .chunks(8)
            .map(|c| i64::from_be_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(listed, [i64::MIN, -1, 0, 5]);
        // 160 hashes stay explicit; the 161st promotes, and a repeat never does.
        let full = sketch_of(params, (0..160).map(|i| murmur3_x64_128_h1(&[i as u8, 1])));
        assert_eq!(full.form(), StoredForm::Explicit);
        let mut repeated = full.clone();
        repeated.add_hash(murmur3_x64_128_h1(&[0, 1]));
        assert_eq!(repeated, full);
        repeated.add_hash(murmur3_x64_128_h1(&[0, 2]));
        assert_eq!(repeated.form(), StoredForm::Sparse);
    }

    #[test]
    fn registers_are_sparse_while_that_is_strictly_smaller() {
        // log2m 4, width 5: FULL is 80 bits, a sparse word 9 bits: 8 filled registers (72
        // bits) are sparse, 9 (81) full.
        let params = SketchParams::new(4, 5).unwrap().with_storage(0, 1).unwrap();
        let mut sketch = Sketch::new(params);
        for register in 0..9u64 {
            sketch.add_hash((1 << 4) | register); // value 1 in `register`
            let expected = if register < 8 {
                StoredForm::Sparse
            } else {
                StoredForm::Full
            };
            assert_eq!(sketch.form(), expected, "{} filled", register + 1);
        }
        let sparse = sketch_of(params, [(1 << 4) | 3, (1 << 6) | 11]);
        // (3, 1) and (11, 3) as 9-bit words (index, then value): 0011 00001 and 1011 00011, then
        // zeros to 24 bits.
        let words = (0b0011_00001u32 << 9 | 0b1011_00011) << 6;
        assert_eq!(sparse.to_bytes()[3..], words.to_be_bytes()[1..]);
    }

    #[test]
    fn full_registers_pack_most_significant_bit_first() {
        let params = SketchParams::new(4, 5).unwrap().with_storage(0, 0).unwrap();
        let sketch = sketch_of(params, [1 << 24, (0b100 << 4) | 1]);
        // register 0: rest 2^20 → position 21 = 0b10101; register 1: rest 0b100 → 3.
        let bytes = sketch.to_bytes();
        assert_eq!(bytes.len(), 3 + 10);
        assert_eq!(bytes[3], 0b1010_1000);
        assert_eq!(bytes[4], 0b1100_0000);
    }

    #[test]
    fn a_register_keeps_the_largest_capped_run() {
        let params = SketchParams::new(4, 3).unwrap();
        assert_eq!(
            Register::of(params, 0b1000_0011),
            Register { index: 3, value: 4 }
        );
        assert_eq!(
            Register::of(params, 0b0001_0011),
            Register { index: 3, value: 1 }
        );
        assert_eq!(
            Register::of(params, 1 << 63 | 0b0011),
            Register { index: 3, value: 7 }
        );
        assert_eq!(
            Register::of(params, 0b0101),
            Register { index: 5, value: 0 }
        );
        let params = SketchParams::new(17, 7).unwrap();
        for hash in [0, 1, u64::MAX, 1 << 63, (1 << 17) - 1, 1 << 40] {
            assert!(
                Register::of(params, hash).index < 1 << 17,
                "index of {hash:#x}"
            );
        }
    }

    /// Every order of adding and merging builds the same bytes, at each form's edges.
    #[test]
    fn any_split_and_merge_order_builds_the_same_bytes() {
        let mut random = Shuffler::new(7);
        for params in [
            SketchParams::default(),
            SketchParams::new(4, 3).unwrap(),
            SketchParams::new(6, 4)
                .unwrap()
                .with_storage(16, 0)
                .unwrap(),
            SketchParams::new(10, 2)
                .unwrap()
                .with_storage(0, 1)
                .unwrap(),
        ] {
            for n in [0, 1, 2, 100, 159, 160, 161, 700, 5000] {
                let hashes: Vec<u64> = (0..n).map(|_| random.next()).collect();
                let whole = sketch_of(params, hashes.iter().copied());
                for _ in 0..5 {
                    let parts = 1 + random.below(6);
                    let mut sketches = vec![Sketch::new(params); parts];
                    for &hash in &hashes {
                        sketches[random.below(parts)].add_hash(hash);
                        if random.below(10) == 0 {
                            // a repeat in another part
                            sketches[random.below(parts)].add_hash(hash);
                        }
                    }
                    random.shuffle(&mut sketches);
                    let mut merged = Sketch::new(params);
                    for sketch in &sketches {
                        merged.merge(sketch);
                    }
                    assert_eq!(merged.to_bytes(), whole.to_bytes(), "{params}: {n} values");
                }
            }
        }
    }
}

/// The sketches built here against the ones PostgreSQL's `hll` extension builds, byte for
/// byte: `hll_add_agg` over the same values and `hll_union` / `hll_union_agg` of the parts, in
/// random orders, at each form's edges and at several precisions.
#[cfg(all(test, feature = "postgres"))]
mod postgres_tests {
    use sqlx::PgPool;

    use super::tests::Shuffler;
    use super::*;

    /// The extension's text form of a sketch.
    fn hex(bytes: &[u8]) -> String {
        let digits: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("\\x{digits}")
    }

    /// The values a case adds: strings, or the same count of integers.
    enum Values<'a> {
        Text(&'a [String]),
        Int(&'a [i64]),
    }

    impl Values<'_> {
        fn hashes(&self) -> Vec<u64> {
            match self {
                Values::Text(texts) => texts.iter().map(|t| hash_text(t)).collect(),
                Values::Int(numbers) => numbers.iter().map(|n| hash_i64(*n)).collect(),
            }
        }
    }

    /// `hll_add_agg` over `values` with `params` (`hll_empty` for none: the aggregate of no
    /// rows is NULL, and the layers write no sketch then).
    async fn add_agg(pool: &PgPool, values: &Values<'_>, params: SketchParams) -> String {
        let (log2m, width) = (i32::from(params.log2m), i32::from(params.regwidth));
        let (expthresh, sparseon) = (params.explicit_cutoff.expthresh(), i32::from(params.sparse));
        // The aggregate over an array of the values' SQL type, hashed by its hll_hash_* function.
        let over = |sql_type: &str| {
            let sql = format!(
                "SELECT coalesce(hll_add_agg(hll_hash_{sql_type}(v), $1, $2, $3, $4), hll_empty($1, $2, $3, $4))::text \
                 FROM unnest($5::{sql_type}[]) AS v"
            );
            sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql))
                .bind(log2m)
                .bind(width)
                .bind(expthresh)
                .bind(sparseon)
        };
        let query = match values {
            Values::Text(texts) => over("text").bind(*texts),
            Values::Int(numbers) => over("bigint").bind(*numbers),
        };
        query.fetch_one(pool).await.unwrap()
    }

    /// The number of leading hashes after which a sketch of `params` has exactly `filled`
    /// non-zero registers, if some prefix does.
    fn prefix_with_filled(params: SketchParams, hashes: &[u64], filled: usize) -> Option<usize> {
        let mut registers = vec![0u8; 1 << params.log2m];
        let mut count = 0;
        for (n, &hash) in hashes.iter().enumerate() {
            let register = Register::of(params, hash);
            let slot = &mut registers[register.index as usize];
            if *slot == 0 && register.value > 0 {
                count += 1;
            }
            *slot = (*slot).max(register.value);
            if count == filled && n + 1 > params.explicit_limit() {
                return Some(n + 1);
            }
        }
        None
    }

    /// The value counts a precision is compared at: 0, 1, 2, 100, the explicit cutoff ±1, the
    /// SPARSE→FULL edge ±1 (in filled registers) and every value.
    fn counts(params: SketchParams, hashes: &[u64]) -> Vec<usize> {
        let limit = params.explicit_limit();
        let mut counts = vec![0, 1, 2, 100, limit.saturating_sub(1), limit, limit + 1];
        let full_bits = (1usize << params.log2m) * usize::from(params.regwidth);
        let edge = full_bits.div_ceil(usize::from(params.log2m + params.regwidth));
        for filled in [edge - 1, edge, edge + 1] {
            counts.extend(prefix_with_filled(params, hashes, filled));
        }
        counts.push(hashes.len());
        counts.sort_unstable();
        counts.dedup();
        counts.retain(|&n| n <= hashes.len());
        counts
    }

    async fn compare(
        pool: &PgPool,
        params: SketchParams,
        values: Values<'_>,
        random: &mut Shuffler,
    ) {
        let hashes = values.hashes();
        let mut forms_seen = std::collections::BTreeSet::new();
        for n in counts(params, &hashes) {
            let prefix = match &values {
                Values::Text(texts) => Values::Text(&texts[..n]),
                Values::Int(numbers) => Values::Int(&numbers[..n]),
            };
            let mut whole = Sketch::new(params);
            for &hash in &hashes[..n] {
                whole.add_hash(hash);
            }
            forms_seen.insert(whole.form() as u8);
            let expected = add_agg(pool, &prefix, params).await;
            let context = format!("hll_add_agg({params}) over {n} values");
            assert_eq!(hex(&whole.to_bytes()), expected, "{context}");

            // The same values split at random into parts built here, unioned in a random
            // order here, by hll_union_agg and by a chain of hll_union.
            let parts = 1 + random.below(5);
            let mut sketches = vec![Sketch::new(params); parts];
            for &hash in &hashes[..n] {
                sketches[random.below(parts)].add_hash(hash);
            }
            random.shuffle(&mut sketches);
            let mut merged = Sketch::new(params);
            for sketch in &sketches {
                merged.merge(sketch);
            }
            assert_eq!(
                hex(&merged.to_bytes()),
                expected,
                "{context}, {parts} parts merged here"
            );
            let bytes: Vec<Vec<u8>> = sketches.iter().map(Sketch::to_bytes).collect();
            let union_agg: String = sqlx::query_scalar(
                "SELECT hll_union_agg(s::hll ORDER BY o)::text FROM unnest($1::bytea[]) WITH ORDINALITY AS p(s, o)",
            )
            .bind(&bytes)
            .fetch_one(pool)
            .await
            .unwrap();
            assert_eq!(
                union_agg, expected,
                "{context}: hll_union_agg of {parts} parts"
            );
            let mut chained = hex(&bytes[0]);
            for part in &bytes[1..] {
                chained =
                    sqlx::query_scalar("SELECT hll_union($1::text::hll, $2::bytea::hll)::text")
                        .bind(&chained)
                        .bind(part)
                        .fetch_one(pool)
                        .await
                        .unwrap();
            }
            assert_eq!(chained, expected, "{context}: hll_union of {parts} parts");
        }
        // Each case reached the forms its precision allows.
        assert!(forms_seen.contains(&(StoredForm::Empty as u8)), "{params}");
        if params.explicit_limit() > 0 {
            assert!(
                forms_seen.contains(&(StoredForm::Explicit as u8)),
                "{params}: {forms_seen:?}"
            );
        }
        if params.sparse {
            assert!(
                forms_seen.contains(&(StoredForm::Sparse as u8)),
                "{params}: {forms_seen:?}"
            );
        }
        assert!(
            forms_seen.contains(&(StoredForm::Full as u8)),
            "{params}: {forms_seen:?}"
        );
    }

    /// The precisions refused with SPARSE on are exactly those where the extension reads some
    /// SPARSE sketch back as another one (`hll_union(s, s)` differs from `s`).
    #[sqlx::test(migrations = false)]
    async fn sparse_is_refused_exactly_where_the_extension_misreads_it(pool: PgPool) {
        sqlx::query("CREATE EXTENSION IF NOT EXISTS hll")
            .execute(&pool)
            .await
            .unwrap();
        for log2m in 4..=7u8 {
            for regwidth in 1..=7u8 {
                // Built past the check: SPARSE on, never explicit.
                let params = SketchParams {
                    log2m,
                    regwidth,
                    explicit_cutoff: ExplicitCutoff::Values(0),
                    sparse: true,
                };
                let mut sketch = Sketch::new(params);
                let mut misread = false;
                for register in 0..(1u64 << log2m) {
                    sketch.add_hash((1 << log2m) | register); // value 1 in `register`
                    if sketch.form() != StoredForm::Sparse {
                        break;
                    }
                    let same: bool = sqlx::query_scalar(
                        "SELECT hll_union($1::bytea::hll, $1::bytea::hll) = $1::bytea::hll",
                    )
                    .bind(sketch.to_bytes())
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                    misread |= !same;
                }
                let refused = SketchParams::checked(log2m.into(), regwidth.into(), 0, 1).is_err();
                assert_eq!(refused, misread, "log2m {log2m}, regwidth {regwidth}");
            }
        }
    }

    #[sqlx::test(migrations = false)]
    async fn sketches_built_here_are_byte_for_byte_the_extensions_in_every_form(pool: PgPool) {
        sqlx::query("CREATE EXTENSION IF NOT EXISTS hll")
            .execute(&pool)
            .await
            .expect("the hll extension (scripts/services.sh installs postgresql-NN-hll)");
        let mut texts: Vec<String> = vec![
            "".into(),
            "é".into(),
            "x".repeat(1000),
            "tab\there".into(),
            "17-bytes-exactly!".into(),
        ];
        texts.extend((0..100_000).map(|i| format!("user-{i}")));
        let numbers: Vec<i64> = [0, -1, i64::MIN, i64::MAX]
            .into_iter()
            .chain((0..100_000_i64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15_u64 as i64)))
            .collect();
        let mut random = Shuffler::new(42);
        for (log2m, regwidth, expthresh, sparseon) in [
            (11, 5, -1, 1), // the extension's defaults
            (11, 5, 0, 0),  // FULL from the first value (Braid's form before)
            (4, 3, -1, 1),
            (14, 6, -1, 1),
            (17, 7, -1, 0),
            (8, 1, 16, 1),
            (12, 4, 1024, 1),
            (10, 5, 0, 1),
            (4, 2, -1, 0), // SPARSE refused here (misread padding); auto EXPTHRESH is 0: FULL
            (6, 2, -1, 1), // 8-bit sparse entries: the narrowest with no padding
        ] {
            let params = SketchParams::checked(log2m, regwidth, expthresh, sparseon).unwrap();
            compare(&pool, params, Values::Text(&texts), &mut random).await;
            compare(&pool, params, Values::Int(&numbers), &mut random).await;
        }
    }
}
