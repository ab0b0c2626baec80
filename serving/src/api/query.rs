//! One statement per request: the merged read (`merged_read`) of the request's selection,
//! answered from the answer cache when the same statement was answered since the view last
//! changed, its rows written as JSON here rather than by PostgreSQL (the database is the
//! shared, busier resource).

use std::sync::Arc;

use merged_read::{ReadStatement, Selection};
use schemas::view::View;
use sqlx::PgPool;

use super::answer_cache::{AnswerCache, AnswerKey};
use super::answer_json::Answer;
use super::error::ApiError;

/// Runs `statement` and writes its rows as JSON.
async fn execute(pool: &PgPool, statement: ReadStatement) -> Result<Answer, ApiError> {
    Answer::of(statement.run(pool).await?)
}

/// The answer to `selection` over `view`, reading positions of `topic`: from `cache` when the
/// same statement was answered since the view last changed. Answers that join dimensions
/// (which change without notifying) or decay to the request's time are not cached.
pub async fn run_cached(
    pool: &PgPool,
    cache: &AnswerCache,
    view: &View,
    selection: &Selection,
    topic: &str,
) -> Result<Arc<Answer>, ApiError> {
    let statement = ReadStatement::new(view, selection, topic)?;
    if !cache.is_on() || selection.joins_dimensions(view) || view.has_decayed_metrics() {
        return Ok(Arc::new(execute(pool, statement).await?));
    }
    let key = AnswerKey {
        view: view.name.clone(),
        statement: format!("{}\n{:?}", statement.sql(), statement.values()),
        first_micros: selection.from.timestamp_micros(),
        end_micros: selection.to.timestamp_micros(),
    };
    if let Some(hit) = cache.get(&key) {
        metrics::counter!("braid_serving_answer_cache_hits_total").increment(1);
        if hit.refresh {
            let (pool, cache) = (pool.clone(), cache.clone());
            let generation = cache.generation(&view.name);
            tokio::spawn(async move {
                // A failed refresh leaves the answer to expire; the next request reads anew.
                if let Ok(answer) = execute(&pool, statement).await {
                    cache.put(key, generation, Arc::new(answer));
                }
            });
        }
        return Ok(hit.answer);
    }
    metrics::counter!("braid_serving_answer_cache_misses_total").increment(1);
    let generation = cache.generation(&view.name);
    let answer = Arc::new(execute(pool, statement).await?);
    cache.put(key, generation, Arc::clone(&answer));
    Ok(answer)
}
