//! Typed settings: built-in defaults, then an optional TOML file
//! (`--config`), then `HOOKWISE_*` environment variables, then CLI flags.
//!
//! This module only describes and loads settings; [`crate::server`] checks
//! that they make sense together and [`crate::auth`] validates the trusted
//! clients.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Server settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on (`HOOKWISE_LISTEN`).
    pub listen: SocketAddr,
    /// Rule directory (`HOOKWISE_RULES`).
    pub rules: PathBuf,
    /// Ids of rules this site turns off, such as the "use with caution"
    /// cards it does not want (`HOOKWISE_DISABLED_RULES`, comma-separated).
    /// An id that names no rule stops the server from starting.
    pub disabled_rules: Vec<String>,
    /// Budget for a service call, FHIR fetches included (`HOOKWISE_DEADLINE_MS`).
    pub deadline_ms: u64,
    /// Largest request body in bytes; larger gets 413 (`HOOKWISE_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Deepest JSON nesting accepted in a request body; deeper gets 400
    /// (`HOOKWISE_MAX_JSON_DEPTH`). At most [`MAX_JSON_DEPTH_CEILING`].
    pub max_json_depth: usize,
    /// Most keys in a request's `prefetch`; more gets 400 (`HOOKWISE_MAX_PREFETCH_KEYS`).
    pub max_prefetch_keys: usize,
    /// Most draft orders in `context.draftOrders`; more gets 400 (`HOOKWISE_MAX_DRAFT_ORDERS`).
    pub max_draft_orders: usize,
    /// Most requests served at once; more get 503 with `Retry-After`
    /// (`HOOKWISE_MAX_CONCURRENT_REQUESTS`).
    pub max_concurrent_requests: usize,
    /// Most request-body bytes held by the calls in flight; a call that would
    /// exceed it gets 503 with `Retry-After`. A parsed body takes a few times
    /// its size in memory, so this bounds what large calls can take together
    /// (`HOOKWISE_MAX_INFLIGHT_BODY_BYTES`). At least `max_body_bytes`.
    pub max_inflight_body_bytes: usize,
    /// Seconds sent in `Retry-After` with a 503 (`HOOKWISE_RETRY_AFTER_SECS`).
    pub retry_after_secs: u64,
    /// Time a connection has to deliver a request head, counted from its
    /// acceptance or the end of its previous response; slower (or idle
    /// keep-alive) connections are closed (`HOOKWISE_HEADER_READ_TIMEOUT_MS`).
    pub header_read_timeout_ms: u64,
    /// Time a request has to deliver its body, counted from the end of its
    /// head; slower gets 408 and the connection is closed
    /// (`HOOKWISE_BODY_READ_TIMEOUT_MS`).
    pub body_read_timeout_ms: u64,
    /// On shutdown, how long requests in flight may finish before the
    /// remaining connections are dropped (`HOOKWISE_SHUTDOWN_TIMEOUT_MS`).
    /// Below Kubernetes' default 30 s grace period, so the card log is
    /// written out before a SIGKILL could come.
    pub shutdown_timeout_ms: u64,
    /// Log filter in `tracing` directive syntax, e.g. `info` or
    /// `hookwise=debug,warn` (`HOOKWISE_LOG`).
    pub log: String,
    /// Log format: `text` or `json` (`HOOKWISE_LOG_FORMAT`).
    pub log_format: LogFormat,
    /// Key of the HMAC-SHA256 that turns patient ids into log-safe hashes
    /// (`HOOKWISE_PATIENT_ID_HASH_KEY`); the feedback store hashes patients,
    /// encounters and draft orders with it too, so it must not change. Without
    /// it a key is generated once and kept in the store.
    pub patient_id_hash_key: Option<Secret>,
    /// The feedback store (`HOOKWISE_DATABASE_URL`): a SQLite file
    /// (`sqlite:PATH` or a path; created on first start) or a `postgres://`
    /// URL for deployments with several replicas.
    pub database_url: String,
    /// Most calls whose issued cards may wait to be written to the card log;
    /// beyond it they are dropped and counted (`HOOKWISE_CARD_LOG_QUEUE`).
    pub card_log_queue: usize,
    /// The URL the EHR calls, up to but excluding `/cds-services`, e.g.
    /// `https://cds.example.org` (`HOOKWISE_PUBLIC_BASE_URL`). A JWT's `aud`
    /// must be this plus the path invoked.
    pub public_base_url: Option<String>,
    /// Cross-origin requests from browser-based EHRs (`HOOKWISE_CORS__*`).
    pub cors: CorsSettings,
    /// CDS client authentication (`HOOKWISE_AUTH__*`; clients in the file).
    pub auth: AuthSettings,
    /// FHIR client settings (`HOOKWISE_FHIR__*`).
    pub fhir: FhirSettings,
    /// Bearer token Prometheus must present to read `/metrics`
    /// (`HOOKWISE_METRICS_TOKEN`). Without it `/metrics` is open on loopback
    /// or when the server runs open, and closed otherwise.
    pub metrics_token: Option<Secret>,
    /// Bearer token that opens `/console` to callers beyond loopback
    /// (`HOOKWISE_CONSOLE_TOKEN`). Without it the console answers loopback
    /// connections only.
    pub console_token: Option<Secret>,
    /// An audit report (`hookwise audit --format json`) the console shows
    /// from startup (`HOOKWISE_AUDIT_REPORT`, `hookwise serve --audit`).
    pub audit_report: Option<PathBuf>,
}

