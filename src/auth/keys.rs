//! Fetching and caching clients' JWKS by URL.
//!
//! A JWKS is fetched on first use, cached in moka for `jwks_cache_secs`, and
//! fetched again once when a token names a `kid` it lacks (key rotation).
//! Every fetch of one URL, first or refresh, is at least
//! `jwks_refresh_floor_secs` after the previous one, so a flood of tokens
//! with unknown `kid`s costs the EHR one request per floor interval. Only
//! URLs from the configuration are ever fetched; redirects are not followed.

use super::AuthError;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use moka::future::Cache;
use reqwest::Url;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest JWKS body accepted.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Cached key sets by URL.
pub struct KeyStore {
    http: reqwest::Client,
    sets: Cache<String, Arc<JwkSet>>,
    last_fetch: Mutex<HashMap<String, Instant>>,
    floor: Duration,
}

impl KeyStore {
    /// A store keeping sets for `ttl`, fetching one URL at most once per `floor`.
    pub fn new(
        ttl: Duration,
        floor: Duration,
        timeout: Duration,
    ) -> Result<KeyStore, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .user_agent(concat!("hookwise/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let sets = Cache::builder()
            .max_capacity(1024)
            .time_to_live(ttl)
            .build();
        Ok(KeyStore {
            http,
            sets,
            last_fetch: Mutex::new(HashMap::new()),
            floor,
        })
    }

    /// The key `kid` of the JWKS at `url`, refreshing the set once if needed.
    pub async fn find(&self, url: &str, kid: &str) -> Result<Jwk, AuthError> {
        let set = self
            .sets
            .try_get_with(url.to_string(), async {
                if !self.claim_fetch(url) {
                    return Err(AuthError::KeysUnavailable("fetched too recently".into()));
                }
                self.fetch(url).await
            })
            .await
            .map_err(|e| (*e).clone())?;
        if let Some(jwk) = set.find(kid) {
            return Ok(jwk.clone());
        }
        if !self.claim_fetch(url) {
            return Err(AuthError::UnknownKey);
        }
        tracing::debug!(url, "unknown kid: refreshing the JWKS");
        let fresh = self.fetch(url).await?;
        self.sets.insert(url.to_string(), fresh.clone()).await;
        fresh.find(kid).cloned().ok_or(AuthError::UnknownKey)
    }

    /// Records a fetch of `url` now, unless the last one was under the floor ago.
    fn claim_fetch(&self, url: &str) -> bool {
        let Ok(mut last) = self.last_fetch.lock() else {
            return false;
        };
        let now = Instant::now();
        match last.get(url) {
            Some(at) if now.duration_since(*at) < self.floor => false,
            _ => {
                last.insert(url.to_string(), now);
                true
            }
        }
    }

    async fn fetch(&self, url: &str) -> Result<Arc<JwkSet>, AuthError> {
        let unavailable = |why: &str| AuthError::KeysUnavailable(format!("{url}: {why}"));
        let response = self
            .http
            .get(url)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| {
                unavailable(if e.is_timeout() {
                    "timed out"
                } else {
                    "transport error"
                })
            })?;
        if !response.status().is_success() {
            return Err(unavailable(&format!(
                "status {}",
                response.status().as_u16()
            )));
        }
        if response
            .content_length()
            .is_some_and(|n| n as usize > MAX_JWKS_BYTES)
        {
            return Err(unavailable("too large"));
        }
        let body = response
            .bytes()
            .await
            .map_err(|_| unavailable("transport error"))?;
        if body.len() > MAX_JWKS_BYTES {
            return Err(unavailable("too large"));
        }
        let set: JwkSet = serde_json::from_slice(&body).map_err(|_| unavailable("not a JWKS"))?;
        tracing::info!(url, keys = set.keys.len(), "fetched client JWKS");
        Ok(Arc::new(set))
    }
}

/// A JWKS URL or allowlisted `jku` must be https, or http on a loopback
/// host (development).
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = Url::parse(url).map_err(|_| format!("{url:?} is not a URL"))?;
    let host = parsed
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']']);
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!(
            "{url:?} must be https (plain http only on a loopback host)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_urls_must_be_https_except_on_loopback() {
        assert!(check_url("https://ehr.example.org/jwks").is_ok());
        assert!(check_url("http://127.0.0.1:9000/jwks").is_ok());
        assert!(check_url("http://localhost/jwks").is_ok());
        assert!(check_url("http://ehr.example.org/jwks").is_err());
        assert!(check_url("ftp://ehr.example.org/jwks").is_err());
    }

    #[test]
    fn fetches_of_one_url_respect_the_floor() {
        let store = KeyStore::new(
            Duration::from_secs(60),
            Duration::from_secs(60),
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(store.claim_fetch("https://a/jwks"));
        assert!(!store.claim_fetch("https://a/jwks"));
        assert!(store.claim_fetch("https://b/jwks"));
    }
}
