//! Patch deployment: jobs that apply patches on many hosts, in waves, with retries, halts,
//! cancel and rollback, always within the caller's [`Scope`].
//!
//! - This module: the service the API calls (checks, creation in one transaction, views,
//!   cancel, rollback), and the conversions between stored rows and views.
//! - [`deployer`]: the actor that rolls jobs out wave by wave.
//! - The host side (dispatch, following the agent's job, retries) is the host actor's
//!   ([`crate::fleet::actor`], rules in [`crate::fleet::work`]); what it reports is written by
//!   the recorder ([`crate::fleet::recorder`]), which tells the deployer.

pub mod deployer;
pub mod maintenance;
pub mod scheduler;
pub mod windows;

use crate::api::AppError;
use crate::audit::Requester;
use crate::auth::access::Scope;
use crate::clock::rfc3339;
use crate::db::jobs::{JobRow, NewJobRow, TargetRow, TargetUpdate};
use crate::db::DbError;
use crate::fleet::work::Progress;
use crate::state::AppState;
use chrono::NaiveDateTime;
use shared::agent::PatchSelection;
use shared::fleet::LiveEvent;
use shared::ids::{HostId, JobId};
use shared::jobs::JobMode;
use shared::jobs::{
    JobDetail, JobRollback, JobState, JobStateEvent, JobSummary, JobTarget, JobTargetEvent, NewJob,
    TargetCounts, TargetState, WavePlan, MAX_JOB_HOSTS, MAX_JOB_PACKAGES,
};

/// Jobs listed at most.
const LIST_LIMIT: i64 = 200;
/// Longest job name.
const MAX_NAME: usize = 100;

/// A package name any supported package manager could accept: a letter or digit, then letters,
/// digits and `+ . _ @ -`, at most 128 characters. Each agent checks its own grammar again.
pub fn valid_package_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"+._@-".contains(c))
}

fn selection_str(s: PatchSelection) -> &'static str {
    match s {
        PatchSelection::All => "all",
        PatchSelection::Security => "security",
        PatchSelection::List => "list",
    }
}

/// Checks a new job's fields; the error names the field.
fn check(new: &NewJob) -> Result<WavePlan, AppError> {
    if new.hosts.is_empty() && new.groups.is_empty() {
        return Err(AppError::invalid(
            "hosts",
            "Choose at least one host or group.",
        ));
    }
    if new.hosts.len() > MAX_JOB_HOSTS || new.groups.len() > MAX_JOB_HOSTS {
        return Err(AppError::invalid(
            "hosts",
            format!("A job names at most {MAX_JOB_HOSTS} hosts."),
        ));
    }
    if new.name.trim().chars().count() > MAX_NAME || new.name.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "name",
            format!("A job name is at most {MAX_NAME} characters, without control characters."),
        ));
    }
    match new.selection {
        PatchSelection::List => {
            if new.packages.is_empty() || new.packages.len() > MAX_JOB_PACKAGES {
                return Err(AppError::invalid(
                    "packages",
                    format!("Name 1 to {MAX_JOB_PACKAGES} packages to apply."),
                ));
            }
            if let Some(bad) = new.packages.iter().find(|p| !valid_package_name(p)) {
                return Err(AppError::invalid(
                    "packages",
                    format!(
                        "{:?} is not a package name: a letter or digit, then letters, digits and + . _ @ -, at most 128 characters.",
                        bad.chars().take(64).collect::<String>()
                    ),
                ));
            }
            let mut seen = std::collections::HashSet::new();
            if let Some(dup) = new.packages.iter().find(|p| !seen.insert(p.as_str())) {
                return Err(AppError::invalid(
                    "packages",
                    format!("{dup} is named twice."),
                ));
            }
        }
        PatchSelection::All | PatchSelection::Security if !new.packages.is_empty() => {
            return Err(AppError::invalid(
                "packages",
                "Packages are named only with the selection \"list\".",
            ));
        }
        _ => {}
    }
    let plan = new.waves.clone().unwrap_or_default();
    plan.check().map_err(|m| AppError::invalid("waves", m))?;
    if plan.by_group && new.groups.is_empty() {
        return Err(AppError::invalid(
            "waves",
            "Waves by group follow the groups chosen: choose at least one group.",
        ));
    }
    if new.mode == JobMode::NextWindow
        && (plan.percents != [100] || plan.max_concurrency != 0 || plan.by_group)
    {
        return Err(AppError::invalid(
            "waves",
            "Waves apply to jobs run now; a job queued for maintenance windows runs each host in its own window.",
        ));
    }
    Ok(plan)
}

