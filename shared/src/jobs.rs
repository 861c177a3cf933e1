//! Patch deployment: a job applies patches on many hosts, now in waves or in each host's next
//! maintenance window; each host has its own row (a target) with its agent's job, its results and
//! its log. The manager's API and pages, and its live events, speak these types.

use crate::agent::{PackageResult, PatchSelection};
use crate::ids::{GroupId, HostId, JobId};
use serde::{Deserialize, Serialize};

/// Hosts named by one job at most.
pub const MAX_JOB_HOSTS: usize = 10_000;
/// Packages named by a `list` selection at most (the agent's limit).
pub const MAX_JOB_PACKAGES: usize = 200;
/// Waves of one job at most.
pub const MAX_WAVES: usize = 10;
/// Retries of a failed host: after 1, 5 and 30 minutes.
pub const RETRY_AFTER_SECS: [u64; 3] = [60, 300, 1800];

/// When a job's hosts are patched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobMode {
    /// At once, wave by wave.
    #[default]
    Now,
    /// Each host in its next maintenance window (never after the window closes).
    NextWindow,
}

impl JobMode {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Now => "now",
            Self::NextWindow => "next_window",
        }
    }
}

/// How a job rolls out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct WavePlan {
    /// The share of the hosts (percent, rising, the last 100) patched by the end of each wave:
    /// `[5, 30, 100]` is a 5 % canary, then up to 30 %, then the rest. `[100]`: one wave. Every
    /// wave holds at least one host.
    #[serde(default = "one_wave")]
    pub percents: Vec<u8>,
    /// One wave per chosen group instead, in the order the groups are given (hosts named one by
    /// one come first, as a wave of their own); `percents` is not used.
    #[serde(default)]
    pub by_group: bool,
    /// Hosts patched at once at most (0: no limit).
    #[serde(default)]
    pub max_concurrency: u32,
    /// A wave whose failed hosts exceed this share (percent) halts the job; later waves never
    /// start.
    #[serde(default = "default_threshold")]
    pub failure_threshold_pct: u8,
    /// When a wave halts the job, roll back that wave's hosts.
    #[serde(default)]
    pub rollback_on_halt: bool,
}

fn default_threshold() -> u8 {
    20
}

fn one_wave() -> Vec<u8> {
    vec![100]
}

impl Default for WavePlan {
    fn default() -> Self {
        Self {
            percents: one_wave(),
            by_group: false,
            max_concurrency: 0,
            failure_threshold_pct: default_threshold(),
            rollback_on_halt: false,
        }
    }
}

impl WavePlan {
    /// Checks the plan; the message names what is wrong.
    pub fn check(&self) -> Result<(), String> {
        if self.percents.is_empty() || self.percents.len() > MAX_WAVES {
            return Err(format!("A job has 1 to {MAX_WAVES} waves."));
        }
        if self.percents.windows(2).any(|w| w[0] >= w[1]) {
            return Err("Wave shares must rise from one wave to the next.".into());
        }
        if self.percents.first().is_some_and(|p| *p == 0) {
            return Err("The first wave needs a share above 0 %.".into());
        }
        if self.percents.last() != Some(&100) {
            return Err("The last wave must reach 100 % of the hosts.".into());
        }
        if self.failure_threshold_pct > 100 {
            return Err("The failure threshold is a share from 0 to 100 %.".into());
        }
        Ok(())
    }

    /// The waves of hosts that came from `sources` (0: named one by one; `k`: the `k`-th
    /// group given) when waves follow the groups: the sources present, in order, numbered from 0.
    pub fn by_source(sources: &[u32]) -> Vec<u32> {
        let mut present: Vec<u32> = sources.to_vec();
        present.sort_unstable();
        present.dedup();
        sources
            .iter()
            .map(|s| u32::try_from(present.partition_point(|p| p < s)).unwrap_or(0))
            .collect()
    }

