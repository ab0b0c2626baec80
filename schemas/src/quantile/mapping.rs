//! Values to bucket indices, with arithmetic that gives the same bits on every machine.
//!
//! A bucket spans a fixed ratio γ = 2^(1/m), with m = 2^p buckets per power of two, so a
//! value's index is its binary exponent times m plus the position of its mantissa among m
//! boundaries. The boundaries 2^(k/m) are built from square roots and products (IEEE 754
//! rounds both exactly), never from a library's `ln` or `pow`, whose last bit may differ
//! between platforms, engines and versions: each layer, on any host, puts a value at a bucket
//! boundary in the same bucket.

use std::sync::OnceLock;

/// The finest mapping: 2^16 buckets per power of two.
pub const MAX_PRECISION: u8 = 16;

/// The bucket boundaries of one precision.
#[derive(Debug)]
pub struct Mapping {
    /// Buckets per power of two, as a power of two.
    precision: u8,
    /// 2^(k/m) for k in 0..=m: `boundaries[0]` is 1, `boundaries[m]` is 2.
    boundaries: Vec<f64>,
    /// The widest bucket's (hi − lo) / (hi + lo), of the boundaries as rounded.
    relative_accuracy: f64,
}

impl Mapping {
    /// The mapping of `precision` (1..=[`MAX_PRECISION`]), built once per process.
    pub fn of(precision: u8) -> &'static Mapping {
        static MAPPINGS: [OnceLock<Mapping>; MAX_PRECISION as usize + 1] =
            [const { OnceLock::new() }; MAX_PRECISION as usize + 1];
        let precision = precision.clamp(1, MAX_PRECISION);
        MAPPINGS[usize::from(precision)].get_or_init(|| Mapping::build(precision))
    }

    fn build(precision: u8) -> Self {
        let m = 1usize << precision;
        // roots[i] = 2^(2^i / m): the square root of 2 taken precision - i times.
        let mut roots = vec![2.0_f64; usize::from(precision) + 1];
        for i in (0..usize::from(precision)).rev() {
            roots[i] = roots[i + 1].sqrt();
        }
        let boundaries: Vec<f64> = (0..=m)
            .map(|k| {
                (0..=usize::from(precision))
                    .filter(|bit| k & (1 << bit) != 0)
                    .fold(1.0_f64, |product, bit| product * roots[bit])
            })
            .collect();
        let relative_accuracy = boundaries
            .windows(2)
            .map(|w| (w[1] - w[0]) / (w[1] + w[0]))
            .fold(0.0, f64::max);
        Self {
            precision,
            boundaries,
            relative_accuracy,
        }
    }

    /// Buckets per power of two.
    pub fn buckets_per_octave(&self) -> i64 {
        1 << self.precision
    }

    /// The relative accuracy of a bucket's representative value: (γ − 1) / (γ + 1), of the
    /// widest bucket as its boundaries were rounded.
    pub fn relative_accuracy(&self) -> f64 {
        self.relative_accuracy
    }

    /// The index of the bucket holding `magnitude` (finite, > 0): bucket `i` holds
    /// [2^(i/m), 2^((i+1)/m)).
    pub fn index(&self, magnitude: f64) -> i64 {
        let (mantissa, exponent) = split(magnitude);
        let m = self.buckets_per_octave();
        // The last boundary not above the mantissa (boundaries[0] = 1 ≤ mantissa < 2).
        let within =
            self.boundaries[1..self.boundaries.len() - 1].partition_point(|&b| b <= mantissa);
        exponent * m + within as i64
    }

    /// The value a bucket stands for: 2·lo·hi / (lo + hi) of its bounds, within
    /// [`Mapping::relative_accuracy`] of every value in it.
    pub fn value(&self, index: i64) -> f64 {
        let m = self.buckets_per_octave();
        let exponent = index.div_euclid(m);
        let within = index.rem_euclid(m) as usize;
        let (lo, hi) = (self.boundaries[within], self.boundaries[within + 1]);
        scale(2.0 * lo * hi / (lo + hi), exponent)
    }
}