/// Outcome of resolving a job's hosts.
enum Resolved {
    /// Hosts in order, each with where it came from (0: named; `k`: the `k`-th group given).
    Hosts(Vec<(i64, u32)>),
    NoHost(i64),
    NoGroup(i64),
}

/// The job's hosts in order (named hosts first, then each group's members by name), each once;
/// a host or group the caller may not see is answered as missing.
fn resolve(
    c: &mut crate::db::DbConnection,
    scope: &Scope,
    new: &NewJob,
) -> Result<Resolved, DbError> {
    let visible = scope.host_ids(c)?;
    let visible: Option<std::collections::HashSet<i64>> = visible.map(|v| v.into_iter().collect());
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let wanted: Vec<i64> = new.hosts.iter().map(|h| h.0).collect();
    let existing: std::collections::HashSet<i64> = crate::db::hosts::existing(c, &wanted)?
        .into_iter()
        .collect();
    for h in &wanted {
        if !existing.contains(h) || visible.as_ref().is_some_and(|v| !v.contains(h)) {
            return Ok(Resolved::NoHost(*h));
        }
        if seen.insert(*h) {
            out.push((*h, 0));
        }
    }
    for (k, g) in (1u32..).zip(&new.groups) {
        if scope.groups().is_some_and(|mine| !mine.contains(&g.0))
            || !crate::db::hosts::group_exists(c, g.0)?
        {
            return Ok(Resolved::NoGroup(g.0));
        }
        for h in crate::db::hosts::members_by_name(c, g.0)? {
            if seen.insert(h) {
                out.push((h, k));
            }
        }
    }
    Ok(Resolved::Hosts(out))
}