    /// The wave (0-based) of each of `n` hosts in order: wave `w` ends at `percents[w]` % of
    /// the hosts, rounded up, and holds at least one host while hosts remain.
    pub fn assign(&self, n: usize) -> Vec<u32> {
        let mut out = Vec::with_capacity(n);
        for (w, p) in self.percents.iter().enumerate() {
            let end = (n * usize::from(*p))
                .div_ceil(100)
                .max(out.len() + 1)
                .min(n);
            let wave = u32::try_from(w).unwrap_or(u32::MAX);
            while out.len() < end {
                out.push(wave);
            }
        }
        while out.len() < n {
            out.push(u32::try_from(self.percents.len().saturating_sub(1)).unwrap_or(0));
        }
        out
    }
}

/// `POST /api/v1/jobs`: what to patch, where, when and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewJob {
    /// A name for the job (shown in lists; one is made up when empty).
    #[serde(default)]
    pub name: String,
    /// Hosts, by id.
    #[serde(default)]
    pub hosts: Vec<HostId>,
    /// Groups: each member host is added (once).
    #[serde(default)]
    pub groups: Vec<GroupId>,
    /// Which patches.
    pub selection: PatchSelection,
    /// Package names, for `selection = list`.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Now, or in each host's next maintenance window.
    #[serde(default)]
    pub mode: JobMode,
    /// Waves (jobs run now); one wave when absent.
    #[serde(default)]
    pub waves: Option<WavePlan>,
}

/// State of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its first host to start (a maintenance window).
    Queued,
    /// Hosts are being patched.
    Running,
    /// Every host succeeded.
    Succeeded,
    /// Some hosts succeeded, some did not.
    Partial,
    /// No host succeeded.
    Failed,
    /// Stopped by its failure threshold or an unhealthy host; `halt_reason` says why.
    Halted,
    /// Cancelled by a user before every host had run.
    Cancelled,
}

impl JobState {
    /// Every state, in the order a job moves through them.
    pub const ALL: &'static [Self] = &[
        Self::Queued,
        Self::Running,
        Self::Succeeded,
        Self::Partial,
        Self::Failed,
        Self::Halted,
        Self::Cancelled,
    ];

    /// Whether the job is over.
    pub fn is_finished(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Partial => "partial",
            Self::Failed => "failed",
            Self::Halted => "halted",
            Self::Cancelled => "cancelled",
        }
    }
}

impl std::str::FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "partial" => Self::Partial,
            "failed" => Self::Failed,
            "halted" => Self::Halted,
            "cancelled" => Self::Cancelled,
            other => return Err(format!("unknown job state {other}")),
        })
    }
}

/// State of one host in a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    /// Waiting for its wave.
    Waiting,
    /// Waiting for the host's next maintenance window.
    Scheduled,
    /// Being handed to the agent.
    Dispatching,
    /// The agent accepted it and waits for a slot.
    Queued,
    /// The agent is patching.
    Running,
    /// Failed; tried again at `next_retry_at`.
    RetryWait,
    /// Every package reached its target (or nothing needed doing).
    Succeeded,
    /// Some packages reached their target and some did not (retries exhausted).
    Partial,
    /// Failed (retries exhausted).
    Failed,
    /// Not run: the job was cancelled or halted first.
    Cancelled,
    /// Its changes are being undone.
    RollingBack,
    /// Its changes were undone.
    RolledBack,
    /// Undoing its changes failed.
    RollbackFailed,
}

impl TargetState {
    /// Whether the host's part of the job is over (a rollback may still follow).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Succeeded
                | Self::Partial
                | Self::Failed
                | Self::Cancelled
                | Self::RolledBack
                | Self::RollbackFailed
        )
    }

    /// Whether the host's part counts as failed for its wave.
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Partial | Self::Failed)
    }

    /// Whether the agent may be changing the host now.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Self::Dispatching | Self::Queued | Self::Running | Self::RollingBack
        )
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Scheduled => "scheduled",
            Self::Dispatching => "dispatching",
            Self::Queued => "queued",
            Self::Running => "running",
            Self::RetryWait => "retry_wait",
            Self::Succeeded => "succeeded",
            Self::Partial => "partial",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::RollingBack => "rolling_back",
            Self::RolledBack => "rolled_back",
            Self::RollbackFailed => "rollback_failed",
        }
    }
}

