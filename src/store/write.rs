//! Writes to the store: [`WriteTx`], the one way every write (feedback, the
//! card log, the hash key) reaches the database.
//!
//! A write takes a connection of its own (and on SQLite the process-wide write
//! lock), begins, runs, and commits: `Ok` from [`WriteTx::commit`] means
//! committed, and on SQLite fsynced. A `WriteTx` dropped without a commit (an
//! error returned with `?`, or a cancelled request) is rolled back explicitly
//! by a task that still holds the write lock; when the rollback fails, or the
//! commit failed and left the connection's state unknown, the connection is
//! closed instead of going back to the pool.
//!
//! Why not sqlx's `Transaction`: when a commit and then its rollback failed
//! (a full disk: SQLite has already rolled back, so `ROLLBACK` finds nothing
//! to undo), the connection went back to the pool with sqlx still counting
//! it inside a transaction. Its next `BEGIN` became a `SAVEPOINT` and its
//! `COMMIT` a `RELEASE`; once a failed `RELEASE` left SQLite inside a
//! transaction, every later "commit" on that connection released a savepoint
//! and committed nothing, while it held SQLite's write lock: feedback was
//! answered 200 and lost, and writers on other connections waited out the
//! busy timeout. Here the transaction statements are plain SQL and this type
//! alone tracks the state, so it cannot drift from the database's.
//!
//! The pool also closes, rather than keeps, a returned connection that sqlx
//! counts inside a transaction ([`outside_transaction`]): a guard for any use
//! of sqlx transactions elsewhere (the migrations use them).

use super::{Pool, Store, StoreError};
use futures::future::BoxFuture;
use sqlx::pool::{PoolConnection, PoolConnectionMetadata};
use sqlx::{Connection, Database, Executor};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OwnedMutexGuard;

/// How long closing a discarded connection may take before it is dropped.
const DISCARD_TIMEOUT: Duration = Duration::from_secs(5);

/// A transaction-control statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    /// Opens a write transaction.
    Begin,
    /// Commits it.
    Commit,
    /// Rolls it back.
    Rollback,
}

/// A backend [`WriteTx`] can run on.
pub(crate) trait WriteBackend: Database {
    /// The statement that opens a write transaction.
    const BEGIN: &'static str;

    /// Runs `sql`, a transaction-control statement, on `conn`.
    fn run<'c>(
        conn: &'c mut Self::Connection,
        sql: &'static str,
    ) -> BoxFuture<'c, sqlx::Result<()>>;
}

impl WriteBackend for sqlx::Sqlite {
    /// IMMEDIATE takes SQLite's write lock at once, so a busy database
    /// fails here, before any work.
    const BEGIN: &'static str = "BEGIN IMMEDIATE";

    fn run<'c>(
        conn: &'c mut Self::Connection,
        sql: &'static str,
    ) -> BoxFuture<'c, sqlx::Result<()>> {
        Box::pin(async move { conn.execute(sqlx::raw_sql(sql)).await.map(drop) })
    }
}

impl WriteBackend for sqlx::Postgres {
    const BEGIN: &'static str = "BEGIN";

    fn run<'c>(
        conn: &'c mut Self::Connection,
        sql: &'static str,
    ) -> BoxFuture<'c, sqlx::Result<()>> {
        Box::pin(async move { conn.execute(sqlx::raw_sql(sql)).await.map(drop) })
    }
}

/// Runs `control` on `conn`.
async fn control<DB: WriteBackend>(
    conn: &mut DB::Connection,
    control: Control,
) -> sqlx::Result<()> {
    let sql = match control {
        Control::Begin => DB::BEGIN,
        Control::Commit => "COMMIT",
        Control::Rollback => "ROLLBACK",
    };
    DB::run(conn, sql).await
}

/// Where a [`WriteTx`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxState {
    /// `BEGIN` sent (or about to be): a rollback ends it.
    Open,
    /// `COMMIT` failed: committed or not, the connection cannot say for sure.
    InDoubt,
}

/// One write transaction on a connection of its own, from
/// [`Store::begin_write`]. Queries take `&mut *tx`; [`WriteTx::commit`] ends
/// it. Dropped without a commit, it is rolled back (see the module docs).
pub(crate) struct WriteTx<DB: WriteBackend> {
    /// `None` once committed or handed to the cleanup task.
    conn: Option<PoolConnection<DB>>,
    state: TxState,
    /// SQLite's write lock; held until the transaction has ended.
    lock: Option<OwnedMutexGuard<()>>,
}

