//! Typed settings: built-in defaults, then an optional TOML file
//! (`--config`), then `HOOKWISE_*` environment variables, then CLI flags.

use serde::{Deserialize, Serialize};
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
    /// Budget for a service call, FHIR fetches included (`HOOKWISE_DEADLINE_MS`).
    pub deadline_ms: u64,
    /// Largest request body in bytes; larger gets 413 (`HOOKWISE_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Log format: `text` or `json` (`HOOKWISE_LOG_FORMAT`).
    pub log_format: LogFormat,
    /// FHIR client settings (`HOOKWISE_FHIR__*`).
    pub fhir: FhirSettings,
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
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            rules: PathBuf::from("cds-rules"),
            deadline_ms: 2000,
            max_body_bytes: 5 * 1024 * 1024,
            log_format: LogFormat::Text,
            fhir: FhirSettings::default(),
        }
    }
}

impl Default for FhirSettings {
    fn default() -> Self {
        FhirSettings { insecure_hosts: Vec::new(), request_timeout_ms: 1500, max_pages: 20 }
    }
}

/// Values given on the command line, which override everything else.
#[derive(Debug, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--rules`.
    pub rules: Option<PathBuf>,
}

impl Settings {
    /// Layers defaults, the file, the environment and the overrides.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Settings, config::ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::Config::try_from(&Settings::default())?);
        if let Some(file) = file {
            builder = builder.add_source(config::File::from(file).required(true));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("HOOKWISE")
                .prefix_separator("_")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("fhir.insecure_hosts")
                .try_parsing(true),
        );
        if let Some(listen) = overrides.listen {
            builder = builder.set_override("listen", listen.to_string())?;
        }
        if let Some(rules) = overrides.rules {
            builder = builder.set_override("rules", rules.to_string_lossy().to_string())?;
        }
        builder.build()?.try_deserialize()
    }

    /// The call deadline.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
}
