//! Asynchronous package jobs: queue, concurrency limit, one package transaction at a time, hard
//! timeout, per-package results, rollback records, exclusive mode, job file, live events.
//!
//! A job is accepted (202) after its input was validated, then waits for one of
//! `jobs.max_concurrent` slots (`queued` → `running`). Running jobs still take the package lock in
//! turn, because dpkg allows one transaction at a time; reads never take it. Inside the lock the
//! job snapshots the installed versions, runs the package manager in its own process group
//! (killed whole after the timeout), snapshots again, and derives per-package results and the
//! rollback record from the difference. A rollback replays a record in exclusive mode: from the
//! moment it is accepted every other mutation is refused with a reason until it ends.
//!
//! Jobs and their rollback records live in memory and in `state_dir/jobs.json`, written by one
//! thread ([`crate::jobstore::Writer`]) that coalesces changes: output lines at most every
//! [`crate::jobstore::WRITE_INTERVAL`], state changes at once, and a job's final state and rollback
//! record are on disk before its `finished` event and audit record. They survive restarts and
//! reboots, bounded by [`Retention`] (`jobs.keep_finished`, `jobs.keep_days`). A job that was
//! queued or running when the agent stopped is `interrupted` after the restart (in the job list and
//! in `/health`), with an audit record. A job file that does not parse is kept aside
//! (`jobs.json.unreadable-TIMESTAMP`), audited and reported by `/health`, never silently replaced.

use crate::audit::AuditLog;
use crate::backend::{PackageBackend, Transaction};
use crate::jobstore::{JobFile, RollbackRecord, Writer};
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::agent::{
    Job, JobEvent, JobKind, JobStatus, PackageOutcome, PackageResult, PackageSpec, PatchSelection,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{broadcast, Semaphore};

/// Lines of output kept per job.
const LOG_TAIL_LINES: usize = 200;

/// How many finished jobs (with their rollback records) are kept, in memory and in the job file.
/// A finished job is forgotten when it is older than `keep_days` or when `keep_finished` newer
/// finished jobs exist, whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Finished jobs kept, newest first.
    pub keep_finished: usize,
    /// Days a finished job is kept after it finished.
    pub keep_days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            keep_finished: 200,
            keep_days: 30,
        }
    }
}

/// What a job will do, decided at submission from validated input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Plan {
    /// Install packages (optionally pinned).
    Install(Vec<PackageSpec>),
    /// Move one installed package to a version (or its candidate).
    Update {
        /// Package.
        name: String,
        /// Target version.
        version: Option<String>,
    },
    /// Remove a package.
    Remove {
        /// Package.
        name: String,
        /// Also remove configuration files.
        purge: bool,
    },
    /// Apply available updates.
    Apply {
        /// Which.
        selection: PatchSelection,
        /// Names for `List`.
        names: Vec<String>,
    },
    /// Undo another job.
    Rollback {
        /// The job to undo.
        of: String,
    },
}

impl Plan {
    fn kind(&self) -> JobKind {
        match self {
            Self::Install(_) => JobKind::Install,
            Self::Update { .. } => JobKind::Update,
            Self::Remove { .. } => JobKind::Remove,
            Self::Apply { .. } => JobKind::ApplyPatches,
            Self::Rollback { .. } => JobKind::Rollback,
        }
    }
}

/// Why a job was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// A rollback holds the agent in exclusive mode.
    #[error("a rollback (job {0}) is running: the agent accepts no other changes until it ends")]
    Exclusive(String),
    /// The job to roll back does not exist.
    #[error("no job {0}")]
    UnknownJob(String),
    /// The job to roll back has not finished or changed nothing that can be undone.
    #[error("{0}")]
    NotRollbackable(String),
    /// The idempotency key names a job with another request.
    #[error("the idempotency key {0} was used for job {1}, whose request differs")]
    KeyReused(String, String),
}

/// Jobs and rollback records, shared with the job file's writer thread.
#[derive(Default)]
struct Store {
    jobs: Mutex<BTreeMap<String, Job>>,
    records: Mutex<BTreeMap<String, RollbackRecord>>,
}

impl Store {
    /// The job file's contents now.
    fn file(&self) -> JobFile {
        JobFile {
            jobs: lock(&self.jobs).values().cloned().collect(),
            records: lock(&self.records).clone(),
            ..JobFile::default()
        }
    }

