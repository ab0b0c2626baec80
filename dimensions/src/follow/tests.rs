//! Hostile messages of a followed topic: each is a change typed by `rows`, or a refusal with
//! its reason; none panics.

use crate::store::Cell;

use super::{Change, parse};
use crate::rows::{RawValue, typed_row};
use crate::testing::dimension;

fn pages() -> schemas::dimension::Dimension {
    dimension(
        "page",
        &[("section", "string"), ("weight", "i64"), ("score", "f64")],
    )
}

/// The refusal's code, or the change.
fn outcome(key: Option<&[u8]>, payload: Option<&[u8]>) -> Result<Change, &'static str> {
    parse(&pages(), key, payload).map_err(|r| r.code())
}

#[test]
fn a_tombstone_with_a_hostile_key_is_refused_not_applied() {
    assert_eq!(outcome(Some(b"/a\0b"), None), Err("unstorable_text"));
    assert_eq!(outcome(Some(&[0xff, 0xfe]), None), Err("wrong_type"));
    assert_eq!(outcome(None, None), Err("missing_field"));
    let long = "p".repeat(5_000);
    assert_eq!(outcome(Some(long.as_bytes()), None), Err("string_too_long"));
    assert_eq!(
        outcome(Some(b""), None),
        Ok(Change::Delete(Cell::Text(String::new()))),
        "an empty key of a string dimension is the key \"\""
    );
}

#[test]
fn a_key_longer_than_the_group_value_limit_is_refused_and_one_at_it_kept() {
    let limit = pages().max_key_bytes;
    assert_eq!(limit, 512, "schema.max_group_value_bytes of the demo");
    for (size, kept) in [(limit, true), (limit + 1, false), (5_000, false)] {
        // Multi-byte characters: the limit is in bytes.
        let key = format!("{}{}", "é".repeat(size / 2), "x".repeat(size % 2));
        assert_eq!(key.len(), size);
        let payload = serde_json::json!({ "page": key, "section": "s" }).to_string();
        let got = outcome(Some(b"k"), Some(payload.as_bytes()));
        if kept {
            assert!(
                matches!(&got, Ok(Change::Upsert(row)) if row.key == Cell::Text(key.clone())),
                "{size} bytes: {got:?}"
            );
        } else {
            assert_eq!(got, Err("string_too_long"), "{size} bytes");
        }
    }
}

