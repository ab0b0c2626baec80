//! Samples against the K lowest hashes over all positions, in any merge order.

use super::*;

fn fields(partition: Partition, offset: Offset) -> Map<String, Json> {
    let mut fields = Map::new();
    fields.insert("user_id".into(), json!(format!("u-{partition}-{offset}")));
    fields.insert("price".into(), json!(offset as f64 / 7.0));
    fields
}

/// Positions on 4 partitions, with a deterministic spread of offsets.
fn positions(n: i64) -> Vec<(Partition, Offset)> {
    (0..n)
        .map(|i| ((i % 4) as Partition, i * 3 + i / 5))
        .collect()
}

/// The independent computation: every position's hash, sorted, the K lowest.
fn lowest(k: usize, positions: &[(Partition, Offset)]) -> Vec<(Partition, Offset)> {
    let mut ranked: Vec<(i64, Partition, Offset)> = positions
        .iter()
        .map(|&(p, o)| (position_hash(p, o), p, o))
        .collect();
    ranked.sort_unstable();
    ranked.into_iter().take(k).map(|(_, p, o)| (p, o)).collect()
}

#[test]
fn a_sample_is_the_k_lowest_position_hashes_in_any_split_and_merge_order() {
    let all = positions(3_000);
    for k in [1, 10, 100] {
        let params = SampleParams::new(k).unwrap();
        let expected = lowest(k as usize, &all);
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut random = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for parts_count in [1, 2, 7] {
            let mut parts = vec![SampleSketch::new(params); parts_count];
            for &(p, o) in &all {
                parts[random(parts_count)].add(p, o, fields(p, o)).unwrap();
            }
            // Some records reach two parts (a replay, a retried flush): kept once.
            for &(p, o) in all.iter().step_by(11) {
                parts[random(parts_count)].add(p, o, fields(p, o)).unwrap();
            }
            while parts.len() > 1 {
                let from = parts.swap_remove(random(parts.len()));
                let into = random(parts.len());
                parts[into].merge(&from);
            }
            let kept: Vec<(Partition, Offset)> =
                parts[0].records().map(|(p, o, _)| (p, o)).collect();
            assert_eq!(kept, expected, "k {k}, {parts_count} parts");
            for (p, o, f) in parts[0].records() {
                assert_eq!(f, &Kept::Fields(Json::Object(fields(p, o))));
            }
        }
    }
}

#[test]
fn large_records_keep_their_position_and_size_only() {
    let params = SampleParams::new(5)
        .unwrap()
        .with_max_record_bytes(64)
        .unwrap();
    let mut sample = SampleSketch::new(params);
    let mut big = Map::new();
    big.insert("text".into(), json!("x".repeat(1_000)));
    sample.add(0, 1, big).unwrap();
    let (_, _, fields) = sample.records().next().unwrap();
    // `{"text": "x…x"}` as jsonb prints it.
    assert_eq!(fields, &Kept::Omitted(1_013));
    sample.add(0, 2, fields_of_size(10)).unwrap();
    assert_eq!(sample.records().count(), 2);
    let stored = sample.to_json();
    assert_eq!(SampleSketch::from_json(params, &stored).unwrap(), sample);
    let mut nul = Map::new();
    nul.insert("name".into(), json!(["ok", "a\u{0}b"]));
    assert_eq!(
        sample.add(0, 3, nul),
        Err(NulInField {
            field: "name".into()
        })
    );
}

fn fields_of_size(n: usize) -> Map<String, Json> {
    let mut fields = Map::new();
    fields.insert("s".into(), json!("y".repeat(n)));
    fields
}

#[test]
fn stored_json_round_trips_and_tampered_json_is_refused() {
    let params = SampleParams::new(20).unwrap();
    let mut sample = SampleSketch::new(params);
    for (p, o) in positions(100) {
        sample.add(p, o, fields(p, o)).unwrap();
    }
    let stored = sample.to_json();
    assert_eq!(SampleSketch::from_json(params, &stored).unwrap(), sample);
    let other_k = SampleParams::new(21).unwrap();
    assert!(SampleSketch::from_json(other_k, &stored).is_err());
    let mut wrong_hash = stored.clone();
    wrong_hash["records"][0]["h"] = json!(1);
    assert!(SampleSketch::from_json(params, &wrong_hash).is_err());
    let mut repeated = stored.clone();
    let first = repeated["records"][0].clone();
    repeated["records"].as_array_mut().unwrap()[1] = first;
    assert!(SampleSketch::from_json(params, &repeated).is_err());
    for bad in [
        json!(null),
        json!({"k": 20}),
        json!({"k": 20, "records": [{"p": 0}]}),
    ] {
        assert!(SampleSketch::from_json(params, &bad).is_err(), "{bad}");
    }
}

#[test]
fn settings_outside_the_range_are_named() {
    for bad in [0, -1, 1_001, i64::MAX, i64::MIN] {
        assert_eq!(SampleParams::new(bad), Err(SampleParamsError::K(bad)));
    }
    let params = SampleParams::new(10).unwrap();
    for bad in [0, 63, 65_537, -5] {
        assert_eq!(
            params.with_max_record_bytes(bad),
            Err(SampleParamsError::MaxRecordBytes(bad))
        );
    }
    // At most 4 MiB of fields per sample.
    assert_eq!(
        SampleParams::new(1_000)
            .unwrap()
            .with_max_record_bytes(65_536),
        Err(SampleParamsError::TooLarge {
            k: 1_000,
            bytes: 65_536
        })
    );
    assert!(
        SampleParams::new(64)
            .unwrap()
            .with_max_record_bytes(65_536)
            .is_ok()
    );
    // Extreme positions hash like any other.
    let mut sample = SampleSketch::new(params);
    for (p, o) in [(0, 0), (i32::MAX, i64::MAX), (0, -1), (i32::MIN, i64::MIN)] {
        sample.add(p, o, Map::new()).unwrap();
    }
    assert_eq!(sample.records().count(), 4);
}
