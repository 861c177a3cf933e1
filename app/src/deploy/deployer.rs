//! The deployer: one actor that rolls every running job out, wave by wave. It releases a wave's
//! hosts to their [`HostActor`](crate::fleet::actor::HostActor)s (at most the plan's concurrency
//! at once), hears back from the recorder as each host's row changes, halts a job whose wave
//! fails past its threshold or whose patched host stops answering, starts the next wave when one
//! has succeeded, and ends the job. Everything it decides is written before it is announced; at
//! start it takes up the unfinished jobs where the database left them (the host actors reconcile
//! their rows with their agents).

use super::{audit_system, job_state_event};
use crate::db::jobs::{JobRow, TargetRow};
use crate::fleet::supervisor::{Assign, Withdraw};
use crate::fleet::work::{OrderKind, Progress};
use crate::state::AppState;
use actix::prelude::*;
use shared::agent::{ApplyRequest, PatchSelection};
use shared::jobs::{JobState, TargetState, WavePlan};
use shared::vocab::HostStatus;
use std::collections::BTreeMap;

/// A host's row as the deployer follows it.
#[derive(Debug, Clone)]
struct Row {
    wave: u32,
    state: TargetState,
    /// Handed to its actor (its state may not say so yet).
    released: bool,
    /// The agent job that changed the host, for a rollback.
    agent_job_id: Option<String>,
    /// A rollback was asked for.
    rollback_sent: bool,
}

/// A job being rolled out.
#[derive(Debug)]
struct Run {
    id: i64,
    request: ApplyRequest,
    plan: WavePlan,
    /// By host, in the job's order (row ids rise in the order hosts were chosen).
    rows: BTreeMap<i64, Row>,
    order: Vec<i64>,
    wave: u32,
    state: JobState,
    halt: Option<String>,
    started_at: Option<chrono::NaiveDateTime>,
    /// Queued for maintenance windows: every host released at once, each starting in its own
    /// window; no waves.
    window: bool,
}

impl Run {
    fn from_rows(job: &JobRow, rows: &[TargetRow]) -> Result<Self, String> {
        let selection: PatchSelection =
            serde_json::from_value(serde_json::Value::String(job.selection.clone()))
                .map_err(|e| format!("job {}: selection: {e}", job.id))?;
        let packages: Vec<String> = serde_json::from_str(&job.packages_json)
            .map_err(|e| format!("job {}: packages: {e}", job.id))?;
        let (percents, by_group) = super::wave_shape(&job.waves_json);
        let plan = WavePlan {
            percents,
            by_group,
            max_concurrency: u32::try_from(job.max_concurrency).unwrap_or(0),
            failure_threshold_pct: u8::try_from(job.failure_threshold_pct).unwrap_or(100),
            rollback_on_halt: job.auto_rollback,
        };
        let mut ordered: Vec<&TargetRow> = rows.iter().collect();
        ordered.sort_by_key(|r| r.id);
        let mut map = BTreeMap::new();
        let mut order = Vec::with_capacity(ordered.len());
        for r in ordered {
            let state: TargetState = r.status.parse()?;
            map.insert(
                r.host_id,
                Row {
                    wave: u32::try_from(r.wave).unwrap_or(0),
                    state,
                    released: !matches!(state, TargetState::Waiting | TargetState::Scheduled),
                    agent_job_id: r.agent_job_id.clone(),
                    rollback_sent: r.rollback_agent_job_id.is_some(),
                },
            );
            order.push(r.host_id);
        }
        let state: JobState = job.status.parse()?;
        let wave = map
            .values()
            .filter(|r| !r.state.is_final())
            .map(|r| r.wave)
            .min()
            .unwrap_or(0);
        Ok(Self {
            id: job.id,
            request: ApplyRequest {
                selection,
                packages,
            },
            plan,
            rows: map,
            order,
            wave,
            state,
            halt: job.halted_reason.clone(),
            started_at: job.started_at,
            window: job.mode == shared::jobs::JobMode::NextWindow.as_str(),
        })
    }

    fn waves(&self) -> u32 {
        self.rows.values().map(|r| r.wave + 1).max().unwrap_or(0)
    }

    fn in_wave(&self, wave: u32) -> impl Iterator<Item = (&i64, &Row)> {
        self.rows.iter().filter(move |(_, r)| r.wave == wave)
    }
}

