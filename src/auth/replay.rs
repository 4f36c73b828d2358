//! The `jti` replay store: a token's `jti` is remembered until the token
//! expires (plus the clock skew), and a second use is refused.
//!
//! The store is in-process (moka). Several replicas behind a load balancer
//! each keep their own, so a token replayed to another replica is not caught:
//! such deployments need a shared store (Redis, a database) in its place.

use moka::Expiry;
use moka::future::Cache;
use std::time::{Duration, Instant};

/// Remembered `jti`s, each kept for its token's remaining lifetime.
pub struct ReplayStore {
    seen: Cache<String, Duration>,
}

/// Expires each entry after the duration stored as its value.
struct UntilExpiry;

impl Expiry<String, Duration> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        ttl: &Duration,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(*ttl)
    }
}

impl ReplayStore {
    /// A store holding at most `capacity` ids.
    pub fn new(capacity: u64) -> ReplayStore {
        ReplayStore {
            seen: Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilExpiry)
                .build(),
        }
    }

    /// Records `jti` of `iss` for `ttl`; false when it was already recorded.
    pub async fn first_use(&self, iss: &str, jti: &str, ttl: Duration) -> bool {
        let key = format!("{iss}\u{0}{jti}");
        self.seen.entry(key).or_insert(ttl).await.is_fresh()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_jti_is_accepted_once_per_issuer() {
        let store = ReplayStore::new(100);
        let ttl = Duration::from_secs(60);
        assert!(store.first_use("a", "j1", ttl).await);
        assert!(!store.first_use("a", "j1", ttl).await);
        assert!(store.first_use("b", "j1", ttl).await);
    }

    #[tokio::test]
    async fn a_jti_is_forgotten_after_its_lifetime() {
        let store = ReplayStore::new(100);
        assert!(store.first_use("a", "j1", Duration::from_millis(50)).await);
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(store.first_use("a", "j1", Duration::from_millis(50)).await);
    }
}
