//! The sketch's own rules: headers, forms, packing and merge order.

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