/// What the deployer decided for a job, to write and announce.
#[derive(Debug, Default)]
struct Decision {
    /// Hosts to hand to their actors, with their row as it stands.
    release: Vec<(i64, Progress)>,
    /// Hosts whose row goes to `cancelled` without having run.
    cancel: Vec<i64>,
    /// Hosts to roll back (the agent job undone).
    rollback: Vec<(i64, String)>,
    /// Tell the actors to drop what they hold of the job.
    withdraw: bool,
    /// The job's new state, when it changes.
    state: Option<JobState>,
}

/// The failed share of a wave above which it halts the job: `failed` of `total` above
/// `threshold_pct` percent.
pub fn wave_fails(failed: usize, total: usize, threshold_pct: u8) -> bool {
    total > 0 && failed * 100 > usize::from(threshold_pct) * total
}

/// The state a job ends in from its hosts' final states.
pub fn final_state(states: impl Iterator<Item = TargetState>) -> JobState {
    let (mut ok, mut bad, mut n) = (0usize, 0usize, 0usize);
    for s in states {
        n += 1;
        match s {
            TargetState::Succeeded => ok += 1,
            TargetState::Cancelled => {}
            _ => bad += 1,
        }
    }
    if n > 0 && ok == n {
        JobState::Succeeded
    } else if ok == 0 && bad > 0 {
        JobState::Failed
    } else if ok == 0 {
        JobState::Cancelled
    } else {
        JobState::Partial
    }
}

