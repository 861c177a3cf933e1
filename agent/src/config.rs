//! The agent's configuration: defaults → TOML file → `PATCH_AGENT__SECTION__KEY` environment
//! variables → command-line flags, strictly typed and validated. `config/agent.example.toml` is
//! checked against [`AgentConfig::default`] by a test.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use shared::config::{ConfigError, Override};

/// Prefix of environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "PATCH_AGENT__";

/// Complete agent configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// HTTPS listener and who may connect.
    pub server: ServerConfig,
    /// Certificates for mutual TLS.
    pub tls: TlsConfig,
    /// Asynchronous package jobs.
    pub jobs: JobsConfig,
    /// Package manager selection.
    pub backend: BackendConfig,
    /// Hash-chained audit log.
    pub audit: AuditConfig,
    /// Logging.
    pub log: LogConfig,
}

/// HTTPS listener and who may connect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port of the HTTPS API.
    pub listen: SocketAddr,
    /// Source addresses or CIDR ranges allowed to connect; deny by default (empty = nobody).
    pub allow: Vec<String>,
    /// Longest life of one connection in seconds (1 .. 86400), busy or not: after it the agent
    /// closes the connection, so a client whose certificate was revoked meanwhile has to
    /// handshake again and is refused. A change applies to connections accepted afterwards.
    pub max_connection_secs: u64,
    /// Seconds an idle connection is kept open for the client's next request (1 .. 3600). The
    /// manager polls over a new connection each time by default, so this stays short unless it
    /// keeps connections (`fleet.agent_connections = "kept"`).
    pub keep_alive_secs: u64,
}

/// Certificates for mutual TLS (PEM files; watched and reloaded on change).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// The agent's server certificate chain.
    pub cert: PathBuf,
    /// The agent's private key (mode 0600).
    pub key: PathBuf,
    /// CA certificate that client certificates must chain to.
    pub client_ca: PathBuf,
    /// Certificate revocation list from the same CA; empty path = none.
    pub crl: PathBuf,
    /// Subject common name the manager's client certificate must carry: the agent answers the
    /// manager only, not any client certificate its CA might issue. Empty: any (tests only).
    pub manager_subject: String,
}

/// Asynchronous package jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Jobs running at once; more are queued (1 .. 64).
    pub max_concurrent: usize,
    /// Hard timeout of one job in seconds; the process group is killed after it (60 .. 86400).
    pub timeout_secs: u64,
    /// Directory of the job file (`jobs.json`: jobs and their rollback records, kept across
    /// restarts and reboots).
    pub state_dir: PathBuf,
    /// Seconds a job waits for the package lock held by another program before failing (1 .. 3600).
    pub lock_timeout_secs: u64,
    /// Finished jobs kept with their rollback records, newest first; older ones are forgotten
    /// and can no longer be rolled back (1 .. 100000).
    pub keep_finished: usize,
    /// Days a finished job and its rollback record are kept after it finished, however few jobs
    /// there are (1 .. 3650).
    pub keep_days: u32,
}

impl JobsConfig {
    /// How many finished jobs are kept.
    pub fn retention(&self) -> crate::jobs::Retention {
        crate::jobs::Retention {
            keep_finished: self.keep_finished,
            keep_days: self.keep_days,
        }
    }
}

/// Package manager selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendConfig {
    /// `auto` (from /etc/os-release and the tools present), `apt`, `dnf` (`yum` is the same
    /// backend), `zypper`, `pacman` or `apk`.
    pub kind: String,
    /// apt only: an `APT_CONFIG` file for an isolated package root; empty = the real system.
    pub apt_config: PathBuf,
    /// dnf, zypper, pacman, apk: an isolated package root (`--installroot`, `--root`); empty =
    /// the real system. For tests and image builds, never needed on a managed host.
    pub root: PathBuf,
    /// dnf and pacman: the package manager's configuration file (`dnf.conf`, `pacman.conf`);
    /// empty = the system's.
    pub config_file: PathBuf,
}