    /// Forgets finished jobs (and their records) beyond the retention, except the target of a
    /// rollback that has not finished.
    fn prune(&self, retention: Retention) {
        let cutoff = chrono::Utc::now() - chrono::Duration::days(i64::from(retention.keep_days));
        let mut jobs = lock(&self.jobs);
        let protected: BTreeSet<String> = jobs
            .values()
            .filter(|j| !j.status.is_finished())
            .filter_map(|j| j.rollback_of.clone())
            .collect();
        // Ids are ULIDs: ascending = oldest first.
        let finished: Vec<String> = jobs
            .values()
            .filter(|j| j.status.is_finished() && !protected.contains(&j.id))
            .map(|j| j.id.clone())
            .collect();
        let excess = finished.len().saturating_sub(retention.keep_finished);
        let mut gone: Vec<String> = finished[..excess].to_vec();
        gone.extend(
            finished[excess..]
                .iter()
                .filter(|id| {
                    jobs.get(*id)
                        .and_then(|j| j.finished_at.as_deref().or(Some(j.created_at.as_str())))
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .is_some_and(|t| t < cutoff)
                })
                .cloned(),
        );
        if gone.is_empty() {
            return;
        }
        let mut records = lock(&self.records);
        for id in &gone {
            jobs.remove(id);
            records.remove(id);
        }
    }
}

struct Inner {
    backend: Arc<dyn PackageBackend>,
    audit: AuditLog,
    store: Arc<Store>,
    writer: Writer,
    retention: Retention,
    file_problem: Option<String>,
    exclusive: Mutex<Option<String>>,
    slots: Semaphore,
    package_lock: tokio::sync::Mutex<()>,
    events: broadcast::Sender<JobEvent>,
    timeout: Duration,
    interrupted: Vec<String>,
}