/// Decides what a running job does next. Pure: the caller writes and announces.
fn advance(run: &mut Run) -> Decision {
    let mut d = Decision::default();
    if run.state.is_finished() {
        return d;
    }
    if run.window {
        // Every host at once; each starts in its own window.
        for (host, row) in &mut run.rows {
            if !row.released && matches!(row.state, TargetState::Waiting | TargetState::Scheduled) {
                row.released = true;
                let mut p = Progress::waiting();
                p.state = TargetState::Scheduled;
                d.release.push((*host, p));
            }
        }
        if run.rows.values().all(|r| r.state.is_final()) {
            let end = final_state(run.rows.values().map(|r| r.state));
            run.state = end;
            d.state = Some(end);
        }
        return d;
    }
    loop {
        let wave = run.wave;
        let total = run.in_wave(wave).count();
        let failed = run
            .in_wave(wave)
            .filter(|(_, r)| r.state.is_failure() || r.state == TargetState::RetryWait)
            .count();
        if wave_fails(failed, total, run.plan.failure_threshold_pct) {
            let reason = format!(
                "Wave {} of {}: {failed} of {total} hosts failed, above the {} % threshold; \
                 later waves were not started.",
                wave + 1,
                run.waves(),
                run.plan.failure_threshold_pct
            );
            halt(run, reason, &mut d);
            return d;
        }
        let limit = match run.plan.max_concurrency {
            0 => usize::MAX,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let mut busy = run
            .in_wave(wave)
            .filter(|(_, r)| r.released && !r.state.is_final())
            .count();
        for host in &run.order {
            if busy >= limit {
                break;
            }
            let Some(row) = run.rows.get_mut(host) else {
                continue;
            };
            if row.wave == wave && !row.released && row.state == TargetState::Waiting {
                row.released = true;
                busy += 1;
                d.release.push((*host, Progress::waiting()));
            }
        }
        if run.started_at.is_none() && !d.release.is_empty() {
            run.state = JobState::Running;
        }
        let done = run.in_wave(wave).all(|(_, r)| r.state.is_final());
        if !done {
            return d;
        }
        if wave + 1 < run.waves() {
            run.wave += 1;
            continue;
        }
        let end = final_state(run.rows.values().map(|r| r.state));
        run.state = end;
        d.state = Some(end);
        return d;
    }
}

/// Halts `run` for `reason`: what has not started is cancelled, the actors drop what they hold,
/// and with `rollback_on_halt` the halting wave's changed hosts are rolled back.
fn halt(run: &mut Run, reason: String, d: &mut Decision) {
    run.state = JobState::Halted;
    run.halt = Some(reason);
    d.state = Some(JobState::Halted);
    d.withdraw = true;
    for (host, row) in &mut run.rows {
        if !row.released && row.state == TargetState::Waiting {
            row.state = TargetState::Cancelled;
            d.cancel.push(*host);
        }
    }
    rollback_halted_wave(run, d);
}

/// With `rollback_on_halt`, the halted wave's hosts that finished with changes are rolled back
/// (those still running are rolled back when they finish).
fn rollback_halted_wave(run: &mut Run, d: &mut Decision) {
    if !(run.state == JobState::Halted && run.plan.rollback_on_halt) {
        return;
    }
    let wave = run.wave;
    for (host, row) in &mut run.rows {
        if row.wave == wave
            && !row.rollback_sent
            && matches!(
                row.state,
                TargetState::Succeeded | TargetState::Partial | TargetState::Failed
            )
        {
            if let Some(agent_job) = row.agent_job_id.clone() {
                row.rollback_sent = true;
                d.rollback.push((*host, agent_job));
            }
        }
    }
}

/// The deployer actor.
#[derive(Default)]
pub struct Deployer {
    state: Option<AppState>,
    runs: BTreeMap<i64, Run>,
}

impl Actor for Deployer {
    type Context = Context<Self>;
}

impl Deployer {
    /// Hands out and writes a decision for job `job_id`, then announces it.
    fn apply(&mut self, job_id: i64, d: Decision, ctx: &mut Context<Self>) {
        let Some(state) = self.state.clone() else {
            return;
        };
        let Some(run) = self.runs.get_mut(&job_id) else {
            return;
        };
        for (host, progress) in d.release {
            state.fleet.supervisor.do_send(Assign {
                host_id: host,
                job_id,
                kind: OrderKind::Apply(run.request.clone()),
                progress,
                in_window: run.window,
            });
        }
        if !d.rollback.is_empty() {
            let hosts = d.rollback.iter().map(|(h, _)| *h).collect();
            actix_web::rt::spawn(roll_back(state.clone(), job_id, hosts));
        }
        if d.withdraw {
            state.fleet.supervisor.do_send(Withdraw { job_id });
        }
        let now = state.clock.now();
        let started = run.started_at.is_none() && run.state != JobState::Queued;
        if started {
            run.started_at = Some(now);
        }
        if d.cancel.is_empty() && d.state.is_none() && !started {
            return;
        }
        let job_state = d.state;
        let reason = run.halt.clone();
        let started_at = run.started_at;
        let wave = (!run.state.is_finished()).then_some(run.wave);
        let hosts = run.order.clone();
        let cancel = d.cancel;
        if run.state.is_finished() && !(run.state == JobState::Halted && run.plan.rollback_on_halt)
        {
            // What still runs of a finished job is recorded by the recorder; nothing is left
            // to decide.
            self.runs.remove(&job_id);
        }
        let st = state.clone();
        ctx.spawn(
            async move {
                let finished_at = job_state.filter(|s| s.is_finished()).map(|_| now);
                let written = st
                    .db
                    .run({
                        let (cancel, reason) = (cancel.clone(), reason.clone());
                        move |c| {
                            let mut cancelled = Progress::waiting();
                            cancelled.state = TargetState::Cancelled;
                            cancelled.error =
                                Some("Not started: the job halted or was cancelled.".into());
                            cancelled.finished_at = Some(now);
                            let update = super::target_update(&cancelled);
                            let rows: Vec<_> = cancel
                                .iter()
                                .map(|h| (job_id, *h, update.clone()))
                                .collect();
                            crate::db::jobs::update_targets(c, &rows)?;
                            let Some(job) = crate::db::jobs::find(c, job_id)? else {
                                return Ok(());
                            };
                            let status = job_state
                                .map_or_else(|| job.status.clone(), |s| s.as_str().to_owned());
                            crate::db::jobs::set_state(
                                c,
                                job_id,
                                &status,
                                reason.as_deref(),
                                job.started_at.or(started_at),
                                job.finished_at.or(finished_at),
                            )
                        }
                    })
                    .await;
                if let Err(e) = written {
                    tracing::error!(job_id, error = %e, "recording the job's progress failed");
                    return;
                }
                for host in &cancel {
                    super::publish_target(&st, job_id, *host, TargetState::Cancelled, None);
                }
                if started {
                    audit_system(&st, "job.started", job_id, serde_json::json!({})).await;
                }
                if let Some(s) = job_state {
                    let _ =
                        st.fleet
                            .live
                            .send(shared::fleet::LiveEvent::JobState(job_state_event(
                                job_id,
                                s,
                                wave,
                                reason.clone(),
                                &hosts,
                                now,
                            )));
                    if s.is_finished() {
                        let action = match s {
                            JobState::Halted => "job.halted",
                            JobState::Cancelled => "job.cancel_applied",
                            _ => "job.finished",
                        };
                        audit_system(
                            &st,
                            action,
                            job_id,
                            serde_json::json!({ "state": s, "reason": reason }),
                        )
                        .await;
                    }
                }
            }
            .into_actor(self),
        );
    }

    fn take_up(&mut self, job: &JobRow, rows: &[TargetRow], ctx: &mut Context<Self>) {
        let Some(state) = self.state.clone() else {
            return;
        };
        let mut run = match Run::from_rows(job, rows) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(job_id = job.id, error = %e, "a stored job cannot be read; left as it is");
                return;
            }
        };
        // Rows already with their actors before a restart are handed back as they stand; the
        // actors reconcile them with their agents (same idempotency keys: nothing runs twice).
        for r in rows {
            let Ok(s) = r.status.parse::<TargetState>() else {
                continue;
            };
            if s.is_final() || matches!(s, TargetState::Waiting | TargetState::Scheduled) {
                continue;
            }
            let progress = super::progress_of(r);
            let kind = if s == TargetState::RollingBack {
                match &r.agent_job_id {
                    Some(of) => OrderKind::Rollback { of: of.clone() },
                    None => continue,
                }
            } else {
                OrderKind::Apply(run.request.clone())
            };
            state.fleet.supervisor.do_send(Assign {
                host_id: r.host_id,
                job_id: job.id,
                in_window: run.window && matches!(kind, OrderKind::Apply(_)),
                kind,
                progress,
            });
        }
        let id = run.id;
        let d = advance(&mut run);
        self.runs.insert(id, run);
        self.apply(id, d, ctx);
    }
}

