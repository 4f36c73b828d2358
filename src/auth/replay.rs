//! The `jti` replay store: a token's `jti` is remembered until the token
//! expires (plus the clock skew), and a second use is refused.
//!
//! Two kinds, chosen by `auth.replay_store`:
//! - **memory** ([`MemoryStore`], the default): this process only. It holds
//!   at most `auth.replay_cache_capacity` ids and never forgets an unexpired
//!   one to make room: there is no eviction, only expiry. Several replicas
//!   each keep their own, so a token replayed to another replica is not
//!   caught, and a restart forgets everything.
//! - **database** ([`SharedStore`]): the feedback store's database, so every
//!   replica on one PostgreSQL database sees every other's `jti`s (and they
//!   survive restarts).
//!
//! Either way the store fails closed: a `jti` that cannot be recorded (the
//! memory store is full of unexpired ids, or the database does not answer in
//! time) is never accepted. The call is refused ([`Unrecorded`]) with a 503
//! and `Retry-After`, counted, and warned about at most once a minute.

use crate::config::{AuthSettings, ReplayStoreKind};
use crate::store::Store;
use std::cmp::Reverse;
use std::collections::binary_heap::PeekMut;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// Expired ids removed per call at most, beyond those needed to make room:
/// bounds the work one call does after a burst of tokens expires at once.
const SWEEP_BATCH: usize = 32;

/// The occupancy past which the memory store warns, as a fraction of capacity.
const WARN_OCCUPANCY: f64 = 0.8;

/// Least time between two warnings of one kind.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The longest a `jti` is kept. No token lives this long (its lifetime is
/// bounded by `max_token_lifetime_secs`); the bound only keeps the time
/// arithmetic from overflowing on an absurd setting.
const LONGEST_KEPT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// How often the database store deletes expired rows.
const DELETE_EVERY: Duration = Duration::from_secs(60);

/// Why a `jti` could not be recorded. The call is then refused, never
/// accepted: letting it through would let the token be replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unrecorded {
    /// The memory store holds `auth.replay_cache_capacity` unexpired ids;
    /// the first of them expires in `retry_after`.
    Full {
        /// Until the first held id expires.
        retry_after: Duration,
    },
    /// The database store failed or did not answer in time.
    Unavailable {
        /// `retry_after_secs` from the settings.
        retry_after: Duration,
    },
}

impl Unrecorded {
    /// The `Retry-After` value, in whole seconds (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        let (Unrecorded::Full { retry_after } | Unrecorded::Unavailable { retry_after }) = self;
        retry_after.as_secs_f64().ceil().max(1.0) as u64
    }

    /// The metric label: `full` or `unavailable`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Unrecorded::Full { .. } => "full",
            Unrecorded::Unavailable { .. } => "unavailable",
        }
    }
}

impl fmt::Display for Unrecorded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self {
            Unrecorded::Full { .. } => "is full of unexpired token ids",
            Unrecorded::Unavailable { .. } => "is unavailable",
        };
        write!(
            f,
            "the replay store {why}, so this token cannot be checked against replay; retry later"
        )
    }
}

/// The replay store in force.
pub enum ReplayStore {
    /// This process only.
    Memory(MemoryStore),
    /// The feedback store's database, shared by replicas.
    Database(SharedStore),
}

impl ReplayStore {
    /// The store `settings` ask for; `database` keeps its rows in `store`.
    /// `retry_after_secs` is sent when the database cannot be reached.
    pub fn new(
        settings: &AuthSettings,
        store: &Store,
        retry_after_secs: u64,
    ) -> Result<ReplayStore, String> {
        match settings.replay_store {
            ReplayStoreKind::Memory => {
                let capacity =
                    usize::try_from(settings.replay_cache_capacity).unwrap_or(usize::MAX);
                if capacity == 0 {
                    return Err("auth.replay_cache_capacity must be at least 1".into());
                }
                Ok(ReplayStore::Memory(MemoryStore::new(capacity)))
            }
            ReplayStoreKind::Database if settings.replay_store_timeout_ms == 0 => {
                Err("auth.replay_store_timeout_ms must be at least 1".into())
            }
            ReplayStoreKind::Database => Ok(ReplayStore::Database(SharedStore {
                store: store.clone(),
                timeout: Duration::from_millis(settings.replay_store_timeout_ms),
                retry_after: Duration::from_secs(retry_after_secs),
                next_delete: Mutex::new(Instant::now()),
                warnings: Throttle::default(),
            })),
        }
    }

