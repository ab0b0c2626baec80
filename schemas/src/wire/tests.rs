//! The wire format and Avro decoding, against apache-avro's own writer as the independent
//! encoder, and against JSON validation of the same values as the oracle of what is refused.

use apache_avro::Schema;
use apache_avro::types::Value as Avro;
use apache_avro::writer::datum::GenericDatumWriter;

use super::fixtures::{Event, event_schema};
use super::*;
use crate::event_schema::EventSchema;
use crate::record::{Record, Rejection, Value};

/// The writer schema of most tests: every declared field, with other fields around them.
const WRITER: &str = r#"{
  "type": "record", "name": "Event", "namespace": "braid.test",
  "fields": [
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "attrs", "type": {"type": "map", "values": ["null", "double"]}},
    {"name": "user", "type": "string"},
    {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}},
    {"name": "qty", "type": "long"},
    {"name": "price", "type": ["null", "double"]},
    {"name": "member", "type": ["null", "boolean"]},
    {"name": "next", "type": ["null", "Event"]},
    {"name": "seen_at", "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}]}
  ]
}"#;

impl Event {
    fn avro(&self, next: Option<Avro>) -> Avro {
        let optional = |value: Option<Avro>| match value {
            Some(value) => Avro::Union(1, Box::new(value)),
            None => Avro::Union(0, Box::new(Avro::Null)),
        };
        Avro::Record(vec![
            (
                "tags".into(),
                Avro::Array(vec![Avro::String("a".into()), Avro::String("b".into())]),
            ),
            ("ts".into(), Avro::TimestampMillis(self.ts_millis)),
            (
                "attrs".into(),
                Avro::Map(
                    [
                        ("x".to_string(), optional(Some(Avro::Double(1.5)))),
                        ("y".to_string(), optional(None)),
                    ]
                    .into_iter()
                    .collect(),
                ),
            ),
            ("user".into(), Avro::String(self.user.clone())),
            ("digest".into(), Avro::Fixed(4, vec![1, 2, 3, 4])),
            ("qty".into(), Avro::Long(self.qty)),
            ("price".into(), optional(self.price.map(Avro::Double))),
            ("member".into(), optional(self.member.map(Avro::Boolean))),
            ("next".into(), optional(next)),
            (
                "seen_at".into(),
                optional(self.seen_at_micros.map(Avro::TimestampMicros)),
            ),
        ])
    }
}

/// `datum` of `writer` in the wire format, under schema id `id`, encoded by apache-avro.
fn framed(id: u32, writer: &str, datum: Avro) -> Vec<u8> {
    let schema = Schema::parse_str(writer).unwrap();
    let body = GenericDatumWriter::builder(&schema)
        .build()
        .unwrap()
        .write_value_to_vec(datum)
        .unwrap();
    let mut payload = vec![MAGIC_BYTE];
    payload.extend_from_slice(&id.to_be_bytes());
    payload.extend_from_slice(&body);
    payload
}

/// An Avro event schema with `writer` loaded as id 1, and the JSON one.
fn schemas_with(writer: &str) -> (EventSchema, EventSchema) {
    let avro = event_schema(WireFormat::avro());
    let loaded = match AvroPlan::compile(&avro.fields, writer) {
        Ok(plan) => LoadedSchema::Avro(plan),
        Err(detail) => LoadedSchema::Unresolvable(detail),
    };
    avro.wire.writer_schemas().unwrap().insert(1, loaded);
    (avro, event_schema(WireFormat::Json))
}

fn code(result: &Result<Record, Rejection>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(rejection) => rejection.code(),
    }
}

#[test]
fn the_header_is_checked_before_anything_else() {
    assert_eq!(frame(b""), Err(FrameError::Empty));
    assert_eq!(frame(b"{\"ts\":1}"), Err(FrameError::WrongMagicByte(b'{')));
    assert_eq!(frame(&[0, 0, 0, 1]), Err(FrameError::Short(4)));
    // As validation refuses them, naming no schema id.
    let (avro, _) = schemas_with(WRITER);
    assert!(matches!(
        avro.validate(b""),
        Err(Rejection::Undecodable {
            schema_id: None,
            ..
        })
    ));
    assert_eq!(
        avro.validate(b"{\"ts\":1}"),
        Err(Rejection::WrongMagicByte { found: b'{' })
    );
    assert_eq!(
        frame(&[0, 0, 0, 1, 2, 9]),
        Ok(Framed {
            schema_id: 258,
            body: &[9]
        })
    );
    assert_eq!(schema_id_of(&[0, 0xff, 0xff, 0xff, 0xff]), Some(u32::MAX));
    assert_eq!(schema_id_of(b"x"), None);
}