/// Gives the deployer the application state and takes up unfinished jobs.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach(pub AppState);

impl Handler<Attach> for Deployer {
    type Result = ();
    fn handle(&mut self, msg: Attach, ctx: &mut Context<Self>) {
        let state = msg.0;
        self.state = Some(state.clone());
        // Patched hosts that stop answering halt their job.
        let mut events = state.fleet.events.subscribe();
        let me = ctx.address();
        actix_web::rt::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(e) if e.status == HostStatus::Unreachable => {
                        if me.try_send(HostLost(i64::from(e.host_id))).is_err() && !me.connected() {
                            break;
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        ctx.spawn(
            async move { state.db.run(crate::db::jobs::unfinished).await }
                .into_actor(self)
                .map(|found, act, ctx| match found {
                    Ok(jobs) => {
                        if !jobs.is_empty() {
                            tracing::info!(jobs = jobs.len(), "taking up unfinished patch jobs");
                        }
                        for (job, rows) in jobs {
                            act.take_up(&job, &rows, ctx);
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "unfinished patch jobs could not be read")
                    }
                }),
        );
    }
}

/// A job was created: roll it out.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Launch {
    /// The job.
    pub job: JobRow,
    /// Its hosts' rows.
    pub rows: Vec<TargetRow>,
}

impl Handler<Launch> for Deployer {
    type Result = ();
    fn handle(&mut self, msg: Launch, ctx: &mut Context<Self>) {
        self.take_up(&msg.job, &msg.rows, ctx);
    }
}

/// A host's row changed (written by the recorder).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct TargetChanged {
    /// Job.
    pub job_id: i64,
    /// Host.
    pub host_id: i64,
    /// State now.
    pub state: TargetState,
    /// The agent job of the latest attempt.
    pub agent_job_id: Option<String>,
    /// The host asks for the job to halt (it stopped answering after it was patched).
    pub halt: Option<String>,
}

