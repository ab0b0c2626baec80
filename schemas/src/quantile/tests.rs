//! Quantile sketches against an exact sort of the same values, in any merge order.

use super::*;

/// A small deterministic generator (xorshift64*).
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Values over 20 powers of ten (wider than a store's window: the collapse takes part),
    /// both signs, some zeros and repeats.
    fn value(&mut self) -> f64 {
        self.value_over(2_000, -8.0)
    }

    /// Values over 9 powers of ten, within a store's window at the default bound.
    fn narrow_value(&mut self) -> f64 {
        self.value_over(900, -4.0)
    }

    fn value_over(&mut self, hundredths: u64, lowest_power: f64) -> f64 {
        let magnitude = 10f64.powf((self.next() % hundredths) as f64 / 100.0 + lowest_power);
        match self.below(10) {
            0 => 0.0,
            1 | 2 => -magnitude,
            3 => 42.0,
            _ => magnitude,
        }
    }
}

fn sketch_of(params: QuantileParams, values: &[f64]) -> QuantileSketch {
    let mut sketch = QuantileSketch::new(params);
    for &value in values {
        sketch.add(value).unwrap();
    }
    sketch
}

const QUANTILES: [f64; 9] = [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0];

/// Every answered quantile is within the sketch's relative accuracy of the exact one.
fn assert_within_accuracy(sketch: &QuantileSketch, values: &[f64], asked: f64, context: &str) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let alpha = sketch.params().relative_accuracy();
    assert!(alpha <= asked, "{context}: {alpha} > {asked}");
    for q in QUANTILES {
        let exact = sorted[(q * (sorted.len() - 1) as f64).floor() as usize];
        let answered = sketch.quantile(q).unwrap();
        assert!(
            (answered - exact).abs() <= alpha * exact.abs() * (1.0 + 1e-9),
            "{context}: q {q}: answered {answered:e}, exact {exact:e}"
        );
    }
}

#[test]
fn quantiles_are_within_the_accuracy_of_an_exact_sort() {
    let mut random = Random(7);
    for accuracy in [0.01, 0.001, 0.05] {
        let params = QuantileParams::for_accuracy(accuracy).unwrap();
        for n in [1, 2, 3, 100, 10_000] {
            let values: Vec<f64> = (0..n).map(|_| random.narrow_value()).collect();
            let sketch = sketch_of(params, &values);
            assert_eq!(sketch.count(), n as u128);
            let context = format!("accuracy {accuracy}, {n} values");
            assert_within_accuracy(&sketch, &values, accuracy, &context);
        }
    }
}

#[test]
fn any_split_merged_in_any_order_is_the_same_sketch() {
    let mut random = Random(11);
    // A small bucket bound, so that parts collapse at different thresholds than the whole.
    for params in [
        QuantileParams::default(),
        QuantileParams::default().with_max_buckets(16).unwrap(),
    ] {
        let values: Vec<f64> = (0..5_000).map(|_| random.value()).collect();
        let whole = sketch_of(params, &values);
        for _ in 0..20 {
            let parts = 1 + random.below(8);
            let mut sketches = vec![QuantileSketch::new(params); parts];
            for &value in &values {
                sketches[random.below(parts)].add(value).unwrap();
            }
            // Merge in a random order, sometimes into an already merged part.
            while sketches.len() > 1 {
                let from = sketches.swap_remove(random.below(sketches.len()));
                let into = random.below(sketches.len());
                sketches[into].merge(&from);
            }
            assert_eq!(sketches[0].to_array(), whole.to_array(), "{params:?}");
        }
    }
}

#[test]
fn a_collapsed_store_keeps_its_largest_magnitudes_exact_to_the_accuracy() {
    let params = QuantileParams::default().with_max_buckets(64).unwrap();
    // 64 buckets at 64 per power of two: one octave kept per store.
    let values: Vec<f64> = (0..1_000)
        .map(|i| 1.0 + f64::from(i) / 1_000.0 * 1e6)
        .collect();
    let sketch = sketch_of(params, &values);
    assert!(sketch.positive.counts.len() <= 64);
    let mut sorted = values.clone();
    sorted.sort_by(f64::total_cmp);
    for q in [0.6_f64, 0.9, 0.99, 1.0] {
        let exact = sorted[(q * 999.0).floor() as usize];
        let answered = sketch.quantile(q).unwrap();
        assert!(
            (answered - exact).abs() <= params.relative_accuracy() * exact,
            "q {q}"
        );
    }
    // The smallest values folded into the window's lowest bucket: answered too high.
    assert!(sketch.quantile(0.0).unwrap() > 1.0);
}

#[test]
fn hostile_values_are_refused_or_counted_alike() {
    let mut sketch = QuantileSketch::new(QuantileParams::default());
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert!(sketch.add(bad).is_err(), "{bad}");
    }
    assert_eq!(sketch.count(), 0);
    assert_eq!(sketch.quantile(0.5), None);
    let extremes = [
        0.0,
        -0.0,
        f64::from_bits(1),
        f64::MIN_POSITIVE,
        1e300,
        -1e300,
        f64::MAX,
        f64::MIN,
        i64::MAX as f64,
        i64::MIN as f64,
        1e-200,
    ];
    for value in extremes {
        sketch.add(value).unwrap();
    }
    assert_eq!(sketch.count(), extremes.len() as u128);
    assert_eq!(
        sketch.quantile(0.0),
        Some(
            -QuantileParams::default()
                .mapping()
                .value(QuantileParams::default().mapping().index(f64::MAX))
        )
    );
    assert!(sketch.quantile(1.0).unwrap() >= f64::MAX * 0.99);
    assert_eq!(sketch.quantile(1.5), None);
    assert_eq!(sketch.quantile(f64::NAN), None);
    let round_trip = QuantileSketch::from_array(&sketch.to_array()).unwrap();
    assert_eq!(round_trip, sketch);
}