/// The deepest `max_json_depth` allowed: the request parser itself refuses
/// anything deeper, whatever the setting.
pub const MAX_JSON_DEPTH_CEILING: usize = crate::cds::MAX_JSON_DEPTH;

/// A secret setting: never shown by `Debug`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A bearer token a route requires (`metrics_token`, `console_token`),
/// kept as its SHA-256 and compared in constant time, so neither the
/// comparison's time nor a memory dump says anything about it.
#[derive(Clone)]
pub struct BearerToken([u8; 32]);

impl BearerToken {
    /// The token `secret` holds.
    pub fn new(secret: &Secret) -> BearerToken {
        BearerToken(Sha256::digest(secret.expose().as_bytes()).into())
    }

    /// Whether an `Authorization` header value is `Bearer <this token>`
    /// (the scheme in any case).
    pub fn admits(&self, authorization: Option<&str>) -> bool {
        let Some((scheme, token)) = authorization.and_then(|v| v.split_once(' ')) else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return false;
        }
        let given: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        given
            .iter()
            .zip(&self.0)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

/// Which browser origins may call hookwise.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsSettings {
    /// Allowed origins, e.g. `https://sandbox.cds-hooks.org`; `*` allows any
    /// (`HOOKWISE_CORS__ALLOWED_ORIGINS=a,b`). None by default.
    pub allowed_origins: Vec<String>,
}

/// How callers prove they are a trusted CDS client (an EHR).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// The EHRs whose JWTs are accepted. With none, hookwise runs open, which
    /// it only does on a loopback address or with `allow_unauthenticated`.
    pub clients: Vec<TrustedClient>,
    /// Run without authentication on a non-loopback address
    /// (`--allow-unauthenticated`, `HOOKWISE_AUTH__ALLOW_UNAUTHENTICATED`).
    pub allow_unauthenticated: bool,
    /// Tolerance for `exp`, `nbf` and `iat` (`HOOKWISE_AUTH__CLOCK_SKEW_SECS`).
    pub clock_skew_secs: u64,
    /// Longest accepted token lifetime, `exp - iat` (`HOOKWISE_AUTH__MAX_TOKEN_LIFETIME_SECS`).
    pub max_token_lifetime_secs: u64,
    /// How long fetched JWKS are reused (`HOOKWISE_AUTH__JWKS_CACHE_SECS`).
    pub jwks_cache_secs: u64,
    /// Least time between two fetches of one JWKS URL, so unknown `kid`s
    /// cannot hammer the EHR (`HOOKWISE_AUTH__JWKS_REFRESH_FLOOR_SECS`).
    pub jwks_refresh_floor_secs: u64,
    /// Timeout of one JWKS fetch (`HOOKWISE_AUTH__JWKS_TIMEOUT_MS`).
    pub jwks_timeout_ms: u64,
    /// Where `jti`s are remembered against replay (`HOOKWISE_AUTH__REPLAY_STORE`).
    pub replay_store: ReplayStoreKind,
    /// Most `jti`s the in-memory replay store holds; when it is full of
    /// unexpired ones, calls get 503 with `Retry-After`. Size it as peak calls
    /// per second times the longest token lifetime (plus the clock skew)
    /// (`HOOKWISE_AUTH__REPLAY_CACHE_CAPACITY`).
    pub replay_cache_capacity: u64,
    /// Longest wait for the database replay store to record a `jti`; beyond
    /// it the call gets 503 with `Retry-After`
    /// (`HOOKWISE_AUTH__REPLAY_STORE_TIMEOUT_MS`).
    pub replay_store_timeout_ms: u64,
}