impl std::str::FromStr for TargetState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "waiting" => Self::Waiting,
            "scheduled" => Self::Scheduled,
            "dispatching" => Self::Dispatching,
            "queued" => Self::Queued,
            "running" => Self::Running,
            "retry_wait" => Self::RetryWait,
            "succeeded" => Self::Succeeded,
            "partial" => Self::Partial,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            "rolling_back" => Self::RollingBack,
            "rolled_back" => Self::RolledBack,
            "rollback_failed" => Self::RollbackFailed,
            other => return Err(format!("unknown target state {other}")),
        })
    }
}

/// Hosts of a job by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TargetCounts {
    /// Every host of the job (that the caller may see).
    pub total: u32,
    /// Not started yet (waiting for a wave or a window, or for a retry).
    pub pending: u32,
    /// Being patched or rolled back.
    pub active: u32,
    /// Succeeded.
    pub succeeded: u32,
    /// Partial or failed.
    pub failed: u32,
    /// Cancelled before they ran.
    pub cancelled: u32,
    /// Rolled back (or whose rollback failed).
    pub rolled_back: u32,
}

/// A job in lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct JobSummary {
    /// Id.
    pub id: JobId,
    /// Name.
    pub name: String,
    /// Who created it.
    pub created_by: Option<String>,
    /// Which patches.
    pub selection: PatchSelection,
    /// Package names, for `selection = list`.
    pub packages: Vec<String>,
    /// Now or in maintenance windows.
    pub mode: JobMode,
    /// How it rolls out.
    pub waves: WavePlan,
    /// Waves it has.
    pub wave_count: u32,
    /// State.
    pub state: JobState,
    /// Why it halted, or why it ended as it did.
    pub halt_reason: Option<String>,
    /// The wave running now (0-based), while the job runs.
    pub current_wave: Option<u32>,
    /// Hosts by state.
    pub counts: TargetCounts,
    /// Created (RFC 3339).
    pub created_at: String,
    /// First host started.
    pub started_at: Option<String>,
    /// Ended.
    pub finished_at: Option<String>,
}

/// One host of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct JobTarget {
    /// Host.
    pub host_id: HostId,
    /// Its name.
    pub hostname: String,
    /// Its wave (0-based).
    pub wave: u32,
    /// State.
    pub state: TargetState,
    /// Attempts so far (1 for the first).
    pub attempt: u32,
    /// The agent's job id of the latest attempt.
    pub agent_job_id: Option<String>,
    /// The agent's job id of the rollback.
    pub rollback_agent_job_id: Option<String>,
    /// When the next attempt starts (`retry_wait`).
    pub next_retry_at: Option<String>,
    /// Per-package results of the latest attempt (or of the rollback).
    pub results: Vec<PackageResult>,
    /// Last lines of the package manager's output.
    pub log_tail: Vec<String>,
    /// Why it failed or waits.
    pub error: Option<String>,
    /// Started.
    pub started_at: Option<String>,
    /// Ended.
    pub finished_at: Option<String>,
}

/// `GET /api/v1/jobs/{job_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct JobDetail {
    /// The job.
    pub job: JobSummary,
    /// Its hosts (those the caller may see), by wave then name.
    pub targets: Vec<JobTarget>,
}

/// `POST /api/v1/jobs/{job_id}/rollback`: which hosts to roll back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct JobRollback {
    /// Hosts to roll back; every host of the job that changed something when empty.
    #[serde(default)]
    pub hosts: Vec<HostId>,
}

