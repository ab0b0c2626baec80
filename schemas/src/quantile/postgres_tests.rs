//! The SQL functions of migrations/…_quantile_sketches.sql against the Rust sketches:
//! unions equal merges element for element, in any order, and quantiles are the same bits.

use sqlx::PgPool;

use super::*;

/// Values over wide magnitudes, both signs, zeros, repeats and extremes.
fn values(seed: u64, n: usize) -> Vec<f64> {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut values: Vec<f64> = (0..n)
        .map(|_| {
            let magnitude = 10f64.powf((next() % 3_000) as f64 / 100.0 - 15.0);
            match next() % 10 {
                0 => 0.0,
                1 | 2 => -magnitude,
                3 => 1.5,
                _ => magnitude,
            }
        })
        .collect();
    values.extend([1e300, -1e300, 1e-300, f64::from_bits(1), i64::MAX as f64]);
    values
}

async fn union_agg(pool: &PgPool, parts: &[Vec<i64>]) -> Vec<i64> {
    // Each part as a row (bigint[][] would need equal lengths): a JSON array of arrays.
    let json = serde_json::to_string(parts).unwrap();
    sqlx::query_scalar(
        "SELECT serving.quantile_union_agg(ARRAY(SELECT jsonb_array_elements_text(p)::bigint) ORDER BY o) \
         FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS parts(p, o)",
    )
    .bind(json)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "crate::pg::MIGRATOR")]
async fn unions_and_quantiles_in_postgresql_equal_the_rust_sketches(pool: PgPool) {
    for (seed, params) in [
        (1, QuantileParams::default()),
        (2, QuantileParams::for_accuracy(0.001).unwrap()),
        // A small window: parts collapse at other thresholds than their union.
        (3, QuantileParams::default().with_max_buckets(16).unwrap()),
    ] {
        let values = values(seed, 3_000);
        let mut whole = QuantileSketch::new(params);
        for &value in &values {
            whole.add(value).unwrap();
        }
        let expected = whole.to_array();
        for parts_count in [1, 2, 5] {
            let mut parts = vec![QuantileSketch::new(params); parts_count];
            for (i, &value) in values.iter().enumerate() {
                parts[(i * 7 + i / 3) % parts_count].add(value).unwrap();
            }
            let mut arrays: Vec<Vec<i64>> = parts.iter().map(QuantileSketch::to_array).collect();
            assert_eq!(
                union_agg(&pool, &arrays).await,
                expected,
                "{params:?}, {parts_count} parts"
            );
            arrays.reverse();
            assert_eq!(
                union_agg(&pool, &arrays).await,
                expected,
                "{params:?}, reversed"
            );
            let mut chained = arrays[0].clone();
            for part in &arrays[1..] {
                chained = sqlx::query_scalar("SELECT serving.quantile_union($1, $2)")
                    .bind(&chained)
                    .bind(part)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            }
            assert_eq!(chained, expected, "{params:?}, chained");
        }
        for q in [0.0, 0.001, 0.1, 0.25, 0.5, 0.75, 0.9, 0.999, 1.0] {
            let answered: Option<f64> = sqlx::query_scalar("SELECT serving.quantile($1, $2)")
                .bind(&expected)
                .bind(q)
                .fetch_one(&pool)
                .await
                .unwrap();
            let rust = whole.quantile(q).unwrap();
            assert_eq!(
                answered.map(f64::to_bits),
                Some(rust.to_bits()),
                "{params:?}: q {q}: {answered:?} {rust}"
            );
        }
    }
}

#[sqlx::test(migrator = "crate::pg::MIGRATOR")]
async fn empty_sketches_odd_quantiles_and_mixed_settings(pool: PgPool) {
    let empty = QuantileSketch::new(QuantileParams::default()).to_array();
    let none: Option<f64> = sqlx::query_scalar("SELECT serving.quantile($1, 0.5)")
        .bind(&empty)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(none, None);
    let mut one = QuantileSketch::new(QuantileParams::default());
    one.add(-2.5).unwrap();
    for q in [-0.1, 1.1, f64::NAN] {
        let answered: Option<f64> = sqlx::query_scalar("SELECT serving.quantile($1, $2)")
            .bind(one.to_array())
            .bind(q)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(answered, None, "q {q}");
    }
    let union: Vec<i64> = sqlx::query_scalar("SELECT serving.quantile_union($1, $2)")
        .bind(&empty)
        .bind(one.to_array())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(union, one.to_array());
    let other = QuantileSketch::new(QuantileParams::for_accuracy(0.001).unwrap()).to_array();
    let refused = sqlx::query("SELECT serving.quantile_union($1, $2)")
        .bind(&empty)
        .bind(&other)
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("different settings"),
        "{refused}"
    );
}

/// The rank is the floor of the f64 product, as in Rust (0.29 · 100 = 28.999999999999996),
/// and every malformed array is an error, never a loop over a claimed length or a made-up count.
#[sqlx::test(migrator = "crate::pg::MIGRATOR")]
async fn ranks_match_rust_and_malformed_arrays_are_refused(pool: PgPool) {
    let params = QuantileParams::default();
    let mapping = params.mapping();
    let mut sketch = QuantileSketch::new(params);
    for i in 0..101 {
        sketch.add(mapping.value(i)).unwrap();
    }
    for q in (0..=100).map(|i| f64::from(i) / 100.0) {
        let answered: Option<f64> = sqlx::query_scalar("SELECT serving.quantile($1, $2)")
            .bind(sketch.to_array())
            .bind(q)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(answered, sketch.quantile(q), "q {q}");
    }
    let good = sketch.to_array();
    let mut malformed: Vec<Vec<i64>> = vec![
        vec![1, 6, 2048, 0, 4_611_686_018_427_387_904, 0], // a length to loop over
        vec![1, 6, 2048, 0, 2, 0, 5, 1],                   // fewer pairs than said
        vec![1, 6, 2048, 0, 1, 0, i64::MAX, 1],            // no finite value has this index
        vec![1, 20_000_000, 2048, 0, 0, 0],                // a precision to allocate for
        vec![1, 6, 0, 0, 0, 0],
        vec![2, 6, 2048, 0, 0, 0],
        vec![1, 6, 2048, -1, 0, 0],
        vec![1, 6, 2048, 0, 1, 0, 5, 0],       // an empty bucket
        vec![1, 6, 2048, 0, 2, 0, 7, 1, 5, 1], // out of order
        vec![1, 6, 16, 0, 2, 0, 0, 1, 16, 1],  // wider than the window
    ];
    malformed.push(good[..good.len() - 1].to_vec());
    for array in &malformed {
        for sql in [
            "SELECT serving.quantile($1, 0.5)::text",
            "SELECT serving.quantile_union($1, $1)::text",
        ] {
            let refused = sqlx::query_scalar::<_, Option<String>>(sql)
                .bind(array)
                .fetch_one(&pool)
                .await;
            assert!(
                refused
                    .as_ref()
                    .is_err_and(|e| e.to_string().contains("not a quantile sketch")),
                "{sql} over {array:?}: {refused:?}"
            );
        }
    }
    // NULL elements and a second dimension.
    for sql in [
        "SELECT serving.quantile(ARRAY[1, 6, 2048, NULL, 0, 0]::bigint[], 0.5)::text",
        "SELECT serving.quantile(ARRAY[[1, 6, 2048], [0, 0, 0]]::bigint[], 0.5)::text",
    ] {
        let refused = sqlx::query_scalar::<_, Option<String>>(sql)
            .fetch_one(&pool)
            .await;
        assert!(refused.is_err(), "{sql}");
    }
}
