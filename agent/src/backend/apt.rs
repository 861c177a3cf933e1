//! apt/dpkg (Debian, Ubuntu). Reads come straight from dpkg's status file; the file's
//! modification time and size key a cache, and dpkg replaces the file on every change, so the
//! cache is never stale. An `APT_CONFIG` file from the configuration points every path at an
//! isolated package root (used by the tests); by default the real system is used.

use super::{dpkg_status, BackendError, PackageBackend};
use shared::agent::InstalledPackage;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The apt/dpkg backend.
pub struct AptBackend {
    apt_config: Option<PathBuf>,
    status_path: PathBuf,
    lists_dir: PathBuf,
    cache: Mutex<Option<Cached>>,
}

struct Cached {
    key: (SystemTime, u64),
    packages: Arc<Vec<InstalledPackage>>,
}

impl std::fmt::Debug for AptBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AptBackend")
            .field("status_path", &self.status_path)
            .finish_non_exhaustive()
    }
}

impl AptBackend {
    /// Resolves the dpkg status file and the apt lists directory (through `apt-config` when an
    /// `APT_CONFIG` file is given).
    pub fn new(apt_config: Option<PathBuf>) -> Result<Self, BackendError> {
        let (status_path, lists_dir) = match &apt_config {
            None => (
                PathBuf::from("/var/lib/dpkg/status"),
                PathBuf::from("/var/lib/apt/lists"),
            ),
            Some(cfg) => resolve_paths(cfg)?,
        };
        Ok(Self {
            apt_config,
            status_path,
            lists_dir,
            cache: Mutex::new(None),
        })
    }

    /// The `APT_CONFIG` file in use, if any.
    pub fn apt_config(&self) -> Option<&Path> {
        self.apt_config.as_deref()
    }

    fn read_status(&self) -> Result<Vec<InstalledPackage>, BackendError> {
        let entries =
            dpkg_status::read(&self.status_path).map_err(|source| BackendError::Database {
                path: self.status_path.display().to_string(),
                source,
            })?;
        let mut out: Vec<InstalledPackage> = entries
            .into_iter()
            .map(|e| InstalledPackage {
                name: e.name,
                version: e.version,
                arch: e.arch,
                status: e.state,
                summary: e.summary,
                installed_size_kib: e.installed_size_kib,
                source: e.source,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.arch.cmp(&b.arch)));
        Ok(out)
    }
}

/// Asks `apt-config` (no shell, fixed environment) where the status file and lists live.
fn resolve_paths(cfg: &Path) -> Result<(PathBuf, PathBuf), BackendError> {
    let out = Command::new("apt-config")
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C")
        .env("APT_CONFIG", cfg)
        .args([
            "shell",
            "S",
            "Dir::State::status/f",
            "L",
            "Dir::State::lists/d",
        ])
        .output()
        .map_err(|e| BackendError::Command {
            command: "apt-config".into(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(BackendError::Command {
            command: "apt-config".into(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let value = |var: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{var}='")))
            .and_then(|v| v.strip_suffix('\''))
            .map(PathBuf::from)
    };
    match (value("S"), value("L")) {
        (Some(s), Some(l)) => Ok((s, l)),
        _ => Err(BackendError::Command {
            command: "apt-config".into(),
            message: format!("unexpected output: {text}"),
        }),
    }
}

impl PackageBackend for AptBackend {
    fn name(&self) -> &'static str {
        "apt"
    }

    fn installed(&self) -> Result<Arc<Vec<InstalledPackage>>, BackendError> {
        let meta =
            std::fs::metadata(&self.status_path).map_err(|source| BackendError::Database {
                path: self.status_path.display().to_string(),
                source,
            })?;
        let key = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        let mut cache = match self.cache.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(c) = cache.as_ref().filter(|c| c.key == key) {
            return Ok(c.packages.clone());
        }
        let packages = Arc::new(self.read_status()?);
        *cache = Some(Cached {
            key,
            packages: packages.clone(),
        });
        Ok(packages)
    }

    fn last_update(&self) -> Option<String> {
        let modified = std::fs::metadata(&self.lists_dir).ok()?.modified().ok()?;
        Some(chrono::DateTime::<chrono::Utc>::from(modified).to_rfc3339())
    }
}
