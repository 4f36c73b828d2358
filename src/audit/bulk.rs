//! The FHIR Bulk Data `$export` client (Bulk Data Access IG v2): kick-off,
//! polling the status URL, downloading the manifest's NDJSON files into a
//! directory, and deleting the export on the server afterwards.
//!
//! Not supported: paged manifests (a `next` link, which is refused rather
//! than half read) and the `deleted` files of a `_since` export (ignored:
//! an audit reads what exists).
//!
//! Authorization is none, a static bearer token, or SMART Backend Services
//! client credentials ([`BulkAuth`]). Tokens never appear in messages or
//! logs, and URLs are named without their query, which for signed download
//! URLs holds a secret.

mod token;
mod wire;

use reqwest::header::{ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_LOCATION};
use reqwest::{RequestBuilder, Response, Url};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use token::Authorizer;
use wire::{check_scheme, is_transient, printable, redact, retry_after, status_error};

/// The SMART v2 scope asked for by default: read and search of every
/// resource type. Some servers want the v1 form, `system/*.read`.
pub const DEFAULT_SCOPE: &str = "system/*.rs";

/// How many times a transient failure (429, 5xx, a broken connection) of a
/// status poll or a file download is retried before it is an error.
const RETRIES: u32 = 3;

/// The longest wait between two polls, whatever `Retry-After` says.
const MAX_WAIT: Duration = Duration::from_secs(120);

/// The shortest wait between two polls, even after `Retry-After: 0`.
const MIN_WAIT: Duration = Duration::from_millis(100);

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;

const FHIR_JSON: &str = "application/fhir+json";
const FHIR_NDJSON: &str = "application/fhir+ndjson";

/// How the client authorizes itself to the FHIR server.
#[derive(Clone)]
pub enum BulkAuth {
    /// No `Authorization` header.
    None,
    /// This bearer token on every request.
    Bearer(String),
    /// SMART Backend Services: a `client_credentials` grant at `token_url`,
    /// authenticated by a JWT signed with `private_key_pem` (RSA: RS384; EC
    /// P-384 in PKCS#8: ES384) and naming `key_id` as its `kid`.
    Backend {
        /// The client id registered with the server (`iss` and `sub`).
        client_id: String,
        /// The client's private key, PEM.
        private_key_pem: String,
        /// The authorization server's token endpoint (`aud`).
        token_url: String,
        /// The scopes asked for, such as [`DEFAULT_SCOPE`].
        scope: String,
        /// The `kid` of the key in the client's registered JWKS.
        key_id: String,
    },
}

/// Secrets are left out.
impl fmt::Debug for BulkAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BulkAuth::None => f.write_str("None"),
            BulkAuth::Bearer(_) => f.write_str("Bearer(…)"),
            BulkAuth::Backend {
                client_id,
                token_url,
                scope,
                key_id,
                ..
            } => f
                .debug_struct("Backend")
                .field("client_id", client_id)
                .field("token_url", token_url)
                .field("scope", scope)
                .field("key_id", key_id)
                .finish_non_exhaustive(),
        }
    }
}

/// Which resources are exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportLevel {
    /// `{base}/$export`: everything on the server.
    System,
    /// `{base}/Patient/$export`: every patient's compartment.
    Patient,
    /// `{base}/Group/{id}/$export`: the members of one Group.
    Group(String),
}

/// What the export is doing, for a progress display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkProgress {
    /// The server accepted the kick-off.
    Accepted,
    /// The export is still running; `progress` is the server's `X-Progress`.
    Running {
        /// The server's words, made printable.
        progress: Option<String>,
    },
    /// The export is complete and its files are about to be downloaded.
    Ready {
        /// Output files in the manifest.
        files: usize,
        /// Error files in the manifest.
        error_files: usize,
    },
    /// One file is on disk.
    Saved {
        /// Where.
        path: PathBuf,
        /// Its non-blank lines, one resource each.
        resources: u64,
        /// Its size after inflating.
        bytes: u64,
    },
}