/// Creates a job and starts rolling it out; audited.
pub async fn create(
    state: &AppState,
    scope: Scope,
    by: &Requester,
    new: NewJob,
) -> Result<JobDetail, AppError> {
    let plan = check(&new)?;
    let now = state.clock.now();
    let created_by = by.user_id;
    let to_resolve = new.clone();
    let hosts = state
        .db
        .run(move |c| resolve(c, &scope, &to_resolve))
        .await?;
    let hosts = match hosts {
        Resolved::Hosts(h) if h.is_empty() => {
            return Err(AppError::invalid(
                "groups",
                "The chosen groups have no hosts.",
            ))
        }
        Resolved::Hosts(h) => h,
        Resolved::NoHost(h) => return Err(AppError::NotFound(format!("no such host: {h}"))),
        Resolved::NoGroup(g) => return Err(AppError::NotFound(format!("no such group: {g}"))),
    };
    let (hosts, sources): (Vec<i64>, Vec<u32>) = hosts.into_iter().unzip();
    let window = new.mode == JobMode::NextWindow;
    if window {
        let missing = maintenance::hosts_without_window(state, hosts.clone()).await?;
        if !missing.is_empty() {
            let shown: Vec<&str> = missing.iter().take(5).map(String::as_str).collect();
            return Err(AppError::invalid(
                "mode",
                format!(
                    "{} of the chosen hosts have no maintenance window that will open ({}{}): add one, or run the job now.",
                    missing.len(),
                    shown.join(", "),
                    if missing.len() > shown.len() { ", …" } else { "" }
                ),
            ));
        }
    }
    let job_new = new.clone();
    let plan_w = plan.clone();
    let created = state
        .db
        .run(move |c| {
            let waves = if plan_w.by_group {
                WavePlan::by_source(&sources)
            } else {
                plan_w.assign(hosts.len())
            };
            let targets: Vec<(i64, i32)> = hosts
                .iter()
                .zip(&waves)
                .map(|(h, w)| (*h, i32::try_from(*w).unwrap_or(0)))
                .collect();
            let name = if job_new.name.trim().is_empty() {
                let what = match job_new.selection {
                    PatchSelection::All => "All patches".to_owned(),
                    PatchSelection::Security => "Security patches".to_owned(),
                    PatchSelection::List => job_new.packages.join(", "),
                };
                let mut name = format!(
                    "{what} on {} host{}",
                    hosts.len(),
                    if hosts.len() == 1 { "" } else { "s" }
                );
                if name.chars().count() > MAX_NAME {
                    name = name.chars().take(MAX_NAME - 1).collect::<String>() + "…";
                }
                name
            } else {
                job_new.name.trim().to_owned()
            };
            let packages = serde_json::to_string(&job_new.packages)
                .map_err(|e| DbError::Inconsistent(e.to_string()))?;
            let waves_json = serde_json::json!({
                "percents": plan_w.percents,
                "by_group": plan_w.by_group,
            })
            .to_string();
            let row = NewJobRow {
                name: &name,
                created_by,
                selection: selection_str(job_new.selection),
                packages_json: &packages,
                mode: job_new.mode.as_str(),
                status: if window {
                    JobState::Queued.as_str()
                } else {
                    JobState::Running.as_str()
                },
                waves_json: &waves_json,
                max_concurrency: i64::from(plan_w.max_concurrency),
                failure_threshold_pct: i32::from(plan_w.failure_threshold_pct),
                auto_rollback: plan_w.rollback_on_halt,
                created_at: now,
            };
            let first = if window {
                TargetState::Scheduled
            } else {
                TargetState::Waiting
            };
            let id = crate::db::jobs::create(c, &row, &targets, first.as_str())?;
            let job = crate::db::jobs::find(c, id)?
                .ok_or_else(|| DbError::Inconsistent("the job just created is gone".into()))?;
            let rows = crate::db::jobs::rows(c, id)?;
            Ok((job, rows))
        })
        .await?;
    let (job, rows) = created;
    let id = job.id;
    state
        .audit
        .note(
            by.success("job.created")
                .target(format!("job:{id}"))
                .details(serde_json::json!({
                    "name": job.name,
                    "mode": new.mode,
                    "hosts": rows.len(),
                    "selection": job.selection,
                    "packages": new.packages,
                    "waves": plan.percents,
                    "waves_by_group": plan.by_group,
                    "max_concurrency": plan.max_concurrency,
                    "failure_threshold_pct": plan.failure_threshold_pct,
                    "rollback_on_halt": plan.rollback_on_halt,
                })),
        )
        .await;
    state.fleet.deployer.do_send(deployer::Launch { job, rows });
    detail(state, Scope::all(), id).await
}

/// The stored wave shares and whether waves follow the groups (`{"percents": [...],
/// "by_group": …}`; a bare array of shares from before waves by group).
pub fn wave_shape(json: &str) -> (Vec<u8>, bool) {
    #[derive(serde::Deserialize)]
    struct Shape {
        percents: Vec<u8>,
        #[serde(default)]
        by_group: bool,
    }
    if let Ok(s) = serde_json::from_str::<Shape>(json) {
        return (s.percents, s.by_group);
    }
    (
        serde_json::from_str(json).unwrap_or_else(|_| vec![100]),
        false,
    )
}

