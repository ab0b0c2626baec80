//! Recent answers kept in memory, keyed by the statement and its values, so that repeated
//! queries (a dashboard, a console polling every 2 s, many users of one view) cost no database
//! work while nothing changed.
//!
//! A view's answers are dropped when it changes: the speed layer's flush and the batch publish
//! send `schemas::pg::view_changes` notifications inside their transactions, and one listener
//! per server receives them. An answer read before a change but stored after its notification
//! is not kept (each view has a generation, taken before the query and checked at the store).
//! Every answer also expires after `serving.answer_cache_ms`, which bounds changes that do not
//! notify, and the whole cache is emptied when the listener loses its connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use schemas::pg::view_changes;
use sqlx::PgPool;
use sqlx::postgres::PgListener;

use super::query::Answer;

/// What identifies an answer: the view, and the statement's text and values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AnswerKey {
    /// The view.
    pub view: String,
    /// The statement and its bound values, rendered.
    pub statement: String,
}

/// A view's generation (and the whole cache's), read before its query runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation {
    all: u64,
    view: u64,
}

struct Stored {
    answer: Arc<Answer>,
    at: Instant,
    generation: Generation,
}

#[derive(Default)]
struct Entries {
    /// Bumped when every answer is dropped.
    all: u64,
    /// Per view, bumped on each change; views never seen are at 0.
    generations: HashMap<String, u64>,
    answers: HashMap<AnswerKey, Stored>,
}

impl Entries {
    fn generation(&self, view: &str) -> Generation {
        Generation {
            all: self.all,
            view: self.generations.get(view).copied().unwrap_or(0),
        }
    }
}

/// The cache. Cloning shares it.
#[derive(Clone)]
pub struct AnswerCache {
    entries: Arc<Mutex<Entries>>,
    listening: Arc<AtomicBool>,
    max_age: Duration,
    max_entries: usize,
}

impl std::fmt::Debug for AnswerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerCache")
            .field("max_age", &self.max_age)
            .field("max_entries", &self.max_entries)
            .finish_non_exhaustive()
    }
}

impl AnswerCache {
    /// A cache keeping at most `max_entries` answers for at most `max_age` each; a zero age
    /// keeps nothing.
    pub fn new(max_age: Duration, max_entries: usize) -> Self {
        Self {
            entries: Arc::default(),
            listening: Arc::default(),
            max_age,
            max_entries,
        }
    }

    /// A cache that keeps nothing.
    pub fn off() -> Self {
        Self::new(Duration::ZERO, 0)
    }