/// Avro and JSON encodings of the same events give the same records, nested and skipped
/// fields (arrays, maps, fixed, a recursive record) notwithstanding.
#[test]
fn avro_reads_the_same_records_as_json() {
    let (avro, json) = schemas_with(WRITER);
    for i in 0..200 {
        let event = Event::valid(i);
        let next = (i % 4 == 0).then(|| Event::valid(i + 1).avro(None));
        let from_avro = avro.validate(&framed(1, WRITER, event.avro(next)));
        let from_json = json.validate(event.json().as_bytes());
        assert_eq!(from_avro, from_json, "event {i}: {}", event.json());
        assert!(from_avro.is_ok(), "event {i}: {from_avro:?}");
    }
}

/// Hostile values refused by Avro exactly as by JSON: NUL, long strings, f64 extremes and
/// subnormals, timestamps out of range, null in a required field.
#[test]
fn avro_refuses_what_json_refuses() {
    let (avro, json) = schemas_with(WRITER);
    let base = || Event::valid(2);
    let cases: Vec<(&str, Event)> = vec![
        (
            "nul",
            Event {
                user: "a\0b".into(),
                ..base()
            },
        ),
        (
            "long string",
            Event {
                user: "x".repeat(17),
                ..base()
            },
        ),
        (
            "16 bytes",
            Event {
                user: "é".repeat(8),
                ..base()
            },
        ),
        (
            "1e308",
            Event {
                price: Some(1e308),
                ..base()
            },
        ),
        (
            "1e200",
            Event {
                price: Some(1e200),
                ..base()
            },
        ),
        (
            "subnormal",
            Event {
                price: Some(5e-324),
                ..base()
            },
        ),
        (
            "1e-200",
            Event {
                price: Some(1e-200),
                ..base()
            },
        ),
        (
            "-0.0",
            Event {
                price: Some(-0.0),
                ..base()
            },
        ),
        (
            "i64 max",
            Event {
                qty: i64::MAX,
                ..base()
            },
        ),
        (
            "i64 min",
            Event {
                qty: i64::MIN,
                ..base()
            },
        ),
        (
            "event time early",
            Event {
                ts_millis: 0,
                ..base()
            },
        ),
        (
            "event time late",
            Event {
                ts_millis: 4_102_444_800_000,
                ..base()
            },
        ),
        (
            "event time i64 max",
            Event {
                ts_millis: i64::MAX,
                ..base()
            },
        ),
        (
            "seen_at year 10000",
            Event {
                seen_at_micros: Some(253_402_300_800_000_000),
                ..base()
            },
        ),
        (
            "seen_at year 0",
            Event {
                seen_at_micros: Some(-62_135_596_800_001_000),
                ..base()
            },
        ),
        (
            "seen_at i64 max",
            Event {
                seen_at_micros: Some(i64::MAX / 1_000 * 1_000),
                ..base()
            },
        ),
    ];
    for (what, event) in cases {
        let from_avro = avro.validate(&framed(1, WRITER, event.avro(None)));
        let from_json = json.validate(event.json().as_bytes());
        assert_eq!(code(&from_avro), code(&from_json), "{what}: {from_avro:?}");
        if what == "i64 max" || what == "-0.0" || what == "16 bytes" {
            assert_eq!(from_avro, from_json, "{what}");
        }
    }
    // NaN and infinity have no JSON form: refused as out of range, as a JSON 1e400 would be
    // refused as not JSON.
    for price in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let event = Event {
            price: Some(price),
            ..base()
        };
        let from_avro = avro.validate(&framed(1, WRITER, event.avro(None)));
        assert_eq!(code(&from_avro), "number_out_of_range", "{price}");
    }
}