impl Handler<TargetChanged> for Deployer {
    type Result = ();
    fn handle(&mut self, msg: TargetChanged, ctx: &mut Context<Self>) {
        let Some(run) = self.runs.get_mut(&msg.job_id) else {
            return;
        };
        // A job queued for windows runs once its first host starts.
        let began = run.state == JobState::Queued && msg.state.is_active();
        if began {
            run.state = JobState::Running;
        }
        if let Some(row) = run.rows.get_mut(&msg.host_id) {
            row.state = msg.state;
            row.released = row.released || msg.state != TargetState::Waiting;
            if msg.agent_job_id.is_some() {
                row.agent_job_id = msg.agent_job_id;
            }
        }
        let mut d = Decision {
            state: began.then_some(JobState::Running),
            ..Decision::default()
        };
        if let Some(reason) = msg.halt {
            if !run.state.is_finished() {
                halt(run, reason, &mut d);
            }
        }
        if run.state == JobState::Halted {
            rollback_halted_wave(run, &mut d);
            let settled = run.rows.values().all(|r| {
                r.state.is_final()
                    && (!r.rollback_sent
                        || matches!(
                            r.state,
                            TargetState::RolledBack | TargetState::RollbackFailed
                        ))
            });
            if settled {
                // Nothing left to roll back for this run.
                let id = run.id;
                self.apply(id, d, ctx);
                self.runs.remove(&id);
                return;
            }
        } else {
            let more = advance(run);
            d.release = more.release;
            d.cancel.extend(more.cancel);
            d.rollback.extend(more.rollback);
            d.withdraw |= more.withdraw;
            d.state = more.state.or(d.state);
        }
        let id = run.id;
        self.apply(id, d, ctx);
    }
}

/// A host became unreachable.
#[derive(Message)]
#[rtype(result = "()")]
struct HostLost(i64);

impl Handler<HostLost> for Deployer {
    type Result = ();
    fn handle(&mut self, msg: HostLost, ctx: &mut Context<Self>) {
        let ids: Vec<i64> = self
            .runs
            .iter()
            .filter(|(_, run)| {
                !run.state.is_finished()
                    && run
                        .rows
                        .get(&msg.0)
                        .is_some_and(|r| r.state == TargetState::Succeeded)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(run) = self.runs.get_mut(&id) else {
                continue;
            };
            let mut d = Decision::default();
            halt(
                run,
                format!(
                    "Host {} stopped answering health checks after it was patched; later \
                     hosts were not started.",
                    msg.0
                ),
                &mut d,
            );
            self.apply(id, d, ctx);
        }
    }
}

/// Cancels what a job has not started; answers an error when the job is not running here.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct Cancel(pub i64);

impl Handler<Cancel> for Deployer {
    type Result = Result<(), String>;
    fn handle(&mut self, msg: Cancel, ctx: &mut Context<Self>) -> Self::Result {
        let Some(run) = self.runs.get_mut(&msg.0) else {
            return Err("the job has finished".into());
        };
        if run.state.is_finished() {
            return Err("the job has finished".into());
        }
        let mut d = Decision {
            withdraw: true,
            state: Some(JobState::Cancelled),
            ..Decision::default()
        };
        run.state = JobState::Cancelled;
        run.halt = Some("Cancelled: hosts not yet started were not patched.".into());
        for (host, row) in &mut run.rows {
            if !row.released && row.state == TargetState::Waiting {
                row.state = TargetState::Cancelled;
                d.cancel.push(*host);
            }
        }
        let id = msg.0;
        self.apply(id, d, ctx);
        Ok(())
    }
}

/// Rolls back hosts of a finished job (each host's agent undoes the job's change).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Rollback {
    /// Job.
    pub job_id: i64,
    /// Hosts (each undoes the agent job of its row).
    pub hosts: Vec<i64>,
}

impl Handler<Rollback> for Deployer {
    type Result = ();
    fn handle(&mut self, msg: Rollback, _: &mut Context<Self>) {
        let Some(state) = &self.state else { return };
        actix_web::rt::spawn(roll_back(state.clone(), msg.job_id, msg.hosts));
    }
}

