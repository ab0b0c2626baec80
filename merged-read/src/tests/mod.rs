//! The merged read's own tests: selections it refuses (without a database), and the two
//! statements' answers compared row for row against a real PostgreSQL database per test
//! (`#[sqlx::test]`), over the rows of `crate::fixture`.

mod selection;
mod whole_keys;
mod whole_keys_types;

use schemas::view::View;

use crate::{CellKind, CellValue, MergedAnswer, ReadStatement, Selection};

/// The rows' values, owned.
fn values(answer: &MergedAnswer) -> Vec<Vec<CellValue>> {
    answer
        .rows
        .iter()
        .map(|row| row.cells().map(|c| c.unwrap().to_value()).collect())
        .collect()
}

/// The statement for `selection` reporting `topic`'s speed state: the general one, or the one
/// [`ReadStatement::new`] chooses.
fn statement(view: &View, selection: &Selection, topic: &str, general: bool) -> ReadStatement {
    if general {
        ReadStatement::general(view, selection, topic).unwrap()
    } else {
        ReadStatement::new(view, selection, topic).unwrap()
    }
}

/// Each row's first three values (its key and bucket) with its average `column` as bits (any
/// NaN as one value, NULL as `None`), sorted. `in_sql`: the answer's average is the one
/// PostgreSQL computed (an order term names it), else the one the reader computes.
fn averages(answer: &MergedAnswer, column: &str, in_sql: bool) -> Vec<(String, Option<u64>)> {
    let columns = answer.rows.columns();
    let at = columns.iter().position(|c| c.name == column).unwrap();
    if in_sql {
        assert_eq!(columns[at].kind, CellKind::Float, "read from PostgreSQL");
    } else {
        assert!(
            matches!(columns[at].kind, CellKind::Average { .. }),
            "read in Rust"
        );
    }
    let mut rows: Vec<(String, Option<u64>)> = values(answer)
        .iter()
        .map(|row| {
            let average = match &row[at] {
                CellValue::Float(v) if v.is_nan() => Some(f64::NAN.to_bits()),
                CellValue::Float(v) => Some(v.to_bits()),
                CellValue::Null => None,
                other => panic!("an average reads as a float or NULL, not {other:?}"),
            };
            (format!("{:?}", &row[..3]), average)
        })
        .collect();
    rows.sort();
    rows
}