/// A finished export on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// The output files, `{dest}/{Type}.{n}.ndjson`, in manifest order.
    pub files: Vec<PathBuf>,
    /// Resources (non-blank lines) in the output files.
    pub resources: u64,
    /// The error files, `{dest}/errors/{Type}.{n}.ndjson`, kept apart so
    /// that a reader of `dest` sees only data.
    pub error_files: Vec<PathBuf>,
    /// OperationOutcomes (non-blank lines) in the error files.
    pub errors: u64,
    /// The manifest's `transactionTime`: the export holds the data as of it.
    pub transaction_time: String,
}

/// Which exchange of the flow failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Asking the token endpoint for an access token.
    Token,
    /// The `$export` request.
    KickOff,
    /// Polling the status URL.
    Status,
    /// Downloading an output or error file.
    Download,
    /// Deleting the export.
    Delete,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Token => "the token request",
            Step::KickOff => "the export kick-off",
            Step::Status => "the export status request",
            Step::Download => "the file download",
            Step::Delete => "the export deletion",
        })
    }
}

/// Why an export failed. Messages name the step, the URL without its
/// query, the HTTP status and the server's diagnostics, never a token.
#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    /// A setting is unusable (URL, scheme, key, resource type, destination).
    #[error("Bulk export: {0}")]
    Config(String),
    /// The server could not be reached, or the connection broke.
    #[error("{step} to {url} failed: {reason}")]
    Transport {
        /// Which exchange.
        step: Step,
        /// The URL, without query.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The server answered with a status the flow does not allow there.
    #[error("{step} to {url} answered HTTP {status}{}", said(.diagnostics))]
    Status {
        /// Which exchange.
        step: Step,
        /// The URL, without query.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The OperationOutcome's diagnostics, or the OAuth error.
        diagnostics: Option<String>,
    },
    /// The answer broke the protocol (no status URL, a bad manifest).
    #[error("{step} to {url}: {reason}")]
    Protocol {
        /// Which exchange.
        step: Step,
        /// The URL, without query.
        url: String,
        /// What was wrong with the answer.
        reason: String,
    },
    /// The export was not complete within the poll timeout.
    #[error("the export at {url} was not complete after {:.1} s", .waited.as_secs_f64())]
    Timeout {
        /// The status URL, without query.
        url: String,
        /// How long the client waited.
        waited: Duration,
    },
    /// A file or directory could not be written.
    #[error("cannot write {}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn said(diagnostics: &Option<String>) -> String {
    diagnostics
        .as_ref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

impl BulkError {
    /// A transport failure, described without the URL's query that
    /// reqwest's own message would carry.
    fn transport(step: Step, url: &Url, e: &reqwest::Error) -> BulkError {
        let kind = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "connection failed"
        } else if e.is_redirect() {
            "redirect refused"
        } else if e.is_body() || e.is_decode() {
            "the body broke off"
        } else {
            "transport error"
        };
        let mut reason = kind.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            reason.push_str(": ");
            reason.push_str(&cause.to_string());
            source = cause.source();
        }
        BulkError::Transport {
            step,
            url: redact(url),
            reason,
        }
    }
}

/// A FHIR server to export from, with the export's options.
pub struct BulkSource {
    http: reqwest::Client,
    base: Url,
    auth: Authorizer,
    level: ExportLevel,
    types: Vec<String>,
    since: Option<OffsetDateTime>,
    poll_timeout: Duration,
    poll_interval: Duration,
    insecure_http: bool,
}

/// One file named in the manifest.
#[derive(Debug)]
struct Entry {
    kind: String,
    url: Url,
}

/// The complete-status answer.
#[derive(Debug)]
struct Manifest {
    transaction_time: String,
    requires_access_token: bool,
    output: Vec<Entry>,
    error: Vec<Entry>,
}

