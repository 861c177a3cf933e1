//! Wire types of the patch-agent API (`/api/v1` on port 12443), used by the agent to answer and by
//! the manager to read the answers.

use serde::{Deserialize, Serialize};

/// `GET /api/v1/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
    /// Set when the job file found at start did not parse: it was kept aside (the message names
    /// the new file) and the agent started without the jobs and rollback records it held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_file_problem: Option<String>,
}

/// `GET /api/v1/system/info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PackageList {
    /// Number of packages returned.
    pub total: usize,
    /// The packages, sorted by name then architecture.
    pub packages: Vec<InstalledPackage>,
}

/// A package to install, optionally pinned to a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PackageSpec {
    /// Package name.
    pub name: String,
    /// Exact version to install; the candidate when absent.
    #[serde(default)]
    pub version: Option<String>,
}

/// `POST /api/v1/packages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct InstallRequest {
    /// Packages to install (1 to 200).
    pub packages: Vec<PackageSpec>,
}

/// `PUT /api/v1/packages/{name}` (body optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    /// Version to move to (upgrade or downgrade); the candidate when absent.
    #[serde(default)]
    pub version: Option<String>,
}

/// Which patches `POST /api/v1/patches/apply` applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum PatchSelection {
    /// Every available update.
    All,
    /// Only updates from security suites.
    Security,
    /// The packages named in `packages`.
    List,
}

/// `POST /api/v1/patches/apply`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// Which patches.
    pub selection: PatchSelection,
    /// Package names, for `selection = list`.
    #[serde(default)]
    pub packages: Vec<String>,
}

/// Answer of every asynchronous call (`202 Accepted`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct JobAccepted {
    /// Id of the new job.
    pub job_id: String,
    /// Its status right now (`queued`).
    pub status: JobStatus,
}

/// Life cycle of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for a slot.
    Queued,
    /// Running.
    Running,
    /// Every package reached its target (or nothing needed doing).
    Succeeded,
    /// Some packages reached their target and some did not.
    Partial,
    /// Nothing reached its target, or the package manager failed.
    Failed,
    /// Killed after the job timeout.
    TimedOut,
    /// The agent stopped while the job ran.
    Interrupted,
}

impl JobStatus {
    /// Whether the job is over.
    pub fn is_finished(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Install packages.
    Install,
    /// Update (or downgrade) one package.
    Update,
    /// Remove one package.
    Remove,
    /// Apply available patches.
    ApplyPatches,
    /// Undo another job.
    Rollback,
}

/// Outcome for one package of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum PackageOutcome {
    /// Changed as requested.
    Changed,
    /// Already as requested; nothing was done.
    Unchanged,
    /// Did not reach the requested state.
    Failed,
}

/// Per-package result of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PackageResult {
    /// Package name.
    pub name: String,
    /// Version before the job (`null` if not installed).
    pub from_version: Option<String>,
    /// Version after the job (`null` if not installed).
    pub to_version: Option<String>,
    /// Outcome.
    pub outcome: PackageOutcome,
    /// Explanation for failures (package state, package manager message).
    pub message: Option<String>,
}

/// `GET /api/v1/jobs/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Job {
    /// Job id (ULID).
    pub id: String,
    /// What it does.
    pub kind: JobKind,
    /// The request as accepted.
    pub request: serde_json::Value,
    /// Status.
    pub status: JobStatus,
    /// Progress 0–100.
    pub progress: u8,
    /// Per-package results, once known.
    pub results: Vec<PackageResult>,
    /// Last lines of the package manager's output.
    pub log_tail: Vec<String>,
    /// Why the job failed, if it did.
    pub error: Option<String>,
    /// The job changed nothing because everything already was as requested.
    pub noop: bool,
    /// For rollbacks: the job undone.
    pub rollback_of: Option<String>,
    /// The caller's `Idempotency-Key`: the same request sent again with it answers this job
    /// instead of starting another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_key: Option<String>,
    /// When it was accepted (RFC 3339).
    pub created_at: String,
    /// When it started.
    pub started_at: Option<String>,
    /// When it finished.
    pub finished_at: Option<String>,
}

/// `GET /api/v1/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct JobList {
    /// Number of jobs returned.
    pub total: usize,
    /// Newest first.
    pub jobs: Vec<Job>,
}

/// One available update, as listed by `GET /api/v1/patches`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Patch {
    /// Package name.
    pub name: String,
    /// Architecture.
    pub arch: String,
    /// Installed version.
    pub installed_version: String,
    /// Version the update brings.
    pub candidate_version: String,
    /// Suites the candidate comes from (`stable-security`, …).
    pub origin: String,
    /// Comes from a security suite.
    pub security: bool,
    /// Severity, where the distribution provides one.
    pub severity: Option<String>,
    /// CVE ids named by the update, where the distribution provides them.
    pub cves: Vec<String>,
    /// Installing it usually needs a reboot (kernel, libc, systemd…).
    pub reboot_likely: bool,
}

/// `GET /api/v1/patches`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PatchList {
    /// Number of updates.
    pub total: usize,
    /// How many are security updates.
    pub security: usize,
    /// Security updates first, then by name.
    pub patches: Vec<Patch>,
}

/// A live event on `/api/v1/ws/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobEvent {
    /// A job was accepted and waits for a slot.
    Queued {
        /// Job id.
        job_id: String,
        /// What it does.
        kind: JobKind,
    },
    /// A job started.
    Started {
        /// Job id.
        job_id: String,
    },
    /// A line of package-manager output.
    Output {
        /// Job id.
        job_id: String,
        /// The line.
        line: String,
    },
    /// The result for one package.
    Package {
        /// Job id.
        job_id: String,
        /// The result.
        result: PackageResult,
    },
    /// A job finished.
    Finished {
        /// Job id.
        job_id: String,
        /// Final status.
        status: JobStatus,
    },
}

impl JobEvent {
    /// The job the event is about.
    pub fn job_id(&self) -> &str {
        match self {
            Self::Queued { job_id, .. }
            | Self::Started { job_id }
            | Self::Output { job_id, .. }
            | Self::Package { job_id, .. }
            | Self::Finished { job_id, .. } => job_id,
        }
    }
}

/// Answer of `POST /api/v1/tls/csr`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CsrResponse {
    /// PEM certificate signing request for a key made on the host.
    pub csr_pem: String,
}

/// `PUT /api/v1/tls/certificate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CertificateInstall {
    /// The signed certificate (PEM).
    pub certificate_pem: String,
}

/// Answer of `PUT /api/v1/tls/certificate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CertificateInstalled {
    /// Expiry of the installed certificate (RFC 3339).
    pub not_after: String,
}

/// `PUT /api/v1/tls/crl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CrlInstall {
    /// The revocation list (PEM).
    pub crl_pem: String,
}

/// Answer of `PUT /api/v1/tls/crl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CrlInstalled {
    /// Number of revoked certificates it lists.
    pub revoked: usize,
}
