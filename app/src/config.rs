//! The manager's configuration: one typed struct, layered defaults → TOML file →
//! `PATCH_MANAGER__SECTION__KEY` environment variables → command-line flags, then validated.
//!
//! Every layer is merged as a TOML tree before a single strict deserialisation
//! (`deny_unknown_fields`), so a misspelt key is an error naming that key whichever layer it came
//! from. Environment and `--set` values are strings; they are converted to the type the key has in
//! the defaults, so `PATCH_MANAGER__DATABASE__POOL_SIZE=4` is a number and a password of digits stays
//! a string. `config/manager.example.toml` is checked against [`Config::default`] by a test.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use shared::config::{ConfigError, Override};

/// Prefix of environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "PATCH_MANAGER__";

/// Complete manager configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// HTTP listener and web UI files.
    pub server: ServerConfig,
    /// Database connection.
    pub database: DatabaseConfig,
    /// Where the manager keeps its state.
    pub data: DataConfig,
    /// Logging.
    pub log: LogConfig,
    /// Audit log integrity checking.
    pub audit: AuditConfig,
    /// The internal certificate authority.
    pub pki: PkiConfig,
    /// Sign-in.
    pub auth: AuthConfig,
    /// Supervision of the managed hosts.
    pub fleet: FleetConfig,
    /// The Prometheus metrics listener.
    pub metrics: MetricsConfig,
    /// Scheduled backups.
    pub backup: BackupConfig,
}

/// Scheduled backups (`patch-manager backup` makes one at any time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// Where scheduled backups go. Empty: `backups/` in the data directory (copy them to another
    /// machine: a backup beside the data it protects does not survive the disk).
    pub dir: PathBuf,
    /// Hours between scheduled backups (0 turns them off; 1 .. 168 otherwise).
    pub interval_hours: u64,
    /// Scheduled backups kept; older ones are deleted (1 .. 1000).
    pub keep: u32,
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::new(),
            interval_hours: 24,
            keep: 7,
        }
    }
}

impl BackupConfig {
    /// The backup directory for the data directory `data_dir`.
    pub fn directory(&self, data_dir: &Path) -> PathBuf {
        if self.dir.as_os_str().is_empty() {
            data_dir.join("backups")
        } else {
            self.dir.clone()
        }
    }
}

/// Where Prometheus scrapes the manager without a token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of a plain-HTTP listener that serves only `GET /metrics`, without sign-in;
    /// loopback by default, for a Prometheus on this machine (or a local exporter proxy). Empty:
    /// no such listener; `/metrics` on the main listener still answers Admins.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

impl MetricsConfig {
    /// The listener's address, `None` when it is turned off.
    pub fn address(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let text = self.listen.trim();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|_| ConfigError::Invalid {
            key: "metrics.listen".into(),
            message: format!("\"{text}\" is not an address:port (empty turns the listener off)"),
        })
    }
}

/// Allowed seconds between two health polls.
pub const HEALTH_INTERVAL_SECS: std::ops::RangeInclusive<u64> = 10..=86_400;
/// Allowed seconds between two inventory polls.
pub const INVENTORY_INTERVAL_SECS: std::ops::RangeInclusive<u64> = 60..=604_800;

/// How the host actors poll their agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// Seconds between two health polls of one agent (10 .. 86400).
    pub health_interval_secs: u64,
    /// Seconds between two inventory polls (system information, packages, patches) of one agent
    /// (60 .. 604800).
    pub inventory_interval_secs: u64,
    /// Most addresses one discovery run probes (1 .. 65536); larger ranges are refused.
    pub discovery_max_addresses: u64,
    /// Probes of a discovery run at once (1 .. 4096).
    pub discovery_concurrency: usize,
    /// Milliseconds a probe waits for a TCP connection (the TLS handshake and the health
    /// question get three times as long) (50 .. 30000).
    pub discovery_timeout_ms: u64,
    /// How host actors connect to their agents: `per_poll` (a new TLS connection per poll) or
    /// `kept` (one connection per host reused between polls; see docs/benchmarks.md).
    pub agent_connections: AgentConnections,
    /// Seconds before each of the three retries of a host that failed in a patch job
    /// (each 1 .. 86400).
    pub job_retry_after_secs: [u64; 3],
}

