//! A host's part of patch jobs, as its [`HostActor`](super::actor::HostActor) runs it: the
//! orders it sends its agent, what it follows of the agent's job, and the pure rules (retry
//! delays, idempotency keys, outcomes) tested without an actor.
//!
//! One task runs at a time per host (the agent serialises package changes anyway); the others
//! wait in the actor's queue. A task is dispatched with an idempotency key made of the job, the
//! host and the attempt, so an order sent again after a manager restart (or a lost answer) names
//! the agent job already accepted instead of starting a second one.

use chrono::NaiveDateTime;
use shared::agent::{ApplyRequest, Job, JobEvent, JobStatus, PackageResult};
use shared::jobs::{TargetState, RETRY_AFTER_SECS};
use std::time::Duration;

/// Lines of package-manager output kept per host.
pub const LOG_TAIL: usize = 50;
/// How long a host's agent may stay out of reach while it runs a job before the manager gives
/// up following it (the job may still finish on the host; the row says so).
pub const LOST_AFTER: Duration = Duration::from_secs(30 * 60);

/// What the agent is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderKind {
    /// Apply patches.
    Apply(ApplyRequest),
    /// Undo an earlier agent job.
    Rollback {
        /// The agent job undone.
        of: String,
    },
}

/// One request to an agent, with its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// What.
    pub kind: OrderKind,
    /// Sent as `Idempotency-Key`.
    pub key: String,
}

/// Why an order did not reach the agent, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchError {
    /// What happened.
    pub message: String,
    /// A network failure or a busy agent (worth a retry), rather than a refusal of the request.
    pub retryable: bool,
}

/// What following an agent job yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Follow {
    /// A live event of that job.
    Event(JobEvent),
    /// The job is over, as the agent reports it.
    Done(Box<Job>),
    /// The agent could not be reached (or the stream broke); following may be tried again.
    Lost(String),
}

/// The idempotency key of attempt `attempt` of job `job_id` on `host_id`.
pub fn apply_key(job_id: i64, host_id: i64, attempt: u32) -> String {
    format!("lpm-j{job_id}-h{host_id}-a{attempt}")
}

/// The idempotency key of the rollback of job `job_id` on `host_id`.
pub fn rollback_key(job_id: i64, host_id: i64) -> String {
    format!("lpm-j{job_id}-h{host_id}-rb")
}

/// The waits before the three retries of a failed host (`fleet.job_retry_after_secs`).
pub type Retries = [Duration; 3];

/// The default waits: 1, 5 and 30 minutes.
pub fn default_retries() -> Retries {
    RETRY_AFTER_SECS.map(Duration::from_secs)
}

/// The wait before the next attempt after `attempt` attempts failed, if one is left.
pub fn retry_after(attempt: u32, retries: &Retries) -> Option<Duration> {
    let i = usize::try_from(attempt.checked_sub(1)?).ok()?;
    retries.get(i).copied()
}

/// A host's row of a job as its actor knows it; reported whole on every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// State.
    pub state: TargetState,
    /// Attempts so far.
    pub attempt: u32,
    /// The agent job of the latest attempt.
    pub agent_job_id: Option<String>,
    /// The agent job of the rollback.
    pub rollback_agent_job_id: Option<String>,
    /// When the next attempt starts.
    pub next_retry_at: Option<NaiveDateTime>,
    /// Per-package results.
    pub results: Vec<PackageResult>,
    /// Last lines of output.
    pub log_tail: Vec<String>,
    /// Why it failed or waits.
    pub error: Option<String>,
    /// Started.
    pub started_at: Option<NaiveDateTime>,
    /// Ended.
    pub finished_at: Option<NaiveDateTime>,
}

impl Progress {
    /// A row not started yet.
    pub fn waiting() -> Self {
        Self {
            state: TargetState::Waiting,
            attempt: 0,
            agent_job_id: None,
            rollback_agent_job_id: None,
            next_retry_at: None,
            results: Vec::new(),
            log_tail: Vec::new(),
            error: None,
            started_at: None,
            finished_at: None,
        }
    }

    /// Adds a line of output, keeping the last [`LOG_TAIL`].
    pub fn push_line(&mut self, line: String) {
        self.log_tail.push(line);
        if self.log_tail.len() > LOG_TAIL {
            let excess = self.log_tail.len() - LOG_TAIL;
            self.log_tail.drain(..excess);
        }
    }

    /// Takes a finished agent job's results, log and error.
    pub fn take_job(&mut self, job: &Job) {
        self.results.clone_from(&job.results);
        if !job.log_tail.is_empty() {
            self.log_tail = job
                .log_tail
                .iter()
                .rev()
                .take(LOG_TAIL)
                .rev()
                .cloned()
                .collect();
        }
        self.error.clone_from(&job.error);
    }
}

/// What a finished apply job means for its host: succeeded, or failed (with the state it ends in
/// when no retry is left).
pub fn outcome(job: &Job) -> Result<(), (TargetState, String)> {
    match job.status {
        JobStatus::Succeeded => Ok(()),
        JobStatus::Partial => Err((
            TargetState::Partial,
            job.error.clone().unwrap_or_else(|| {
                let failed: Vec<&str> = job
                    .results
                    .iter()
                    .filter(|r| r.outcome == shared::agent::PackageOutcome::Failed)
                    .map(|r| r.name.as_str())
                    .collect();
                format!("some packages failed: {}", failed.join(", "))
            }),
        )),
        JobStatus::TimedOut => Err((
            TargetState::Failed,
            job.error
                .clone()
                .unwrap_or_else(|| "the agent's job timed out".into()),
        )),
        JobStatus::Interrupted => Err((
            TargetState::Failed,
            job.error
                .clone()
                .unwrap_or_else(|| "the agent stopped while the job ran".into()),
        )),
        JobStatus::Failed | JobStatus::Queued | JobStatus::Running => Err((
            TargetState::Failed,
            job.error
                .clone()
                .unwrap_or_else(|| "the agent's job failed".into()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_retries_after_one_five_and_thirty_minutes() {
        let waits: Vec<Option<u64>> = (0..=4)
            .map(|a| retry_after(a, &default_retries()).map(|d| d.as_secs()))
            .collect();
        assert_eq!(waits, [None, Some(60), Some(300), Some(1800), None]);
    }

    #[test]
    fn keys_differ_by_job_host_and_attempt() {
        assert_ne!(apply_key(1, 2, 1), apply_key(1, 2, 2));
        assert_ne!(apply_key(1, 2, 1), apply_key(2, 1, 1));
        assert_ne!(apply_key(1, 2, 1), rollback_key(1, 2));
        // The agent accepts 1 to 64 of A-Z a-z 0-9 - _ . :
        let long = apply_key(i64::MAX, i64::MAX, u32::MAX);
        assert!(long.len() <= 64, "{long}");
        assert!(long
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)));
    }

    #[test]
    fn the_log_tail_keeps_the_last_lines() {
        let mut p = Progress::waiting();
        for i in 0..(LOG_TAIL + 7) {
            p.push_line(format!("line {i}"));
        }
        assert_eq!(p.log_tail.len(), LOG_TAIL);
        assert_eq!(p.log_tail[0], "line 7");
    }
}
