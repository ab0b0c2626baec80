//! The sketches built here against the ones PostgreSQL's `hll` extension builds, byte for
//! byte: `hll_add_agg` over the same values and `hll_union` / `hll_union_agg` of the parts, in
//! random orders, at each form's edges and at several precisions.

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

async fn compare(pool: &PgPool, params: SketchParams, values: Values<'_>, random: &mut Shuffler) {
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
            chained = sqlx::query_scalar("SELECT hll_union($1::text::hll, $2::bytea::hll)::text")
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