/// The connection policy towards agents (`fleet.agent_connections`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentConnections {
    /// A new TLS connection (full handshake) per poll.
    #[default]
    PerPoll,
    /// One connection per host, reused while the agent keeps it open.
    Kept,
}

impl FleetConfig {
    /// The intervals as the Settings page shows them.
    pub fn polling(&self) -> shared::fleet::PollingSettings {
        shared::fleet::PollingSettings {
            health_interval_secs: self.health_interval_secs,
            inventory_interval_secs: self.inventory_interval_secs,
        }
    }
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            health_interval_secs: 300,
            inventory_interval_secs: 1800,
            discovery_max_addresses: 4096,
            discovery_concurrency: 256,
            discovery_timeout_ms: 1000,
            agent_connections: AgentConnections::PerPoll,
            job_retry_after_secs: shared::jobs::RETRY_AFTER_SECS,
        }
    }
}

/// Sign-in settings that depend on how the manager is reached.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// WebAuthn relying-party id: the domain users type to reach the manager (never an IP
    /// address). Empty: the first DNS name in `server.public_names`.
    pub webauthn_rp_id: String,
    /// Origin browsers show for the manager, e.g. `https://patch.example.com` behind a proxy.
    /// Empty: the scheme of `server.tls`, the relying-party id and the listening port.
    pub webauthn_origin: String,
}

/// The internal certificate authority.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PkiConfig {
    /// Validity of issued certificates in days (agents, the manager's client and web certificates;
    /// at most 365).
    pub validity_days: i64,
    /// Renew a certificate when it has fewer days than this left.
    pub renew_before_days: i64,
    /// Default lifetime of an enrollment token in minutes.
    pub enrollment_token_minutes: i64,
    /// Domain every enrolling host's name must end in (`fleet.example.com` admits
    /// `web1.fleet.example.com`); empty: any DNS name that is not the manager's own.
    pub fleet_domain: String,
    /// Validity of each CRL in hours (2 to 720; a week by default). Agents refuse every client
    /// once their CRL has expired; the manager issues a new one a day after the last (or at half
    /// this validity, if shorter) and delivers it with retries.
    pub crl_validity_hours: i64,
}

impl Default for PkiConfig {
    fn default() -> Self {
        Self {
            validity_days: 365,
            renew_before_days: 30,
            enrollment_token_minutes: 60,
            fleet_domain: String::new(),
            crl_validity_hours: 7 * 24,
        }
    }
}

/// HTTP listener and web UI files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port the web UI and API listen on.
    pub listen: SocketAddr,
    /// Directory holding the built web bundle (`pkg/` with the WebAssembly and its loader).
    pub site_root: PathBuf,
    /// Directory of static assets served under `/assets` (stylesheet, fonts).
    pub assets_dir: PathBuf,
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub body_limit_bytes: usize,
    /// Number of HTTP worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// Web TLS strategy: `internal` (a certificate from the manager's own CA, renewed
    /// automatically), `files` (`tls_cert`/`tls_key` supplied by the operator) or `off` (plain
    /// HTTP, only behind a TLS-terminating proxy or for local development).
    pub tls: TlsMode,
    /// With `tls = "files"`: certificate chain (PEM).
    pub tls_cert: PathBuf,
    /// With `tls = "files"`: private key (PEM).
    pub tls_key: PathBuf,
    /// Names and addresses the web certificate is issued for (`tls = "internal"`), and that
    /// agents use to reach the manager.
    pub public_names: Vec<String>,
    /// The address hosts and people use to reach the manager (`https://pm.example.com:8443`), as
    /// the enrollment command shown for a new host names it. Empty: `https://` the first of
    /// `public_names` and the listening port. Set it when the manager sits behind a proxy or NAT.
    pub public_url: String,
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For` names the client.
    /// Requests from them are throttled, audited and checked against the allow-list by the
    /// forwarded address; the header is ignored from everyone else. Empty: none trusted.
    pub trusted_proxies: Vec<String>,
    /// Requests a minute per source to the public endpoints that write an audit record (root CA
    /// download, enrollment attempts); more get 429 (1 .. 100000).
    pub public_writes_per_minute: usize,
    /// The patch-agent Debian package served at `/downloads/patch-agent.deb`, for the one-line
    /// install the "Add a host" page shows (with its SHA-256, which the command checks). The
    /// patch-manager package ships it here; absent, only the enroll command is shown.
    pub agent_package: PathBuf,
}

/// Web TLS strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Certificate from the manager's CA.
    Internal,
    /// Operator-supplied files.
    Files,
    /// Plain HTTP.
    Off,
}

/// Database connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://user@host:port/db`; empty means the embedded SQLite file
    /// `patch-manager.db` in the data directory.
    pub url: String,
    /// Maximum number of pooled connections.
    pub pool_size: u32,
    /// Seconds to wait for a free pooled connection before failing the request.
    pub pool_timeout_secs: u64,
}