/// The outcome of one try of a request that may be retried.
enum Try {
    Done(Response),
    Again(Duration),
}

impl BulkSource {
    /// A Patient-level export from the FHIR server at `base_url`, over
    /// https only, polled for at most six hours.
    pub fn new(base_url: &str, auth: BulkAuth) -> Result<BulkSource, BulkError> {
        let mut base = Url::parse(base_url)
            .map_err(|e| BulkError::Config(format!("the FHIR server URL is not a URL ({e})")))?;
        base.set_query(None);
        base.set_fragment(None);
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("hookwise/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            // No total timeout: a file may take long; a stalled one may not.
            .read_timeout(Duration::from_secs(120))
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                let downgrade = attempt.url().scheme() != "https"
                    && attempt.previous().iter().any(|u| u.scheme() == "https");
                if attempt.previous().len() > MAX_REDIRECTS {
                    attempt.error("too many redirects")
                } else if downgrade {
                    attempt.error("a redirect from https to http")
                } else {
                    attempt.follow()
                }
            }))
            .build()
            .map_err(|e| BulkError::Config(format!("cannot build the HTTP client ({e})")))?;
        Ok(BulkSource {
            http,
            base,
            auth: Authorizer::new(auth)?,
            level: ExportLevel::Patient,
            types: Vec::new(),
            since: None,
            poll_timeout: Duration::from_secs(6 * 3600),
            poll_interval: Duration::from_secs(1),
            insecure_http: false,
        })
    }

    /// Exports at `level` instead of Patient.
    pub fn level(mut self, level: ExportLevel) -> Self {
        self.level = level;
        self
    }

    /// Exports only these resource types (`_type`); all when empty.
    pub fn types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Exports only resources changed after `since` (`_since`).
    pub fn since(mut self, since: OffsetDateTime) -> Self {
        self.since = Some(since);
        self
    }

    /// Gives up (and cancels the export) when it is not complete after this.
    pub fn poll_timeout(mut self, timeout: Duration) -> Self {
        self.poll_timeout = timeout;
        self
    }

    /// The wait between polls when the server sends no `Retry-After`, and
    /// the first wait before retrying a transient failure (then doubled).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Allows plain http to the server, the token endpoint and the files.
    /// For tests and loopback servers only: tokens and patient data travel
    /// in clear.
    pub fn insecure_http(mut self, allowed: bool) -> Self {
        self.insecure_http = allowed;
        self
    }

    /// Runs the whole export into `dest` (created if missing; it must be
    /// empty), reporting each stage to `progress`.
    pub async fn export(
        &self,
        dest: &Path,
        progress: &mut dyn FnMut(BulkProgress),
    ) -> Result<Downloaded, BulkError> {
        let start = self.kick_off_url()?;
        self.auth.check(self.insecure_http)?;
        prepare_dest(dest)?;
        let status = self.kick_off(&start).await?;
        progress(BulkProgress::Accepted);
        let manifest = match self.poll(&status, progress).await {
            Err(e @ BulkError::Timeout { .. }) => {
                // DELETE on a running export cancels it.
                self.delete(&status).await;
                return Err(e);
            }
            other => other?,
        };
        progress(BulkProgress::Ready {
            files: manifest.output.len(),
            error_files: manifest.error.len(),
        });
        let downloaded = self.download_all(&manifest, dest, progress).await?;
        self.delete(&status).await;
        Ok(downloaded)
    }

    /// `{base}/[Patient/]$export?_outputFormat=…[&_type=…][&_since=…]`.
    fn kick_off_url(&self) -> Result<Url, BulkError> {
        check_scheme(&self.base, self.insecure_http, "the FHIR server URL")?;
        let path = match &self.level {
            ExportLevel::System => "$export".to_string(),
            ExportLevel::Patient => "Patient/$export".to_string(),
            ExportLevel::Group(id) if is_fhir_id(id) => format!("Group/{id}/$export"),
            ExportLevel::Group(_) => {
                return Err(BulkError::Config("the Group id is not a FHIR id".into()));
            }
        };
        if let Some(bad) = self.types.iter().find(|t| !is_resource_type(t)) {
            return Err(BulkError::Config(format!(
                "_type {} is not a resource type",
                printable(bad)
            )));
        }
        let mut url = self
            .base
            .join(&path)
            .map_err(|e| BulkError::Config(format!("cannot build the kick-off URL ({e})")))?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("_outputFormat", FHIR_NDJSON);
            if !self.types.is_empty() {
                query.append_pair("_type", &self.types.join(","));
            }
            if let Some(since) = self.since {
                let since = since
                    .format(&Rfc3339)
                    .map_err(|e| BulkError::Config(format!("_since cannot be written ({e})")))?;
                query.append_pair("_since", &since);
            }
        }
        Ok(url)
    }

    /// Starts the export; the answer is the status URL.
    async fn kick_off(&self, url: &Url) -> Result<Url, BulkError> {
        let request = self
            .http
            .get(url.clone())
            .header(ACCEPT, FHIR_JSON)
            .header("Prefer", "respond-async");
        let response = self.send(Step::KickOff, url, request, true).await?;
        if response.status() != 202 {
            return Err(status_error(Step::KickOff, url, response).await);
        }
        let location = response
            .headers()
            .get(CONTENT_LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| BulkError::Protocol {
                step: Step::KickOff,
                url: redact(url),
                reason: "HTTP 202 without a Content-Location status URL".into(),
            })?;
        let status = url.join(location.trim()).map_err(|e| BulkError::Protocol {
            step: Step::KickOff,
            url: redact(url),
            reason: format!("the Content-Location is not a URL ({e})"),
        })?;
        check_scheme(&status, self.insecure_http, "the status URL")?;
        Ok(status)
    }

    /// Polls `status` until the manifest comes, honouring `Retry-After`.
    async fn poll(
        &self,
        status: &Url,
        progress: &mut dyn FnMut(BulkProgress),
    ) -> Result<Manifest, BulkError> {
        let started = Instant::now();
        let deadline = started + self.poll_timeout;
        let mut failures = 0;
        loop {
            let request = self.http.get(status.clone()).header(ACCEPT, FHIR_JSON);
            let wait = match self
                .try_once(Step::Status, status, request, true, &mut failures)
                .await?
            {
                Try::Again(wait) => wait,
                Try::Done(response) if response.status() == 202 => {
                    failures = 0;
                    let said = response
                        .headers()
                        .get("X-Progress")
                        .and_then(|v| v.to_str().ok())
                        .map(printable);
                    progress(BulkProgress::Running { progress: said });
                    retry_after(response.headers()).unwrap_or(self.poll_interval)
                }
                Try::Done(mut response) if response.status() == 200 => {
                    return self.manifest(status, &mut response).await;
                }
                Try::Done(response) => {
                    return Err(status_error(Step::Status, status, response).await);
                }
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(BulkError::Timeout {
                    url: redact(status),
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(wait.clamp(MIN_WAIT, MAX_WAIT).min(remaining)).await;
        }
    }

    /// Downloads every output file, then every error file.
    async fn download_all(
        &self,
        manifest: &Manifest,
        dest: &Path,
        progress: &mut dyn FnMut(BulkProgress),
    ) -> Result<Downloaded, BulkError> {
        let token = manifest.requires_access_token;
        let (files, resources) = self
            .download_set(&manifest.output, dest, token, progress)
            .await?;
        let errors_dir = dest.join("errors");
        if !manifest.error.is_empty() {
            std::fs::create_dir_all(&errors_dir).map_err(|source| BulkError::Io {
                path: errors_dir.clone(),
                source,
            })?;
        }
        let (error_files, errors) = self
            .download_set(&manifest.error, &errors_dir, token, progress)
            .await?;
        Ok(Downloaded {
            files,
            resources,
            error_files,
            errors,
            transaction_time: manifest.transaction_time.clone(),
        })
    }

    /// Downloads `entries` into `dir` as `{Type}.{n}.ndjson`, numbered
    /// from 1 per type; the paths and the lines in them.
    async fn download_set(
        &self,
        entries: &[Entry],
        dir: &Path,
        with_token: bool,
        progress: &mut dyn FnMut(BulkProgress),
    ) -> Result<(Vec<PathBuf>, u64), BulkError> {
        let mut numbers = std::collections::HashMap::<&str, u32>::new();
        let mut paths = Vec::with_capacity(entries.len());
        let mut lines = 0;
        for entry in entries {
            let n = numbers.entry(&entry.kind).or_insert(0);
            *n += 1;
            let path = dir.join(format!("{}.{n}.ndjson", entry.kind));
            let saved = self.download(entry, &path, with_token).await?;
            lines += saved.lines;
            progress(BulkProgress::Saved {
                path: path.clone(),
                resources: saved.lines,
                bytes: saved.bytes,
            });
            paths.push(path);
        }
        Ok((paths, lines))
    }

    /// Streams one file to `path`, retrying transient failures.
    async fn download(
        &self,
        entry: &Entry,
        path: &Path,
        with_token: bool,
    ) -> Result<wire::Saved, BulkError> {
        let url = &entry.url;
        let mut failures = 0;
        loop {
            let request = self
                .http
                .get(url.clone())
                .header(ACCEPT, FHIR_NDJSON)
                .header(ACCEPT_ENCODING, "gzip");
            match self
                .try_once(Step::Download, url, request, with_token, &mut failures)
                .await?
            {
                Try::Again(wait) => tokio::time::sleep(wait.min(MAX_WAIT)).await,
                Try::Done(mut response) if response.status() == 200 => {
                    return wire::save(&mut response, url, path).await;
                }
                Try::Done(response) => {
                    return Err(status_error(Step::Download, url, response).await);
                }
            }
        }
    }

    /// Deletes the export on the server; a failure is only logged, since
    /// the data is already on disk (or the export already given up).
    async fn delete(&self, status: &Url) {
        let request = self.http.delete(status.clone());
        match self.send(Step::Delete, status, request, true).await {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => tracing::warn!(
                url = %redact(status),
                status = response.status().as_u16(),
                "the Bulk server did not delete the export"
            ),
            Err(e) => tracing::warn!(error = %e, "the Bulk server did not delete the export"),
        }
    }

    /// Sends `request`; a transient failure, while fewer than [`RETRIES`]
    /// have happened in a row, becomes a wait before the next try.
    async fn try_once(
        &self,
        step: Step,
        url: &Url,
        request: RequestBuilder,
        with_token: bool,
        failures: &mut u32,
    ) -> Result<Try, BulkError> {
        let outcome = self.send(step, url, request, with_token).await;
        let retry = *failures < RETRIES;
        let wait = match outcome {
            Ok(response) if retry && is_transient(response.status().as_u16()) => {
                retry_after(response.headers())
            }
            Err(BulkError::Transport { .. }) if retry => None,
            other => return other.map(Try::Done),
        };
        *failures += 1;
        let backoff = self.poll_interval.saturating_mul(1 << (*failures - 1));
        Ok(Try::Again(wait.unwrap_or(backoff)))
    }

    /// Sends `request`, with the access token when `with_token`. A fetched
    /// token that the server refuses (401) is replaced once.
    async fn send(
        &self,
        step: Step,
        url: &Url,
        request: RequestBuilder,
        with_token: bool,
    ) -> Result<Response, BulkError> {
        let again = request.try_clone();
        let response = self.send_with_token(step, url, request, with_token).await?;
        if response.status() == 401
            && with_token
            && self.auth.forget().await
            && let Some(request) = again
        {
            return self.send_with_token(step, url, request, with_token).await;
        }
        Ok(response)
    }

    async fn send_with_token(
        &self,
        step: Step,
        url: &Url,
        mut request: RequestBuilder,
        with_token: bool,
    ) -> Result<Response, BulkError> {
        if with_token && let Some(header) = self.auth.header(&self.http).await? {
            request = request.header(AUTHORIZATION, header);
        }
        request
            .send()
            .await
            .map_err(|e| BulkError::transport(step, url, &e))
    }

    /// Reads the complete-status manifest.
    async fn manifest(&self, status: &Url, response: &mut Response) -> Result<Manifest, BulkError> {
        let body = wire::small_body(response, Step::Status, status).await?;
        let value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| bad_manifest(status, format!("not JSON ({e})")))?;
        let paged = value["link"]
            .as_array()
            .is_some_and(|links| links.iter().any(|l| l["relation"] == "next"));
        if paged {
            return Err(bad_manifest(
                status,
                "paged manifests (link next) are not supported".into(),
            ));
        }
        let transaction_time = value["transactionTime"]
            .as_str()
            .ok_or_else(|| bad_manifest(status, "no transactionTime".into()))?
            .to_string();
        Ok(Manifest {
            transaction_time,
            requires_access_token: value["requiresAccessToken"].as_bool().unwrap_or(false),
            output: self.entries(status, &value, "output")?,
            error: self.entries(status, &value, "error")?,
        })
    }

    /// The manifest's `output` or `error` items; none when absent.
    fn entries(
        &self,
        status: &Url,
        manifest: &serde_json::Value,
        field: &str,
    ) -> Result<Vec<Entry>, BulkError> {
        let items = match &manifest[field] {
            serde_json::Value::Null => return Ok(Vec::new()),
            serde_json::Value::Array(items) => items,
            _ => return Err(bad_manifest(status, format!("{field} is not an array"))),
        };
        items
            .iter()
            .map(|item| self.entry(status, item, field))
            .collect()
    }

    /// One `output` or `error` item: a resource type and a URL this client
    /// may call.
    fn entry(
        &self,
        status: &Url,
        item: &serde_json::Value,
        field: &str,
    ) -> Result<Entry, BulkError> {
        let kind = item["type"]
            .as_str()
            .filter(|t| is_resource_type(t))
            .ok_or_else(|| bad_manifest(status, format!("an {field} item has no resource type")))?;
        let url = item["url"]
            .as_str()
            .ok_or_else(|| bad_manifest(status, format!("an {field} item has no url")))?;
        let url = status.join(url.trim()).map_err(|e| {
            bad_manifest(status, format!("an {field} item's url is not a URL ({e})"))
        })?;
        check_scheme(&url, self.insecure_http, "the file URL")?;
        Ok(Entry {
            kind: kind.to_string(),
            url,
        })
    }
}

fn bad_manifest(status: &Url, reason: String) -> BulkError {
    BulkError::Protocol {
        step: Step::Status,
        url: redact(status),
        reason: format!("unusable manifest: {reason}"),
    }
}

/// Creates `dest` if needed; it must be empty, so that no file of an
/// earlier export is read as part of this one.
fn prepare_dest(dest: &Path) -> Result<(), BulkError> {
    let io = |source| BulkError::Io {
        path: dest.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dest).map_err(io)?;
    if std::fs::read_dir(dest).map_err(io)?.next().is_some() {
        return Err(BulkError::Config(format!(
            "the destination {} is not empty",
            dest.display()
        )));
    }
    Ok(())
}

/// A FHIR resource type name (which also makes it a safe file name).
fn is_resource_type(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphabetic())
}

/// A FHIR `id`: `[A-Za-z0-9\-\.]{1,64}`.
fn is_fhir_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}
