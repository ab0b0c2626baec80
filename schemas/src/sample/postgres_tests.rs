//! The SQL union of migrations/…_sample_sketches.sql against the Rust samples.

use sqlx::PgPool;
use sqlx::types::Json as SqlJson;

use super::*;

#[sqlx::test(migrator = "crate::pg::MIGRATOR")]
async fn unions_in_postgresql_keep_what_the_rust_merge_keeps(pool: PgPool) {
    for k in [1, 7, 50] {
        let params = SampleParams::new(k).unwrap();
        let mut whole = SampleSketch::new(params);
        let mut parts = vec![SampleSketch::new(params); 4];
        for i in 0..600_i64 {
            let (p, o) = ((i % 3) as Partition, i * 5);
            let mut fields = Map::new();
            fields.insert("n".into(), json!(i));
            fields.insert("x".into(), json!(format!("é\t{i}")));
            whole.add(p, o, fields.clone()).unwrap();
            parts[(i as usize * 7 + 3) % 4]
                .add(p, o, fields.clone())
                .unwrap();
            if i % 13 == 0 {
                // A record in two parts.
                parts[(i as usize + 1) % 4].add(p, o, fields).unwrap();
            }
        }
        let stored: Vec<SqlJson<Json>> = parts.iter().map(|s| SqlJson(s.to_json())).collect();
        for order in ["o", "-o"] {
            let union: SqlJson<Json> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT serving.sample_union_agg(s ORDER BY {order}) FROM unnest($1::jsonb[]) WITH ORDINALITY AS u(s, o)"
            )))
            .bind(&stored)
            .fetch_one(&pool)
            .await
            .unwrap();
            assert_eq!(
                SampleSketch::from_json(params, &union.0).unwrap(),
                whole,
                "k {k}, order {order}"
            );
        }
    }
    let one = SqlJson(SampleSketch::new(SampleParams::new(1).unwrap()).to_json());
    let two = SqlJson(SampleSketch::new(SampleParams::new(2).unwrap()).to_json());
    let refused = sqlx::query("SELECT serving.sample_union($1, $2)")
        .bind(&one)
        .bind(&two)
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("different settings"),
        "{refused}"
    );
    for bad in [
        serde_json::json!({"k": 2.5, "b": 1024, "records": []}),
        serde_json::json!({"k": 0, "b": 1024, "records": []}),
        serde_json::json!({"k": 1, "b": 1024}),
    ] {
        let refused = sqlx::query("SELECT serving.sample_union($1, $1)")
            .bind(SqlJson(&bad))
            .execute(&pool)
            .await
            .unwrap_err();
        assert!(
            refused.to_string().contains("not a sample"),
            "{bad}: {refused}"
        );
    }
}

#[sqlx::test(migrator = "crate::pg::MIGRATOR")]
async fn the_record_bound_holds_for_the_fields_as_postgresql_prints_them(pool: PgPool) {
    let values = [
        json!(1e300),
        json!(-1e300),
        json!(1e-200),
        json!(f64::from_bits(1)),
        json!(-0.0),
        json!(1.0),
        json!(17.5),
        json!(0.1),
        json!(1e16),
        json!(123456789.123),
        json!(i64::MAX),
        json!(i64::MIN),
        json!("é\"\\\n\u{1}\u{10FFFF}"),
        json!(true),
    ];
    for value in values {
        let mut fields = Map::new();
        fields.insert("v".into(), value.clone());
        fields.insert("page".into(), json!("/home"));
        let printed: i32 = sqlx::query_scalar("SELECT octet_length(($1::jsonb)::text)")
            .bind(SqlJson(Json::Object(fields.clone())))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(
            usize::try_from(printed).unwrap() <= rendered_size(&fields),
            "{value}: PostgreSQL prints {printed} bytes, the bound counted {}",
            rendered_size(&fields)
        );
    }
    // A 30-byte record whose f64 prints as 300 digits is over a 64-byte bound.
    let mut sample = SampleSketch::new(
        SampleParams::new(1)
            .unwrap()
            .with_max_record_bytes(64)
            .unwrap(),
    );
    let mut fields = Map::new();
    fields.insert("v".into(), json!(1e300));
    sample.add(0, 0, fields).unwrap();
    assert!(matches!(sample.records().next(), Some((0, 0, Kept::Omitted(n))) if *n > 300));
}