    /// Records `jti` of `iss` for `ttl`: `Ok(false)` when it was already
    /// recorded (a replay), `Err` when it cannot be recorded (refuse the call).
    pub async fn first_use(&self, iss: &str, jti: &str, ttl: Duration) -> Result<bool, Unrecorded> {
        let ttl = ttl.min(LONGEST_KEPT);
        let recorded = match self {
            ReplayStore::Memory(memory) => memory.first_use(iss, jti, ttl, Instant::now()),
            ReplayStore::Database(shared) => shared.first_use(iss, jti, ttl).await,
        };
        if let Err(why) = recorded {
            crate::metrics::replay_refused(why.as_str());
        }
        recorded
    }
}

/// One key per (issuer, jti). `iss` is a configured issuer, so the separator
/// cannot make two pairs collide unless an operator puts NUL in an `iss`.
fn key(iss: &str, jti: &str) -> String {
    format!("{iss}\u{0}{jti}")
}

/// At most one warning per [`WARN_EVERY`], so a saturated store or a
/// database outage cannot flood the log at the call rate.
#[derive(Default)]
struct Throttle(Mutex<Option<Instant>>);

impl Throttle {
    /// Whether a warning may be logged at `now` (and, if so, notes it).
    fn ready(&self, now: Instant) -> bool {
        let mut last = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let ready = last.is_none_or(|at| now.saturating_duration_since(at) >= WARN_EVERY);
        if ready {
            *last = Some(now);
        }
        ready
    }
}

/// The in-process store: ids by key with their expiry, and the same ids in
/// expiry order so expired ones are found without a scan.
pub struct MemoryStore {
    capacity: usize,
    held: Mutex<Held>,
    /// Apart from [`MemoryStore::full_warnings`], so a warning that the
    /// store is nearly full does not hide the one that it is full.
    nearly_full_warnings: Throttle,
    full_warnings: Throttle,
}

#[derive(Default)]
struct Held {
    expiry: HashMap<Arc<str>, Instant>,
    /// Soonest expiry first. A key recorded again after it expired has an
    /// older entry here too, skipped when it comes up.
    queue: BinaryHeap<Reverse<(Instant, Arc<str>)>>,
}

impl MemoryStore {
    /// A store holding at most `capacity` unexpired ids.
    pub fn new(capacity: usize) -> MemoryStore {
        crate::metrics::replay_store_occupancy(0, capacity);
        MemoryStore {
            capacity,
            held: Mutex::default(),
            nearly_full_warnings: Throttle::default(),
            full_warnings: Throttle::default(),
        }
    }

    /// [`ReplayStore::first_use`] at `now`.
    pub fn first_use(
        &self,
        iss: &str,
        jti: &str,
        ttl: Duration,
        now: Instant,
    ) -> Result<bool, Unrecorded> {
        let (recorded, held) = {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            held.sweep(now, self.capacity);
            let recorded = held.record(key(iss, jti), now + ttl, now, self.capacity);
            (recorded, held.expiry.len())
        };
        crate::metrics::replay_store_occupancy(held, self.capacity);
        self.warn_if_nearly_full(recorded.is_err(), held, now);
        recorded
    }

    /// Warns (at most once a minute) when `held` passes [`WARN_OCCUPANCY`],
    /// or when a call was refused because the store is `full`.
    fn warn_if_nearly_full(&self, full: bool, held: usize, now: Instant) {
        let capacity = self.capacity;
        let throttle = if full {
            &self.full_warnings
        } else {
            &self.nearly_full_warnings
        };
        if (held as f64) < capacity as f64 * WARN_OCCUPANCY || !throttle.ready(now) {
            return;
        }
        if full {
            tracing::warn!(
                held,
                capacity,
                "jti replay store full: refusing authenticated calls with 503 until ids expire; \
                raise auth.replay_cache_capacity (peak calls per second x longest token lifetime)"
            );
        } else {
            tracing::warn!(
                held,
                capacity,
                "jti replay store over 80% full; when full, calls are refused with 503: \
                raise auth.replay_cache_capacity (peak calls per second x longest token lifetime)"
            );
        }
    }
}