/// Hash-chained audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Append-only JSON-lines file.
    pub path: PathBuf,
    /// Size in bytes at which the file is rotated to `PATH.1` (older ones shift to `PATH.2`, …);
    /// the hash chain runs on across files (65536 .. 1073741824).
    pub max_file_bytes: u64,
    /// Rotated files kept; the oldest beyond them is deleted (1 .. 1000).
    pub keep_files: u32,
    /// Refused connections (allow-list, TLS handshake) are audited at most once per this many
    /// seconds per source address (IPv6: per /64) and kind; the refusals in between are counted
    /// in the next record (1 .. 3600).
    pub refusal_interval_secs: u64,
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Filter in `tracing` env-filter syntax.
    pub level: String,
    /// `auto`, `text` or `json`.
    pub format: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 12443)),
            allow: Vec::new(),
            max_connection_secs: 600,
            keep_alive_secs: 5,
        }
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert: PathBuf::from("/etc/patch-agent/tls/agent.crt"),
            key: PathBuf::from("/etc/patch-agent/tls/agent.key"),
            client_ca: PathBuf::from("/etc/patch-agent/tls/ca.crt"),
            crl: PathBuf::new(),
            manager_subject: "patch-manager".into(),
        }
    }
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 5,
            timeout_secs: 1800,
            state_dir: PathBuf::from("/var/lib/patch-agent"),
            lock_timeout_secs: 120,
            keep_finished: 200,
            keep_days: 30,
        }
    }
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self {
            kind: "auto".into(),
            apt_config: PathBuf::new(),
            root: PathBuf::new(),
            config_file: PathBuf::new(),
        }
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("/var/log/patch-agent/audit.jsonl"),
            max_file_bytes: 32 * 1024 * 1024,
            keep_files: 8,
            refusal_interval_secs: 60,
        }
    }
}

impl AuditConfig {
    /// The audit log's size and retention limits.
    pub fn limits(&self) -> crate::audit::Limits {
        crate::audit::Limits {
            max_file_bytes: self.max_file_bytes,
            keep_files: self.keep_files,
            ..crate::audit::Limits::default()
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: "auto".into(),
        }
    }
}

impl AgentConfig {
    /// Checks value ranges and formats that types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: key.into(),
            message,
        };
        for (i, entry) in self.server.allow.iter().enumerate() {
            parse_allow_entry(entry).map_err(|m| invalid(&format!("server.allow[{i}]"), m))?;
        }
        if !(1..=86_400).contains(&self.server.max_connection_secs) {
            return Err(invalid(
                "server.max_connection_secs",
                "must be between 1 and 86400".into(),
            ));
        }
        if !(1..=3600).contains(&self.server.keep_alive_secs) {
            return Err(invalid(
                "server.keep_alive_secs",
                "must be between 1 and 3600".into(),
            ));
        }
        if !(1..=64).contains(&self.jobs.max_concurrent) {
            return Err(invalid(
                "jobs.max_concurrent",
                "must be between 1 and 64".into(),
            ));
        }
        if !(60..=86_400).contains(&self.jobs.timeout_secs) {
            return Err(invalid(
                "jobs.timeout_secs",
                "must be between 60 and 86400".into(),
            ));
        }
        if !(1..=3600).contains(&self.jobs.lock_timeout_secs) {
            return Err(invalid(
                "jobs.lock_timeout_secs",
                "must be between 1 and 3600".into(),
            ));
        }
        if !(1..=100_000).contains(&self.jobs.keep_finished) {
            return Err(invalid(
                "jobs.keep_finished",
                "must be between 1 and 100000".into(),
            ));
        }
        if !(1..=3650).contains(&self.jobs.keep_days) {
            return Err(invalid(
                "jobs.keep_days",
                "must be between 1 and 3650".into(),
            ));
        }
        if !(65_536..=1_073_741_824).contains(&self.audit.max_file_bytes) {
            return Err(invalid(
                "audit.max_file_bytes",
                "must be between 65536 and 1073741824".into(),
            ));
        }
        if !(1..=1000).contains(&self.audit.keep_files) {
            return Err(invalid(
                "audit.keep_files",
                "must be between 1 and 1000".into(),
            ));
        }
        if !(1..=3600).contains(&self.audit.refusal_interval_secs) {
            return Err(invalid(
                "audit.refusal_interval_secs",
                "must be between 1 and 3600".into(),
            ));
        }
        if !["auto", "apt", "dnf", "yum", "zypper", "pacman", "apk"]
            .contains(&self.backend.kind.as_str())
        {
            return Err(invalid(
                "backend.kind",
                "must be auto, apt, dnf, yum, zypper, pacman or apk".into(),
            ));
        }
        if !["auto", "text", "json"].contains(&self.log.format.as_str()) {
            return Err(invalid("log.format", "must be auto, text or json".into()));
        }
        for (key, path) in [
            ("tls.cert", &self.tls.cert),
            ("tls.key", &self.tls.key),
            ("tls.client_ca", &self.tls.client_ca),
            ("jobs.state_dir", &self.jobs.state_dir),
            ("audit.path", &self.audit.path),
        ] {
            if !path.is_absolute() {
                return Err(invalid(
                    key,
                    format!("must be an absolute path, got {}", path.display()),
                ));
            }
        }
        Ok(())
    }
}