/// A job's view from its row and its (visible) hosts' states.
fn summary(job: &JobRow, creator: Option<String>, states: &[(i32, String)]) -> JobSummary {
    let mut counts = TargetCounts::default();
    let mut current: Option<u32> = None;
    let wave_count = states
        .iter()
        .map(|(w, _)| u32::try_from(*w).unwrap_or(0) + 1)
        .max()
        .unwrap_or(0);
    for (wave, s) in states {
        counts.total += 1;
        let s: TargetState = s.parse().unwrap_or(TargetState::Failed);
        match s {
            TargetState::Waiting | TargetState::Scheduled | TargetState::RetryWait => {
                counts.pending += 1;
            }
            TargetState::Dispatching
            | TargetState::Queued
            | TargetState::Running
            | TargetState::RollingBack => counts.active += 1,
            TargetState::Succeeded => counts.succeeded += 1,
            TargetState::Partial | TargetState::Failed => counts.failed += 1,
            TargetState::Cancelled => counts.cancelled += 1,
            TargetState::RolledBack | TargetState::RollbackFailed => counts.rolled_back += 1,
        }
        if !s.is_final() {
            let w = u32::try_from(*wave).unwrap_or(0);
            current = Some(current.map_or(w, |c| c.min(w)));
        }
    }
    let state: JobState = job.status.parse().unwrap_or(JobState::Failed);
    JobSummary {
        id: JobId(job.id),
        name: job.name.clone(),
        created_by: creator,
        selection: serde_json::from_value(serde_json::Value::String(job.selection.clone()))
            .unwrap_or(PatchSelection::All),
        packages: serde_json::from_str(&job.packages_json).unwrap_or_default(),
        mode: if job.mode == JobMode::NextWindow.as_str() {
            JobMode::NextWindow
        } else {
            JobMode::Now
        },
        waves: WavePlan {
            percents: wave_shape(&job.waves_json).0,
            by_group: wave_shape(&job.waves_json).1,
            max_concurrency: u32::try_from(job.max_concurrency).unwrap_or(0),
            failure_threshold_pct: u8::try_from(job.failure_threshold_pct).unwrap_or(100),
            rollback_on_halt: job.auto_rollback,
        },
        wave_count,
        state,
        halt_reason: job.halted_reason.clone(),
        current_wave: if state.is_finished() { None } else { current },
        counts,
        created_at: rfc3339(job.created_at),
        started_at: job.started_at.map(rfc3339),
        finished_at: job.finished_at.map(rfc3339),
    }
}

/// The view of one host's row.
fn target_view(r: &TargetRow, hostname: String) -> JobTarget {
    let p = progress_of(r);
    JobTarget {
        host_id: HostId(r.host_id),
        hostname,
        wave: u32::try_from(r.wave).unwrap_or(0),
        state: p.state,
        attempt: p.attempt,
        agent_job_id: p.agent_job_id,
        rollback_agent_job_id: p.rollback_agent_job_id,
        next_retry_at: p.next_retry_at.map(rfc3339),
        results: p.results,
        log_tail: p.log_tail,
        error: p.error,
        started_at: p.started_at.map(rfc3339),
        finished_at: p.finished_at.map(rfc3339),
    }
}

/// A host's row as its actor continues it (after a restart).
pub fn progress_of(r: &TargetRow) -> Progress {
    Progress {
        state: r.status.parse().unwrap_or(TargetState::Failed),
        attempt: u32::try_from(r.attempt).unwrap_or(0),
        agent_job_id: r.agent_job_id.clone(),
        rollback_agent_job_id: r.rollback_agent_job_id.clone(),
        next_retry_at: r.next_retry_at,
        results: r
            .results_json
            .as_deref()
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default(),
        log_tail: r
            .log_tail
            .as_deref()
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default(),
        error: r.error.clone(),
        started_at: r.started_at,
        finished_at: r.finished_at,
    }
}

/// The stored form of a host's row.
pub fn target_update(p: &Progress) -> TargetUpdate {
    TargetUpdate {
        status: p.state.as_str().to_owned(),
        agent_job_id: p.agent_job_id.clone(),
        attempt: i32::try_from(p.attempt).unwrap_or(i32::MAX),
        next_retry_at: p.next_retry_at,
        results_json: serde_json::to_string(&p.results).ok(),
        log_tail: serde_json::to_string(&p.log_tail).ok(),
        error: p.error.clone(),
        rollback_agent_job_id: p.rollback_agent_job_id.clone(),
        started_at: p.started_at,
        finished_at: p.finished_at,
    }
}

/// Announces a host's new state in a job on the live stream.
pub fn publish_target(
    state: &AppState,
    job_id: i64,
    host_id: i64,
    target: TargetState,
    error: Option<String>,
) {
    let _ = state.fleet.live.send(LiveEvent::JobTarget(JobTargetEvent {
        job_id: JobId(job_id),
        host_id: HostId(host_id),
        state: target,
        progress: None,
        line: None,
        package: None,
        error,
        at: rfc3339(state.clock.now()),
    }));
}

