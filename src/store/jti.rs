//! The shared `jti` replay table (`auth.replay_store = "database"`): the SQL
//! behind [`crate::auth::replay`] when replicas share one database.
//!
//! A `jti` is recorded by an insert keyed by (iss, jti); a row left over from
//! an expired token is replaced, an unexpired one is not, so exactly one of
//! several replicas racing on the same token records it. Expired rows are
//! deleted by [`Store::delete_expired_jtis`].

use super::{Store, StoreError, millis, on_pool};
use time::OffsetDateTime;

impl Store {
    /// Records `jti` of `iss` until `expires_at`; `false` when an unexpired
    /// row for it is already there (a replay, on this replica or another).
    pub async fn record_jti(
        &self,
        iss: &str,
        jti: &str,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        // The conditional upsert touches a row only when it is new or expired,
        // so rows_affected is 1 exactly when this call is the first use.
        let sql = "INSERT INTO jti_replay (iss, jti, expires_at) VALUES ($1, $2, $3) \
                   ON CONFLICT (iss, jti) DO UPDATE SET expires_at = excluded.expires_at \
                   WHERE jti_replay.expires_at <= $4";
        let recorded = on_pool!(self, pool => {
            let mut tx = self.begin_write(pool).await?;
            let done = sqlx::query(sql)
                .bind(iss)
                .bind(jti)
                .bind(millis(expires_at))
                .bind(millis(now))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            done.rows_affected()
        });
        Ok(recorded == 1)
    }

    /// Deletes the rows of tokens expired by `now`; returns how many.
    pub async fn delete_expired_jtis(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let sql = "DELETE FROM jti_replay WHERE expires_at <= $1";
        let deleted = on_pool!(self, pool => {
            let mut tx = self.begin_write(pool).await?;
            let done = sqlx::query(sql).bind(millis(now)).execute(&mut *tx).await?;
            tx.commit().await?;
            done.rows_affected()
        });
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    async fn rows(store: &Store) -> i64 {
        let (n,): (i64,) = on_pool!(store, pool => sqlx::query_as("SELECT COUNT(*) FROM jti_replay")
            .fetch_one(pool)
            .await
            .unwrap());
        n
    }

    #[tokio::test]
    async fn a_jti_is_recorded_once_per_issuer_until_it_expires() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let later = now + Duration::minutes(5);
        assert!(store.record_jti("a", "j1", now, later).await.unwrap());
        assert!(!store.record_jti("a", "j1", now, later).await.unwrap());
        assert!(
            !store
                .record_jti("a", "j1", later - Duration::SECOND, later)
                .await
                .unwrap(),
            "still refused just before expiry"
        );
        assert!(store.record_jti("b", "j1", now, later).await.unwrap());
        assert!(
            store
                .record_jti("a", "j1", later, later + Duration::minutes(5))
                .await
                .unwrap(),
            "an expired row not yet deleted is replaced"
        );
        assert!(
            !store
                .record_jti("a", "j1", later, later + Duration::minutes(5))
                .await
                .unwrap(),
            "and the replacement is kept"
        );
    }

    #[tokio::test]
    async fn expired_rows_are_deleted_and_live_ones_kept() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        for (jti, lifetime) in [("short-1", 1), ("short-2", 2), ("long", 10)] {
            let expires = now + Duration::minutes(lifetime);
            assert!(store.record_jti("a", jti, now, expires).await.unwrap());
        }
        let deleted = store
            .delete_expired_jtis(now + Duration::minutes(2))
            .await
            .unwrap();
        assert_eq!((deleted, rows(&store).await), (2, 1));
        assert!(
            !store
                .record_jti("a", "long", now, now + Duration::minutes(10))
                .await
                .unwrap(),
            "the live row survived the sweep"
        );
    }
}
