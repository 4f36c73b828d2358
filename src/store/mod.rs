//! The store: what hookwise remembers between requests, and all its SQL.
//!
//! This module owns
//! - [`Store`]: one type over two backends, SQLite (the embedded default, a
//!   file in WAL mode) and PostgreSQL (several replicas, a `postgres://`
//!   URL), with embedded migrations run at connect;
//! - the **card log** table ([`CardLogEntry`]), written in batches by
//!   [`crate::card_log`];
//! - **feedback** ([`Feedback`]), stored durably, once per idempotency key;
//! - the **report** reads ([`LoggedRule`], [`FeedbackRow`]) behind
//!   [`crate::report`], and the console's weekly trend ([`WeekCount`]);
//! - the **history** alert-fatigue controls read, cached ([`HistoryCache`]);
//! - the shared **`jti` replay table** ([`Store::record_jti`]) for
//!   `auth.replay_store = "database"`;
//! - **writes** (`write.rs`): every write is one `WriteTx`, committed before
//!   it returns, rolled back (or its connection closed) on any error.
//! - the **named columns** (`column.rs`): hooks, indicators and feedback
//!   outcomes bound and read typed, stored by their wire names.
//!
//! Patients, encounters and draft orders are stored only as keyed hashes
//! ([`crate::pseudonym::Pseudonymizer`]); the key must be stable across
//! restarts, so without a configured `patient_id_hash_key` one is generated
//! once and kept in the store ([`Store::hash_key`]).

mod card_log;
mod column;
mod feedback;
mod history;
mod jti;
mod overridden;
mod report;
pub mod test_support;
mod weekly;
mod write;

pub use card_log::CardLogEntry;
pub use feedback::{Feedback, FeedbackOutcome, OverrideReason, Receipt, idempotency_key};
pub use history::{HistoryCache, OVERRIDES_TTL};
pub use overridden::OverriddenPatients;
pub use report::{FeedbackRow, LoggedRule};
pub use test_support::{StoreCounts, StoredFeedback};
pub use weekly::WeekCount;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// Migrations embedded in the binary, run by [`Store::connect`]. The SQL is
/// portable, so one set serves both backends.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Name of the generated patient hash key in `hookwise_meta`.
const HASH_KEY_NAME: &str = "patient_hash_key";

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is not one hookwise understands.
    #[error("invalid database URL: {0}")]
    Url(String),
    /// A query or connection failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// No randomness to generate a key with.
    #[error("no system randomness to generate the patient hash key")]
    NoRandomness,
}

/// The two backends, dispatched by [`on_pool!`].
#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to whichever backend's pool is in use.
/// The SQL is shared (`$N` placeholders work on both); each arm is
/// type-checked against its own driver.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool) => $body,
            $crate::store::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// The feedback store. Cheap to clone: clones share the connection pool.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// SQLite's one writer at a time (see `Store::begin_write`).
    write_lock: Arc<tokio::sync::Mutex<()>>,
}

impl Store {
    /// Connects and runs the migrations. `postgres://` (or `postgresql://`)
    /// URLs select PostgreSQL; `sqlite:PATH`, `sqlite::memory:` or a plain
    /// path select SQLite, whose file is created on first start.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let pool = match Backend::of(url) {
            Backend::Postgres => Pool::Postgres(connect_postgres(url).await?),
            Backend::Sqlite => Pool::Sqlite(connect_sqlite(url).await?),
        };
        let store = Store {
            pool,
            write_lock: Arc::new(tokio::sync::Mutex::new(())),
        };
        on_pool!(store, pool => MIGRATOR.run(pool).await?);
        Ok(store)
    }

    /// Like [`Store::connect`], but a SQLite file must already exist: for
    /// readers such as `hookwise report`, where a typo should not create an
    /// empty store.
    pub async fn open_existing(url: &str) -> Result<Store, StoreError> {
        if let Some(path) = sqlite_path(url)
            && !std::path::Path::new(&path).exists()
        {
            return Err(StoreError::Url(format!("no SQLite store at {path}")));
        }
        Store::connect(url).await
    }

    /// The patient hash key kept in the store, generated on first use. Every
    /// replica and restart sharing the database gets the same key, so hashes
    /// stay comparable (reports, suppression).
    pub async fn hash_key(&self) -> Result<String, StoreError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|_| StoreError::NoRandomness)?;
        let fresh: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        // Insert-if-absent then read: two replicas starting at once agree on
        // whichever key won.
        let sql_insert =
            "INSERT INTO hookwise_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";
        let sql_select = "SELECT value FROM hookwise_meta WHERE name = $1";
        let key: (String,) = on_pool!(self, pool => {
            let mut tx = self.begin_write(pool).await?;
            sqlx::query(sql_insert).bind(HASH_KEY_NAME).bind(&fresh).execute(&mut *tx).await?;
            let key = sqlx::query_as(sql_select).bind(HASH_KEY_NAME).fetch_one(&mut *tx).await?;
            tx.commit().await?;
            key
        });
        Ok(key.0)
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }
}