#[test]
fn settings_outside_the_range_are_named() {
    for bad in [0.0, -0.01, 0.5, f64::NAN, 0.00001] {
        assert!(matches!(
            QuantileParams::for_accuracy(bad),
            Err(QuantileParamsError::Accuracy(_))
        ));
    }
    assert_eq!(QuantileParams::default().precision, 6);
    assert_eq!(QuantileParams::default().max_buckets, 65_536);
    let fine = QuantileParams::for_accuracy(0.001).unwrap();
    assert_eq!((fine.precision, fine.max_buckets), (9, 65_536));
    let finest = QuantileParams::for_accuracy(0.0001).unwrap();
    assert_eq!((finest.precision, finest.max_buckets), (12, 65_536));
    for bad in [0, 15, 65537, -1, i64::MAX] {
        assert_eq!(
            QuantileParams::default().with_max_buckets(bad),
            Err(QuantileParamsError::MaxBuckets(bad))
        );
    }
}

#[test]
fn arrays_that_are_not_sketches_are_refused() {
    let mut random = Random(3);
    let values: Vec<f64> = (0..200).map(|_| random.value()).collect();
    let good = sketch_of(QuantileParams::default(), &values).to_array();
    assert!(QuantileSketch::from_array(&good).is_ok());
    let mut cases: Vec<Vec<i64>> =
        vec![vec![], good[..5].to_vec(), good[..good.len() - 1].to_vec()];
    let mut header = good.clone();
    header[0] = 2;
    cases.push(header);
    let mut precision = good.clone();
    precision[1] = 17;
    cases.push(precision);
    let mut negative_zeros = good.clone();
    negative_zeros[3] = -1;
    cases.push(negative_zeros);
    let mut counts = good.clone();
    counts[4] = i64::MAX;
    cases.push(counts);
    let mut order = good.clone();
    order.swap(6, 8);
    cases.push(order);
    let mut empty = good.clone();
    empty[7] = 0;
    cases.push(empty);
    let mut wide = good.clone();
    wide[6] = -1_000_000;
    cases.push(wide);
    for case in cases {
        assert!(QuantileSketch::from_array(&case).is_err(), "{case:?}");
    }
}

#[test]
fn the_rank_is_the_floor_of_the_f64_product_and_never_past_the_last() {
    // 0.29 · 100 is 28.999999999999996 in f64: rank 28 (PostgreSQL computes it the same way).
    let mapping = QuantileParams::default().mapping();
    let mut sketch = QuantileSketch::new(QuantileParams::default());
    for i in 0..101 {
        sketch.add(mapping.value(i)).unwrap(); // one value in each of buckets 0..=100
    }
    assert_eq!(sketch.quantile(0.29), Some(mapping.value(28)));
    // Counts near 2^63 in two buckets: q = 1 is the last value, never past it.
    let huge = [1, 6, 2048, 0, 2, 0, 5, i64::MAX, 9, i64::MAX];
    let sketch = QuantileSketch::from_array(&huge).unwrap();
    assert_eq!(sketch.count(), 2 * i64::MAX as u128);
    assert_eq!(sketch.quantile(1.0), Some(mapping.value(9)));
    assert_eq!(sketch.quantile(0.0), Some(mapping.value(5)));
}

#[test]
fn indices_no_finite_value_has_are_refused() {
    for index in [i64::MAX, i64::MIN, 1024 * 64, -1074 * 64 - 1] {
        let array = [1, 6, 2048, 0, 1, 0, index, 1];
        assert!(QuantileSketch::from_array(&array).is_err(), "{index}");
    }
    assert!(QuantileSketch::from_array(&[1, 6, 2048, 0, 1, 0, -1074 * 64, 1]).is_ok());
}

#[test]
fn at_the_default_window_no_i64_value_collapses_and_extremes_leave_the_rest_exact() {
    // A hostile i64::MAX beside ordinary latencies: every ordinary quantile stays within the
    // accuracy of the exact one (a window of 32 powers of two folded them all into 2^31).
    let mut sketch = QuantileSketch::new(QuantileParams::default());
    let values: Vec<f64> = (1..=1000).map(|v| f64::from(v) * 7.0).collect();
    for &v in &values {
        sketch.add(v).unwrap();
    }
    sketch.add(i64::MAX as f64).unwrap();
    sketch.add(1.0).unwrap();
    let mut all = values.clone();
    all.extend([i64::MAX as f64, 1.0]);
    all.sort_by(f64::total_cmp);
    for q in [0.0, 0.01, 0.5, 0.99] {
        let exact = all[((q * (all.len() - 1) as f64).floor()) as usize];
        let answered = sketch.quantile(q).unwrap();
        assert!(
            (answered - exact).abs() <= 0.01 * exact,
            "q {q}: {answered} against {exact}"
        );
    }
}
