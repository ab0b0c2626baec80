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

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use schemas::pg::view_changes::{self, BucketRange, ViewChange};
use sqlx::PgPool;
use sqlx::postgres::PgListener;

use super::answer_json::Answer;

/// What identifies an answer: the view, and the statement's text and values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AnswerKey {
    /// The view.
    pub view: String,
    /// The statement and its bound values, rendered.
    pub statement: String,
    /// The bucket starts the answer reads: from `first_micros` (included) to `end_micros`
    /// (excluded).
    pub first_micros: i64,
    /// See `first_micros`.
    pub end_micros: i64,
}

impl AnswerKey {
    fn reads(&self, change: Option<BucketRange>) -> bool {
        change
            .is_none_or(|b| b.first_micros < self.end_micros && self.first_micros <= b.last_micros)
    }
}

/// The most changes remembered per view, to check answers read before them.
const CHANGES_KEPT: usize = 256;

/// A view's generation (its count of changes, and the whole cache's), read before its query
/// runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation {
    all: u64,
    view: u64,
}

/// One view's changes: how many so far, and the latest ones with their number.
#[derive(Default)]
struct ViewChanges {
    count: u64,
    latest: VecDeque<(u64, Option<BucketRange>)>,
}

struct Stored {
    answer: Arc<Answer>,
    at: Instant,
    generation: Generation,
    /// A request is reading a newer answer for it already.
    refreshing: bool,
}

/// A stored answer, and whether the caller should read a newer one in the background: past
/// half its age, the first request to see it refreshes it, so that an answer in steady use
/// never expires under its readers (who would all wait for the database at once).
#[derive(Debug)]
pub struct Hit {
    /// The answer.
    pub answer: Arc<Answer>,
    /// Whether to refresh it.
    pub refresh: bool,
}

#[derive(Default)]
struct Entries {
    /// Bumped when every answer is dropped.
    all: u64,
    /// Per view, its changes; views never changed are at 0.
    generations: HashMap<String, ViewChanges>,
    answers: HashMap<AnswerKey, Stored>,
}

impl Entries {
    fn generation(&self, view: &str) -> Generation {
        Generation {
            all: self.all,
            view: self.generations.get(view).map_or(0, |c| c.count),
        }
    }

    /// Whether `key`'s answer, read at `generation`, may be stored: no change since then
    /// touched what it reads (and the changes since then are all remembered).
    fn still_current(&self, key: &AnswerKey, generation: Generation) -> bool {
        if generation.all != self.all {
            return false;
        }
        let Some(changes) = self.generations.get(&key.view) else {
            return generation.view == 0;
        };
        if changes.count == generation.view {
            return true;
        }
        let oldest_kept = changes.latest.front().map_or(u64::MAX, |(n, _)| *n);
        oldest_kept <= generation.view + 1
            && changes
                .latest
                .iter()
                .filter(|(n, _)| *n > generation.view)
                .all(|(_, range)| !key.reads(*range))
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

    /// A stored answer for `key` that is young enough and current. None while the listener is
    /// not connected: a change made meanwhile would not be heard.
    pub fn get(&self, key: &AnswerKey) -> Option<Hit> {
        if !self.is_on() || !self.is_listening() {
            return None;
        }
        // A change drops the answers it touches at once, so what is stored is current.
        let mut entries = self.lock();
        let all = entries.all;
        let stored = entries.answers.get_mut(key)?;
        let age = stored.at.elapsed();
        if stored.generation.all != all || age >= self.max_age {
            return None;
        }
        let refresh = !stored.refreshing && age >= self.max_age / 2;
        stored.refreshing |= refresh;
        Some(Hit {
            answer: Arc::clone(&stored.answer),
            refresh,
        })
    }

    /// Stores `answer`, read after `generation` was taken, unless the view changed since or
    /// the listener is not connected (its answers could outlive a change nobody heard of).
    pub fn put(&self, key: AnswerKey, generation: Generation, answer: Arc<Answer>) {
        if !self.is_on() || !self.is_listening() {
            return;
        }
        let mut entries = self.lock();
        if !entries.still_current(&key, generation) {
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
                refreshing: false,
            },
        );
    }