pub use shared::netfilter::parse_allow_entry;

/// Loads and validates the configuration.
pub fn load(file: Option<&Path>, overrides: &[Override]) -> Result<AgentConfig, ConfigError> {
    let config: AgentConfig = shared::config::load_layers(file, overrides)?;
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn defaults_are_valid_and_deny_everyone() {
        let c = load(None, &[]).unwrap();
        assert_eq!(c, AgentConfig::default());
        assert!(
            c.server.allow.is_empty(),
            "allow-list must be deny-by-default"
        );
        assert_eq!(c.jobs.max_concurrent, 5);
        assert_eq!(c.jobs.timeout_secs, 1800);
    }

    #[test]
    fn allow_list_entries_are_checked() {
        assert_eq!(parse_allow_entry("10.0.0.0/8").unwrap().1, 8);
        assert_eq!(parse_allow_entry("::1").unwrap().1, 128);
        assert!(parse_allow_entry("10.0.0.0/33").is_err());
        assert!(parse_allow_entry("host.example").is_err());
        let ov = Override::from_env(
            ENV_PREFIX,
            vec![(
                "PATCH_AGENT__SERVER__ALLOW".into(),
                "[\"127.0.0.1\", \"10.1.2.0/40\"]".into(),
            )],
        );
        let e = load(None, &ov).unwrap_err();
        assert!(e.to_string().contains("server.allow[1]"), "{e}");
    }

    #[test]
    fn unknown_key_is_named() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"[jobs]\nmax_concurent = 3\n").unwrap();
        let e = load(Some(f.path()), &[]).unwrap_err();
        assert!(e.to_string().contains("jobs.max_concurent"), "{e}");
    }

    #[test]
    fn ranges_are_checked() {
        let e = load(
            None,
            &[Override::from_cli("jobs.max_concurrent=0").unwrap()],
        )
        .unwrap_err();
        assert!(e.to_string().contains("jobs.max_concurrent"), "{e}");
        let e = load(
            None,
            &[Override::from_cli("server.max_connection_secs=0").unwrap()],
        )
        .unwrap_err();
        assert!(e.to_string().contains("server.max_connection_secs"), "{e}");
        let e = load(None, &[Override::from_cli("backend.kind=yum4").unwrap()]).unwrap_err();
        assert!(e.to_string().contains("backend.kind"), "{e}");
        let e = load(None, &[Override::from_cli("tls.key=relative.key").unwrap()]).unwrap_err();
        assert!(e.to_string().contains("tls.key"), "{e}");
    }

    #[test]
    fn example_file_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/agent.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed: AgentConfig =
            toml::from_str(&text).expect("example config must parse strictly");
        assert_eq!(
            parsed,
            AgentConfig::default(),
            "config/agent.example.toml drifted from the defaults"
        );
        let example: toml::Table = text.parse().unwrap();
        let defaults = toml::Table::try_from(AgentConfig::default()).unwrap();
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