impl Store {
    /// Begins a write transaction on a connection of `pool` (this store's),
    /// taking the write lock on SQLite.
    pub(crate) async fn begin_write<DB: WriteBackend>(
        &self,
        pool: &sqlx::Pool<DB>,
    ) -> Result<WriteTx<DB>, StoreError> {
        let lock = self.write_lock().await;
        let conn = pool.acquire().await?;
        // Open before BEGIN is sent: a BEGIN that fails or is cancelled still
        // ends in a rollback or a closed connection.
        let mut tx = WriteTx {
            conn: Some(conn),
            state: TxState::Open,
            lock,
        };
        control::<DB>(&mut tx, Control::Begin).await?;
        Ok(tx)
    }

    /// SQLite has one writer at a time; writers queue here instead of
    /// polling on `SQLITE_BUSY`, which is far slower under contention.
    /// PostgreSQL needs no lock.
    async fn write_lock(&self) -> Option<OwnedMutexGuard<()>> {
        match self.pool {
            Pool::Sqlite(_) => Some(Arc::clone(&self.write_lock).lock_owned().await),
            Pool::Postgres(_) => None,
        }
    }
}

impl<DB: WriteBackend> WriteTx<DB> {
    /// Commits. `Ok` means committed (on SQLite, fsynced too); on an error
    /// the connection is closed, since it cannot say whether it committed.
    pub(crate) async fn commit(mut self) -> Result<(), StoreError> {
        match control::<DB>(&mut self, Control::Commit).await {
            Ok(()) => {
                // Back to the pool, clean; the lock goes with `self`.
                self.conn = None;
                Ok(())
            }
            Err(e) => {
                self.state = TxState::InDoubt;
                Err(e.into())
            }
        }
    }
}

impl<DB: WriteBackend> Deref for WriteTx<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        self.conn.as_deref().expect(HELD)
    }
}

impl<DB: WriteBackend> DerefMut for WriteTx<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        self.conn.as_deref_mut().expect(HELD)
    }
}

/// The invariant behind `Deref`: the connection leaves only in `commit`,
/// which consumes the `WriteTx`, and in `drop`.
const HELD: &str = "a WriteTx holds its connection until it ends";

impl<DB: WriteBackend> Drop for WriteTx<DB> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return; // committed
        };
        let (state, lock) = (self.state, self.lock.take());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    end_uncommitted(conn, state).await;
                    drop(lock); // only now may the next writer begin
                });
            }
            // No runtime to roll back on (one being torn down): never back
            // to the pool; closing the connection rolls back.
            Err(_) => drop(conn.detach()),
        }
    }
}

/// Ends a transaction that did not commit: rolled back explicitly and the
/// connection returned to the pool, or else the connection closed.
async fn end_uncommitted<DB: WriteBackend>(mut conn: PoolConnection<DB>, state: TxState) {
    if state == TxState::Open && control::<DB>(&mut conn, Control::Rollback).await.is_ok() {
        return;
    }
    tracing::warn!("closing a store connection after a failed write");
    match tokio::time::timeout(DISCARD_TIMEOUT, conn.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "closing a failed store connection failed"),
        Err(_) => tracing::warn!("closing a failed store connection timed out; dropped"),
    }
}