    /// Whether the listener is receiving change notifications now.
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    /// Drops the answers that read what `change` touched.
    pub fn changed(&self, change: &ViewChange) {
        let mut entries = self.lock();
        let changes = entries.generations.entry(change.view.clone()).or_default();
        changes.count += 1;
        let number = changes.count;
        changes.latest.push_back((number, change.buckets));
        if changes.latest.len() > CHANGES_KEPT {
            changes.latest.pop_front();
        }
        entries
            .answers
            .retain(|key, _| key.view != change.view || !key.reads(change.buckets));
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
                let listened = listen_until_lost(&cache, &pool).await;
                // Nothing is stored or served until a new LISTEN is up and the cache emptied.
                cache.listening.store(false, Ordering::Relaxed);
                cache.clear();
                match listened {
                    Ok(Listened::CacheDropped) => return,
                    Ok(Listened::ConnectionLost) => {
                        tracing::warn!(
                            "the answer cache lost its change notifications; it keeps nothing until it listens again"
                        );
                        delay = Duration::from_millis(200);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "the answer cache cannot listen for changes; it keeps nothing and tries again shortly");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
    }
}

/// How listening ended without an error.
enum Listened {
    /// The cache is gone (the server stopped).
    CacheDropped,
    /// The connection was lost; what was notified meanwhile is gone.
    ConnectionLost,
}

/// Listens on a connection of its own until it is lost. The cache is emptied and marked
/// listening only once LISTEN is in place: answers read before that may predate a change it
/// will never hear of. sqlx's listener would reconnect by itself on the next receive, but a
/// change committed before its new LISTEN would be missed while answers were still being kept,
/// so a lost connection ends this listener and a new one starts.
async fn listen_until_lost(cache: &AnswerCache, pool: &PgPool) -> Result<Listened, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(view_changes::CHANNEL).await?;
    cache.clear();
    cache.listening.store(true, Ordering::Relaxed);
    loop {
        if Arc::strong_count(&cache.entries) == 1 {
            return Ok(Listened::CacheDropped);
        }
        match tokio::time::timeout(Duration::from_secs(5), listener.try_recv()).await {
            Err(_) => continue,
            Ok(Ok(Some(notification))) => {
                cache.changed(&ViewChange::parse(notification.payload()));
            }
            Ok(Ok(None)) => return Ok(Listened::ConnectionLost),
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

    /// A cache whose listener is connected (these tests send the changes themselves).
    fn listening(max_age: Duration, max_entries: usize) -> AnswerCache {
        let cache = AnswerCache::new(max_age, max_entries);
        cache.listening.store(true, Ordering::Relaxed);
        cache
    }

    fn key(view: &str) -> AnswerKey {
        AnswerKey {
            view: view.into(),
            statement: "SELECT 1".into(),
            first_micros: 0,
            end_micros: 100,
        }
    }

    fn ranged(view: &str, first: i64, last: i64) -> ViewChange {
        ViewChange {
            view: view.into(),
            buckets: Some(BucketRange {
                first_micros: first,
                last_micros: last,
            }),
        }
    }

    #[test]
    fn a_change_of_other_buckets_keeps_an_answer_and_one_of_its_buckets_drops_it() {
        let cache = listening(Duration::from_secs(60), 10);
        let g = cache.generation("v");
        cache.put(key("v"), g, answer("[1]"));
        cache.changed(&ranged("v", 100, 500)); // from the answer's end on: not read
        assert!(cache.get(&key("v")).is_some());
        // An answer read before that change may still be stored: it did not touch it.
        cache.put(key("v"), g, answer("[2]"));
        assert_eq!(cache.get(&key("v")).unwrap().answer.rows, "[2]");
        let before = cache.generation("v");
        cache.changed(&ranged("v", 99, 99)); // its last bucket
        assert!(cache.get(&key("v")).is_none());
        cache.put(key("v"), before, answer("[old]"));
        assert!(
            cache.get(&key("v")).is_none(),
            "read before a change it reads"
        );
        cache.changed(&ranged("v", -50, -1)); // before it: not read
        let now = cache.generation("v");
        cache.put(key("v"), now, answer("[3]"));
        assert!(cache.get(&key("v")).is_some());
    }

    #[test]
    fn an_answer_read_before_a_change_is_never_served_after_it() {
        let cache = listening(Duration::from_secs(60), 10);
        let before = cache.generation("v");
        cache.put(key("v"), before, answer("[1]"));
        assert_eq!(cache.get(&key("v")).unwrap().answer.rows, "[1]");
        // A query starts, the view changes, the query's (older) answer arrives.
        let started = cache.generation("v");
        cache.changed(&ViewChange::whole("v"));
        assert!(cache.get(&key("v")).is_none(), "dropped by the change");
        cache.put(key("v"), started, answer("[old]"));
        assert!(
            cache.get(&key("v")).is_none(),
            "not stored: read before the change"
        );
        // Another view is untouched by v's change.
        let other = cache.generation("w");
        cache.put(key("w"), other, answer("[w]"));
        cache.changed(&ViewChange::whole("v"));
        assert!(cache.get(&key("w")).is_some());
        cache.clear();
        assert!(cache.get(&key("w")).is_none());
        cache.put(key("w"), other, answer("[w]"));
        assert!(cache.get(&key("w")).is_none(), "read before the clear");
    }

    #[test]
    fn past_half_its_age_one_reader_refreshes_an_answer() {
        let cache = listening(Duration::from_millis(80), 10);
        let g = cache.generation("v");
        cache.put(key("v"), g, answer("[1]"));
        assert!(!cache.get(&key("v")).unwrap().refresh, "young");
        std::thread::sleep(Duration::from_millis(45));
        assert!(
            cache.get(&key("v")).unwrap().refresh,
            "the first reader past half its age"
        );
        assert!(!cache.get(&key("v")).unwrap().refresh, "only the first");
        cache.put(key("v"), cache.generation("v"), answer("[2]"));
        let hit = cache.get(&key("v")).unwrap();
        assert_eq!((hit.answer.rows.as_str(), hit.refresh), ("[2]", false));
    }

    #[test]
    fn answers_expire_and_the_cache_stays_bounded() {
        let cache = listening(Duration::from_millis(30), 2);
        let g = cache.generation("v");
        cache.put(key("v"), g, answer("[1]"));
        assert!(cache.get(&key("v")).is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert!(cache.get(&key("v")).is_none(), "expired");
        for i in 0..5 {
            let k = AnswerKey {
                statement: format!("SELECT {i}"),
                ..key("v")
            };
            cache.put(k, g, answer("[]"));
            assert!(cache.lock().answers.len() <= 2);
        }
        let off = AnswerCache::off();
        off.listening.store(true, Ordering::Relaxed);
        off.put(key("v"), off.generation("v"), answer("[1]"));
        assert!(off.get(&key("v")).is_none());
    }

    #[test]
    fn while_the_listener_is_not_connected_nothing_is_kept_or_served() {
        let cache = listening(Duration::from_secs(60), 10);
        cache.put(key("v"), cache.generation("v"), answer("[1]"));
        assert!(cache.get(&key("v")).is_some());
        cache.listening.store(false, Ordering::Relaxed);
        assert!(cache.get(&key("v")).is_none(), "a change may go unheard");
        cache.put(key("w"), cache.generation("w"), answer("[w]"));
        cache.listening.store(true, Ordering::Relaxed);
        assert!(cache.get(&key("w")).is_none(), "stored while not listening");
    }
}