#[cfg(test)]
impl Store {
    /// Runs raw SQL: for unit tests that break the store on purpose.
    pub(crate) async fn execute_raw(&self, sql: &'static str) {
        on_pool!(self, pool => drop(sqlx::raw_sql(sql).execute(pool).await.unwrap()));
    }
}

/// Which database a store URL names: the one place that reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite:PATH`, `sqlite::memory:` or a plain path.
    Sqlite,
    /// `postgres://` or `postgresql://`.
    Postgres,
}

impl Backend {
    /// The backend `url` selects.
    pub fn of(url: &str) -> Backend {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    /// Its name for operators' messages.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// The file of a SQLite URL or path; `None` for PostgreSQL and in-memory.
fn sqlite_path(url: &str) -> Option<String> {
    if Backend::of(url) == Backend::Postgres {
        return None;
    }
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| path.to_string())
}

/// SQLite in WAL mode with `synchronous = FULL`: a commit is fsynced before
/// it returns, so a 200 for feedback survives a crash or power loss, not
/// only a killed process (which `NORMAL` would already survive).
async fn connect_sqlite(url: &str) -> Result<SqlitePool, StoreError> {
    let options = if url.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(url).map_err(|e| StoreError::Url(e.to_string()))?
    } else {
        SqliteConnectOptions::new().filename(url)
    };
    let options = options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10));
    // Turning a new file to WAL needs an exclusive lock, and a pool opening
    // several connections at once can see "database is locked" there despite
    // the busy timeout (seen once under parallel tests): set it up alone first.
    if sqlite_path(url).is_some() {
        sqlx::SqliteConnection::connect_with(&options)
            .await?
            .close()
            .await?;
    }
    // An in-memory database lives only while a connection is open: keep one.
    let pool = SqlitePoolOptions::new()
        .after_release(write::outside_transaction::<sqlx::Sqlite>)
        .max_connections(8)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None);
    Ok(pool.connect_with(options).await?)
}

async fn connect_postgres(url: &str) -> Result<PgPool, StoreError> {
    let options = PgConnectOptions::from_str(url).map_err(|e| StoreError::Url(e.to_string()))?;
    let pool = PgPoolOptions::new()
        .after_release(write::outside_transaction::<sqlx::Postgres>)
        .max_connections(10)
        .acquire_timeout(Duration::from_secs(10));
    Ok(pool.connect_with(options).await?)
}

/// Unix milliseconds, the store's time unit.
pub(crate) fn millis(time: OffsetDateTime) -> i64 {
    (time.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The time of a Unix-milliseconds value (the epoch if out of range).
pub(crate) fn from_millis(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The items of a space-separated list column (suggestion ids), the form
/// lists are stored in.
pub(crate) fn split_words(list: &str) -> Vec<String> {
    list.split_whitespace().map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_files_are_created_in_wal_mode_and_keep_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let url = format!("sqlite:{}", path.display());
        let store = Store::connect(&url).await.unwrap();
        assert_eq!(store.backend(), "sqlite");
        let key = store.hash_key().await.unwrap();
        assert_eq!(key.len(), 64);
        assert_eq!(store.hash_key().await.unwrap(), key, "generated once");
        let (mode,): (String,) = on_pool!(store, pool => sqlx::query_as("PRAGMA journal_mode").fetch_one(pool).await.unwrap());
        assert_eq!(mode, "wal");
        store.close().await;
        assert!(path.exists());
        let again = Store::connect(path.to_str().unwrap()).await.unwrap();
        assert_eq!(
            again.hash_key().await.unwrap(),
            key,
            "kept across restarts; plain paths work too"
        );
    }

    #[tokio::test]
    async fn bad_urls_are_errors_not_panics() {
        assert!(
            Store::connect("postgres://no host:99999999/x")
                .await
                .is_err()
        );
    }

    #[test]
    fn the_url_names_the_backend() {
        assert_eq!(Backend::of("postgres://u@h/db"), Backend::Postgres);
        assert_eq!(Backend::of("postgresql://u@h/db"), Backend::Postgres);
        assert_eq!(Backend::of("sqlite:hookwise.db"), Backend::Sqlite);
        assert_eq!(Backend::of("hookwise.db"), Backend::Sqlite);
        assert_eq!(Backend::of("postgres-notes.db"), Backend::Sqlite);
        assert_eq!(sqlite_path("postgres://u@h/db"), None);
        assert_eq!(sqlite_path("sqlite:a.db?mode=rwc").as_deref(), Some("a.db"));
    }

    #[test]
    fn millis_round_trip() {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        assert_eq!(from_millis(millis(t)), t);
    }
}