/// Where the manager keeps its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Data directory: SQLite database, CA keys, setup token. Created with mode 0700 if missing.
    pub dir: PathBuf,
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Filter in `tracing` env-filter syntax, e.g. `info` or `info,patch_manager=debug`.
    pub level: String,
    /// `auto` (readable text on a terminal, JSON otherwise), `text` or `json`.
    pub format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    Auto,
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Audit log integrity checking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Seconds between automatic verifications of what was appended since the last one
    /// (minimum 60). The whole chain is verified at start and by `patch-manager verify-audit`.
    pub verify_interval_secs: u64,
    /// A signed checkpoint of the chain's head after this many records (at least 1).
    pub checkpoint_every_records: u64,
    /// Seconds between signed checkpoints when the head moved (10 .. 86400); one is also written
    /// at every clean shutdown. Records after the newest checkpoint can be cut unnoticed.
    pub checkpoint_interval_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            site_root: PathBuf::from("/usr/share/patch-manager/site"),
            assets_dir: PathBuf::from("/usr/share/patch-manager/assets"),
            body_limit_bytes: 1024 * 1024,
            workers: 0,
            tls: TlsMode::Internal,
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            public_names: vec!["localhost".into(), "127.0.0.1".into()],
            public_url: String::new(),
            trusted_proxies: Vec::new(),
            public_writes_per_minute: crate::http::rate::PUBLIC_WRITES_PER_MINUTE,
            agent_package: PathBuf::from("/usr/share/patch-manager/agent/patch-agent.deb"),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            pool_size: 8,
            pool_timeout_secs: 10,
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("/var/lib/patch-manager"),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Auto,
        }
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            verify_interval_secs: 3600,
            checkpoint_every_records: 100,
            checkpoint_interval_secs: 300,
        }
    }
}

/// The database a configuration points at, resolved from `database.url` and `data.dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    /// SQLite file.
    Sqlite(PathBuf),
    /// PostgreSQL connection URL.
    Postgres(String),
}

impl Config {
    /// Resolves which database to open.
    pub fn database_target(&self) -> Result<DatabaseTarget, ConfigError> {
        parse_database_url(&self.database.url, &self.data.dir)
    }