/// Where the `jti` replay store keeps its ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplayStoreKind {
    /// In this process: each replica keeps its own, lost on restart.
    Memory,
    /// In the feedback store's database (`database_url`): shared by every
    /// replica on one PostgreSQL database, and kept across restarts.
    Database,
}

/// One trusted CDS client, identified by the JWT `iss`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedClient {
    /// The exact `iss` the client puts in its JWTs.
    pub iss: String,
    /// A JWKS file holding the client's public keys (pinned; any `jku` in the
    /// token is then never fetched).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// A URL serving the client's JWKS, fetched and cached.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// `jku` header values that may be fetched for this client (exact URLs).
    #[serde(default)]
    pub jku_allowlist: Vec<String>,
    /// Accepted signature algorithms; HMAC and `none` are never accepted.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// When not empty, the `tenant` claim is required and must be one of these.
    #[serde(default)]
    pub tenants: Vec<String>,
}

/// ES384 and RS384, the algorithms CDS Hooks recommends.
pub fn default_algorithms() -> Vec<String> {
    vec!["ES384".into(), "RS384".into()]
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            clients: Vec::new(),
            allow_unauthenticated: false,
            clock_skew_secs: 60,
            max_token_lifetime_secs: 3600,
            jwks_cache_secs: 3600,
            jwks_refresh_floor_secs: 60,
            jwks_timeout_ms: 3000,
            replay_store: ReplayStoreKind::Memory,
            replay_cache_capacity: 100_000,
            replay_store_timeout_ms: 1000,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// How hookwise reaches EHR FHIR servers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FhirSettings {
    /// Hosts reachable over plain http, for development (`HOOKWISE_FHIR__INSECURE_HOSTS=localhost,127.0.0.1`).
    pub insecure_hosts: Vec<String>,
    /// Timeout of one FHIR HTTP exchange.
    pub request_timeout_ms: u64,
    /// Most result pages followed per search.
    pub max_pages: usize,
    /// Seconds a successful FHIR read may be reused by a later call with the
    /// same server, query (so patient) and access token; 0 disables
    /// (`HOOKWISE_FHIR__CACHE_TTL_SECS`).
    pub cache_ttl_secs: u64,
    /// Most bytes of FHIR response JSON cached (`HOOKWISE_FHIR__CACHE_MAX_BYTES`).
    pub cache_max_bytes: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            rules: PathBuf::from("cds-rules"),
            disabled_rules: Vec::new(),
            deadline_ms: 2000,
            max_body_bytes: 5 * 1024 * 1024,
            max_json_depth: MAX_JSON_DEPTH_CEILING,
            max_prefetch_keys: 64,
            max_draft_orders: 100,
            max_concurrent_requests: 256,
            max_inflight_body_bytes: 64 * 1024 * 1024,
            retry_after_secs: 1,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            shutdown_timeout_ms: 20_000,
            log: "info".into(),
            log_format: LogFormat::Text,
            patient_id_hash_key: None,
            database_url: "sqlite:hookwise.db".into(),
            card_log_queue: 10_000,
            public_base_url: None,
            cors: CorsSettings::default(),
            auth: AuthSettings::default(),
            fhir: FhirSettings::default(),
            metrics_token: None,
            console_token: None,
            audit_report: None,
        }
    }
}