#[test]
fn hostile_values_are_refused_with_their_reason() {
    let cases: [(&[u8], &str); 8] = [
        (b"", "not_json"),
        (b"not json", "not_json"),
        (b"[1, 2]", "not_object"),
        (br#"{"section": "s"}"#, "missing_field"),
        (br#"{"page": null, "section": "s"}"#, "missing_field"),
        (
            br#"{"page": "/a", "section": "a\u0000b"}"#,
            "unstorable_text",
        ),
        (
            br#"{"page": "/a", "weight": 9223372036854775808}"#,
            "wrong_type",
        ),
        (br#"{"page": "/a", "section": ["s"]}"#, "wrong_type"),
    ];
    for (payload, code) in cases {
        assert_eq!(
            outcome(Some(b"k"), Some(payload)),
            Err(code),
            "{}",
            String::from_utf8_lossy(payload)
        );
    }
    assert_eq!(
        outcome(Some(b"k"), Some(br#"{"page": "/a", "score": 1e400}"#)),
        Err("not_json"),
        "a number past f64 does not parse"
    );
}

#[test]
fn extreme_numbers_that_fit_are_kept_exactly() {
    for (text, expected) in [
        ("1e308", 1e308),
        ("-1.7976931348623157e308", f64::MIN),
        ("5e-324", 5e-324),
        ("9223372036854775808", 9_223_372_036_854_775_808.0),
    ] {
        let payload = format!(r#"{{"page": "/a", "score": {text}}}"#);
        let Ok(Change::Upsert(row)) = outcome(Some(b"k"), Some(payload.as_bytes())) else {
            panic!("{text} is refused");
        };
        assert_eq!(row.attributes[2], Cell::Float(expected), "{text}");
    }
    let payload = format!(r#"{{"page": "/a", "weight": {}}}"#, i64::MIN);
    let Ok(Change::Upsert(row)) = outcome(Some(b"k"), Some(payload.as_bytes())) else {
        panic!("i64::MIN is refused");
    };
    assert_eq!(row.attributes[1], Cell::Int(i64::MIN));
}

#[test]
fn a_message_is_typed_exactly_as_a_file_row_is() {
    // The same values written as a file's text cells and as JSON: the same verdicts.
    let dimension = pages();
    let cases = [
        (r#""42""#, "42"),
        ("42", "42"),
        (r#"" 7 ""#, " 7 "),
        (r#""x""#, "x"),
    ];
    for (json, cell) in cases {
        let payload = format!(r#"{{"page": "/a", "weight": {json}, "score": {json}}}"#);
        let from_message = parse(&dimension, None, Some(payload.as_bytes())).map_err(|r| r.code());
        let from_file = typed_row(
            0,
            &dimension,
            &RawValue::Text("/a"),
            &[RawValue::Null, RawValue::Text(cell), RawValue::Text(cell)],
        )
        .map(Change::Upsert)
        .map_err(|e| e.rejection().code());
        assert_eq!(from_message, from_file, "{json}");
    }
}

#[test]
fn a_versioned_dimensions_tombstone_deletes_one_version_or_every_one() {
    let dimension = schemas::BraidConfig::load_from(
        Some((
            "test.toml",
            &format!(
                "{}\n[[dimensions]]\nname = \"d\"\nkey = \"page\"\nversioned = true\n\
                 attributes = [{{ name = \"region\", type = \"string\" }}]\n\
                 source = {{ kafka_topic = \"d\" }}\n",
                include_str!("../../../braid.toml")
            ),
        )),
        std::iter::empty(),
    )
    .unwrap()
    .dimensions
    .remove(0);
    let parse = |key: &[u8], payload: Option<&[u8]>| parse(&dimension, Some(key), payload);
    let Ok(Change::DeleteVersion(key, from)) = parse(b"/a@2026-03-03T00:00:00Z", None) else {
        panic!("a version's tombstone")
    };
    assert_eq!(key, Cell::Text("/a".into()));
    assert_eq!(from.to_rfc3339(), "2026-03-03T00:00:00+00:00");
    // The last `@` splits; a suffix that is not a time leaves the whole key.
    assert!(matches!(
        parse(b"/a@b@2026-03-03T00:00:00Z", None),
        Ok(Change::DeleteVersion(Cell::Text(k), _)) if k == "/a@b"
    ));
    assert!(matches!(parse(b"/a@home", None), Ok(Change::Delete(Cell::Text(k))) if k == "/a@home"));
    assert!(matches!(parse(b"/a", None), Ok(Change::Delete(Cell::Text(k))) if k == "/a"));
    // A version without its start, or with a hostile one, is refused naming valid_from.
    for payload in [
        r#"{"page": "/a", "region": "eu"}"#,
        r#"{"page": "/a", "region": "eu", "valid_from": "2026-03-03T00:00:00Z\u0000"}"#,
        r#"{"page": "/a", "region": "eu", "valid_from": 1e308}"#,
        r#"{"page": "/a", "region": "eu", "valid_from": {"at": 1}}"#,
        r#"{"page": "/a", "region": "eu", "valid_from": "10000-01-01T00:00:00Z"}"#,
    ] {
        let refused = parse(b"/a", Some(payload.as_bytes())).unwrap_err();
        assert!(
            refused.to_string().contains("valid_from"),
            "{payload}: {refused}"
        );
        assert!(refused.to_string().len() < 300, "bounded: {refused}");
    }
}