/// The pool's check when a connection comes back: one that sqlx counts
/// inside a transaction is closed instead of kept (see the module docs), so
/// it cannot sit idle holding SQLite's write lock. It reads a counter: no
/// query, nothing added to the request path. A rollback sqlx has queued but
/// not yet run also counts as inside: such a connection is closed too, which
/// is safe.
pub(super) fn outside_transaction<DB: Database>(
    conn: &mut DB::Connection,
    _: PoolConnectionMetadata,
) -> BoxFuture<'_, sqlx::Result<bool>> {
    let outside = !conn.is_in_transaction();
    if !outside {
        tracing::warn!("closing a pooled store connection left inside a transaction");
    }
    Box::pin(std::future::ready(Ok(outside)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::SqlitePool;

    /// A store on a fresh SQLite file; the dir holds it.
    async fn sqlite_store() -> (Store, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("store.db").display());
        (Store::connect(&url).await.unwrap(), url, dir)
    }

    fn pool(store: &Store) -> &SqlitePool {
        let Pool::Sqlite(pool) = &store.pool else {
            panic!("a SQLite store")
        };
        pool
    }

    /// Writes `name = value` to `hookwise_meta` in one committed transaction.
    async fn put(store: &Store, name: &str, value: &str) -> Result<(), StoreError> {
        let mut tx = store.begin_write(pool(store)).await?;
        sqlx::query("INSERT INTO hookwise_meta (name, value) VALUES ($1, $2)")
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    /// The value of `name`, read through `store`'s own connections.
    async fn get(store: &Store, name: &str) -> Option<String> {
        sqlx::query_scalar("SELECT value FROM hookwise_meta WHERE name = $1")
            .bind(name)
            .fetch_optional(pool(store))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_write_sqlite_rolled_back_by_itself_closes_its_connection() {
        let (store, url, _dir) = sqlite_store().await;
        {
            // A full database: SQLITE_FULL makes SQLite roll the whole
            // transaction back itself, so the ROLLBACK that follows fails,
            // which is what a full disk does.
            let mut tx = store.begin_write(pool(&store)).await.unwrap();
            let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            let cap = format!("PRAGMA max_page_count = {pages}");
            sqlx::raw_sql(sqlx::AssertSqlSafe(cap))
                .execute(&mut *tx)
                .await
                .unwrap();
            let full = sqlx::query("INSERT INTO hookwise_meta (name, value) VALUES ('big', $1)")
                .bind("x".repeat(1 << 20))
                .execute(&mut *tx)
                .await
                .unwrap_err();
            assert!(full.to_string().contains("full"), "{full}");
        }
        // Had that connection gone back to the pool, its page cap would fail
        // these writes, which each need new pages.
        let other = Store::connect(&url).await.unwrap();
        for i in 0..10 {
            let name = format!("k{i}");
            put(&store, &name, &"v".repeat(8192)).await.unwrap();
            assert!(get(&other, &name).await.is_some(), "{name} committed");
        }
        assert_eq!(get(&other, "big").await, None);
    }

    #[tokio::test]
    async fn a_failed_commit_closes_its_connection_and_frees_the_write_lock() {
        let (store, url, _dir) = sqlite_store().await;
        let mut tx = store.begin_write(pool(&store)).await.unwrap();
        let schema = "CREATE TABLE parent (id INTEGER PRIMARY KEY); \
            CREATE TABLE child (parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)";
        sqlx::raw_sql(schema).execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();

        let mut tx = store.begin_write(pool(&store)).await.unwrap();
        sqlx::query("INSERT INTO child (parent) VALUES (7)")
            .execute(&mut *tx)
            .await
            .unwrap();
        // A deferred constraint fails the COMMIT and SQLite keeps the
        // transaction open, write lock and all.
        let failed = tx.commit().await.unwrap_err();
        assert!(failed.to_string().contains("FOREIGN KEY"), "{failed}");

        // Another process-like writer (its own pool and lock) can write: the
        // connection was closed, not kept holding the lock (it would wait out
        // the busy timeout and fail with "database is locked").
        let other = Store::connect(&url).await.unwrap();
        put(&other, "after", "1").await.unwrap();
        let children: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM child")
            .fetch_one(pool(&other))
            .await
            .unwrap();
        assert_eq!(children, 0);
        put(&store, "again", "1").await.unwrap();
    }

    #[tokio::test]
    async fn a_dropped_write_is_rolled_back_before_the_next_begins() {
        let (store, _url, _dir) = sqlite_store().await;
        {
            let mut tx = store.begin_write(pool(&store)).await.unwrap();
            sqlx::query("INSERT INTO hookwise_meta (name, value) VALUES ('dropped', 'x')")
                .execute(&mut *tx)
                .await
                .unwrap();
            // Dropped, as by `?` or a cancelled request.
        }
        put(&store, "next", "1").await.unwrap();
        assert_eq!(get(&store, "dropped").await, None);
        assert_eq!(get(&store, "next").await.as_deref(), Some("1"));
    }

    #[tokio::test]
    async fn the_pool_closes_a_connection_left_inside_an_sqlx_transaction() {
        let (store, url, _dir) = sqlite_store().await;
        {
            let mut conn = pool(&store).acquire().await.unwrap();
            let mut tx = Connection::begin(&mut *conn).await.unwrap();
            sqlx::query("INSERT INTO hookwise_meta (name, value) VALUES ('leaked', 'x')")
                .execute(&mut *tx)
                .await
                .unwrap();
            // What a failed rollback leaves: sqlx counts the connection inside
            // a transaction, and SQLite holds the write lock for it.
            std::mem::forget(tx);
        }
        let other = Store::connect(&url).await.unwrap();
        for i in 0..4 {
            let name = format!("k{i}");
            put(&store, &name, "v").await.unwrap();
            assert!(get(&other, &name).await.is_some(), "{name} committed");
        }
        assert_eq!(get(&other, "leaked").await, None);
    }
}