impl Held {
    /// Removes expired ids: up to [`SWEEP_BATCH`], and as many more as
    /// needed while the store is full.
    fn sweep(&mut self, now: Instant, capacity: usize) {
        let mut swept = 0;
        while swept < SWEEP_BATCH || self.expiry.len() >= capacity {
            let Some(first) = self.queue.peek_mut() else {
                break;
            };
            if first.0.0 > now {
                break;
            }
            let Reverse((at, key)) = PeekMut::pop(first);
            if self.expiry.get(&key) == Some(&at) {
                self.expiry.remove(&key);
            }
            swept += 1;
        }
    }

    /// Records `key` until `expires`, after [`Held::sweep`] at `now`.
    fn record(
        &mut self,
        key: String,
        expires: Instant,
        now: Instant,
        capacity: usize,
    ) -> Result<bool, Unrecorded> {
        match self.expiry.get(key.as_str()) {
            Some(at) if *at > now => return Ok(false),
            // Expired but not swept yet: replacing it takes no room.
            Some(_) => {}
            None if self.expiry.len() >= capacity => {
                // Swept while full, so the first entry is a live one.
                let first = self.queue.peek().map_or(now, |first| first.0.0);
                let retry_after = first.saturating_duration_since(now);
                return Err(Unrecorded::Full { retry_after });
            }
            None => {}
        }
        let key: Arc<str> = key.into();
        self.expiry.insert(key.clone(), expires);
        self.queue.push(Reverse((expires, key)));
        Ok(true)
    }
}

/// The database store: one row per (issuer, jti) in the feedback store
/// ([`Store::record_jti`]), expired rows deleted once a minute.
pub struct SharedStore {
    store: Store,
    timeout: Duration,
    retry_after: Duration,
    next_delete: Mutex<Instant>,
    warnings: Throttle,
}