/// A change of one host's part of a job, on the live event stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct JobTargetEvent {
    /// Job.
    pub job_id: JobId,
    /// Host.
    pub host_id: HostId,
    /// The host's state in the job now.
    pub state: TargetState,
    /// The agent's progress (0–100) while it runs.
    pub progress: Option<u8>,
    /// A new line of the package manager's output.
    pub line: Option<String>,
    /// A package's result.
    pub package: Option<PackageResult>,
    /// Why it failed or waits.
    pub error: Option<String>,
    /// When (RFC 3339).
    pub at: String,
}

/// A job's own state changed, on the live event stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct JobStateEvent {
    /// Job.
    pub job_id: JobId,
    /// State now.
    pub state: JobState,
    /// The wave running now.
    pub current_wave: Option<u32>,
    /// Why it halted.
    pub halt_reason: Option<String>,
    /// Hosts of the job the stream may see (the job's event is sent to users who see at least
    /// one).
    pub host_ids: Vec<HostId>,
    /// When (RFC 3339).
    pub at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_take_their_share_rounded_up_and_at_least_one_host() {
        let plan = WavePlan {
            percents: vec![5, 30, 100],
            ..WavePlan::default()
        };
        let waves = plan.assign(1000);
        let count = |w| waves.iter().filter(|x| **x == w).count();
        assert_eq!((count(0), count(1), count(2)), (50, 250, 700));
        // Three hosts, a 5 % canary: one host, then one, then the last.
        assert_eq!(plan.assign(3), vec![0, 1, 2]);
        // Fewer hosts than waves: the later waves stay empty.
        assert_eq!(plan.assign(2), vec![0, 1]);
        assert_eq!(WavePlan::default().assign(4), vec![0, 0, 0, 0]);
        assert!(plan.assign(0).is_empty());
    }

    #[test]
    fn waves_by_group_follow_the_order_of_the_groups() {
        // Hosts named one by one (0), then from the 2nd and 3rd group given; the 1st was empty.
        assert_eq!(WavePlan::by_source(&[2, 0, 3, 2]), vec![1, 0, 2, 1]);
        assert_eq!(WavePlan::by_source(&[1, 1, 3]), vec![0, 0, 1]);
        assert!(WavePlan::by_source(&[]).is_empty());
    }

    #[test]
    fn bad_wave_plans_are_named() {
        let with = |percents: Vec<u8>| WavePlan {
            percents,
            ..WavePlan::default()
        };
        assert!(with(vec![]).check().is_err());
        assert!(with(vec![50, 50, 100])
            .check()
            .unwrap_err()
            .contains("rise"));
        assert!(with(vec![10, 90]).check().unwrap_err().contains("100"));
        assert!(with(vec![0, 100]).check().is_err());
        assert!(with(vec![5, 30, 100]).check().is_ok());
        let p = WavePlan {
            failure_threshold_pct: 101,
            ..WavePlan::default()
        };
        assert!(p.check().is_err());
    }

    #[test]
    fn states_round_trip_through_their_stored_names() {
        for s in [
            TargetState::Waiting,
            TargetState::Scheduled,
            TargetState::Dispatching,
            TargetState::Queued,
            TargetState::Running,
            TargetState::RetryWait,
            TargetState::Succeeded,
            TargetState::Partial,
            TargetState::Failed,
            TargetState::Cancelled,
            TargetState::RollingBack,
            TargetState::RolledBack,
            TargetState::RollbackFailed,
        ] {
            assert_eq!(s.as_str().parse::<TargetState>(), Ok(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        for s in [
            JobState::Queued,
            JobState::Running,
            JobState::Succeeded,
            JobState::Partial,
            JobState::Failed,
            JobState::Halted,
            JobState::Cancelled,
        ] {
            assert_eq!(s.as_str().parse::<JobState>(), Ok(s));
        }
    }
}
