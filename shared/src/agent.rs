//! Wire types of the patch-agent API (`/api/v1` on port 12443), used by the agent to answer and by
//! the manager to read the answers.

use serde::{Deserialize, Serialize};

/// `GET /api/v1/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentHealth {
    /// `ok`, or `degraded` when the package backend is unusable.
    pub status: String,
    /// Agent version.
    pub version: String,
    /// Package backend in use (`apt`, `dnf`, `apk`, `pacman`).
    pub backend: String,
    /// Jobs running now.
    pub jobs_running: u32,
    /// Jobs waiting for a slot.
    pub jobs_queued: u32,
    /// Whether a rollback holds the agent in exclusive mode (mutations answered 503).
    pub exclusive_mode: bool,
    /// Expiry of the agent's server certificate (RFC 3339).
    pub cert_not_after: String,
    /// Jobs that were running when the agent last stopped and are now `interrupted`.
    pub interrupted_jobs: Vec<String>,
    /// dpkg (or rpm) reports an interrupted transaction that needs repair.
    pub package_db_interrupted: bool,
}

/// `GET /api/v1/system/info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemInfo {
    /// Host name.
    pub hostname: String,
    /// `ID` from os-release (`debian`, `ubuntu`, …).
    pub os_id: String,
    /// `VERSION_ID` from os-release.
    pub os_version: String,
    /// `PRETTY_NAME` from os-release.
    pub os_pretty_name: String,
    /// Kernel release.
    pub kernel: String,
    /// Machine architecture.
    pub arch: String,
    /// Seconds since boot.
    pub uptime_seconds: u64,
    /// Package backend in use.
    pub package_manager: String,
    /// Last successful package-list update or upgrade (RFC 3339), if known.
    pub last_update: Option<String>,
    /// A reboot is required (e.g. `/run/reboot-required` exists).
    pub reboot_required: bool,
    /// Agent version.
    pub agent_version: String,
}

/// One installed package, as listed by `GET /api/v1/packages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledPackage {
    /// Package name.
    pub name: String,
    /// Installed version.
    pub version: String,
    /// Architecture.
    pub arch: String,
    /// Package manager state (`installed`, `half-configured`, `config-files`, …).
    pub status: String,
    /// One-line description.
    pub summary: String,
    /// Installed size in KiB, if known.
    pub installed_size_kib: Option<u64>,
    /// Source package, if different from the name.
    pub source: Option<String>,
}

/// `GET /api/v1/packages` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageList {
    /// Number of packages returned.
    pub total: usize,
    /// The packages, sorted by name then architecture.
    pub packages: Vec<InstalledPackage>,
}
