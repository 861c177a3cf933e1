//! Patch jobs and their hosts (`patch_jobs`, `patch_job_hosts`): created in one transaction,
//! then each host's row rewritten whole as its actor reports, and the job's own state as the
//! deployer decides it. See [`crate::deploy`].

use super::schema::{hosts as h, patch_job_hosts as t, patch_jobs as j, users as u};
use super::{DbConnection, DbError};
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = j)]
pub struct JobRow {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Creator.
    pub created_by: Option<i64>,
    /// `all`, `security`, `list`.
    pub selection: String,
    /// Package names (JSON array).
    pub packages_json: String,
    /// `now`, `next_window`.
    pub mode: String,
    /// A [`shared::jobs::JobState`].
    pub status: String,
    /// Wave shares (JSON array of percents).
    pub waves_json: String,
    /// Hosts at once at most (0: no limit).
    pub max_concurrency: i64,
    /// Failure threshold of a wave (percent).
    pub failure_threshold_pct: i32,
    /// Roll back the wave that halts the job.
    pub auto_rollback: bool,
    /// Why it halted or ended so.
    pub halted_reason: Option<String>,
    /// Created.
    pub created_at: NaiveDateTime,
    /// First host started.
    pub started_at: Option<NaiveDateTime>,
    /// Ended.
    pub finished_at: Option<NaiveDateTime>,
}

/// A new job.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = j)]
pub struct NewJobRow<'a> {
    /// Name.
    pub name: &'a str,
    /// Creator.
    pub created_by: Option<i64>,
    /// `all`, `security`, `list`.
    pub selection: &'a str,
    /// Package names (JSON array).
    pub packages_json: &'a str,
    /// `now`, `next_window`.
    pub mode: &'a str,
    /// Initial state.
    pub status: &'a str,
    /// Wave shares (JSON).
    pub waves_json: &'a str,
    /// Hosts at once at most.
    pub max_concurrency: i64,
    /// Failure threshold (percent).
    pub failure_threshold_pct: i32,
    /// Roll back a halting wave.
    pub auto_rollback: bool,
    /// Created.
    pub created_at: NaiveDateTime,
}

/// One host of a job as stored.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = t)]
pub struct TargetRow {
    /// Row id.
    pub id: i64,
    /// Job.
    pub job_id: i64,
    /// Host.
    pub host_id: i64,
    /// Wave (0-based).
    pub wave: i32,
    /// A [`shared::jobs::TargetState`].
    pub status: String,
    /// The agent's job of the latest attempt.
    pub agent_job_id: Option<String>,
    /// Attempts so far.
    pub attempt: i32,
    /// Next attempt.
    pub next_retry_at: Option<NaiveDateTime>,
    /// Per-package results (JSON).
    pub results_json: Option<String>,
    /// Log tail (JSON array of lines).
    pub log_tail: Option<String>,
    /// Why it failed or waits.
    pub error: Option<String>,
    /// The agent's job of the rollback.
    pub rollback_agent_job_id: Option<String>,
    /// Created.
    pub created_at: NaiveDateTime,
    /// Started.
    pub started_at: Option<NaiveDateTime>,
    /// Ended.
    pub finished_at: Option<NaiveDateTime>,
}

/// Everything about a host's row that changes as it runs, written whole.
#[derive(Debug, Clone, PartialEq, Eq, AsChangeset)]
#[diesel(table_name = t, treat_none_as_null = true)]
pub struct TargetUpdate {
    /// State.
    pub status: String,
    /// The agent's job of the latest attempt.
    pub agent_job_id: Option<String>,
    /// Attempts so far.
    pub attempt: i32,
    /// Next attempt.
    pub next_retry_at: Option<NaiveDateTime>,
    /// Per-package results (JSON).
    pub results_json: Option<String>,
    /// Log tail (JSON).
    pub log_tail: Option<String>,
    /// Why it failed or waits.
    pub error: Option<String>,
    /// The agent's job of the rollback.
    pub rollback_agent_job_id: Option<String>,
    /// Started.
    pub started_at: Option<NaiveDateTime>,
    /// Ended.
    pub finished_at: Option<NaiveDateTime>,
}

impl TargetRow {
    /// The changing part of this row.
    pub fn update(&self) -> TargetUpdate {
        TargetUpdate {
            status: self.status.clone(),
            agent_job_id: self.agent_job_id.clone(),
            attempt: self.attempt,
            next_retry_at: self.next_retry_at,
            results_json: self.results_json.clone(),
            log_tail: self.log_tail.clone(),
            error: self.error.clone(),
            rollback_agent_job_id: self.rollback_agent_job_id.clone(),
            started_at: self.started_at,
            finished_at: self.finished_at,
        }
    }
}

/// Creates a job and its hosts' rows (`(host id, wave)`, all in `target_status`) in one
/// transaction; answers its id.
pub fn create(
    conn: &mut DbConnection,
    job: &NewJobRow<'_>,
    targets: &[(i64, i32)],
    target_status: &str,
) -> Result<i64, DbError> {
    super::transaction(conn, |c| {
        let id: i64 = diesel::insert_into(j::table)
            .values(job)
            .returning(j::id)
            .get_result(c)?;
        for chunk in targets.chunks(500) {
            let rows: Vec<_> = chunk
                .iter()
                .map(|(host, wave)| {
                    (
                        t::job_id.eq(id),
                        t::host_id.eq(*host),
                        t::wave.eq(*wave),
                        t::status.eq(target_status),
                        t::attempt.eq(0),
                        t::created_at.eq(job.created_at),
                    )
                })
                .collect();
            insert_rows!(c, t::table, rows);
        }
        Ok(id)
    })
}