impl SharedStore {
    async fn first_use(&self, iss: &str, jti: &str, ttl: Duration) -> Result<bool, Unrecorded> {
        let now = OffsetDateTime::now_utc();
        self.delete_expired_if_due(now);
        let recorded = self.store.record_jti(iss, jti, now, now + ttl);
        let why = match tokio::time::timeout(self.timeout, recorded).await {
            Ok(Ok(first)) => return Ok(first),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} ms", self.timeout.as_millis()),
        };
        if self.warnings.ready(Instant::now()) {
            tracing::warn!(error = %why, "jti replay store (database) unavailable: refusing authenticated calls with 503");
        }
        Err(Unrecorded::Unavailable {
            retry_after: self.retry_after,
        })
    }

    /// Starts deleting expired rows in the background when one interval has
    /// passed since the last time: the call does not wait for it.
    fn delete_expired_if_due(&self, now: OffsetDateTime) {
        {
            let mut next = self
                .next_delete
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let at = Instant::now();
            if at < *next {
                return;
            }
            *next = at + DELETE_EVERY;
        }
        let store = self.store.clone();
        tokio::spawn(async move {
            match store.delete_expired_jtis(now).await {
                Ok(deleted) => {
                    tracing::debug!(deleted, "expired jtis deleted from the replay store")
                }
                Err(e) => tracing::debug!(error = %e, "cannot delete expired jtis; retrying later"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_jti_is_accepted_once_per_issuer() {
        let store = MemoryStore::new(100);
        let now = Instant::now();
        assert_eq!(store.first_use("a", "j1", HOUR, now), Ok(true));
        assert_eq!(store.first_use("a", "j1", HOUR, now), Ok(false));
        assert_eq!(store.first_use("b", "j1", HOUR, now), Ok(true));
    }

    /// The reported failure: capacity 16 and 64 live tokens. With moka, 48
    /// replays were accepted, twice over. Now every replay is refused as a
    /// replay or, for the 48 never recorded, refused as "full": none passes.
    #[test]
    fn a_full_store_refuses_new_ids_instead_of_forgetting_live_ones() {
        let store = MemoryStore::new(16);
        let now = Instant::now();
        let jtis: Vec<String> = (0..64).map(|i| format!("jti-{i}")).collect();
        let first: Vec<_> = jtis
            .iter()
            .map(|j| store.first_use("ehr", j, HOUR, now))
            .collect();
        assert!(first[..16].iter().all(|r| *r == Ok(true)), "{first:?}");
        assert!(
            first[16..]
                .iter()
                .all(|r| matches!(r, Err(Unrecorded::Full { .. }))),
            "{first:?}"
        );
        for round in 1..=2 {
            let later = now + Duration::from_secs(round * 60);
            for (i, jti) in jtis.iter().enumerate() {
                let again = store.first_use("ehr", jti, HOUR, later);
                if i < 16 {
                    assert_eq!(again, Ok(false), "round {round}: {jti} is a replay");
                } else {
                    assert!(
                        matches!(again, Err(Unrecorded::Full { .. })),
                        "round {round}: {jti} gave {again:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn retry_after_is_when_the_first_held_id_expires() {
        let store = MemoryStore::new(2);
        let now = Instant::now();
        assert_eq!(
            store.first_use("a", "j1", Duration::from_secs(90), now),
            Ok(true)
        );
        assert_eq!(store.first_use("a", "j2", HOUR, now), Ok(true));
        let refused = store.first_use("a", "j3", HOUR, now + Duration::from_millis(29_500));
        let Err(why) = refused else {
            panic!("{refused:?}")
        };
        assert_eq!((why.as_str(), why.retry_after_secs()), ("full", 61));
    }

    #[test]
    fn expiry_frees_room() {
        let store = MemoryStore::new(2);
        let now = Instant::now();
        let short = Duration::from_secs(60);
        assert_eq!(store.first_use("a", "j1", short, now), Ok(true));
        assert_eq!(store.first_use("a", "j2", HOUR, now), Ok(true));
        assert!(store.first_use("a", "j3", HOUR, now).is_err());
        let later = now + short;
        assert_eq!(
            store.first_use("a", "j3", HOUR, later),
            Ok(true),
            "j1 expired"
        );
        assert_eq!(
            store.first_use("a", "j2", HOUR, later),
            Ok(false),
            "j2 is kept"
        );
        assert_eq!(
            store.first_use("a", "j1", HOUR, later),
            Err(Unrecorded::Full {
                retry_after: HOUR - short
            }),
            "full again, until j2 and j3 expire"
        );
    }

    #[test]
    fn an_id_recorded_again_after_expiry_is_not_dropped_by_its_old_entry() {
        let store = MemoryStore::new(10);
        let now = Instant::now();
        let short = Duration::from_secs(60);
        assert_eq!(store.first_use("a", "j1", short, now), Ok(true));
        let later = now + short;
        assert_eq!(
            store.first_use("a", "j1", HOUR, later),
            Ok(true),
            "expired: a new use"
        );
        // The first entry (expired at `later`) is swept now; j1 must stay.
        let after = later + Duration::from_secs(1);
        assert_eq!(store.first_use("a", "j2", HOUR, after), Ok(true));
        assert_eq!(store.first_use("a", "j1", HOUR, after), Ok(false));
    }

    #[test]
    fn a_burst_of_expired_ids_is_swept_a_batch_per_call() {
        let store = MemoryStore::new(1000);
        let now = Instant::now();
        let short = Duration::from_secs(1);
        for i in 0..100 {
            assert_eq!(
                store.first_use("a", &format!("old-{i}"), short, now),
                Ok(true)
            );
        }
        let later = now + short;
        assert_eq!(store.first_use("a", "new-0", HOUR, later), Ok(true));
        let held = store.held.lock().unwrap().expiry.len();
        assert_eq!(held, 100 - SWEEP_BATCH + 1, "one batch swept, one id added");
    }

    #[tokio::test]
    async fn a_zero_capacity_or_timeout_is_a_configuration_error() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let zero_capacity = AuthSettings {
            replay_cache_capacity: 0,
            ..AuthSettings::default()
        };
        let zero_timeout = AuthSettings {
            replay_store: ReplayStoreKind::Database,
            replay_store_timeout_ms: 0,
            ..AuthSettings::default()
        };
        for (settings, named) in [
            (zero_capacity, "replay_cache_capacity"),
            (zero_timeout, "replay_store_timeout_ms"),
        ] {
            let error = ReplayStore::new(&settings, &store, 1).err().unwrap();
            assert!(error.contains(named), "{error}");
        }
        assert!(ReplayStore::new(&AuthSettings::default(), &store, 1).is_ok());
    }
}
