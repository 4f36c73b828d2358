//! The FHIR REST client for data the EHR did not prefetch.
//!
//! The access token is used for this one request only: it is sent to the
//! `fhirServer` origin and nowhere else (no redirects are followed and
//! pagination links must stay on the same origin), and it is never logged.
//! Results may be reused briefly, keyed by server, query and token: see
//! [`super::cache`].

use super::cache::{FetchCache, Pages};
use crate::json::{Json, ParseError, field, parse, resource_type, str_field};
use axum::body::Bytes;
use reqwest::Url;
use std::time::Duration;

/// How the client may reach FHIR servers.
#[derive(Debug, Clone)]
pub struct FhirClientConfig {
    /// Hosts that may be reached over plain `http` (development only).
    pub insecure_hosts: Vec<String>,
    /// Timeout for one HTTP exchange; the request deadline bounds the total.
    pub request_timeout: Duration,
    /// Most pages followed for one search.
    pub max_pages: usize,
    /// Largest response body accepted.
    pub max_response_bytes: usize,
    /// How long a successful read may be reused; zero disables the cache.
    pub cache_ttl: Duration,
    /// Most bytes of response JSON the cache holds.
    pub cache_max_bytes: u64,
}

impl Default for FhirClientConfig {
    fn default() -> Self {
        FhirClientConfig {
            insecure_hosts: Vec::new(),
            request_timeout: Duration::from_secs(5),
            max_pages: 20,
            max_response_bytes: 16 * 1024 * 1024,
            cache_ttl: Duration::from_secs(60),
            cache_max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Why a fetch failed. Messages never contain the token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// `fhirServer` is not a usable URL, or not https.
    #[error("fhirServer {0}")]
    BadServer(String),
    /// Transport failure or timeout.
    #[error("could not reach the FHIR server: {0}")]
    Transport(String),
    /// A non-success status.
    /// The URL is not named: it holds the patient id.
    #[error("the FHIR server answered HTTP {status}")]
    Status {
        /// HTTP status.
        status: u16,
    },
    /// The body was not FHIR JSON.
    #[error("the FHIR server sent an unusable body: {0}")]
    Body(String),
}

/// A FHIR client shared by all requests.
#[derive(Clone)]
pub struct FhirClient {
    http: reqwest::Client,
    config: FhirClientConfig,
    cache: FetchCache,
}

impl FhirClient {
    /// Builds the client.
    pub fn new(config: FhirClientConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.request_timeout)
            .user_agent(concat!("hookwise/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let cache = FetchCache::new(config.cache_ttl, config.cache_max_bytes);
        Ok(FhirClient {
            http,
            config,
            cache,
        })
    }

    /// Checks that `fhir_server` may be called: https, or an allowlisted host.
    pub fn check_server(&self, fhir_server: &str) -> Result<Url, FetchError> {
        let mut url = Url::parse(fhir_server)
            .map_err(|_| FetchError::BadServer("is not a valid URL".into()))?;
        let host = url.host_str().unwrap_or_default().to_string();
        let allowed = match url.scheme() {
            "https" => true,
            "http" => self.config.insecure_hosts.contains(&host),
            _ => false,
        };
        if !allowed {
            return Err(FetchError::BadServer(format!(
                "must use https (host {host} is not allowlisted for http)"
            )));
        }
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        Ok(url)
    }

    /// Reads `relative` (a rendered prefetch template, or an absolute `next`
    /// link on the same server) and, for a searchset, every following page.
    /// A read of the same URL with the same token moments ago is reused.
    pub async fn fetch(
        &self,
        fhir_server: &str,
        relative: &str,
        token: Option<&str>,
    ) -> Result<Pages, FetchError> {
        let base = self.check_server(fhir_server)?;
        let first = base
            .join(relative)
            .map_err(|_| FetchError::BadServer("cannot be joined with the query".into()))?;
        let (server, query) = (base.as_str(), first.as_str());
        let fetch = self.fetch_pages(&base, first.clone(), token);
        self.cache.get_or_fetch(server, query, token, fetch).await
    }

    /// Follows `Bundle.link[next]` from `url`, staying on the origin of
    /// `base`. Returns the pages and their total size in bytes.
    async fn fetch_pages(
        &self,
        base: &Url,
        mut url: Url,
        token: Option<&str>,
    ) -> Result<(Vec<Bytes>, usize), FetchError> {
        let (mut pages, mut bytes) = (Vec::new(), 0);
        loop {
            if url.origin() != base.origin() {
                return Err(FetchError::Body("a link leaves the FHIR server".into()));
            }
            let (page, next) = self.get_page(&url, token).await?;
            bytes += page.len();
            pages.push(page);
            let Some(next) = next else { break };
            if pages.len() >= self.config.max_pages {
                return Err(FetchError::Body(format!(
                    "more than {} pages of results",
                    self.config.max_pages
                )));
            }
            url = base
                .join(&next)
                .map_err(|_| FetchError::Body("invalid next link".into()))?;
        }
        Ok((pages, bytes))
    }

    /// One page, checked to be a FHIR resource, and its `next` link.
    async fn get_page(
        &self,
        url: &Url,
        token: Option<&str>,
    ) -> Result<(Bytes, Option<String>), FetchError> {
        let mut request = self
            .http
            .get(url.clone())
            .header("Accept", "application/fhir+json");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| FetchError::Transport(describe(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status {
                status: status.as_u16(),
            });
        }
        if response
            .content_length()
            .is_some_and(|n| n as usize > self.config.max_response_bytes)
        {
            return Err(FetchError::Body("response too large".into()));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| FetchError::Transport(describe(&e)))?;
        if body.len() > self.config.max_response_bytes {
            return Err(FetchError::Body("response too large".into()));
        }
        let page = parse(&body).map_err(|e| match e {
            ParseError::NotUtf8 { .. } => FetchError::Body("not UTF-8".into()),
            ParseError::Json(e) => FetchError::Body(e.to_string()),
        })?;
        match resource_type(&page) {
            Some("OperationOutcome") => Err(FetchError::Body("an OperationOutcome".into())),
            Some(_) => {
                let next = next_link(&page);
                drop(page);
                Ok((body, next))
            }
            None => Err(FetchError::Body("not a FHIR resource".into())),
        }
    }
}

/// reqwest errors can embed the URL (with the patient id); keep only the kind.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        "transport error".into()
    }
}

/// The `Bundle.link[next]` URL, if any.
pub fn next_link<'a>(bundle: &'a Json<'a>) -> Option<String> {
    let next = field(bundle, "link")?
        .as_array()?
        .iter()
        .find(|link| str_field(link, "relation") == Some("next"))?;
    str_field(next, "url").map(str::to_string)
}