/// The live event of a job's state.
pub fn job_state_event(
    job_id: i64,
    state: JobState,
    current_wave: Option<u32>,
    halt_reason: Option<String>,
    hosts: &[i64],
    at: NaiveDateTime,
) -> JobStateEvent {
    JobStateEvent {
        job_id: JobId(job_id),
        state,
        current_wave,
        halt_reason,
        host_ids: hosts.iter().map(|h| HostId(*h)).collect(),
        at: rfc3339(at),
    }
}

/// An audit record of the deployer's own (a halt, an end).
pub async fn audit_system(state: &AppState, action: &str, job_id: i64, details: serde_json::Value) {
    state
        .audit
        .note(
            Requester::named("deployer", None)
                .success(action)
                .target(format!("job:{job_id}"))
                .details(details),
        )
        .await;
}

/// Jobs with at least one host the caller may see, newest first.
pub async fn list(state: &AppState, scope: Scope) -> Result<Vec<JobSummary>, AppError> {
    Ok(state
        .db
        .run(move |c| {
            let visible = scope.host_ids(c)?;
            let jobs = crate::db::jobs::list(c, visible.as_deref(), LIST_LIMIT)?;
            let mut out = Vec::with_capacity(jobs.len());
            for (job, states) in jobs {
                let creator = crate::db::jobs::creator_name(c, job.created_by)?;
                out.push(summary(&job, creator, &states));
            }
            Ok(out)
        })
        .await?)
}

/// One job with its hosts the caller may see; missing when they see none of them.
pub async fn detail(state: &AppState, scope: Scope, id: i64) -> Result<JobDetail, AppError> {
    state
        .db
        .run(move |c| {
            let Some(job) = crate::db::jobs::find(c, id)? else {
                return Ok(None);
            };
            let visible = scope.host_ids(c)?;
            let rows = crate::db::jobs::targets(c, id, visible.as_deref())?;
            if rows.is_empty() && visible.is_some() {
                return Ok(None);
            }
            let states: Vec<(i32, String)> = rows
                .iter()
                .map(|(r, _)| (r.wave, r.status.clone()))
                .collect();
            let creator = crate::db::jobs::creator_name(c, job.created_by)?;
            Ok(Some(JobDetail {
                job: summary(&job, creator, &states),
                targets: rows
                    .into_iter()
                    .map(|(r, name)| target_view(&r, name))
                    .collect(),
            }))
        })
        .await?
        .ok_or_else(|| AppError::NotFound("no such job".into()))
}

/// Checks that the caller may act on the whole job: an Operator only on jobs all of whose hosts
/// are in their groups.
async fn may_act(state: &AppState, scope: &Scope, id: i64) -> Result<JobDetail, AppError> {
    let seen = detail(state, scope.clone(), id).await?;
    if !scope.is_all() {
        let all = detail(state, Scope::all(), id).await?;
        if all.targets.len() != seen.targets.len() {
            return Err(AppError::Forbidden(
                "This job covers hosts outside your groups; an Admin can act on it.".into(),
            ));
        }
    }
    Ok(seen)
}

/// Cancels what a running job has not started (hosts already being patched finish); audited.
pub async fn cancel(
    state: &AppState,
    scope: Scope,
    by: &Requester,
    id: i64,
) -> Result<JobDetail, AppError> {
    let before = may_act(state, &scope, id).await?;
    if before.job.state.is_finished() {
        return Err(AppError::Conflict(format!(
            "The job has already ended ({}).",
            before.job.state.as_str()
        )));
    }
    state
        .fleet
        .deployer
        .send(deployer::Cancel(id))
        .await
        .map_err(|e| AppError::Internal(format!("the deployer is gone: {e}")))?
        .map_err(AppError::Conflict)?;
    state
        .audit
        .note(by.success("job.cancelled").target(format!("job:{id}")))
        .await;
    detail(state, scope, id).await
}

