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

mod hash;
mod params;

pub use hash::{hash_i64, hash_text, hash_value, murmur3_x64_128_h1};
pub use params::{
    DEFAULT_LOG2M, DEFAULT_REGWIDTH, ExplicitCutoff, MAX_EXPLICIT_CUTOFF, SketchParams,
    SketchParamsError,
};

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

    /// Whether no value was added yet (the layers store no sketch then).
    pub fn is_empty(&self) -> bool {
        self.contents == Contents::Empty
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
mod tests;

#[cfg(all(test, feature = "postgres"))]
mod postgres_tests;
