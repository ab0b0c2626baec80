//! The typing rules every source follows.

use super::{DimensionRows, RawValue, RowProblem, typed_row};
use crate::testing::dimension;

#[test]
fn a_key_past_the_group_value_limit_is_refused_whatever_the_source() {
    let d = dimension("page", &[("section", "string")]);
    let long = "k".repeat(d.max_key_bytes + 1);
    let mut rows = DimensionRows::new(&d);
    let error = rows
        .push(
            3,
            &d,
            RawValue::Text(&long),
            &[RawValue::Null],
            RawValue::Null,
        )
        .unwrap_err();
    assert_eq!(
        error.problem,
        RowProblem::KeyTooLong {
            size: long.len(),
            limit: d.max_key_bytes
        }
    );
    assert!(error.to_string().contains("schema.max_group_value_bytes"));
    assert!(rows.is_empty(), "a refused row leaves nothing");
    // An attribute is not a key: it may be longer.
    rows.push(
        4,
        &d,
        RawValue::Text("k"),
        &[RawValue::Text(&long)],
        RawValue::Null,
    )
    .unwrap();
    assert_eq!(rows.len(), 1);
}

#[test]
fn text_with_a_nul_and_floats_that_are_not_finite_are_refused() {
    let d = dimension("page", &[("section", "string"), ("score", "f64")]);
    let refused = |key: RawValue<'_>, section: RawValue<'_>, score: RawValue<'_>| {
        typed_row(1, &d, &key, &[section, score])
            .unwrap_err()
            .problem
    };
    assert_eq!(
        refused(RawValue::Text("a\0"), RawValue::Null, RawValue::Null),
        RowProblem::Nul { at: 1 }
    );
    assert_eq!(
        refused(RawValue::Text("a"), RawValue::Text("\0"), RawValue::Null),
        RowProblem::Nul { at: 0 }
    );
    for score in [
        RawValue::Text("NaN"),
        RawValue::Text("inf"),
        RawValue::Float(f64::NEG_INFINITY),
    ] {
        assert!(matches!(
            refused(RawValue::Text("a"), RawValue::Null, score),
            RowProblem::WrongType { .. }
        ));
    }
    assert!(
        typed_row(
            1,
            &d,
            &RawValue::Text("a"),
            &[RawValue::Null, RawValue::Float(5e-324)]
        )
        .is_ok()
    );
}