    /// Whether it keeps anything.
    pub fn is_on(&self) -> bool {
        !self.max_age.is_zero() && self.max_entries > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The view's generation now: take it before running a query whose answer may be stored.
    pub fn generation(&self, view: &str) -> Generation {
        self.lock().generation(view)
    }

    /// A stored answer for `key` that is young enough and of the view's current generation.
    pub fn get(&self, key: &AnswerKey) -> Option<Arc<Answer>> {
        if !self.is_on() {
            return None;
        }
        let entries = self.lock();
        let current = entries.generation(&key.view);
        entries
            .answers
            .get(key)
            .filter(|s| s.generation == current && s.at.elapsed() < self.max_age)
            .map(|s| Arc::clone(&s.answer))
    }

    /// Stores `answer`, read after `generation` was taken, unless the view changed since.
    pub fn put(&self, key: AnswerKey, generation: Generation, answer: Arc<Answer>) {
        if !self.is_on() {
            return;
        }
        let mut entries = self.lock();
        if entries.generation(&key.view) != generation {
            return;
        }
        if entries.answers.len() >= self.max_entries {
            entries.answers.clear();
        }
        entries.answers.insert(
            key,
            Stored {
                answer,
                at: Instant::now(),
                generation,
            },
        );
    }

    /// Whether the listener is receiving change notifications now.
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    /// Drops `view`'s answers: it changed.
    pub fn changed(&self, view: &str) {
        let mut entries = self.lock();
        *entries.generations.entry(view.to_string()).or_insert(0) += 1;
        entries.answers.retain(|key, _| key.view != view);
    }

    /// Drops every answer (changes may have been missed).
    pub fn clear(&self) {
        let mut entries = self.lock();
        entries.all += 1;
        entries.answers.clear();
    }

    /// Listens for view changes on `pool`'s database for as long as the cache lives, on a
    /// task of its own. While the listener is not connected the cache keeps nothing new.
    pub fn listen(&self, pool: PgPool) {
        if !self.is_on() {
            return;
        }
        let cache = self.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(200);
            loop {
                let listened = listen_until_error(&cache, &pool).await;
                cache.listening.store(false, Ordering::Relaxed);
                match listened {
                    Ok(()) => return,
                    Err(error) => {
                        tracing::warn!(%error, "the answer cache lost its change notifications; it is emptied and listens again shortly");
                        cache.clear();
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
    }
}

async fn listen_until_error(cache: &AnswerCache, pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // Answers stored before the listener was up may predate a change it will never hear of.
    listener.listen(view_changes::CHANNEL).await?;
    cache.clear();
    cache.listening.store(true, Ordering::Relaxed);
    loop {
        if Arc::strong_count(&cache.entries) == 1 {
            return Ok(()); // the server is gone
        }
        match tokio::time::timeout(Duration::from_secs(5), listener.try_recv()).await {
            Err(_) => continue,
            Ok(Ok(Some(notification))) => cache.changed(notification.payload()),
            // The connection was lost: sqlx reconnects on the next call, but what was sent
            // meanwhile is gone.
            Ok(Ok(None)) => cache.clear(),
            Ok(Err(error)) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(rows: &str) -> Arc<Answer> {
        Arc::new(Answer {
            rows: rows.into(),
            truncated: false,
            batch: None,
            speed: "{}".into(),
            backfilling: false,
        })
    }

    fn key(view: &str) -> AnswerKey {
        AnswerKey {
            view: view.into(),
            statement: "SELECT 1".into(),
        }
    }

    #[test]
    fn an_answer_read_before_a_change_is_never_served_after_it() {
        let cache = AnswerCache::new(Duration::from_secs(60), 10);
        let before = cache.generation("v");
        cache.put(key("v"), before, answer("[1]"));
        assert_eq!(cache.get(&key("v")).unwrap().rows, "[1]");
        // A query starts, the view changes, the query's (older) answer arrives.
        let started = cache.generation("v");
        cache.changed("v");
        assert!(cache.get(&key("v")).is_none(), "dropped by the change");
        cache.put(key("v"), started, answer("[old]"));
        assert!(
            cache.get(&key("v")).is_none(),
            "not stored: read before the change"
        );
        // Another view is untouched by v's change.
        let other = cache.generation("w");
        cache.put(key("w"), other, answer("[w]"));
        cache.changed("v");
        assert!(cache.get(&key("w")).is_some());
        cache.clear();
        assert!(cache.get(&key("w")).is_none());
        cache.put(key("w"), other, answer("[w]"));
        assert!(cache.get(&key("w")).is_none(), "read before the clear");
    }

    #[test]
    fn answers_expire_and_the_cache_stays_bounded() {
        let cache = AnswerCache::new(Duration::from_millis(30), 2);
        let g = cache.generation("v");
        cache.put(key("v"), g, answer("[1]"));
        assert!(cache.get(&key("v")).is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert!(cache.get(&key("v")).is_none(), "expired");
        for i in 0..5 {
            let k = AnswerKey {
                view: "v".into(),
                statement: format!("SELECT {i}"),
            };
            cache.put(k, g, answer("[]"));
            assert!(cache.lock().answers.len() <= 2);
        }
        let off = AnswerCache::off();
        off.put(key("v"), off.generation("v"), answer("[1]"));
        assert!(off.get(&key("v")).is_none());
    }
}