/// A datum that is cut short, has bytes left over, or holds an invalid branch, length or
/// UTF-8 is undecodable, and names its schema id; nothing panics on any prefix.
#[test]
fn broken_datums_are_undecodable() {
    let (avro, _) = schemas_with(WRITER);
    let whole = framed(
        1,
        WRITER,
        Event::valid(4).avro(Some(Event::valid(5).avro(None))),
    );
    assert!(avro.validate(&whole).is_ok());
    for end in HEADER_BYTES..whole.len() {
        let rejection = avro.validate(&whole[..end]).unwrap_err();
        assert!(
            matches!(
                rejection,
                Rejection::Undecodable {
                    schema_id: Some(1),
                    ..
                }
            ),
            "cut at {end}: {rejection:?}"
        );
    }
    let mut longer = whole.clone();
    longer.push(0);
    assert_eq!(code(&avro.validate(&longer)), "undecodable");
    // Every single byte changed: refused or read, never a panic.
    for at in HEADER_BYTES..whole.len() {
        for byte in [0x00, 0x01, 0x7f, 0x80, 0xff] {
            let mut changed = whole.clone();
            changed[at] = byte;
            let _ = avro.validate(&changed);
        }
    }
    // An array that claims 2^62 items of null: refused, not spun through.
    let nulls = r#"{"type": "record", "name": "N", "fields": [
        {"name": "n", "type": {"type": "array", "items": "null"}},
        {"name": "ts", "type": "long"}, {"name": "user", "type": "string"},
        {"name": "qty", "type": "long"}]}"#;
    let (avro, _) = schemas_with(nulls);
    let mut payload = vec![0, 0, 0, 0, 1];
    payload.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    assert_eq!(code(&avro.validate(&payload)), "undecodable");
}

#[test]
fn ids_not_loaded_are_refused_as_unknown() {
    let (avro, _) = schemas_with(WRITER);
    let payload = framed(7, WRITER, Event::valid(1).avro(None));
    assert_eq!(
        avro.validate(&payload),
        Err(Rejection::UnknownSchemaId { schema_id: 7 })
    );
    assert_eq!(
        avro.validate(&payload[..3]),
        Err(Rejection::Undecodable {
            schema_id: None,
            detail: "3 bytes, shorter than the wire format's 5-byte header".into()
        })
    );
}

