//! The extension's hash functions: MurmurHash3 x64-128 with seed 0, its first 64 bits.

use crate::record::Value;

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