/// Hands the rollback of job `job_id` on `hosts` to their actors, each with its row as stored
/// (the agent job it undoes is the row's).
async fn roll_back(state: AppState, job_id: i64, hosts: Vec<i64>) {
    let rows = match state
        .db
        .run(move |c| crate::db::jobs::rows(c, job_id))
        .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(job_id, error = %e, "the rows to roll back could not be read");
            return;
        }
    };
    for row in rows.iter().filter(|r| hosts.contains(&r.host_id)) {
        let Some(of) = row.agent_job_id.clone() else {
            continue;
        };
        state.fleet.supervisor.do_send(Assign {
            host_id: row.host_id,
            job_id,
            kind: OrderKind::Rollback { of },
            progress: super::progress_of(row),
            in_window: false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(percents: Vec<u8>, hosts: usize, threshold: u8, max: u32) -> Run {
        let plan = WavePlan {
            percents,
            by_group: false,
            max_concurrency: max,
            failure_threshold_pct: threshold,
            rollback_on_halt: true,
        };
        let waves = plan.assign(hosts);
        let mut rows = BTreeMap::new();
        let mut order = Vec::new();
        for (i, w) in waves.into_iter().enumerate() {
            let host = i64::try_from(i).unwrap() + 1;
            rows.insert(
                host,
                Row {
                    wave: w,
                    state: TargetState::Waiting,
                    released: false,
                    agent_job_id: None,
                    rollback_sent: false,
                },
            );
            order.push(host);
        }
        Run {
            id: 1,
            request: ApplyRequest {
                selection: PatchSelection::All,
                packages: vec![],
            },
            plan,
            rows,
            order,
            wave: 0,
            state: JobState::Running,
            halt: None,
            started_at: None,
            window: false,
        }
    }

    fn finish(run: &mut Run, host: i64, state: TargetState) {
        let row = run.rows.get_mut(&host).unwrap();
        row.state = state;
        row.agent_job_id = Some(format!("agent-{host}"));
    }

    #[test]
    fn a_wave_starts_only_when_the_previous_one_succeeded() {
        let mut r = run(vec![10, 100], 20, 20, 0);
        let d = advance(&mut r);
        assert_eq!(d.release.iter().map(|x| x.0).collect::<Vec<_>>(), [1, 2]);
        finish(&mut r, 1, TargetState::Succeeded);
        assert!(advance(&mut r).release.is_empty(), "host 2 still runs");
        finish(&mut r, 2, TargetState::Succeeded);
        let d = advance(&mut r);
        assert_eq!(d.release.len(), 18);
        assert_eq!(r.wave, 1);
        for h in 3..=20 {
            finish(&mut r, h, TargetState::Succeeded);
        }
        let d = advance(&mut r);
        assert_eq!(d.state, Some(JobState::Succeeded));
    }

    #[test]
    fn a_canary_failing_past_the_threshold_halts_and_rolls_back() {
        let mut r = run(vec![10, 50, 100], 20, 20, 0);
        advance(&mut r);
        finish(&mut r, 1, TargetState::Failed);
        let d = advance(&mut r);
        assert_eq!(d.state, Some(JobState::Halted));
        assert!(d.withdraw);
        assert_eq!(d.cancel.len(), 18, "the later waves never start");
        assert!(d.release.is_empty());
        assert_eq!(d.rollback, vec![(1, "agent-1".to_owned())]);
        assert!(r.halt.unwrap().contains("Wave 1 of 3: 1 of 2 hosts failed"));
    }

    #[test]
    fn failures_under_the_threshold_let_the_job_finish_partial() {
        let mut r = run(vec![100], 10, 20, 0);
        advance(&mut r);
        finish(&mut r, 1, TargetState::Failed);
        for h in 2..=10 {
            finish(&mut r, h, TargetState::Succeeded);
        }
        let d = advance(&mut r);
        assert_eq!(d.state, Some(JobState::Partial));
    }

    #[test]
    fn concurrency_is_bounded_within_a_wave() {
        let mut r = run(vec![100], 10, 100, 3);
        assert_eq!(advance(&mut r).release.len(), 3);
        assert!(advance(&mut r).release.is_empty());
        finish(&mut r, 1, TargetState::Succeeded);
        assert_eq!(
            advance(&mut r)
                .release
                .iter()
                .map(|x| x.0)
                .collect::<Vec<_>>(),
            [4]
        );
    }

    #[test]
    fn end_states() {
        use TargetState::*;
        assert_eq!(
            final_state([Succeeded, Succeeded].into_iter()),
            JobState::Succeeded
        );
        assert_eq!(final_state([Failed, Partial].into_iter()), JobState::Failed);
        assert_eq!(
            final_state([Succeeded, Failed].into_iter()),
            JobState::Partial
        );
        assert_eq!(final_state([Cancelled].into_iter()), JobState::Cancelled);
        assert!(wave_fails(1, 4, 20));
        assert!(!wave_fails(1, 5, 20));
        assert!(!wave_fails(0, 0, 0));
    }
}