/// Rolls back a job on the chosen hosts (every host it changed when none is named), each through
/// its agent's rollback of the job's agent job; audited.
pub async fn rollback(
    state: &AppState,
    scope: Scope,
    by: &Requester,
    id: i64,
    body: JobRollback,
) -> Result<JobDetail, AppError> {
    let job = may_act(state, &scope, id).await?;
    if !job.job.state.is_finished() {
        return Err(AppError::Conflict(
            "The job is still running: wait for it to end, or cancel it, before rolling it back."
                .into(),
        ));
    }
    let can_roll = |t: &JobTarget| {
        t.agent_job_id.is_some()
            && matches!(
                t.state,
                TargetState::Succeeded
                    | TargetState::Partial
                    | TargetState::Failed
                    | TargetState::RollbackFailed
            )
    };
    let mut chosen = Vec::new();
    if body.hosts.is_empty() {
        chosen.extend(job.targets.iter().filter(|t| can_roll(t)));
        if chosen.is_empty() {
            return Err(AppError::Conflict(
                "Nothing to roll back: no host of this job was changed by its agent.".into(),
            ));
        }
    } else {
        for h in &body.hosts {
            let Some(t) = job.targets.iter().find(|t| t.host_id == *h) else {
                return Err(AppError::invalid(
                    "hosts",
                    format!("Host {h} is not part of this job."),
                ));
            };
            if !can_roll(t) {
                return Err(AppError::invalid(
                    "hosts",
                    format!(
                        "{} cannot be rolled back: it is {} and its agent changed nothing for this job.",
                        t.hostname,
                        t.state.as_str()
                    ),
                ));
            }
            chosen.push(t);
        }
    }
    let hosts: Vec<i64> = chosen.iter().map(|t| t.host_id.0).collect();
    state
        .audit
        .note(
            by.success("job.rollback_requested")
                .target(format!("job:{id}"))
                .details(serde_json::json!({
                    "hosts": hosts,
                })),
        )
        .await;
    state
        .fleet
        .deployer
        .do_send(deployer::Rollback { job_id: id, hosts });
    detail(state, scope, id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_the_agents_could_accept() {
        for ok in [
            "openssl",
            "libc6",
            "g++",
            "python3.11",
            "kernel-core",
            "lib32-glibc",
            "perl@5",
        ] {
            assert!(valid_package_name(ok), "{ok}");
        }
        for bad in [
            "",
            "-rf",
            "a b",
            "x;reboot",
            "../etc",
            "$(id)",
            "a/b",
            &"a".repeat(129),
        ] {
            assert!(!valid_package_name(bad), "{bad}");
        }
    }

    fn job(selection: PatchSelection, packages: &[&str]) -> NewJob {
        NewJob {
            name: String::new(),
            hosts: vec![HostId(1)],
            groups: vec![],
            selection,
            packages: packages.iter().map(|p| (*p).to_owned()).collect(),
            mode: JobMode::Now,
            waves: None,
        }
    }

    #[test]
    fn bad_jobs_are_refused_field_by_field() {
        let field = |r: Result<WavePlan, AppError>| match r {
            Err(AppError::BadRequest { details, .. }) => {
                details["field"].as_str().unwrap().to_owned()
            }
            other => panic!("{other:?}"),
        };
        let mut empty = job(PatchSelection::All, &[]);
        empty.hosts.clear();
        assert_eq!(field(check(&empty)), "hosts");
        assert_eq!(field(check(&job(PatchSelection::List, &[]))), "packages");
        assert_eq!(
            field(check(&job(PatchSelection::List, &["x;reboot"]))),
            "packages"
        );
        assert_eq!(
            field(check(&job(PatchSelection::List, &["a", "a"]))),
            "packages"
        );
        assert_eq!(field(check(&job(PatchSelection::All, &["a"]))), "packages");
        let mut waves = job(PatchSelection::All, &[]);
        waves.waves = Some(WavePlan {
            percents: vec![50, 40],
            ..WavePlan::default()
        });
        assert_eq!(field(check(&waves)), "waves");
        assert!(check(&job(PatchSelection::Security, &[])).is_ok());
    }
}