    /// Checks cross-field rules and value ranges that types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: key.into(),
            message,
        };
        if !(1..=128).contains(&self.database.pool_size) {
            return Err(invalid(
                "database.pool_size",
                "must be between 1 and 128".into(),
            ));
        }
        if !(1..=300).contains(&self.database.pool_timeout_secs) {
            return Err(invalid(
                "database.pool_timeout_secs",
                "must be between 1 and 300".into(),
            ));
        }
        self.metrics.address()?;
        if self.backup.interval_hours > 168 {
            return Err(invalid(
                "backup.interval_hours",
                "must be between 0 (off) and 168".into(),
            ));
        }
        if !(1..=1000).contains(&self.backup.keep) {
            return Err(invalid("backup.keep", "must be between 1 and 1000".into()));
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.server.body_limit_bytes) {
            return Err(invalid(
                "server.body_limit_bytes",
                "must be between 1024 and 67108864 (64 MiB)".into(),
            ));
        }
        if let Err(e) = shared::netfilter::AllowList::from_entries(&self.server.trusted_proxies) {
            return Err(invalid("server.trusted_proxies", e));
        }
        let domain = self.pki.fleet_domain.trim_start_matches('.');
        if !domain.is_empty() && !crate::pki::valid_dns_name(domain) {
            return Err(invalid("pki.fleet_domain", "must be a DNS domain".into()));
        }
        if !(1..=100_000).contains(&self.server.public_writes_per_minute) {
            return Err(invalid(
                "server.public_writes_per_minute",
                "must be between 1 and 100000".into(),
            ));
        }
        if self.server.workers > 256 {
            return Err(invalid("server.workers", "must be at most 256".into()));
        }
        if self.server.tls == TlsMode::Files
            && (self.server.tls_cert.as_os_str().is_empty()
                || self.server.tls_key.as_os_str().is_empty())
        {
            return Err(invalid(
                "server.tls_cert",
                "tls = \"files\" needs tls_cert and tls_key".into(),
            ));
        }
        if self.server.tls == TlsMode::Internal && self.server.public_names.is_empty() {
            return Err(invalid(
                "server.public_names",
                "tls = \"internal\" needs at least one name".into(),
            ));
        }
        for name in &self.server.public_names {
            if name.parse::<std::net::IpAddr>().is_err() && !crate::pki::valid_dns_name(name) {
                return Err(invalid(
                    "server.public_names",
                    format!("`{name}` is neither an IP address nor a DNS name"),
                ));
            }
        }
        if !self.server.public_url.is_empty() {
            check_public_url(&self.server.public_url)
                .map_err(|m| invalid("server.public_url", m))?;
        }
        if self.data.dir.as_os_str().is_empty() {
            return Err(invalid("data.dir", "must not be empty".into()));
        }
        if !(1..=crate::pki::MAX_VALIDITY_DAYS).contains(&self.pki.validity_days) {
            return Err(invalid(
                "pki.validity_days",
                "must be between 1 and 365".into(),
            ));
        }
        if !(1..self.pki.validity_days).contains(&self.pki.renew_before_days) {
            return Err(invalid(
                "pki.renew_before_days",
                "must be at least 1 and less than pki.validity_days".into(),
            ));
        }
        if let Err((field, message)) = check_polling(&self.fleet.polling()) {
            return Err(invalid(&format!("fleet.{field}"), message));
        }
        if !(1..=65_536).contains(&self.fleet.discovery_max_addresses) {
            return Err(invalid(
                "fleet.discovery_max_addresses",
                "must be between 1 and 65536".into(),
            ));
        }
        if !(1..=4096).contains(&self.fleet.discovery_concurrency) {
            return Err(invalid(
                "fleet.discovery_concurrency",
                "must be between 1 and 4096".into(),
            ));
        }
        if self
            .fleet
            .job_retry_after_secs
            .iter()
            .any(|s| !(1..=86_400).contains(s))
        {
            return Err(invalid(
                "fleet.job_retry_after_secs",
                "each wait must be between 1 and 86400 seconds".into(),
            ));
        }
        if !(50..=30_000).contains(&self.fleet.discovery_timeout_ms) {
            return Err(invalid(
                "fleet.discovery_timeout_ms",
                "must be between 50 and 30000".into(),
            ));
        }
        if !(2..=720).contains(&self.pki.crl_validity_hours) {
            return Err(invalid(
                "pki.crl_validity_hours",
                "must be between 2 and 720 (30 days)".into(),
            ));
        }
        if !(5..=7 * 24 * 60).contains(&self.pki.enrollment_token_minutes) {
            return Err(invalid(
                "pki.enrollment_token_minutes",
                "must be between 5 and 10080 (a week)".into(),
            ));
        }
        if self.audit.verify_interval_secs < 60 {
            return Err(invalid(
                "audit.verify_interval_secs",
                "must be at least 60".into(),
            ));
        }
        if self.audit.checkpoint_every_records == 0 {
            return Err(invalid(
                "audit.checkpoint_every_records",
                "must be at least 1".into(),
            ));
        }
        if !(10..=86_400).contains(&self.audit.checkpoint_interval_secs) {
            return Err(invalid(
                "audit.checkpoint_interval_secs",
                "must be between 10 and 86400".into(),
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| invalid("log.level", format!("not a valid filter: {e}")))?;
        self.database_target()?;
        Ok(())
    }
}

