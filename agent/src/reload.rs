//! Live reload of the configuration and the TLS files.
//!
//! A task polls the modification time and size of the config file and of the certificate, key,
//! CA and CRL files. When any changes, the whole configuration is loaded and validated again and
//! the TLS material rebuilt; only if both succeed do the new allow-list and certificates take
//! effect (new connections use them, established ones keep theirs). A rejected change is logged
//! and audited with its reason and the previous settings stay in force. Polling a handful of
//! `stat` calls per second is cheaper and more predictable than inotify across the atomic
//! rename or symlink swaps that certificate tooling uses.

use crate::audit::AuditLog;
use crate::config::AgentConfig;
use crate::ipfilter::AllowList;
use crate::tls::ReloadableTls;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How often the watched files are checked.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Loads the configuration again from its sources (file, environment, flags).
pub type ConfigLoader = Arc<dyn Fn() -> Result<AgentConfig, String> + Send + Sync>;

/// What a reload may replace, shared with the listener.
#[derive(Clone)]
pub struct Live {
    /// The allow-list in force.
    pub allow: Arc<RwLock<Arc<AllowList>>>,
    /// The TLS material in force.
    pub tls: Arc<ReloadableTls>,
    /// `server.max_connection_secs` in force, for connections accepted from now on.
    pub max_connection_secs: Arc<AtomicU64>,
}

impl Live {
    /// Current allow-list.
    pub fn allow_list(&self) -> Arc<AllowList> {
        match self.allow.read() {
            Ok(a) => a.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Lifetime cap for a connection accepted now.
    pub fn max_connection(&self) -> Duration {
        Duration::from_secs(self.max_connection_secs.load(Ordering::Relaxed))
    }
}

type Stamp = Vec<crate::stamp::Stamp>;

fn watched(config: &AgentConfig, config_file: Option<&Path>) -> Vec<PathBuf> {
    let mut v = vec![
        config.tls.cert.clone(),
        config.tls.key.clone(),
        config.tls.client_ca.clone(),
    ];
    if !config.tls.crl.as_os_str().is_empty() {
        v.push(config.tls.crl.clone());
    }
    v.extend(config_file.map(Path::to_path_buf));
    v
}

fn stamp(paths: &[PathBuf]) -> Stamp {
    paths.iter().map(|p| crate::stamp::of(p)).collect()
}

/// Spawns the watcher on the current runtime.
pub fn spawn(
    live: Live,
    initial: AgentConfig,
    config_file: Option<PathBuf>,
    loader: ConfigLoader,
    audit: AuditLog,
) {
    actix_web::rt::spawn(async move {
        let mut current = initial;
        let mut paths = watched(&current, config_file.as_deref());
        let mut last = stamp(&paths);
        loop {
            tokio::time::sleep(POLL_INTERVAL).await;
            let now = stamp(&paths);
            if now == last {
                continue;
            }
            // Let a writer finish a burst of changes (cert, then key) before reading them.
            tokio::time::sleep(Duration::from_millis(200)).await;
            match apply(&live, &loader) {
                Ok(new_config) => {
                    if new_config.server.listen != current.server.listen {
                        tracing::warn!("server.listen changed: takes effect after a restart");
                    }
                    tracing::info!("configuration and certificates reloaded");
                    audit.record(
                        "config.reloaded",
                        json!({ "cert_not_after": live.tls.not_after().to_rfc3339(),
                                "allow": new_config.server.allow }),
                    );
                    current = new_config;
                }
                Err(reason) => {
                    tracing::error!(%reason, "reload refused; previous configuration stays in force");
                    audit.record("config.reload_refused", json!({ "reason": reason }));
                }
            }
            paths = watched(&current, config_file.as_deref());
            last = stamp(&paths);
        }
    });
}

fn apply(live: &Live, loader: &ConfigLoader) -> Result<AgentConfig, String> {
    let config = loader()?;
    let allow = AllowList::from_entries(&config.server.allow)?;
    live.tls.reload(&config.tls).map_err(|e| e.to_string())?;
    match live.allow.write() {
        Ok(mut a) => *a = Arc::new(allow),
        Err(poisoned) => *poisoned.into_inner() = Arc::new(allow),
    }
    live.max_connection_secs
        .store(config.server.max_connection_secs, Ordering::Relaxed);
    Ok(config)
}
