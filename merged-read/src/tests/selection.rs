//! Selections the statement builders cannot take are refused before a statement is built,
//! each error naming what is wrong; the statement for whole keys is chosen only for its shape.

use chrono::{Duration, TimeZone, Utc};
use schemas::event_schema::FieldType;

use crate::fixture::{TOPIC, config, start};
use crate::{
    Filter, FilterValues, OrderTerm, ReadStatement, Selection, SelectionError, Shape, Span,
};

/// Whole keys of `sales` (country, store) at its bucket over two hours.
fn whole_keys() -> Selection {
    Selection {
        from: start(),
        to: start() + Duration::hours(2),
        granularity: Some(60),
        group_by: vec![0, 1],
        filters: vec![Filter {
            field: 0,
            values: FilterValues::Text(vec!["DE".into()]),
        }],
        order: vec![OrderTerm {
            column: "count".into(),
            descending: true,
        }],
        limit: 10,
        decayed_to: start(),
        parts: false,
        quantiles: Vec::new(),
        samples: false,
    }
}

fn refusal(selection: Selection) -> SelectionError {
    let view = &config().views[0];
    ReadStatement::new(view, &selection, TOPIC).unwrap_err()
}

#[test]
fn the_statement_for_whole_keys_is_chosen_for_whole_keys_at_the_bucket_only() {
    let config = config();
    let view = &config.views[0];
    let shape = |selection: &Selection| ReadStatement::new(view, selection, TOPIC).unwrap().shape();
    assert_eq!(shape(&whole_keys()), Shape::WholeKeys);
    let mut reordered = whole_keys();
    reordered.group_by = vec![1, 0];
    assert_eq!(shape(&reordered), Shape::WholeKeys);
    let mut rolled_up = whole_keys();
    rolled_up.granularity = Some(3600);
    assert_eq!(shape(&rolled_up), Shape::General);
    let mut summed = whole_keys();
    summed.granularity = None;
    assert_eq!(shape(&summed), Shape::General);
    let mut one_field = whole_keys();
    one_field.group_by = vec![0];
    one_field.order = vec![OrderTerm::ascending("country")];
    assert_eq!(shape(&one_field), Shape::General);
    let general = ReadStatement::general(view, &whole_keys(), TOPIC).unwrap();
    assert_eq!(general.shape(), Shape::General);
    assert_ne!(
        general.sql(),
        ReadStatement::new(view, &whole_keys(), TOPIC)
            .unwrap()
            .sql()
    );
}

#[test]
fn selections_the_statements_cannot_take_are_refused_naming_what_is_wrong() {
    let mut s = whole_keys();
    s.group_by = vec![0, 2];
    assert_eq!(
        refusal(s),
        SelectionError::NoSuchField {
            span: Span::GroupBy,
            field: 2,
            served: 2
        }
    );
    let mut s = whole_keys();
    s.group_by = vec![1, 1];
    assert_eq!(
        refusal(s),
        SelectionError::KeptTwice {
            field: "store".into()
        }
    );
    let mut s = whole_keys();
    s.filters[0].field = 5;
    assert_eq!(refusal(s).span(), Span::Filter);
    let mut s = whole_keys();
    s.filters[0].field = 1; // store is i64; the values are text
    assert_eq!(
        refusal(s),
        SelectionError::FilterType {
            field: "store".into(),
            field_type: FieldType::I64
        }
    );
    let mut s = whole_keys();
    s.to = s.from;
    assert_eq!(refusal(s).span(), Span::Range);
    for seconds in [0, -60, 90] {
        let mut s = whole_keys();
        s.granularity = Some(seconds);
        assert_eq!(
            refusal(s),
            SelectionError::NotBucketMultiple {
                span: Span::Granularity,
                seconds,
                bucket: 60
            }
        );
    }
    let mut s = whole_keys();
    s.limit = 0;
    assert_eq!(refusal(s), SelectionError::Limit { limit: 0 });
    // An order column is written into the statement: only answer columns are taken.
    for column in ["bucket_start; DROP TABLE x", "batch_part", "nope"] {
        let mut s = whole_keys();
        s.order = vec![OrderTerm::ascending(column)];
        assert_eq!(
            refusal(s),
            SelectionError::NotAnAnswerColumn {
                column: column.into()
            }
        );
    }
    // Parts are answer columns when asked for.
    let mut s = whole_keys();
    s.parts = true;
    s.order = vec![OrderTerm::ascending("batch_part")];
    assert!(ReadStatement::new(&config().views[0], &s, TOPIC).is_ok());
}

#[tokio::test]
async fn a_window_that_is_not_a_multiple_of_the_bucket_is_refused_before_any_read() {
    let config = config();
    let view = &config.views[0];
    let request = crate::WindowRequest {
        window_seconds: 90,
        group_by: vec![0],
        filters: Vec::new(),
        now: Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 30).unwrap(),
        limit: 10,
        end: crate::WindowEnd::CompleteBuckets,
        rank_by: None,
        quantiles: Vec::new(),
    };
    // A pool that never connects: the refusal comes before any statement runs.
    let pool = sqlx::PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap();
    let refused = crate::window_totals(&pool, view, TOPIC, &request)
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            crate::ReadError::Selection(SelectionError::NotBucketMultiple {
                span: Span::Window,
                seconds: 90,
                bucket: 60
            })
        ),
        "{refused:?}"
    );
    assert_eq!(refused.fault(), crate::Fault::Selection);
}