/// The job manager. Cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs").finish_non_exhaustive()
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Jobs {
    /// Creates the manager with the default [`Retention`]; see [`Jobs::with_retention`].
    pub fn new(
        backend: Arc<dyn PackageBackend>,
        audit: AuditLog,
        state_dir: PathBuf,
        max_concurrent: usize,
        timeout: Duration,
    ) -> std::io::Result<Self> {
        Self::with_retention(
            backend,
            audit,
            state_dir,
            max_concurrent,
            timeout,
            Retention::default(),
        )
    }

    /// Creates the manager: reads the previous job file (keeping an unreadable one aside and
    /// reporting it), marks its unfinished jobs interrupted, and starts the job file's writer.
    /// Fails only if the file exists but cannot be read or kept aside.
    pub fn with_retention(
        backend: Arc<dyn PackageBackend>,
        audit: AuditLog,
        state_dir: PathBuf,
        max_concurrent: usize,
        timeout: Duration,
        retention: Retention,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(&state_dir)?;
        let state_file = state_dir.join("jobs.json");
        let (previous, set_aside) = crate::jobstore::load(&state_file)?;
        let file_problem = set_aside.map(|a| {
            let message = a.describe();
            tracing::error!("{message}");
            audit.record(
                "jobs.file_unreadable",
                json!({
                    "file": a.file.display().to_string(),
                    "set_aside_as": a.set_aside_as.display().to_string(),
                    "error": a.error,
                }),
            );
            message
        });
        let restarted = now();
        let mut interrupted = Vec::new();
        let mut jobs = BTreeMap::new();
        for mut job in previous.jobs {
            if !job.status.is_finished() {
                let was = if job.status == JobStatus::Queued {
                    "queued"
                } else {
                    "running"
                };
                job.status = JobStatus::Interrupted;
                job.error = Some(format!(
                    "the agent stopped while this job was {was}; its outcome is unknown: check \
                     the packages it names (dpkg --configure -a repairs an interrupted package \
                     database)"
                ));
                job.finished_at = Some(restarted.clone());
                audit.record("job.interrupted", json!({ "job_id": job.id, "was": was }));
                interrupted.push(job.id.clone());
            }
            jobs.insert(job.id.clone(), job);
        }
        let mut records = previous.records;
        records.retain(|id, _| jobs.contains_key(id));
        let store = Arc::new(Store {
            jobs: Mutex::new(jobs),
            records: Mutex::new(records),
        });
        store.prune(retention);
        let snapshot_of = store.clone();
        let writer = Writer::spawn(state_file, Box::new(move || snapshot_of.file().to_bytes()))?;
        // The interrupted jobs and any pruning are written at once (by the writer, not here).
        writer.changed(true);
        let (events, _) = broadcast::channel(1024);
        Ok(Self {
            inner: Arc::new(Inner {
                backend,
                audit,
                store,
                writer,
                retention,
                file_problem,
                exclusive: Mutex::new(None),
                slots: Semaphore::new(max_concurrent.max(1)),
                package_lock: tokio::sync::Mutex::new(()),
                events,
                timeout,
                interrupted,
            }),
        })
    }

    /// Why the job file found at start could not be used, if it could not (it was kept aside).
    pub fn file_problem(&self) -> Option<&str> {
        self.inner.file_problem.as_deref()
    }

    /// Waits until every change so far is in the job file.
    pub async fn flush(&self) {
        self.inner.writer.flush().await;
    }

    /// Writes what is pending and stops writing the job file (at shutdown; jobs still running
    /// are then reported as interrupted by the next start).
    pub async fn close(&self) {
        self.inner.writer.close().await;
    }

    /// Jobs that were unfinished when the agent last stopped.
    pub fn interrupted(&self) -> &[String] {
        &self.inner.interrupted
    }

    /// Live events.
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.inner.events.subscribe()
    }

    /// The rollback holding exclusive mode, if any.
    pub fn exclusive(&self) -> Option<String> {
        lock(&self.inner.exclusive).clone()
    }

    /// (running, queued) counts.
    pub fn counts(&self) -> (u32, u32) {
        let jobs = lock(&self.inner.store.jobs);
        let count = |s| jobs.values().filter(|j| j.status == s).count() as u32;
        (count(JobStatus::Running), count(JobStatus::Queued))
    }

    /// One job.
    pub fn get(&self, id: &str) -> Option<Job> {
        lock(&self.inner.store.jobs).get(id).cloned()
    }

    /// All jobs, newest first, optionally with one status.
    pub fn list(&self, status: Option<JobStatus>) -> Vec<Job> {
        lock(&self.inner.store.jobs)
            .values()
            .rev()
            .filter(|j| status.is_none_or(|s| j.status == s))
            .cloned()
            .collect()
    }

    /// Accepts a job and starts it in the background; answers its id. With a `key` (the caller's
    /// `Idempotency-Key`) that an earlier job carries, answers that job's id and starts nothing,
    /// so a caller that lost the answer may send the request again.
    pub fn submit(
        &self,
        plan: Plan,
        request: serde_json::Value,
        key: Option<String>,
    ) -> Result<String, SubmitError> {
        let id = ulid::Ulid::new().to_string();
        {
            let mut exclusive = lock(&self.inner.exclusive);
            if let Some(k) = key.as_deref() {
                let jobs = lock(&self.inner.store.jobs);
                if let Some(earlier) = jobs.values().find(|j| j.request_key.as_deref() == Some(k)) {
                    return if earlier.request == request {
                        Ok(earlier.id.clone())
                    } else {
                        Err(SubmitError::KeyReused(k.to_owned(), earlier.id.clone()))
                    };
                }
            }
            if let Some(holder) = exclusive.as_ref() {
                return Err(SubmitError::Exclusive(holder.clone()));
            }
            if let Plan::Rollback { of } = &plan {
                let target = self
                    .get(of)
                    .ok_or_else(|| SubmitError::UnknownJob(of.clone()))?;
                if !target.status.is_finished() {
                    return Err(SubmitError::NotRollbackable(format!(
                        "job {of} has not finished"
                    )));
                }
                if !lock(&self.inner.store.records).contains_key(of) {
                    return Err(SubmitError::NotRollbackable(format!(
                        "job {of} changed no package"
                    )));
                }
                *exclusive = Some(id.clone());
            }
        }
        let job = Job {
            id: id.clone(),
            kind: plan.kind(),
            request: request.clone(),
            status: JobStatus::Queued,
            progress: 0,
            results: Vec::new(),
            log_tail: Vec::new(),
            error: None,
            noop: false,
            rollback_of: match &plan {
                Plan::Rollback { of } => Some(of.clone()),
                _ => None,
            },
            request_key: key,
            created_at: now(),
            started_at: None,
            finished_at: None,
        };
        lock(&self.inner.store.jobs).insert(id.clone(), job);
        self.inner.store.prune(self.inner.retention);
        self.inner.writer.changed(true);
        self.inner.audit.record(
            "job.accepted",
            json!({ "job_id": id, "kind": plan.kind(), "request": request }),
        );
        self.emit(JobEvent::Queued {
            job_id: id.clone(),
            kind: plan.kind(),
        });
        let me = self.clone();
        let job_id = id.clone();
        actix_web::rt::spawn(async move { me.run(job_id, plan).await });
        Ok(id)
    }

    fn emit(&self, e: JobEvent) {
        // No subscriber is fine.
        let _ = self.inner.events.send(e);
    }

    /// Changes a job in memory and marks the job file dirty: `urgent` (a state change, results)
    /// is written at once, anything else (output, progress) within the write interval.
    fn update(&self, id: &str, urgent: bool, f: impl FnOnce(&mut Job)) {
        if let Some(job) = lock(&self.inner.store.jobs).get_mut(id) {
            f(job);
        }
        self.inner.writer.changed(urgent);
    }

    async fn run(&self, id: String, plan: Plan) {
        let Ok(_slot) = self.inner.slots.acquire().await else {
            return;
        };
        self.update(&id, true, |j| {
            j.status = JobStatus::Running;
            j.started_at = Some(now());
            j.progress = 5;
        });
        // On disk before the package manager starts: an agent that dies while it runs finds the job
        // in its file when it starts again and reports it interrupted (never silently lost).
        self.inner.writer.flush().await;
        self.emit(JobEvent::Started { job_id: id.clone() });
        let _pkg = self.inner.package_lock.lock().await;
        self.update(&id, false, |j| j.progress = 10);
        let outcome = self.execute(&id, &plan).await;
        let (status, error) = match outcome {
            Ok(status) => (status, None),
            Err((status, message)) => (status, Some(message)),
        };
        if matches!(plan, Plan::Rollback { .. }) {
            *lock(&self.inner.exclusive) = None;
        }
        self.update(&id, true, |j| {
            j.status = status;
            j.error = error.clone();
            j.progress = 100;
            j.finished_at = Some(now());
        });
        self.inner.store.prune(self.inner.retention);
        // The final state and the rollback record are on disk before anyone is told.
        self.inner.writer.flush().await;
        self.inner.audit.record(
            "job.finished",
            json!({ "job_id": id, "status": status, "error": error }),
        );
        self.emit(JobEvent::Finished { job_id: id, status });
    }

    /// Runs the plan inside the package lock. `Err` carries the status and the reason.
    async fn execute(&self, id: &str, plan: &Plan) -> Result<JobStatus, (JobStatus, String)> {
        let backend = self.inner.backend.clone();
        let before = blocking(move || backend.versions()).await?;
        let (tx, targets) = match self.transaction(plan, &before).await? {
            Some(t) => t,
            None => {
                // Everything already as requested: report the targets unchanged, spawn nothing.
                let results = self.noop_results(plan, &before);
                for r in &results {
                    self.emit(JobEvent::Package {
                        job_id: id.into(),
                        result: r.clone(),
                    });
                }
                self.update(id, true, |j| {
                    j.noop = true;
                    j.results = results;
                    j.log_tail
                        .push("nothing to do: already in the requested state".into());
                });
                return Ok(JobStatus::Succeeded);
            }
        };
        let run = self.spawn_and_wait(id, &tx).await;
        let backend = self.inner.backend.clone();
        let (after, states) =
            blocking(move || Ok((backend.versions()?, backend.states()?))).await?;
        let output = self.get(id).map(|j| j.log_tail).unwrap_or_default();
        let results = results(&before, &after, &states, &targets, &output);
        // What changed can be undone later.
        let record: RollbackRecord = changed(&before, &after)
            .into_iter()
            .map(|n| (n.clone(), before.get(&n).cloned()))
            .collect();
        if !record.is_empty() {
            lock(&self.inner.store.records).insert(id.to_owned(), record);
        }
        for r in &results {
            if r.outcome == PackageOutcome::Changed {
                self.inner.audit.record(
                    "package.changed",
                    json!({ "job_id": id, "name": r.name, "from": r.from_version, "to": r.to_version }),
                );
            }
            self.emit(JobEvent::Package {
                job_id: id.into(),
                result: r.clone(),
            });
        }
        let failed = results
            .iter()
            .filter(|r| r.outcome == PackageOutcome::Failed)
            .count();
        let all_unchanged = results
            .iter()
            .all(|r| r.outcome == PackageOutcome::Unchanged);
        self.update(id, true, |j| {
            j.results = results.clone();
            j.noop = all_unchanged && run.is_ok();
        });
        match run {
            Err(RunError::TimedOut) => {
                let backend = self.inner.backend.clone();
                let broken = blocking(move || backend.interrupted())
                    .await
                    .unwrap_or(true);
                let msg = format!(
                    "timed out after {} s; the package manager's process group was killed; {}",
                    self.inner.timeout.as_secs(),
                    if broken {
                        "the package database is left interrupted (dpkg --configure -a repairs it)"
                    } else {
                        "the package database is consistent"
                    }
                );
                Err((JobStatus::TimedOut, msg))
            }
            Err(RunError::Spawn(e)) => Err((
                JobStatus::Failed,
                format!("cannot start the package manager: {e}"),
            )),
            Err(RunError::Exit(code, last)) if failed == 0 && !all_unchanged => {
                // Exit status non-zero although every target arrived (e.g. an unrelated broken
                // package): report it, but the targets are fine.
                Err((
                    JobStatus::Partial,
                    format!("package manager exited with {code}: {last}"),
                ))
            }
            Err(RunError::Exit(code, last)) => {
                let status = if failed == results.len() || all_unchanged {
                    JobStatus::Failed
                } else {
                    JobStatus::Partial
                };
                Err((
                    status,
                    format!("package manager exited with {code}: {last}"),
                ))
            }
            Ok(()) if failed == 0 => Ok(JobStatus::Succeeded),
            Ok(()) if failed == results.len() => {
                Err((JobStatus::Failed, "no package reached its target".into()))
            }
            Ok(()) => Err((
                JobStatus::Partial,
                format!("{failed} of {} packages failed", results.len()),
            )),
        }
    }

    /// The transaction for a plan and the package names it targets; `None` when nothing needs
    /// doing.
    async fn transaction(
        &self,
        plan: &Plan,
        before: &BTreeMap<String, String>,
    ) -> Result<Option<(Transaction, Vec<Target>)>, (JobStatus, String)> {
        Ok(match plan {
            Plan::Install(specs) => {
                if specs.iter().all(|s| {
                    s.version
                        .as_ref()
                        .is_some_and(|v| before.get(&s.name) == Some(v))
                }) {
                    return Ok(None);
                }
                let targets = specs
                    .iter()
                    .map(|s| Target {
                        name: s.name.clone(),
                        want: Want::Installed(s.version.clone()),
                    })
                    .collect();
                let packages = specs
                    .iter()
                    .map(|s| (s.name.clone(), s.version.clone()))
                    .collect();
                Some((
                    Transaction::Install {
                        packages,
                        only_upgrade: false,
                    },
                    targets,
                ))
            }
            Plan::Update { name, version } => {
                if !before.contains_key(name) {
                    return Err((
                        JobStatus::Failed,
                        format!("{name} is not installed; use POST /packages to install it"),
                    ));
                }
                if version
                    .as_ref()
                    .is_some_and(|v| before.get(name) == Some(v))
                {
                    return Ok(None);
                }
                let targets = vec![Target {
                    name: name.clone(),
                    want: Want::Installed(version.clone()),
                }];
                Some((
                    Transaction::Install {
                        packages: vec![(name.clone(), version.clone())],
                        only_upgrade: true,
                    },
                    targets,
                ))
            }
            Plan::Remove { name, purge } => {
                if !before.contains_key(name) {
                    return Ok(None);
                }
                let targets = vec![Target {
                    name: name.clone(),
                    want: Want::Absent,
                }];
                Some((
                    Transaction::Remove {
                        names: vec![name.clone()],
                        purge: *purge,
                    },
                    targets,
                ))
            }
            Plan::Apply { selection, names } => {
                let backend = self.inner.backend.clone();
                let patches = blocking(move || backend.upgradable()).await?;
                let chosen: Vec<_> = patches
                    .iter()
                    .filter(|p| match selection {
                        PatchSelection::All => true,
                        PatchSelection::Security => p.security,
                        PatchSelection::List => names.contains(&p.name),
                    })
                    .collect();
                if chosen.is_empty() {
                    return Ok(None);
                }
                let targets = chosen
                    .iter()
                    .map(|p| Target {
                        name: p.name.clone(),
                        want: Want::Installed(Some(p.candidate_version.clone())),
                    })
                    .collect();
                let packages = chosen
                    .iter()
                    .map(|p| (p.name.clone(), Some(p.candidate_version.clone())))
                    .collect();
                Some((
                    Transaction::Install {
                        packages,
                        only_upgrade: true,
                    },
                    targets,
                ))
            }
            Plan::Rollback { of } => {
                let Some(record) = lock(&self.inner.store.records).get(of).cloned() else {
                    return Err((
                        JobStatus::Failed,
                        format!("the rollback record of job {of} is no longer kept"),
                    ));
                };
                if record.iter().all(|(n, v)| before.get(n) == v.as_ref()) {
                    return Ok(None);
                }
                let targets = record
                    .iter()
                    .map(|(n, v)| Target {
                        name: n.clone(),
                        want: match v {
                            Some(v) => Want::Installed(Some(v.clone())),
                            None => Want::Absent,
                        },
                    })
                    .collect();
                let install = record
                    .iter()
                    .filter_map(|(n, v)| Some((n.clone(), v.clone()?)))
                    .collect();
                let remove = record
                    .iter()
                    .filter(|(_, v)| v.is_none())
                    .map(|(n, _)| n.clone())
                    .collect();
                Some((Transaction::Restore { install, remove }, targets))
            }
        })
    }

    fn noop_results(&self, plan: &Plan, before: &BTreeMap<String, String>) -> Vec<PackageResult> {
        let names: Vec<String> = match plan {
            Plan::Install(specs) => specs.iter().map(|s| s.name.clone()).collect(),
            Plan::Update { name, .. } | Plan::Remove { name, .. } => vec![name.clone()],
            Plan::Apply { .. } => Vec::new(),
            Plan::Rollback { of } => lock(&self.inner.store.records)
                .get(of)
                .map(|r| r.keys().cloned().collect())
                .unwrap_or_default(),
        };
        names
            .into_iter()
            .map(|name| PackageResult {
                from_version: before.get(&name).cloned(),
                to_version: before.get(&name).cloned(),
                name,
                outcome: PackageOutcome::Unchanged,
                message: None,
            })
            .collect()
    }

    /// Runs the backend's steps for `tx` in order, stopping at the first that fails; the job's
    /// timeout covers all of them.
    async fn spawn_and_wait(&self, id: &str, tx: &Transaction) -> Result<(), RunError> {
        // Working out the steps may read the package cache or ask the tool: off the workers.
        let (backend, transaction) = (self.inner.backend.clone(), tx.clone());
        let steps = tokio::task::spawn_blocking(move || backend.steps(&transaction))
            .await
            .map_err(|e| RunError::Spawn(e.to_string()))?
            .map_err(|e| RunError::Spawn(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + self.inner.timeout;
        for step in steps {
            self.run_step(id, step, deadline).await?;
        }
        Ok(())
    }

    async fn run_step(
        &self,
        id: &str,
        step: crate::backend::Step,
        deadline: tokio::time::Instant,
    ) -> Result<(), RunError> {
        let mut cmd = step.command;
        cmd.stdin(if step.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        // Own process group, so the timeout can kill dpkg and its maintainer scripts too.
        cmd.process_group(0);
        let program = format!("{:?}", cmd.as_std().get_program());
        let args: Vec<String> = cmd
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        self.inner.audit.record(
            "process.spawned",
            json!({ "job_id": id, "program": program, "args": args, "input": step.stdin }),
        );
        let mut child = cmd.spawn().map_err(|e| RunError::Spawn(e.to_string()))?;
        let pgid = child.id();
        if let (Some(input), Some(mut pipe)) = (step.stdin.clone(), child.stdin.take()) {
            // The script is small; written beside the output readers so neither side can block.
            actix_web::rt::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = pipe.write_all(input.as_bytes()).await;
                let _ = pipe.shutdown().await;
            });
        }
        let (line_tx, mut line_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = line_tx.clone();
            actix_web::rt::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        drop(line_tx);
        let mut last_line = String::new();
        let wait = async {
            let mut lines_done = false;
            loop {
                tokio::select! {
                    line = line_rx.recv(), if !lines_done => match line {
                        Some(line) => {
                            last_line.clone_from(&line);
                            self.update(id, false, |j| {
                                j.log_tail.push(line.clone());
                                let excess = j.log_tail.len().saturating_sub(LOG_TAIL_LINES);
                                j.log_tail.drain(..excess);
                                j.progress = (j.progress + 2).min(95);
                            });
                            self.emit(JobEvent::Output { job_id: id.into(), line });
                        }
                        None => lines_done = true,
                    },
                    status = child.wait(), if lines_done => return status,
                }
            }
        };
        match tokio::time::timeout_at(deadline, wait).await {
            Ok(Ok(status)) if status.code().is_some_and(|c| step.success.contains(&c)) => Ok(()),
            Ok(Ok(status)) => Err(RunError::Exit(
                status
                    .code()
                    .map_or_else(|| "a signal".to_owned(), |c| c.to_string()),
                last_line,
            )),
            Ok(Err(e)) => Err(RunError::Spawn(e.to_string())),
            Err(_) => {
                if let Some(pgid) = pgid.and_then(|p| i32::try_from(p).ok()) {
                    kill_tree(pgid);
                }
                let _ = child.wait().await;
                self.inner.audit.record(
                    "job.timeout",
                    json!({ "job_id": id, "timeout_secs": self.inner.timeout.as_secs() }),
                );
                Err(RunError::TimedOut)
            }
        }
    }
}

/// Kills the process group led by `root` and, in case something started a new session, every
/// descendant of `root` found through /proc.
fn kill_tree(root: i32) {
    use nix::sys::signal::{kill, killpg, Signal};
    use nix::unistd::Pid;
    let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // The command name may hold spaces; fields after its closing parenthesis are fixed.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok());
            if let Some(ppid) = ppid {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut all = vec![root];
    let mut i = 0;
    while i < all.len() {
        all.extend(children.get(&all[i]).cloned().unwrap_or_default());
        i += 1;
    }
    let _ = killpg(Pid::from_raw(root), Signal::SIGKILL);
    for pid in all {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

enum RunError {
    Spawn(String),
    Exit(String, String),
    TimedOut,
}

#[derive(Debug, Clone)]
struct Target {
    name: String,
    want: Want,
}

#[derive(Debug, Clone)]
enum Want {
    /// Installed, at this version if given.
    Installed(Option<String>),
    /// Not installed.
    Absent,
}

fn changed(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> BTreeSet<String> {
    before
        .keys()
        .chain(after.keys())
        .filter(|n| before.get(*n) != after.get(*n))
        .cloned()
        .collect()
}

/// Architectures that follow a package name after a dot (`name.noarch`).
const ARCHES: &[&str] = &[
    "noarch", "x86_64", "i686", "i586", "aarch64", "ppc64le", "s390x", "armv7hl", "any",
];

/// Whether an output line names the package `name` (alone or followed by a version, never as
/// the start of a longer name: `lpm-test-app` is not named by `lpm-test-application`).
fn names_package(line: &str, name: &str) -> bool {
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || "-_+.@".contains(c);
    line.match_indices(name).any(|(at, _)| {
        let before_ok = line[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !is_name_char(c));
        let mut rest = line[at + name.len()..].chars();
        let after_ok = match rest.next() {
            None => true,
            // `name-1.0-1.noarch`, `name.x86_64`, `name=1.0`: a version or an architecture follows.
            Some('-') | Some('=') => rest.next().is_some_and(|c| c.is_ascii_digit()),
            Some('.') => {
                let arch: String = rest
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                ARCHES.contains(&arch.as_str())
            }
            Some(c) => !is_name_char(c),
        };
        before_ok && after_ok
    })
}

/// Whether an output line reports a problem (the words package managers use for one).
fn says_problem(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    [
        "error",
        "problem",
        "nothing provides",
        "unable",
        "cannot",
        "depends:",
        "conflict",
        "failed",
        "not installable",
        "breaks",
    ]
    .iter()
    .any(|w| l.contains(w))
}

/// Per-package results: every target, plus every other package whose version changed. A target
/// that failed carries the package manager's last output line naming it (a broken dependency, a
/// failed script), else a generic reason.
fn results(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    states: &BTreeMap<String, String>,
    targets: &[Target],
    output: &[String],
) -> Vec<PackageResult> {
    let mut out: Vec<PackageResult> = targets
        .iter()
        .map(|t| {
            let from = before.get(&t.name).cloned();
            let to = after.get(&t.name).cloned();
            let configured = states.get(&t.name).is_some_and(|s| s == "installed");
            let reached = match &t.want {
                Want::Installed(Some(v)) => to.as_ref() == Some(v) && configured,
                Want::Installed(None) => to.is_some() && configured,
                Want::Absent => to.is_none(),
            };
            let outcome = match (reached, from == to) {
                (true, true) => PackageOutcome::Unchanged,
                (true, false) => PackageOutcome::Changed,
                (false, _) => PackageOutcome::Failed,
            };
            let message = (outcome == PackageOutcome::Failed).then(|| {
                let naming: Vec<&str> = output
                    .iter()
                    .map(|l| l.trim())
                    .filter(|l| names_package(l, &t.name))
                    .collect();
                // The first line that names the package and a problem, else the last naming it.
                let said = naming
                    .iter()
                    .find(|l| says_problem(l))
                    .or(naming.last())
                    .copied();
                match (states.get(&t.name), said) {
                    (Some(state), Some(said)) if state != "installed" => {
                        format!("package left in state {state}: {said}")
                    }
                    (Some(state), None) if state != "installed" => {
                        format!("package left in state {state}")
                    }
                    (_, Some(said)) => said.to_owned(),
                    _ => "did not reach the requested version".to_owned(),
                }
            });
            PackageResult {
                name: t.name.clone(),
                from_version: from,
                to_version: to,
                outcome,
                message,
            }
        })
        .collect();
    for name in changed(before, after) {
        if !targets.iter().any(|t| t.name == name) {
            out.push(PackageResult {
                from_version: before.get(&name).cloned(),
                to_version: after.get(&name).cloned(),
                name,
                outcome: PackageOutcome::Changed,
                message: Some("changed as a dependency".into()),
            });
        }
    }
    out
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::backend::BackendError> + Send + 'static,
) -> Result<T, (JobStatus, String)> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err((JobStatus::Failed, e.to_string())),
        Err(e) => Err((JobStatus::Failed, e.to_string())),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn job(id: &str, status: JobStatus, finished_days_ago: i64, rollback_of: Option<&str>) -> Job {
        let finished = chrono::Utc::now() - chrono::Duration::days(finished_days_ago);
        Job {
            id: id.into(),
            kind: JobKind::Install,
            request: serde_json::Value::Null,
            status,
            progress: 100,
            results: Vec::new(),
            log_tail: Vec::new(),
            error: None,
            noop: false,
            rollback_of: rollback_of.map(str::to_owned),
            request_key: None,
            created_at: now(),
            started_at: None,
            finished_at: status.is_finished().then(|| finished.to_rfc3339()),
        }
    }

    /// The newest `keep_finished` finished jobs younger than `keep_days` stay with their records;
    /// unfinished jobs and the target of a running rollback always stay.
    #[test]
    fn retention_keeps_the_newest_and_the_young() {
        let store = Store::default();
        let jobs = [
            job("01A", JobStatus::Succeeded, 1, None), // protected: rollback 01F runs
            job("01B", JobStatus::Succeeded, 1, None),
            job("01C", JobStatus::Failed, 40, None), // too old
            job("01D", JobStatus::Succeeded, 2, None),
            job("01E", JobStatus::Interrupted, 0, None),
            job("01F", JobStatus::Running, 0, Some("01A")),
            job("01G", JobStatus::Succeeded, 0, None),
        ];
        for j in jobs {
            lock(&store.records).insert(j.id.clone(), RollbackRecord::new());
            lock(&store.jobs).insert(j.id.clone(), j);
        }
        store.prune(Retention {
            keep_finished: 3,
            keep_days: 30,
        });
        let kept: Vec<String> = lock(&store.jobs).keys().cloned().collect();
        assert_eq!(kept, ["01A", "01D", "01E", "01F", "01G"]);
        let records: Vec<String> = lock(&store.records).keys().cloned().collect();
        assert_eq!(records, kept);
    }

    #[test]
    fn output_lines_name_packages_not_prefixes() {
        assert!(names_package(
            "lpm-test-missing : Depends: x",
            "lpm-test-missing"
        ));
        assert!(names_package(
            "needed by lpm-test-missing-1.0-1.noarch",
            "lpm-test-missing"
        ));
        assert!(names_package(
            "a dependency of \"lpm-test-missing\"",
            "lpm-test-missing"
        ));
        assert!(names_package("lpm-test-hello=1.0-1", "lpm-test-hello"));
        assert!(!names_package("lpm-test-application 1.0", "lpm-test-app"));
        assert!(!names_package("lpm-test-app-extra 1.0", "lpm-test-app"));
        assert!(!names_package("my-lpm-test-app", "lpm-test-app"));
        assert!(!names_package("python3.11-foo", "python3"));
    }

    #[test]
    fn a_failed_target_carries_the_line_that_says_why() {
        let before = BTreeMap::new();
        let targets = [Target {
            name: "lpm-test-missing".into(),
            want: Want::Installed(None),
        }];
        // zypper's answer: the problem first, then the solutions, which name the package too.
        let output: Vec<String> = [
            "Loading repository data...",
            "Problem: nothing provides lpm-test-nowhere needed by lpm-test-missing-1.0-1.noarch",
            " Solution 1: do not install lpm-test-missing-1.0-1.noarch",
            " Solution 2: break lpm-test-missing-1.0-1.noarch by ignoring some of its dependencies",
        ]
        .map(String::from)
        .to_vec();
        let r = results(&before, &before, &BTreeMap::new(), &targets, &output);
        assert_eq!(r[0].outcome, PackageOutcome::Failed);
        assert_eq!(
            r[0].message.as_deref(),
            Some("Problem: nothing provides lpm-test-nowhere needed by lpm-test-missing-1.0-1.noarch")
        );
        let r = results(&before, &before, &BTreeMap::new(), &targets, &[]);
        assert_eq!(
            r[0].message.as_deref(),
            Some("did not reach the requested version")
        );
    }
}