impl Default for FhirSettings {
    fn default() -> Self {
        FhirSettings {
            insecure_hosts: Vec::new(),
            request_timeout_ms: 1500,
            max_pages: 20,
            cache_ttl_secs: 60,
            cache_max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Values given on the command line, which override everything else.
#[derive(Debug, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--rules`.
    pub rules: Option<PathBuf>,
    /// `--allow-unauthenticated`.
    pub allow_unauthenticated: bool,
    /// `--audit`.
    pub audit_report: Option<PathBuf>,
}

impl Settings {
    /// Layers defaults, the file, the environment and the overrides.
    pub fn load(
        file: Option<&Path>,
        overrides: Overrides,
    ) -> Result<Settings, config::ConfigError> {
        let mut builder =
            config::Config::builder().add_source(config::Config::try_from(&Settings::default())?);
        if let Some(file) = file {
            builder = builder.add_source(config::File::from(file).required(true));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("HOOKWISE")
                .prefix_separator("_")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("fhir.insecure_hosts")
                .with_list_parse_key("disabled_rules")
                .with_list_parse_key("cors.allowed_origins")
                .try_parsing(true),
        );
        if let Some(listen) = overrides.listen {
            builder = builder.set_override("listen", listen.to_string())?;
        }
        if let Some(rules) = overrides.rules {
            builder = builder.set_override("rules", rules.to_string_lossy().to_string())?;
        }
        if let Some(report) = overrides.audit_report {
            builder = builder.set_override("audit_report", report.to_string_lossy().to_string())?;
        }
        if overrides.allow_unauthenticated {
            builder = builder.set_override("auth.allow_unauthenticated", true)?;
        }
        builder.build()?.try_deserialize()
    }

    /// The call deadline.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }

    /// The header read timeout.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// The body read timeout.
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }

    /// The shutdown deadline.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_clients_cors_and_limits_load_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hookwise.toml");
        std::fs::write(
            &file,
            r#"
public_base_url = "https://cds.example.org"
max_prefetch_keys = 10
patient_id_hash_key = "s3cret"
console_token = "c0nsole-t0ken"

[cors]
allowed_origins = ["https://sandbox.cds-hooks.org"]

[auth]
clock_skew_secs = 30
replay_store = "database"

[[auth.clients]]
iss = "https://sandbox.cds-hooks.org"
jwks_file = "tests/data/cds-hooks-sandbox-jwks.json"

[[auth.clients]]
iss = "https://fhir.example.org/api/FHIR/R4"
jwks_url = "https://fhir.example.org/jwks"
algorithms = ["RS384"]
tenants = ["hospital-a"]
"#,
        )
        .unwrap();
        let settings = Settings::load(Some(&file), Overrides::default()).unwrap();
        assert_eq!(
            settings.public_base_url.as_deref(),
            Some("https://cds.example.org")
        );
        assert_eq!(settings.max_prefetch_keys, 10);
        assert_eq!(
            settings.cors.allowed_origins,
            ["https://sandbox.cds-hooks.org"]
        );
        assert_eq!(settings.auth.clock_skew_secs, 30);
        assert_eq!(settings.auth.replay_store, ReplayStoreKind::Database);
        assert_eq!(
            settings.auth.jwks_refresh_floor_secs, 60,
            "defaults fill the rest"
        );
        let [sandbox, epic] = &settings.auth.clients[..] else {
            panic!("two clients")
        };
        assert_eq!(sandbox.algorithms, default_algorithms());
        assert!(sandbox.jwks_file.is_some() && sandbox.jku_allowlist.is_empty());
        assert_eq!(epic.algorithms, ["RS384"]);
        assert_eq!(epic.tenants, ["hospital-a"]);
        assert_eq!(
            settings.patient_id_hash_key.as_ref().map(Secret::expose),
            Some("s3cret")
        );
        assert_eq!(
            settings.console_token.as_ref().map(Secret::expose),
            Some("c0nsole-t0ken")
        );
        let debug = format!("{settings:?}");
        assert!(
            !debug.contains("s3cret") && !debug.contains("c0nsole-t0ken"),
            "secrets stay out of Debug"
        );
    }

    #[test]
    fn the_cli_flag_allows_unauthenticated() {
        let overrides = Overrides {
            allow_unauthenticated: true,
            ..Overrides::default()
        };
        assert!(
            Settings::load(None, overrides)
                .unwrap()
                .auth
                .allow_unauthenticated
        );
        assert!(
            !Settings::load(None, Overrides::default())
                .unwrap()
                .auth
                .allow_unauthenticated
        );
    }
}