/// `value` (finite, > 0) as mantissa in [1, 2) and binary exponent.
fn split(value: f64) -> (f64, i64) {
    let bits = value.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i64;
    if biased == 0 {
        // Subnormal: scale into the normal range (exact) and take 64 back off the exponent.
        let (mantissa, exponent) = split(value * f64::from_bits((1023 + 64) << 52));
        return (mantissa, exponent - 64);
    }
    let mantissa = f64::from_bits((bits & ((1 << 52) - 1)) | (1023 << 52));
    (mantissa, biased - 1023)
}

/// `value · 2^exponent`, by exact multiplications by powers of two (saturating to 0 or
/// infinity outside f64's range, as the product would).
fn scale(mut value: f64, mut exponent: i64) -> f64 {
    while exponent != 0 {
        let step = exponent.clamp(-1000, 1000);
        value *= f64::from_bits(((step + 1023) as u64) << 52);
        exponent -= step;
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_are_powers_of_two_to_the_bucket_fraction() {
        for precision in [1, 6, 10, MAX_PRECISION] {
            let mapping = Mapping::of(precision);
            let m = mapping.buckets_per_octave() as usize;
            assert_eq!(mapping.boundaries[0], 1.0);
            assert_eq!(mapping.boundaries[m], 2.0);
            for (k, &b) in mapping.boundaries.iter().enumerate() {
                let exact = 2f64.powf(k as f64 / m as f64);
                // A product of up to `precision` + 1 rounded factors.
                let tolerance = f64::from(precision + 1) * 2.0 * f64::EPSILON;
                assert!((b - exact).abs() <= tolerance, "{precision}: {k}");
            }
            assert!(mapping.boundaries.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn a_value_lies_in_its_bucket_and_its_bucket_stands_within_the_accuracy() {
        let mapping = Mapping::of(6);
        let alpha = mapping.relative_accuracy();
        assert!(alpha < 0.0055 && alpha > 0.0054, "{alpha}");
        // Subnormals have buckets too (their representative values are as coarse as
        // subnormals are), in order.
        let mut previous = i64::MIN;
        let mut x = f64::from_bits(1);
        while x < f64::MIN_POSITIVE {
            assert!(mapping.index(x) >= previous, "{x:e}");
            previous = mapping.index(x);
            // At least the next subnormal (1.37 × the smallest rounds back to it).
            x = (x * 1.37).max(f64::from_bits(x.to_bits() + 1));
        }
        let mut x = f64::MIN_POSITIVE;
        while x < 1e300 {
            let index = mapping.index(x);
            let represented = mapping.value(index);
            assert!(
                (represented - x).abs() <= alpha * x * (1.0 + 1e-12),
                "{x:e}: {represented:e}"
            );
            if x > 1e-300 {
                assert_eq!(
                    mapping.index(x * 1.5),
                    mapping.index(x * 1.5),
                    "deterministic"
                );
                assert!(
                    mapping.index(x * 1.02) > index,
                    "{x:e}: buckets are narrower than 2 %"
                );
            }
            x *= 1.37;
        }
        assert_eq!(mapping.index(1.0), 0);
        assert_eq!(mapping.index(2.0), 64);
        assert_eq!(mapping.index(0.5), -64);
        assert_eq!(mapping.index(f64::MAX), 1023 * 64 + 63);
        assert_eq!(mapping.index(f64::from_bits(1)), -1074 * 64);
        assert_eq!(split(f64::MIN_POSITIVE), (1.0, -1022));
    }

    #[test]
    fn boundaries_belong_to_the_bucket_they_open() {
        let mapping = Mapping::of(3);
        for (k, &b) in mapping.boundaries[..8].iter().enumerate() {
            assert_eq!(mapping.index(b), k as i64);
            assert_eq!(mapping.index(b * 4.0), 16 + k as i64);
        }
    }
}