/// What does not resolve says which field and why; records of such a schema are refused.
#[test]
fn writer_schemas_that_do_not_resolve() {
    let schema = event_schema(WireFormat::avro());
    let record =
        |fields: &str| format!(r#"{{"type": "record", "name": "E", "fields": [{fields}]}}"#);
    let ts = r#"{"name": "ts", "type": "long"}"#;
    let user = r#"{"name": "user", "type": "string"}"#;
    let qty = r#"{"name": "qty", "type": "long"}"#;
    let cases = [
        (record(&format!("{ts}, {user}")), "no field `qty`"),
        (
            record(&format!(
                r#"{ts}, {user}, {{"name": "qty", "type": "string"}}"#
            )),
            "`qty` is i64",
        ),
        (
            record(&format!(
                r#"{ts}, {user}, {qty}, {{"name": "price", "type": "bytes"}}"#
            )),
            "`price` is f64",
        ),
        (
            record(&format!(
                r#"{ts}, {user}, {qty}, {{"name": "member", "type": ["string", "long"]}}"#
            )),
            "`member` is bool",
        ),
        (
            record(&format!(
                r#"{{"name": "ts", "type": {{"type": "long", "logicalType": "local-timestamp-millis"}}}}, {user}, {qty}"#
            )),
            "local-timestamp-millis",
        ),
        (r#""string""#.to_string(), "not a record"),
        ("{".to_string(), "not an Avro schema"),
        (
            r#"{"type": "record", "name": "E", "fields": [{"name": "x", "type": "Missing"}]}"#
                .to_string(),
            "",
        ),
    ];
    for (writer, expected) in cases {
        let error = AvroPlan::compile(&schema.fields, &writer).unwrap_err();
        assert!(error.contains(expected), "{writer}: {error}");
    }
    // A missing optional field is fine: never present.
    let plan = AvroPlan::compile(&schema.fields, &record(&format!("{ts}, {user}, {qty}")));
    assert!(plan.is_ok(), "{plan:?}");
}

/// Nested paths, through a record and a union of null and a record; enums as their symbol;
/// dates, nanoseconds and decimals; a union of null and a record that is null leaves its
/// fields absent (a required one then missing).
#[test]
fn nested_paths_and_logical_types() {
    let mut schema = event_schema(WireFormat::avro());
    schema.fields[1].path = Some("who.name".into());
    schema.fields[2].path = Some("order.qty".into());
    schema.fields[3].path = Some("order.price".into());
    schema.fields[5].path = Some("seen".into());
    let writer = r#"{"type": "record", "name": "E", "fields": [
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-nanos"}},
        {"name": "who", "type": {"type": "record", "name": "Who", "fields": [
            {"name": "id", "type": "long"},
            {"name": "name", "type": {"type": "enum", "name": "Name", "symbols": ["ann", "bob"]}}]}},
        {"name": "order", "type": ["null", {"type": "record", "name": "Order", "fields": [
            {"name": "qty", "type": {"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 0}},
            {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 2}}]}]},
        {"name": "seen", "type": {"type": "int", "logicalType": "date"}}]}"#;
    schema.wire.writer_schemas().unwrap().insert(
        1,
        LoadedSchema::Avro(AvroPlan::compile(&schema.fields, writer).unwrap()),
    );
    let datum = |order: Option<(i64, i64)>| {
        Avro::Record(vec![
            ("ts".into(), Avro::TimestampNanos(1_767_225_600_000_001_999)),
            (
                "who".into(),
                Avro::Record(vec![
                    ("id".into(), Avro::Long(9)),
                    ("name".into(), Avro::Enum(1, "bob".into())),
                ]),
            ),
            (
                "order".into(),
                match order {
                    Some((qty, cents)) => Avro::Union(
                        1,
                        Box::new(Avro::Record(vec![
                            (
                                "qty".into(),
                                Avro::Decimal(qty.to_be_bytes().to_vec().into()),
                            ),
                            (
                                "price".into(),
                                Avro::Decimal(cents.to_be_bytes().to_vec().into()),
                            ),
                        ])),
                    ),
                    None => Avro::Union(0, Box::new(Avro::Null)),
                },
            ),
            ("seen".into(), Avro::Date(20_454)),
        ])
    };
    let record = schema
        .validate(&framed(1, writer, datum(Some((-42, -12_345)))))
        .unwrap();
    assert_eq!(
        record.values,
        vec![
            Some(Value::Timestamp(1_767_225_600_000_001)),
            Some(Value::String("bob".into())),
            Some(Value::I64(-42)),
            Some(Value::F64(-123.45)),
            None,
            Some(Value::Timestamp(20_454 * 86_400_000_000)),
        ]
    );
    assert_eq!(
        schema.validate(&framed(1, writer, datum(None))),
        Err(Rejection::MissingField {
            field: "qty".into()
        })
    );
}

/// Decimals: the unscaled value when it fits i64 and the scale is 0, else the value as f64;
/// beyond f64, infinite (refused as out of range).
#[test]
fn decimals_by_their_bytes() {
    use crate::record::RawValue;
    let int = |raw: RawValue<'_>| match raw {
        RawValue::I64(v) => Some(v),
        _ => None,
    };
    let float = |raw: RawValue<'_>| match raw {
        RawValue::F64(v) => Some(v),
        _ => None,
    };
    assert_eq!(int(avro::decimal(&[], 0)), Some(0));
    assert_eq!(int(avro::decimal(&[0xff, 0x7f], 0)), Some(-129));
    assert_eq!(
        int(avro::decimal(&i64::MIN.to_be_bytes(), 0)),
        Some(i64::MIN)
    );
    let mut wide = vec![0u8; 32];
    wide[31] = 5;
    assert_eq!(int(avro::decimal(&wide, 0)), Some(5));
    assert_eq!(float(avro::decimal(&[0x01, 0x00], 2)), Some(2.56));
    let over = (i128::from(i64::MAX) + 1).to_be_bytes();
    assert_eq!(
        float(avro::decimal(&over, 0)),
        Some(9.223_372_036_854_776e18)
    );
    // Beyond i128, rounded as the decimal text would be (BigQuery's BIGNUMERIC is 32 bytes).
    let mut huge = vec![0x7fu8];
    huge.extend([0xff; 20]);
    assert_eq!(float(avro::decimal(&huge, 0)), Some(2f64.powi(167))); // 2^167 - 1, rounded
    let mut small = vec![0u8; 31];
    small.push(2); // 2 × 10^-2 in a 32-byte decimal(77, 2)
    assert_eq!(float(avro::decimal(&small, 2)), Some(0.02));
    assert_eq!(float(avro::decimal(&[0xff; 32], 38)), Some(-1e-38));
    let mut beyond = vec![0x7fu8];
    beyond.extend([0xff; 200]);
    assert_eq!(float(avro::decimal(&beyond, 0)), Some(f64::INFINITY));
    // Bounded work: past 512 bytes out of range, past a scale of 2,000 zero.
    assert_eq!(float(avro::decimal(&[0x01; 600], 5)), Some(f64::INFINITY));
    assert_eq!(
        float(avro::decimal(&[0xf1; 600], 5)),
        Some(f64::NEG_INFINITY)
    );
    assert_eq!(float(avro::decimal(&[0x01; 300], 655_360)), Some(0.0));
    assert_eq!(float(avro::decimal(&[0x01; 300], 1_800)), Some(0.0)); // ~1e-1078
    assert_eq!(
        float(avro::decimal(&[0x01; 300], 1_000)),
        Some(
            format!(
                "{}e-1000",
                num_bigint::BigInt::from_signed_bytes_be(&[0x01; 300])
            )
            .parse()
            .unwrap()
        )
    );
}

