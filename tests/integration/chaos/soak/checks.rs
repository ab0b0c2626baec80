//! The checks of a checkpoint, made while the faults go on and nothing is paused: each compares
//! what Braid shows with an independent fold over exactly the records below the positions Braid
//! reports with it (an API answer's provenance; the speed positions read in the same snapshot as
//! the SQL views; the Delta log's positions of the version read; the follower's positions read
//! with its table), so no check waits for the pipeline to catch up. The last checkpoint, after
//! the input has stopped and everything has caught up, checks the same and that nothing is left
//! behind.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::{Connection, PgPool};

use super::topic::{Positions, TopicCache, refresh};
use crate::alerts::receiver::Receiver;
use crate::compare::{Source, read_rows};
use crate::oracle::{self, DEMO_VIEW_COLUMNS as VIEWS, ViewRows};
use crate::support::Pipeline;

/// What a check found: Ok, or what differs.
pub type Checked = Result<(), String>;

/// Where `actual` differs from `expected` (the first few keys), if anywhere.
fn rows_differ(view: &str, expected: &ViewRows, actual: &ViewRows) -> Checked {
    let missing: Vec<_> = expected
        .iter()
        .filter(|(k, v)| actual.get(*k) != Some(v))
        .take(3)
        .collect();
    let extra: Vec<_> = actual
        .iter()
        .filter(|(k, _)| !expected.contains_key(*k))
        .take(3)
        .collect();
    if missing.is_empty() && extra.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{view}: {} rows expected, {} read; expected {missing:?}, unexpected {extra:?}",
            expected.len(),
            actual.len()
        ))
    }
}

/// The demo views over the records below `positions`, as the oracle folds them.
fn expected_views(cache: &TopicCache, positions: &Positions) -> BTreeMap<&'static str, ViewRows> {
    oracle::demo_views(cache.below(positions))
}

