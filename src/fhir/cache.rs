//! A brief cache of FHIR query results, so the same chart read again within
//! one encounter (order-select, then order-sign moments later) is not
//! fetched twice.
//!
//! An entry is keyed by everything that decides what the EHR would answer
//! and to whom: the `fhirServer` base URL, the full query URL (which holds
//! the patient id) and a SHA-256 of the access token (or no token). So it
//! can never serve one patient's data to a request about another, data of
//! one server to a request naming another, or data fetched under one token
//! to a request holding a different one. The token itself is not kept.
//!
//! Only successful reads are cached, for `ttl` at most, within a budget of
//! `max_bytes` of response JSON. Concurrent reads of one key share a single
//! fetch.

use super::client::FetchError;
use axum::body::Bytes;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Pages of one query as the server sent them (JSON bodies, checked to be
/// FHIR resources), shared between the cache and the requests reading them.
pub type Pages = Arc<Vec<Bytes>>;

/// The cached result of one query: its pages and their size on the wire.
#[derive(Clone)]
struct Entry {
    pages: Pages,
    bytes: u32,
}

/// What an entry is keyed by. No `Debug`: it holds a patient id.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    server: String,
    query: String,
    token: Option<[u8; 32]>,
}

/// The cache; disabled (every read goes to the server) when `ttl` is zero.
#[derive(Clone)]
pub struct FetchCache {
    entries: Option<moka::future::Cache<Key, Entry>>,
}

impl FetchCache {
    /// A cache keeping entries for `ttl` within `max_bytes` of response JSON.
    pub fn new(ttl: Duration, max_bytes: u64) -> FetchCache {
        let entries = (!ttl.is_zero()).then(|| {
            moka::future::Cache::builder()
                .time_to_live(ttl)
                .max_capacity(max_bytes)
                .weigher(|_: &Key, entry: &Entry| entry.bytes)
                .build()
        });
        FetchCache { entries }
    }

    /// The pages of `query` on `server` read with `token`: from the cache, or
    /// from `fetch` (which yields the pages and their size in bytes), caching
    /// a success.
    pub async fn get_or_fetch<F>(
        &self,
        server: &str,
        query: &str,
        token: Option<&str>,
        fetch: F,
    ) -> Result<Pages, FetchError>
    where
        F: Future<Output = Result<(Vec<Bytes>, usize), FetchError>>,
    {
        let Some(entries) = &self.entries else {
            return fetch.await.map(|(pages, _)| Arc::new(pages));
        };
        let key = Key {
            server: server.to_string(),
            query: query.to_string(),
            token: token.map(digest),
        };
        let missed = AtomicBool::new(false);
        let entry = entries
            .try_get_with(key, async {
                missed.store(true, Ordering::Relaxed);
                let (pages, bytes) = fetch.await?;
                Ok::<_, FetchError>(Entry {
                    pages: Arc::new(pages),
                    bytes: u32::try_from(bytes).unwrap_or(u32::MAX),
                })
            })
            .await
            .map_err(|e| (*e).clone())?;
        crate::metrics::fhir_cache_lookup(!missed.load(Ordering::Relaxed));
        Ok(entry.pages)
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::AtomicUsize;

    /// Reads through `cache`, counting how often the server is asked.
    async fn read(
        cache: &FetchCache,
        server: &str,
        query: &str,
        token: Option<&str>,
        asked: &AtomicUsize,
    ) -> Pages {
        let fetch = async {
            asked.fetch_add(1, Ordering::Relaxed);
            let page = json!({"resourceType": "Patient", "id": query}).to_string();
            Ok((vec![Bytes::from(page)], 40))
        };
        cache
            .get_or_fetch(server, query, token, fetch)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn every_part_of_the_key_separates_entries() {
        let cache = FetchCache::new(Duration::from_secs(60), 1 << 20);
        let asked = AtomicUsize::new(0);
        let base = "https://ehr.example.org/fhir/";
        read(&cache, base, "Patient/p1", Some("tok-a"), &asked).await;
        read(&cache, base, "Patient/p1", Some("tok-a"), &asked).await;
        assert_eq!(asked.load(Ordering::Relaxed), 1, "the same read is cached");
        read(&cache, base, "Patient/p1", Some("tok-b"), &asked).await;
        read(&cache, base, "Patient/p1", None, &asked).await;
        read(&cache, base, "Patient/p2", Some("tok-a"), &asked).await;
        read(
            &cache,
            "https://other.example.org/fhir/",
            "Patient/p1",
            Some("tok-a"),
            &asked,
        )
        .await;
        assert_eq!(
            asked.load(Ordering::Relaxed),
            5,
            "another token, no token, patient or server: refetched"
        );
    }

    #[tokio::test]
    async fn failures_are_not_cached_and_zero_ttl_disables() {
        let cache = FetchCache::new(Duration::from_secs(60), 1 << 20);
        let failed = cache
            .get_or_fetch("s", "q", None, async {
                Err(FetchError::Status { status: 500 })
            })
            .await;
        assert!(matches!(failed, Err(FetchError::Status { status: 500 })));
        let asked = AtomicUsize::new(0);
        read(&cache, "s", "q", None, &asked).await;
        assert_eq!(
            asked.load(Ordering::Relaxed),
            1,
            "the failure left nothing behind"
        );

        let disabled = FetchCache::new(Duration::ZERO, 1 << 20);
        read(&disabled, "s", "q", None, &asked).await;
        read(&disabled, "s", "q", None, &asked).await;
        assert_eq!(asked.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn entries_beyond_the_byte_budget_are_not_kept() {
        let cache = FetchCache::new(Duration::from_secs(60), 100);
        let asked = AtomicUsize::new(0);
        let big = || async { Ok((vec![Bytes::from_static(b"{}")], 1000)) };
        for _ in 0..2 {
            let counted = async {
                asked.fetch_add(1, Ordering::Relaxed);
                big().await
            };
            cache.get_or_fetch("s", "q", None, counted).await.unwrap();
            cache.entries.as_ref().unwrap().run_pending_tasks().await;
        }
        assert_eq!(
            asked.load(Ordering::Relaxed),
            2,
            "a 1000-byte result does not fit in 100 bytes"
        );
    }
}