/// `server.public_url`: an `https://` URL naming a host (and optionally a port), nothing else.
fn check_public_url(text: &str) -> Result<(), String> {
    let url = openidconnect::url::Url::parse(text)
        .map_err(|e| format!("\"{text}\" is not a URL ({e})"))?;
    if url.scheme() != "https" {
        return Err(format!("\"{text}\" must start with https://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("\"{text}\" names no host"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!("\"{text}\" must be only scheme, host and port"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("\"{text}\" must not carry credentials"));
    }
    Ok(())
}

fn parse_database_url(url: &str, data_dir: &Path) -> Result<DatabaseTarget, ConfigError> {
    let url = url.trim();
    if url.is_empty() {
        return Ok(DatabaseTarget::Sqlite(data_dir.join("patch-manager.db")));
    }
    if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(ConfigError::Invalid {
                key: "database.url".into(),
                message: "sqlite:// needs a file path, e.g. sqlite:///var/lib/patch-manager/pm.db"
                    .into(),
            });
        }
        return Ok(DatabaseTarget::Sqlite(PathBuf::from(path)));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(DatabaseTarget::Postgres(url.to_owned()));
    }
    Err(ConfigError::Invalid {
        key: "database.url".into(),
        message: "must start with sqlite:// or postgres:// (or be empty for the embedded database)"
            .into(),
    })
}

/// Builds the configuration from its layers and validates it.
///
/// `file` is read if given; `overrides` are applied in order (environment first, then CLI flags).
pub fn load(file: Option<&Path>, overrides: &[Override]) -> Result<Config, ConfigError> {
    let config: Config = shared::config::load_layers(file, overrides)?;
    config.validate()?;
    Ok(config)
}