/// GET every demo view (retried while `braid serve` restarts or answers 503), then each answer
/// against the fold over the records below the positions it reports.
pub async fn api(address: &str, range: &str, cache: &mut TopicCache) -> Checked {
    let mut answers = Vec::new();
    for (view, _, _) in VIEWS {
        let path = format!("/v1/views/{view}?{range}");
        let deadline = Instant::now() + Duration::from_secs(120);
        let answer = loop {
            let (address, asked) = (address.to_string(), path.clone());
            let got = tokio::task::spawn_blocking(move || {
                crate::http::try_get_text(&address, &asked, Duration::from_secs(60))
            })
            .await
            .unwrap();
            match got {
                Ok((200, body)) => {
                    break serde_json::from_str::<Value>(&big_integers_as_text(&body))
                        .map_err(|e| format!("GET {path}: {e}"))?;
                }
                other if Instant::now() > deadline => {
                    return Err(format!("GET {path}: {other:?}"));
                }
                // Serve restarting (refused) or PostgreSQL away (503): ask again.
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        };
        if answer["truncated"] != false {
            return Err(format!("GET {path}: truncated"));
        }
        answers.push(answer);
    }
    // Read after the answers, so that the topic holds every record below their positions.
    refresh(cache).await?;
    for ((view, groups, metrics), answer) in VIEWS.into_iter().zip(answers) {
        let positions = crate::support::reported_positions(&answer["provenance"]["speed"]);
        let expected = expected_views(cache, &positions).remove(view).unwrap();
        let actual = rows_of(&answer, groups, metrics)?;
        rows_differ(&format!("GET /v1/views/{view}"), &expected, &actual)?;
    }
    Ok(())
}

/// JSON text with every integer literal of more than 18 digits turned into a string, so that
/// sums beyond 64 bits (hostile i64 values) are read exactly rather than as floats.
fn big_integers_as_text(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + 64);
    let mut chars = json.chars().peekable();
    let (mut in_string, mut escaped) = (false, false);
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        if c == '"' {
            in_string = true;
            out.push(c);
            continue;
        }
        if c == '-' || c.is_ascii_digit() {
            let mut number = c.to_string();
            while let Some(&d) = chars.peek() {
                if d.is_ascii_digit() || matches!(d, '.' | 'e' | 'E' | '+' | '-') {
                    number.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            let digits = number.trim_start_matches('-');
            if digits.len() > 18 && digits.chars().all(|d| d.is_ascii_digit()) {
                out.push('"');
                out.push_str(&number);
                out.push('"');
            } else {
                out.push_str(&number);
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// One view's rows from an API answer, keyed like the oracle's (metrics that are integers, or
/// integers beyond 64 bits as text).
fn rows_of(answer: &Value, groups: &[&str], metrics: &[&str]) -> Result<ViewRows, String> {
    let mut rows = ViewRows::new();
    for row in answer["rows"].as_array().ok_or("no rows")? {
        let key: Vec<Option<String>> = groups
            .iter()
            .map(|g| match &row[*g] {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            })
            .collect();
        let bucket =
            chrono::DateTime::parse_from_rfc3339(row["bucket_start"].as_str().unwrap_or(""))
                .map_err(|e| format!("bucket_start of {row}: {e}"))?
                .timestamp_micros();
        let mut values = Vec::new();
        for m in metrics {
            values.push(match &row[*m] {
                Value::Null => None,
                Value::String(s) => Some(s.parse::<i128>().map_err(|e| format!("{m} {s}: {e}"))?),
                Value::Number(n) => Some(
                    n.to_string()
                        .parse::<i128>()
                        .map_err(|e| format!("{m} {n}: {e}"))?,
                ),
                other => return Err(format!("{m} is {other}")),
            });
        }
        rows.insert((key, bucket), values);
    }
    Ok(rows)
}

/// The speed positions of `topic`.
async fn speed_positions(
    connection: &mut sqlx::PgConnection,
    topic: &str,
) -> Result<Positions, String> {
    let rows: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT partition, next_offset FROM braid_internal.speed_positions WHERE topic = $1",
    )
    .bind(topic)
    .fetch_all(&mut *connection)
    .await
    .map_err(|e| e.to_string())?;
    Ok(rows.into_iter().collect())
}

/// In one snapshot: the speed positions, `SELECT * FROM serving.<view>` for every demo view,
/// the speed layer's dead letters and the merged `unique_visitors` sketches; against the fold,
/// the refusals and PostgreSQL's own `hll_add_agg` over the records below those positions.
/// Returns the positions too.
pub async fn sql_views_sketches_and_dead_letters(
    pool: &PgPool,
    topic: &str,
    cache: &mut TopicCache,
) -> (Positions, Vec<(&'static str, Checked)>) {
    let mut connection = match pool.acquire().await {
        Ok(c) => c,
        Err(e) => return (Positions::new(), vec![("sql views", Err(e.to_string()))]),
    };
    let mut tx = match connection
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
    {
        Ok(tx) => tx,
        Err(e) => return (Positions::new(), vec![("sql views", Err(e.to_string()))]),
    };
    let positions = match speed_positions(&mut tx, topic).await {
        Ok(p) => p,
        Err(e) => return (Positions::new(), vec![("sql views", Err(e))]),
    };
    let serving = read_rows(&mut tx, Source::Serving).await;
    let letters = dead_letters(&mut tx, "speed", topic).await;
    if let Err(e) = refresh(cache).await {
        return (positions, vec![("sql views", Err(e))]);
    }
    let mut results = Vec::new();
    let expected = expected_views(cache, &positions);
    let mut views = Ok(());
    for (view, rows) in &expected {
        views = views.and_then(|()| rows_differ(&format!("serving.{view}"), rows, &serving[*view]));
    }
    results.push(("sql views", views));
    // The temporary table of the visits is the transaction's one write (rolled back).
    let sketches = crate::compare::distinct_sketches_match(&mut tx, cache.below(&positions)).await;
    results.push(("distinct sketches", sketches));
    results.push((
        "speed dead letters",
        letters.and_then(|letters| letters_equal_refusals("speed", &letters, cache, &positions)),
    ));
    let _ = tx.rollback().await;
    (positions, results)
}

type Letters = BTreeSet<(i32, i64, String)>;

async fn dead_letters(
    connection: &mut sqlx::PgConnection,
    layer: &str,
    topic: &str,
) -> Result<Letters, String> {
    let rows: Vec<(i32, i64, String)> = sqlx::query_as(
        "SELECT partition, \"offset\", reason_code FROM braid_internal.dead_letters WHERE layer = $1 AND topic = $2",
    )
    .bind(layer)
    .bind(topic)
    .fetch_all(&mut *connection)
    .await
    .map_err(|e| e.to_string())?;
    Ok(rows.into_iter().collect())
}

/// The dead letters below `positions` against the oracle's refusals below them; none may lie
/// at or past them for the speed layer (written in the flush that moves its positions).
fn letters_equal_refusals(
    layer: &str,
    letters: &Letters,
    cache: &TopicCache,
    positions: &Positions,
) -> Checked {
    let refused: Letters = cache
        .below(positions)
        .filter_map(|m| oracle::refusal(&m.payload).map(|c| (m.partition, m.offset, c.into())))
        .collect();
    let below = |(p, o, _): &&(i32, i64, String)| positions.get(p).is_some_and(|end| o < end);
    let stored: Letters = letters.iter().filter(below).cloned().collect();
    let ahead = letters.len() - stored.len();
    if stored != refused {
        return Err(format!(
            "{layer}: {} dead letters below the positions, {} refusals; first differences {:?}",
            stored.len(),
            refused.len(),
            stored
                .symmetric_difference(&refused)
                .take(3)
                .collect::<Vec<_>>()
        ));
    }
    if layer == "speed" && ahead > 0 {
        return Err(format!(
            "speed: {ahead} dead letters past its stored positions"
        ));
    }
    Ok(())
}

/// What the lake check found.
pub struct Lake {
    pub version: i64,
    pub rows: usize,
    pub lost: usize,
    pub duplicated: usize,
    /// Valid records of the whole topic (read so far) that the version lacks, whatever the
    /// positions: at the end, once everything has caught up, what is lost.
    pub missing: usize,
    pub positions: Positions,
}

/// The newest Delta version and its positions; the (partition, offset) of its rows read by the
/// Python `deltalake` package; each valid record below those positions exactly once, nothing
/// else; and the sink's dead letters below them equal to the refusals.
pub async fn lake(
    pool: &PgPool,
    pipeline: &Pipeline,
    cache: &mut TopicCache,
) -> (Option<Lake>, Vec<(&'static str, Checked)>) {
    let fail = |e: String| (None, vec![("lake", Err(e))]);
    let schema = schemas::BraidConfig::load(pipeline.config.as_deref())
        .unwrap()
        .schema;
    let Some(table) = pipeline.lake.open(&schema).await else {
        return fail("the Delta table does not open".into());
    };
    let Some(version) = table.version() else {
        return fail("the Delta table has no version".into());
    };
    let version = version as i64;
    let partitions: Vec<i32> = (0..8).collect();
    let positions =
        match batch_layer::lake::positions_in_log(&table, &pipeline.topic, &partitions).await {
            Ok(p) => p,
            Err(e) => return fail(format!("positions in the Delta log: {e}")),
        };
    let letters = match pool.acquire().await {
        Ok(mut c) => dead_letters(&mut c, "sink", &pipeline.topic).await,
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = refresh(cache).await {
        return fail(e);
    }
    let reader = pipeline.clone();
    let read = tokio::task::spawn_blocking(move || read_positions(&reader, version))
        .await
        .unwrap();
    let read = match read {
        Ok(read) => read,
        Err(e) => return fail(e),
    };
    let valid: BTreeSet<(i32, i64)> = cache
        .below(&positions)
        .filter(|m| oracle::refusal(&m.payload).is_none())
        .map(|m| (m.partition, m.offset))
        .collect();
    let mut seen: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for position in &read {
        *seen.entry(*position).or_default() += 1;
    }
    let lost = valid.iter().filter(|p| !seen.contains_key(p)).count();
    let duplicated = seen.values().map(|n| n - 1).sum::<usize>()
        + seen.keys().filter(|p| !valid.contains(p)).count();
    let beyond = seen
        .keys()
        .filter(|(p, o)| positions.get(p).is_none_or(|end| o >= end))
        .count();
    let mut results = vec![(
        "lake once each",
        if lost + duplicated + beyond == 0 {
            Ok(())
        } else {
            Err(format!(
                "version {version}: {lost} valid records missing, {duplicated} extra or repeated, {beyond} past the log's positions"
            ))
        },
    )];
    results.push((
        "sink dead letters",
        letters.and_then(|l| letters_equal_refusals("sink", &l, cache, &positions)),
    ));
    let everything: Positions = cache.committed_ends();
    let missing = cache
        .below(&everything)
        .filter(|m| oracle::refusal(&m.payload).is_none())
        .filter(|m| !seen.contains_key(&(m.partition, m.offset)))
        .count();
    let found = Lake {
        version,
        rows: read.len(),
        lost,
        duplicated,
        missing,
        positions,
    };
    (Some(found), results)
}

fn read_positions(pipeline: &Pipeline, version: i64) -> Result<Vec<(i32, i64)>, String> {
    let python = std::env::var("BRAID_PYTHON").unwrap_or_else(|_| "python3".into());
    let options = serde_json::to_string(&pipeline.lake.storage_options()).unwrap();
    let output = std::process::Command::new(&python)
        .arg(crate::support::repo_root().join("tests/interop/read_delta_positions.py"))
        .arg(pipeline.lake.uri())
        .arg(version.to_string())
        .env("BRAID_STORAGE_OPTIONS", options)
        .output()
        .map_err(|e| format!("{python}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "read_delta_positions.py: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let read: Value = serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())?;
    Ok(read["positions"]
        .as_array()
        .ok_or("no positions")?
        .iter()
        .map(|p| (p[0].as_i64().unwrap() as i32, p[1].as_i64().unwrap()))
        .collect())
}

/// (section, weight) of a dimension key.
type DimensionRow = (Option<String>, Option<i64>);

/// The key and row an upsert message sets, `None` if the follower refuses it (not a JSON
/// object, no string `page`, or an attribute of the wrong type).
fn dimension_change(payload: &[u8]) -> Option<(String, DimensionRow)> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    let page = v.as_object()?.get("page")?.as_str()?.to_string();
    let section = match &v["section"] {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        _ => return None,
    };
    let weight = match &v["weight"] {
        Value::Null => None,
        w => Some(w.as_i64()?),
    };
    Some((page, (section, weight)))
}

/// In one snapshot the follower's positions, its table and its dead letters; against the last
/// valid value per key of the dimension topic below those positions (a tombstone removes the
/// key, a message that is not a JSON object of the attributes is a dead letter).
pub async fn dimension(pool: &PgPool, topic: &str, cache: &mut TopicCache) -> Checked {
    let mut connection = pool.acquire().await.map_err(|e| e.to_string())?;
    let mut tx = connection
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(|e| e.to_string())?;
    let positions: Positions = sqlx::query_as::<_, (i32, i64)>(
        "SELECT partition, next_offset FROM braid_internal.dimension_positions WHERE dimension = 'pages' AND topic = $1",
    )
    .bind(topic)
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| e.to_string())?
    .into_iter()
    .collect();
    let table: BTreeMap<String, DimensionRow> =
        sqlx::query_as::<_, (String, Option<String>, Option<i64>)>(
            "SELECT page, section, weight FROM braid_dimensions.pages",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(k, s, w)| (k, (s, w)))
        .collect();
    let letters: Vec<i64> = sqlx::query_scalar(
        "SELECT \"offset\" FROM braid_internal.dead_letters WHERE layer = 'dimension' AND topic = $1 ORDER BY \"offset\"",
    )
    .bind(topic)
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| e.to_string())?;
    let _ = tx.rollback().await;
    refresh(cache).await?;
    let mut expected: BTreeMap<String, DimensionRow> = BTreeMap::new();
    let mut refused = Vec::new();
    for m in cache.below(&positions) {
        let key = String::from_utf8_lossy(m.key.as_deref().unwrap_or_default()).into_owned();
        if m.payload.is_empty() {
            expected.remove(&key);
            continue;
        }
        match dimension_change(&m.payload) {
            Some((page, row)) => {
                expected.insert(page, row);
            }
            None => refused.push(m.offset),
        }
    }
    let letters: Vec<i64> = letters
        .into_iter()
        .filter(|o| positions.get(&0).is_some_and(|end| o < end))
        .collect();
    if table != expected {
        let differing: Vec<_> = expected
            .keys()
            .chain(table.keys())
            .filter(|k| table.get(*k) != expected.get(*k))
            .take(3)
            .map(|k| (k, table.get(k), expected.get(k)))
            .collect();
        return Err(format!(
            "the dimension table ({} keys) differs from the last value per key below {positions:?} ({} keys): {differing:?}",
            table.len(),
            expected.len()
        ));
    }
    if letters != refused {
        return Err(format!(
            "{} dimension dead letters, {} refused messages below {positions:?}",
            letters.len(),
            refused.len()
        ));
    }
    Ok(())
}

/// What the alert check found.
pub struct Alerts {
    pub transitions: usize,
    pub delivered: usize,
    pub pending: usize,
}

/// The rules' transitions form one chain per instance; every delivery recorded as delivered
/// reached the receiver; per instance the receiver got the transitions in the order they
/// happened (its first sight of each, as a delivery may be repeated, is a prefix of the chain).
pub async fn alerts(pool: &PgPool, receiver: &Receiver) -> (Option<Alerts>, Checked) {
    let read = async {
        let transitions: Vec<(i64, String, String, String)> = sqlx::query_as(
            "SELECT id, fingerprint, from_state, to_state FROM braid_internal.alert_transitions \
             WHERE rule IN ('soak_burst', 'soak_probe') ORDER BY id",
        )
        .fetch_all(pool)
        .await?;
        let delivered: Vec<(i64, String)> =
            sqlx::query_as("SELECT transition_id, status FROM braid_internal.alert_deliveries")
                .fetch_all(pool)
                .await?;
        Ok::<_, sqlx::Error>((transitions, delivered))
    };
    let (transitions, deliveries) = match read.await {
        Ok(read) => read,
        Err(e) => return (None, Err(e.to_string())),
    };
    // Read after the database, so that everything recorded delivered has arrived.
    let received = receiver.received();
    let mut chains: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    let mut last: BTreeMap<&str, &str> = BTreeMap::new();
    for (id, fingerprint, from, to) in &transitions {
        let before = last
            .get(fingerprint.as_str())
            .copied()
            .unwrap_or("inactive");
        if from != before || from == to {
            return (
                None,
                Err(format!(
                    "transition #{id} of {fingerprint}: {from} -> {to} after {before}"
                )),
            );
        }
        last.insert(fingerprint, to);
        chains.entry(fingerprint).or_default().push(*id);
    }
    let mut arrived: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for d in &received {
        let t = &d.body["braid"];
        let (Some(fingerprint), Some(id)) = (t["fingerprint"].as_str(), t["id"].as_i64()) else {
            return (
                None,
                Err(format!("a delivery without its transition: {}", d.body)),
            );
        };
        let ids = arrived.entry(fingerprint.to_string()).or_default();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let got: BTreeSet<i64> = arrived.values().flatten().copied().collect();
    let delivered: Vec<i64> = deliveries
        .iter()
        .filter(|(_, status)| status == "delivered")
        .map(|(id, _)| *id)
        .collect();
    let pending = deliveries.iter().filter(|(_, s)| s == "pending").count();
    let found = Alerts {
        transitions: transitions.len(),
        delivered: delivered.len(),
        pending,
    };
    if let Some(id) = delivered.iter().find(|id| !got.contains(id)) {
        return (
            Some(found),
            Err(format!(
                "transition #{id} is recorded delivered but the receiver never got it"
            )),
        );
    }
    for (fingerprint, ids) in &arrived {
        let chain = chains
            .get(fingerprint.as_str())
            .cloned()
            .unwrap_or_default();
        // Transitions recorded after the database was read may have arrived since.
        let ids: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| chain.contains(id))
            .collect();
        if !chain.starts_with(&ids) {
            return (
                Some(found),
                Err(format!(
                    "instance {fingerprint}: the receiver got {ids:?}, its transitions are {chain:?}"
                )),
            );
        }
    }
    if let Some((status, _)) = deliveries
        .iter()
        .map(|(_, s)| (s, ()))
        .find(|(s, _)| *s != "delivered" && *s != "pending")
    {
        return (Some(found), Err(format!("a delivery is {status}")));
    }
    (Some(found), Ok(()))
}