/// A union with a branch that does not convert refuses only the records holding that branch,
/// as a wrong type (as JSON refuses only the records holding a wrong value); a union with no
/// branch that converts does not resolve.
#[test]
fn union_branches_that_do_not_convert_refuse_their_records_only() {
    let writer = r#"{"type": "record", "name": "E", "fields": [
        {"name": "ts", "type": "long"},
        {"name": "user", "type": ["null", "string", "long", {"type": "array", "items": "int"}]},
        {"name": "qty", "type": "long"}]}"#;
    let (avro, _) = schemas_with(writer);
    let datum = |user: Avro| {
        Avro::Record(vec![
            ("ts".into(), Avro::Long(1_767_225_600_000)),
            ("user".into(), user),
            ("qty".into(), Avro::Long(1)),
        ])
    };
    let ok = avro.validate(&framed(
        1,
        writer,
        datum(Avro::Union(1, Box::new(Avro::String("u".into())))),
    ));
    assert!(ok.is_ok(), "{ok:?}");
    let long = avro.validate(&framed(
        1,
        writer,
        datum(Avro::Union(2, Box::new(Avro::Long(7)))),
    ));
    assert!(
        matches!(&long, Err(Rejection::WrongType { field, found, .. }) if field == "user" && found == "an Avro integer"),
        "{long:?}"
    );
    let array = avro.validate(&framed(
        1,
        writer,
        datum(Avro::Union(
            3,
            Box::new(Avro::Array(vec![Avro::Int(1), Avro::Int(2)])),
        )),
    ));
    assert_eq!(code(&array), "wrong_type");
    let null = avro.validate(&framed(
        1,
        writer,
        datum(Avro::Union(0, Box::new(Avro::Null))),
    ));
    assert_eq!(code(&null), "missing_field");
    // Null and bytes: null reads as missing, bytes are refused; bytes alone do not resolve.
    let schema = event_schema(WireFormat::avro());
    let null_or_bytes = r#"{"type": "record", "name": "E", "fields": [
        {"name": "ts", "type": "long"}, {"name": "user", "type": "string"},
        {"name": "qty", "type": "long"}, {"name": "price", "type": ["null", "bytes"]}]}"#;
    assert!(AvroPlan::compile(&schema.fields, null_or_bytes).is_ok());
    let bytes_union = r#"{"type": "record", "name": "E", "fields": [
        {"name": "ts", "type": "long"}, {"name": "user", "type": ["bytes", "boolean"]},
        {"name": "qty", "type": "long"}]}"#;
    let error = AvroPlan::compile(&schema.fields, bytes_union).unwrap_err();
    assert!(error.contains("`user` is string"), "{error}");
}

/// JSON keeps its recorded rules byte for byte; Avro adds the format and the decoding rule.
#[test]
fn validation_rules_name_the_format_only_for_avro() {
    use crate::validation_rules::ValidationRules;
    let json = ValidationRules::of(&event_schema(WireFormat::Json));
    assert!(!json.to_json().contains("format"));
    let avro = ValidationRules::of(&event_schema(WireFormat::avro()));
    assert!(avro.to_json().contains(r#""schema.format":"avro""#));
    assert_ne!(json.fingerprint(), avro.fingerprint());
}