/// Checks poll intervals; on refusal names the field (`health_interval_secs` or
/// `inventory_interval_secs`) and says the allowed range. The one rule for the configuration file
/// and the Settings page.
pub fn check_polling(p: &shared::fleet::PollingSettings) -> Result<(), (&'static str, String)> {
    let check = |field: &'static str, value: u64, range: &std::ops::RangeInclusive<u64>| {
        if range.contains(&value) {
            Ok(())
        } else {
            Err((
                field,
                format!(
                    "must be between {} and {} seconds",
                    range.start(),
                    range.end()
                ),
            ))
        }
    };
    check(
        "health_interval_secs",
        p.health_interval_secs,
        &HEALTH_INTERVAL_SECS,
    )?;
    check(
        "inventory_interval_secs",
        p.inventory_interval_secs,
        &INVENTORY_INTERVAL_SECS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn defaults_validate() {
        Config::default().validate().unwrap();
        assert_eq!(load(None, &[]).unwrap(), Config::default());
    }

    #[test]
    fn layers_apply_in_order() {
        let f = write("[server]\nlisten = \"127.0.0.1:9000\"\n[database]\npool_size = 3\n");
        let env = Override::from_env(
            ENV_PREFIX,
            vec![
                ("PATCH_MANAGER__DATABASE__POOL_SIZE".into(), "5".into()),
                ("PATCH_MANAGER__LOG__FORMAT".into(), "json".into()),
                ("UNRELATED".into(), "x".into()),
            ],
        );
        let mut ov = env;
        ov.push(Override::from_cli("server.listen=127.0.0.1:9100").unwrap());
        let c = load(Some(f.path()), &ov).unwrap();
        assert_eq!(c.server.listen.port(), 9100, "CLI beats file");
        assert_eq!(c.database.pool_size, 5, "env beats file");
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(
            c.audit,
            AuditConfig::default(),
            "untouched section keeps defaults"
        );
    }

    #[test]
    fn unknown_key_in_file_is_named() {
        let f = write("[server]\nlisten = \"127.0.0.1:9000\"\nlisten_port = 3\n");
        let e = load(Some(f.path()), &[]).unwrap_err();
        assert!(
            matches!(&e, ConfigError::Invalid { key, .. } if key == "server.listen_port"),
            "{e}"
        );
        assert!(e.to_string().contains("server.listen_port"), "{e}");
    }

    #[test]
    fn unknown_section_is_named() {
        let f = write("[servre]\nlisten = 1\n");
        let e = load(Some(f.path()), &[]).unwrap_err();
        assert!(e.to_string().contains("servre"), "{e}");
    }

    #[test]
    fn bad_value_is_named() {
        let f = write("[server]\nlisten = \"not an address\"\n");
        let e = load(Some(f.path()), &[]).unwrap_err();
        assert!(
            matches!(&e, ConfigError::Invalid { key, .. } if key == "server.listen"),
            "{e}"
        );

        let f = write("[database]\npool_size = \"many\"\n");
        let e = load(Some(f.path()), &[]).unwrap_err();
        assert!(e.to_string().contains("database.pool_size"), "{e}");
    }

    #[test]
    fn range_checks_name_the_key() {
        let e = load(None, &[Override::from_cli("database.pool_size=0").unwrap()]).unwrap_err();
        assert!(e.to_string().contains("database.pool_size"), "{e}");
        let e = load(
            None,
            &[Override::from_cli("database.url=mysql://x").unwrap()],
        )
        .unwrap_err();
        assert!(e.to_string().contains("database.url"), "{e}");
        let e = load(
            None,
            &[Override::from_cli("log.level=info,,=bad[").unwrap()],
        )
        .unwrap_err();
        assert!(e.to_string().contains("log.level"), "{e}");
    }

    #[test]
    fn env_override_of_unknown_key_is_named() {
        let ov = Override::from_env(
            ENV_PREFIX,
            vec![("PATCH_MANAGER__SERVER__LISTN".into(), "x".into())],
        );
        let e = load(None, &ov).unwrap_err();
        assert!(e.to_string().contains("server.listn"), "{e}");
        let ov = Override::from_env(
            ENV_PREFIX,
            vec![("PATCH_MANAGER__DATABASE__POOL_SIZE".into(), "ten".into())],
        );
        let e = load(None, &ov).unwrap_err();
        assert!(
            e.to_string().contains("PATCH_MANAGER__DATABASE__POOL_SIZE"),
            "{e}"
        );
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let f = write("[server\n");
        let e = load(Some(f.path()), &[]).unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { .. }), "{e}");
        assert!(e.to_string().contains("line 1"), "{e}");
    }

    #[test]
    fn database_url_forms() {
        let dir = Path::new("/data");
        assert_eq!(
            parse_database_url("", dir).unwrap(),
            DatabaseTarget::Sqlite(PathBuf::from("/data/patch-manager.db"))
        );
        assert_eq!(
            parse_database_url("sqlite:///tmp/x.db", dir).unwrap(),
            DatabaseTarget::Sqlite(PathBuf::from("/tmp/x.db"))
        );
        assert!(matches!(
            parse_database_url("postgres://u@127.0.0.1/pm", dir).unwrap(),
            DatabaseTarget::Postgres(_)
        ));
        assert!(parse_database_url("sqlite://", dir).is_err());
    }

    #[test]
    fn example_file_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/manager.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed: Config = toml::from_str(&text).expect("example config must parse strictly");
        assert_eq!(
            parsed,
            Config::default(),
            "config/manager.example.toml drifted from the defaults"
        );
        // Every key of the struct appears in the example, uncommented, so operators see them all.
        let example: toml::Table = text.parse().unwrap();
        let defaults = toml::Table::try_from(Config::default()).unwrap();
        for (section, keys) in &defaults {
            let ex = example
                .get(section)
                .and_then(|v| v.as_table())
                .unwrap_or_else(|| panic!("section [{section}] missing from the example config"));
            for key in keys.as_table().unwrap().keys() {
                assert!(
                    ex.contains_key(key),
                    "{section}.{key} missing from the example config"
                );
            }
        }
    }
}