/// One job.
pub fn find(conn: &mut DbConnection, id: i64) -> Result<Option<JobRow>, DbError> {
    Ok(j::table
        .find(id)
        .select(JobRow::as_select())
        .first(conn)
        .optional()?)
}

/// The name of a job's creator.
pub fn creator_name(conn: &mut DbConnection, user: Option<i64>) -> Result<Option<String>, DbError> {
    let Some(user) = user else { return Ok(None) };
    Ok(u::table
        .find(user)
        .select(u::username)
        .first(conn)
        .optional()?)
}

/// A job's hosts with their names, by wave then name; only `visible` hosts when given.
pub fn targets(
    conn: &mut DbConnection,
    job_id: i64,
    visible: Option<&[i64]>,
) -> Result<Vec<(TargetRow, String)>, DbError> {
    let mut q = t::table
        .inner_join(h::table)
        .filter(t::job_id.eq(job_id))
        .select((TargetRow::as_select(), h::display_name))
        .order((t::wave.asc(), h::display_name.asc()))
        .into_boxed();
    if let Some(ids) = visible {
        q = q.filter(t::host_id.eq_any(ids.to_vec()));
    }
    Ok(q.load(conn)?)
}

/// The (wave, state) of each of a job's hosts.
pub type WaveStates = Vec<(i32, String)>;

/// Jobs, newest first, with the states of their (visible) hosts; with `visible`, only jobs that
/// have at least one of those hosts.
pub fn list(
    conn: &mut DbConnection,
    visible: Option<&[i64]>,
    limit: i64,
) -> Result<Vec<(JobRow, WaveStates)>, DbError> {
    let mut q = j::table
        .select(JobRow::as_select())
        .order(j::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(ids) = visible {
        let mine = t::table
            .filter(t::host_id.eq_any(ids.to_vec()))
            .select(t::job_id);
        q = q.filter(j::id.eq_any(mine));
    }
    let jobs: Vec<JobRow> = q.load(conn)?;
    let ids: Vec<i64> = jobs.iter().map(|x| x.id).collect();
    let mut states = t::table
        .filter(t::job_id.eq_any(ids))
        .select((t::job_id, t::wave, t::status))
        .into_boxed();
    if let Some(v) = visible {
        states = states.filter(t::host_id.eq_any(v.to_vec()));
    }
    let states: Vec<(i64, i32, String)> = states.load(conn)?;
    let mut by_job: std::collections::HashMap<i64, WaveStates> = std::collections::HashMap::new();
    for (job, wave, status) in states {
        by_job.entry(job).or_default().push((wave, status));
    }
    Ok(jobs
        .into_iter()
        .map(|x| {
            let s = by_job.remove(&x.id).unwrap_or_default();
            (x, s)
        })
        .collect())
}

/// Rewrites the changing part of a host's row.
pub fn update_target(
    conn: &mut DbConnection,
    job_id: i64,
    host_id: i64,
    update: &TargetUpdate,
) -> Result<(), DbError> {
    diesel::update(
        t::table
            .filter(t::job_id.eq(job_id))
            .filter(t::host_id.eq(host_id)),
    )
    .set(update)
    .execute(conn)?;
    Ok(())
}

/// Several hosts' rows in one transaction.
pub fn update_targets(
    conn: &mut DbConnection,
    updates: &[(i64, i64, TargetUpdate)],
) -> Result<(), DbError> {
    super::transaction(conn, |c| {
        for (job, host, update) in updates {
            update_target(c, *job, *host, update)?;
        }
        Ok(())
    })
}

/// Sets a job's state.
pub fn set_state(
    conn: &mut DbConnection,
    id: i64,
    status: &str,
    reason: Option<&str>,
    started_at: Option<NaiveDateTime>,
    finished_at: Option<NaiveDateTime>,
) -> Result<(), DbError> {
    diesel::update(j::table.find(id))
        .set((
            j::status.eq(status),
            j::halted_reason.eq(reason),
            j::started_at.eq(started_at),
            j::finished_at.eq(finished_at),
        ))
        .execute(conn)?;
    Ok(())
}

/// Jobs not finished (queued or running), with all their hosts' rows: what the deployer takes
/// up again at start.
pub fn unfinished(conn: &mut DbConnection) -> Result<Vec<(JobRow, Vec<TargetRow>)>, DbError> {
    let jobs: Vec<JobRow> = j::table
        .filter(j::status.eq_any(["queued", "running"]))
        .select(JobRow::as_select())
        .order(j::id.asc())
        .load(conn)?;
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        let rows: Vec<TargetRow> = t::table
            .filter(t::job_id.eq(job.id))
            .select(TargetRow::as_select())
            .order(t::id.asc())
            .load(conn)?;
        out.push((job, rows));
    }
    Ok(out)
}

/// Hosts' rows of a job with their hosts' names (every host).
pub fn rows(conn: &mut DbConnection, job_id: i64) -> Result<Vec<TargetRow>, DbError> {
    Ok(t::table
        .filter(t::job_id.eq(job_id))
        .select(TargetRow::as_select())
        .order(t::id.asc())
        .load(conn)?)
}
