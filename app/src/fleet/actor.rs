//! One actor per managed host ([`HostActor`]): it owns that host's polling timers, its agent
//! target (address and pinned certificate) and its state (healthy, degraded or unreachable, since
//! when, why). What it learns goes out as [`Update`]s on a channel; the recorder
//! ([`super::recorder`]) writes them to the database and publishes the state changes.
//!
//! Timing, in the pure functions below so they are tested without an actor:
//! - the first health poll falls at a point of the first interval derived from the host id
//!   ([`first_delay`]), so a fleet's polls spread evenly instead of bursting at start; later ones
//!   start up to a tenth of the interval early ([`jittered`]), never late;
//! - a failed poll is confirmed [`CONFIRM_AFTER`] after it started; a second consecutive failure
//!   makes the host unreachable, and polls then back off from 15 s, doubling, up to the health
//!   interval ([`retry_delay`]). Every delay counts from the start of the poll before it, so with
//!   the health poll's own limit ([`crate::agent_client::HEALTH_TIMEOUT`], 5 s) a host that stops
//!   answering is shown unreachable at most one health interval + 10 s later;
//! - an inventory poll (system information, packages, patches) runs after the first successful
//!   health poll and then every inventory interval.

use super::connector::{Connector, Inventory, Target};
use super::work::{self, DispatchError, Follow, Order, OrderKind, Progress};
use actix::prelude::*;
use shared::agent::{AgentHealth, JobEvent, JobStatus, PackageResult};
use shared::jobs::TargetState;
use shared::vocab::HostStatus;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

/// Wait before confirming a failed poll, from that poll's start.
pub const CONFIRM_AFTER: Duration = Duration::from_secs(5);
/// First backoff once a host is unreachable.
pub const BACKOFF_START: Duration = Duration::from_secs(15);

/// Poll intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intervals {
    /// Between health polls.
    pub health: Duration,
    /// Between inventory polls.
    pub inventory: Duration,
}

impl Intervals {
    /// From settings (saved, or the configuration's: `FleetConfig::polling`).
    pub fn from_settings(p: &shared::fleet::PollingSettings) -> Self {
        Self {
            health: Duration::from_secs(p.health_interval_secs),
            inventory: Duration::from_secs(p.inventory_interval_secs),
        }
    }
}

/// A well-mixed 64-bit value from `x` (splitmix64): jitter that is spread evenly across hosts
/// and reproducible for one host.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Delay of a host's first poll: a point in `[0, interval)` that depends on the host id.
pub fn first_delay(interval: Duration, host_id: i64) -> Duration {
    let millis = u64::try_from(interval.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_millis(mix(host_id.unsigned_abs()) % millis)
}

/// `interval` shortened by up to a tenth, by `seed`: polls spread out but never come later than
/// one interval after the one before.
pub fn jittered(interval: Duration, seed: u64) -> Duration {
    let millis = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
    let spread = millis / 10;
    if spread == 0 {
        return interval;
    }
    Duration::from_millis(millis - mix(seed) % (spread + 1))
}

/// Wait before the next health poll after `failures` consecutive failed ones (at least 1).
pub fn retry_delay(failures: u32, health: Duration) -> Duration {
    if failures <= 1 {
        return CONFIRM_AFTER.min(health);
    }
    let exp = (failures - 2).min(16);
    BACKOFF_START.saturating_mul(1 << exp).min(health)
}

/// What a successful health report says about the host.
pub fn assess(report: &AgentHealth) -> (HostStatus, Option<String>) {
    let mut problems = Vec::new();
    if report.status != "ok" {
        problems.push(format!("the agent reports {}", report.status));
    }
    if report.package_db_interrupted {
        problems.push("the package database has an interrupted transaction".to_owned());
    }
    if report.exclusive_mode {
        problems.push("a rollback holds the agent in exclusive mode".to_owned());
    }
    if let Some(p) = &report.job_file_problem {
        problems.push(p.clone());
    }
    if !report.interrupted_jobs.is_empty() {
        problems.push(format!(
            "{} job(s) were interrupted when the agent last stopped",
            report.interrupted_jobs.len()
        ));
    }
    if problems.is_empty() {
        (HostStatus::Healthy, None)
    } else {
        (HostStatus::Degraded, Some(problems.join("; ")))
    }
}

/// How many inventories the whole fleet fetches or has waiting to be written at once. A full
/// package list is hundreds of KiB and is written in one transaction; without a bound, the first
/// inventories of 10,000 hosts arriving within one health interval queued up faster than they
/// were written and the manager's memory grew to 650 MiB (glibc keeps such a peak).
pub const INVENTORY_SLOTS: usize = 16;

/// A permit of the fleet's inventory slots ([`INVENTORY_SLOTS`]), released when dropped.
#[derive(Debug, Clone, Default)]
pub struct InventorySlot {
    /// Held only to be dropped.
    _permit: Option<Arc<tokio::sync::OwnedSemaphorePermit>>,
}

/// Slots carry no information: any two compare equal.
impl PartialEq for InventorySlot {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// What a host actor reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// A health poll finished.
    Health {
        /// Host.
        host_id: i64,
        /// The report, or why there was none.
        outcome: Result<AgentHealth, String>,
        /// State after this poll.
        status: HostStatus,
        /// Why, when not healthy.
        reason: Option<String>,
        /// The state differs from before this poll.
        changed: bool,
        /// Round trip of the poll.
        latency: Duration,
        /// When the next health poll is due.
        next_poll_in: Duration,
    },
    /// An inventory poll finished.
    Inventory {
        /// Host.
        host_id: i64,
        /// What the agent reported, or why it did not.
        outcome: Result<Box<Inventory>, String>,
        /// One of the fleet's inventory slots, held until this update is recorded (dropped).
        slot: InventorySlot,
    },
    /// The host's row of a patch job changed, or its agent's job said something.
    Target(Box<TargetReport>),
}

/// A host's row of a job, as its actor reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetReport {
    /// Job.
    pub job_id: i64,
    /// Host.
    pub host_id: i64,
    /// The row, whole.
    pub progress: Progress,
    /// The state changed (the row is written); otherwise only `line`, `package` or `percent` is
    /// news.
    pub changed: bool,
    /// A new line of output.
    pub line: Option<String>,
    /// A package's result.
    pub package: Option<PackageResult>,
    /// The job should halt, for this reason.
    pub halt: Option<String>,
}

/// One job's work on this host: what to order, and the row as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Job.
    pub job_id: i64,
    /// Apply patches, or roll an agent job back.
    pub kind: OrderKind,
    /// The host's row.
    pub progress: Progress,
    /// Runs only inside one of the host's maintenance windows.
    pub in_window: bool,
}

/// The task being worked on.
#[derive(Debug)]
struct Active {
    task: Task,
    /// The agent's job succeeded; the host must answer a health poll before the row does.
    verifying: bool,
    /// Following the agent's job failed since then.
    lost_since: Option<tokio::time::Instant>,
    /// Consecutive failures to follow.
    lost: u32,
}

/// The actor of one host.
pub struct HostActor {
    target: Target,
    connector: Arc<dyn Connector>,
    updates: UnboundedSender<Update>,
    intervals: Intervals,
    status: HostStatus,
    reason: Option<String>,
    failures: u32,
    polls: u64,
    inventory_due: bool,
    health_timer: Option<SpawnHandle>,
    inventory_timer: Option<SpawnHandle>,
    health_in_flight: bool,
    inventory_in_flight: bool,
    retired: bool,
    tasks: VecDeque<Task>,
    active: Option<Active>,
    job_timer: Option<SpawnHandle>,
    following: Option<SpawnHandle>,
    retries: work::Retries,
    /// The fleet's inventory slots ([`INVENTORY_SLOTS`]).
    inventory_slots: Arc<tokio::sync::Semaphore>,
    /// Maintenance windows open now, by id, with their closing.
    windows: std::collections::HashMap<i64, tokio::time::Instant>,
    /// The window-bound task used its one automatic retry in the current window.
    window_retry_used: bool,
}

impl HostActor {
    /// An actor for `target`, starting from `status` (as last recorded).
    pub fn new(
        target: Target,
        status: HostStatus,
        connector: Arc<dyn Connector>,
        updates: UnboundedSender<Update>,
        intervals: Intervals,
    ) -> Self {
        Self {
            target,
            connector,
            updates,
            intervals,
            status,
            reason: None,
            failures: 0,
            polls: 0,
            inventory_due: true,
            health_timer: None,
            inventory_timer: None,
            health_in_flight: false,
            inventory_in_flight: false,
            retired: false,
            tasks: VecDeque::new(),
            active: None,
            job_timer: None,
            following: None,
            retries: work::default_retries(),
            inventory_slots: Arc::new(tokio::sync::Semaphore::new(1)),
            windows: std::collections::HashMap::new(),
            window_retry_used: false,
        }
    }

    /// The waits before a failed host's retries (default: 1, 5 and 30 minutes).
    pub fn with_retries(mut self, retries: work::Retries) -> Self {
        self.retries = retries;
        self
    }

    /// Shares the fleet's inventory slots (alone, an actor has one of its own).
    pub fn with_inventory_slots(mut self, slots: Arc<tokio::sync::Semaphore>) -> Self {
        self.inventory_slots = slots;
        self
    }

    fn arm_health(&mut self, ctx: &mut Context<Self>, after: Duration) {
        if let Some(h) = self.health_timer.take() {
            ctx.cancel_future(h);
        }
        self.health_timer = Some(ctx.run_later(after, |act, ctx| {
            act.health_timer = None;
            act.poll_health(ctx);
        }));
    }

    fn arm_inventory(&mut self, ctx: &mut Context<Self>, after: Duration) {
        if let Some(h) = self.inventory_timer.take() {
            ctx.cancel_future(h);
        }
        self.inventory_timer = Some(ctx.run_later(after, |act, ctx| {
            act.inventory_timer = None;
            act.inventory_due = true;
            act.poll_inventory(ctx);
        }));
    }

    fn poll_health(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.health_timer.take() {
            ctx.cancel_future(h);
        }
        if self.health_in_flight {
            // One poll at a time: its answer arms the next.
            return;
        }
        self.health_in_flight = true;
        let started = tokio::time::Instant::now();
        let fut = self.connector.health(&self.target);
        ctx.spawn(fut.into_actor(self).map(move |outcome, act, ctx| {
            act.health_done(outcome, started.elapsed(), ctx);
        }));
    }

    fn health_done(
        &mut self,
        outcome: Result<AgentHealth, String>,
        latency: Duration,
        ctx: &mut Context<Self>,
    ) {
        self.health_in_flight = false;
        self.polls += 1;
        let before = (self.status, self.reason.clone());
        let next = match &outcome {
            Ok(report) => {
                self.failures = 0;
                let (status, reason) = assess(report);
                self.status = status;
                self.reason = reason;
                jittered(
                    self.intervals.health,
                    mix(self.target.host_id.unsigned_abs()) ^ self.polls,
                )
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                if self.failures >= 2 {
                    self.status = HostStatus::Unreachable;
                    self.reason = Some(e.clone());
                }
                retry_delay(self.failures, self.intervals.health)
            }
        }
        // Counted from the poll's start: a slow or timed-out poll does not push the next one out.
        .saturating_sub(latency);
        let changed = before != (self.status, self.reason.clone());
        let reachable = outcome.is_ok();
        self.verify_after_patch(reachable, ctx);
        let update = Update::Health {
            host_id: self.target.host_id,
            outcome,
            status: self.status,
            reason: self.reason.clone(),
            changed,
            latency,
            next_poll_in: next,
        };
        if self.updates.send(update).is_err() {
            // Nobody records what this actor learns any more (the manager is shutting down).
            self.retired = true;
            ctx.stop();
            return;
        }
        self.arm_health(ctx, next);
        if reachable && self.inventory_due {
            self.poll_inventory(ctx);
        }
    }

    fn poll_inventory(&mut self, ctx: &mut Context<Self>) {
        if !self.inventory_due || self.inventory_in_flight {
            return;
        }
        // The poll replaces any scheduled one; its answer schedules the next.
        if let Some(h) = self.inventory_timer.take() {
            ctx.cancel_future(h);
        }
        self.inventory_due = false;
        self.inventory_in_flight = true;
        let (connector, target) = (self.connector.clone(), self.target.clone());
        let slots = self.inventory_slots.clone();
        let fut = async move {
            // Waits for a slot, so the fleet's inventories are fetched no faster than written.
            let permit = slots.acquire_owned().await.ok().map(Arc::new);
            let slot = InventorySlot { _permit: permit };
            (slot, connector.inventory(&target).await)
        };
        ctx.spawn(fut.into_actor(self).map(|(slot, outcome), act, ctx| {
            act.inventory_in_flight = false;
            let ok = outcome.is_ok();
            let update = Update::Inventory {
                host_id: act.target.host_id,
                outcome: outcome.map(Box::new),
                slot,
            };
            if act.updates.send(update).is_err() {
                act.retired = true;
                ctx.stop();
                return;
            }
            if ok {
                let next = jittered(act.intervals.inventory, act.polls.rotate_left(17));
                act.arm_inventory(ctx, next);
            } else {
                // Tried again after the next successful health poll.
                act.inventory_due = true;
            }
        }));
    }
}

impl Actor for HostActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.retired {
            return;
        }
        let first = first_delay(self.intervals.health, self.target.host_id);
        self.arm_health(ctx, first);
        if self.active.is_some() {
            // After a restart: the task is taken up where its row stands (an order sent again
            // carries the same idempotency key).
            self.step(ctx);
        } else {
            self.pump(ctx);
        }
    }
}

impl Supervised for HostActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // The old context's timers and polls died with it; `started` arms new ones.
        self.health_timer = None;
        self.inventory_timer = None;
        self.health_in_flight = false;
        self.inventory_in_flight = false;
        self.failures = 0;
        self.inventory_due = true;
        self.job_timer = None;
        self.following = None;
        if let Some(a) = self.active.as_mut() {
            a.verifying = false;
            a.lost_since = None;
        }
    }
}

/// Poll the agent now (health, then inventory).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Refresh;

impl Handler<Refresh> for HostActor {
    type Result = ();
    fn handle(&mut self, _: Refresh, ctx: &mut Context<Self>) {
        self.inventory_due = true;
        if !self.health_in_flight {
            // (A poll in flight already answers the request; its success brings the inventory.)
            self.arm_health(ctx, Duration::ZERO);
        }
    }
}

/// New poll intervals; the next polls are re-armed at once.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetIntervals(pub Intervals);

impl Handler<SetIntervals> for HostActor {
    type Result = ();
    fn handle(&mut self, msg: SetIntervals, ctx: &mut Context<Self>) {
        self.intervals = msg.0;
        // Spread over the new interval as at start: re-arming every host one interval ahead
        // would line the whole fleet up into one burst (10,000 polls within a tenth of it).
        let host = self.target.host_id;
        self.arm_health(ctx, first_delay(self.intervals.health, host));
        if self.inventory_timer.is_some() {
            self.arm_inventory(
                ctx,
                first_delay(self.intervals.inventory, host.rotate_left(17)),
            );
        }
    }
}

/// A new address or pinned certificate (after a renewal); used from the next poll on.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetTarget(pub Target);

impl Handler<SetTarget> for HostActor {
    type Result = ();
    fn handle(&mut self, msg: SetTarget, _: &mut Context<Self>) {
        self.target = msg.0;
    }
}

/// Stops the actor for good (its host was removed).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Retire;

impl Handler<Retire> for HostActor {
    type Result = ();
    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        self.retired = true;
        self.connector.forget(self.target.host_id);
        ctx.stop();
    }
}

/// Restarts the actor under its supervisor: timers and backoff start afresh, as after a failure.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Restart;

impl Handler<Restart> for HostActor {
    type Result = ();
    fn handle(&mut self, _: Restart, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// The actor's view of its host, for status pages and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// State.
    pub status: HostStatus,
    /// Why, when not healthy.
    pub reason: Option<String>,
    /// Consecutive failed polls.
    pub failures: u32,
    /// Health polls done since the actor was created.
    pub polls: u64,
}

/// Asks for a [`Snapshot`].
#[derive(Debug, Message)]
#[rtype(result = "Snapshot")]
pub struct Inspect;

impl Handler<Inspect> for HostActor {
    type Result = MessageResult<Inspect>;
    fn handle(&mut self, _: Inspect, _: &mut Context<Self>) -> Self::Result {
        MessageResult(Snapshot {
            status: self.status,
            reason: self.reason.clone(),
            failures: self.failures,
            polls: self.polls,
        })
    }
}

/// Patch jobs on this host: one task at a time, the others queued.
impl HostActor {
    /// Wall-clock time, for the row's timestamps (timers use the runtime's clock).
    fn wall() -> chrono::NaiveDateTime {
        chrono::Utc::now().naive_utc()
    }

    fn report(
        &mut self,
        ctx: &mut Context<Self>,
        changed: bool,
        line: Option<String>,
        package: Option<PackageResult>,
        halt: Option<String>,
    ) {
        let Some(a) = &self.active else { return };
        let update = Update::Target(Box::new(TargetReport {
            job_id: a.task.job_id,
            host_id: self.target.host_id,
            progress: a.task.progress.clone(),
            changed,
            line,
            package,
            halt,
        }));
        if self.updates.send(update).is_err() {
            self.retired = true;
            ctx.stop();
        }
    }

    /// Reports a task that is not (or no longer) active.
    fn report_task(&mut self, ctx: &mut Context<Self>, task: &Task) {
        let update = Update::Target(Box::new(TargetReport {
            job_id: task.job_id,
            host_id: self.target.host_id,
            progress: task.progress.clone(),
            changed: true,
            line: None,
            package: None,
            halt: None,
        }));
        if self.updates.send(update).is_err() {
            self.retired = true;
            ctx.stop();
        }
    }

    /// When the maintenance window open longest closes, if one is open.
    fn window_open_until(&self) -> Option<tokio::time::Instant> {
        let now = tokio::time::Instant::now();
        self.windows.values().copied().filter(|u| *u > now).max()
    }

    /// Starts the next queued task that may run now when none is active (a window-bound task
    /// only inside an open window).
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.active.is_some() || self.retired {
            return;
        }
        let open = self.window_open_until().is_some();
        let Some(i) = self.tasks.iter().position(|t| !t.in_window || open) else {
            return;
        };
        let Some(task) = self.tasks.remove(i) else {
            return;
        };
        if task.in_window {
            self.window_retry_used = false;
        }
        self.active = Some(Active {
            task,
            verifying: false,
            lost_since: None,
            lost: 0,
        });
        self.step(ctx);
    }

    /// Ends the active task and starts the next.
    fn finish_task(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.following.take() {
            ctx.cancel_future(h);
        }
        if let Some(h) = self.job_timer.take() {
            ctx.cancel_future(h);
        }
        self.active = None;
        self.pump(ctx);
    }

    /// Moves the active task on from where its row stands.
    fn step(&mut self, ctx: &mut Context<Self>) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let p = &mut a.task.progress;
        match (&a.task.kind, p.state) {
            (OrderKind::Apply(_), TargetState::Waiting | TargetState::Scheduled) => {
                self.next_attempt(ctx)
            }
            (OrderKind::Apply(_), TargetState::RetryWait) => {
                let wait = p
                    .next_retry_at
                    .and_then(|at| (at - Self::wall()).to_std().ok())
                    .unwrap_or(Duration::ZERO);
                self.arm_retry(ctx, wait);
            }
            (OrderKind::Apply(_), TargetState::Dispatching) => self.dispatch(ctx),
            (OrderKind::Apply(_), TargetState::Queued | TargetState::Running) => {
                if p.agent_job_id.is_some() {
                    self.follow(ctx);
                } else {
                    self.dispatch(ctx);
                }
            }
            (
                OrderKind::Rollback { .. },
                TargetState::Succeeded
                | TargetState::Partial
                | TargetState::Failed
                | TargetState::RollbackFailed,
            ) => {
                p.state = TargetState::RollingBack;
                p.rollback_agent_job_id = None;
                p.error = None;
                p.finished_at = None;
                self.report(ctx, true, None, None, None);
                self.dispatch(ctx);
            }
            (OrderKind::Rollback { .. }, TargetState::RollingBack) => {
                if p.rollback_agent_job_id.is_some() {
                    self.follow(ctx);
                } else {
                    self.dispatch(ctx);
                }
            }
            _ => self.finish_task(ctx),
        }
    }

    /// A new attempt of the active apply task.
    fn next_attempt(&mut self, ctx: &mut Context<Self>) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let p = &mut a.task.progress;
        p.attempt = p.attempt.saturating_add(1);
        p.state = TargetState::Dispatching;
        p.agent_job_id = None;
        p.next_retry_at = None;
        p.results.clear();
        p.started_at.get_or_insert_with(Self::wall);
        self.report(ctx, true, None, None, None);
        self.dispatch(ctx);
    }

    fn arm_retry(&mut self, ctx: &mut Context<Self>, after: Duration) {
        if let Some(h) = self.job_timer.take() {
            ctx.cancel_future(h);
        }
        self.job_timer = Some(ctx.run_later(after, |act, ctx| {
            act.job_timer = None;
            act.next_attempt(ctx);
        }));
    }

    fn order(&self) -> Option<Order> {
        let a = self.active.as_ref()?;
        let (job, host) = (a.task.job_id, self.target.host_id);
        Some(match &a.task.kind {
            OrderKind::Apply(req) => Order {
                kind: OrderKind::Apply(req.clone()),
                key: work::apply_key(job, host, a.task.progress.attempt),
            },
            OrderKind::Rollback { of } => Order {
                kind: OrderKind::Rollback { of: of.clone() },
                key: work::rollback_key(job, host),
            },
        })
    }

    /// Puts the active window-bound task back to wait for the next window (its window closed
    /// before it could start).
    fn wait_for_window(&mut self, ctx: &mut Context<Self>, why: &str) {
        let Some(mut a) = self.active.take() else {
            return;
        };
        if let Some(h) = self.job_timer.take() {
            ctx.cancel_future(h);
        }
        a.task.progress.state = TargetState::Scheduled;
        a.task.progress.next_retry_at = None;
        a.task.progress.error = Some(why.to_owned());
        self.report_task(ctx, &a.task);
        self.tasks.push_front(a.task);
        self.pump(ctx);
    }

    fn dispatch(&mut self, ctx: &mut Context<Self>) {
        let apply_in_window = self
            .active
            .as_ref()
            .is_some_and(|a| a.task.in_window && matches!(a.task.kind, OrderKind::Apply(_)));
        if apply_in_window && self.window_open_until().is_none() {
            self.wait_for_window(
                ctx,
                "The maintenance window closed before the job could start; it starts in the next one.",
            );
            return;
        }
        let Some(order) = self.order() else { return };
        let fut = self.connector.dispatch(&self.target, &order);
        ctx.spawn(
            fut.into_actor(self)
                .map(|res, act, ctx| act.dispatched(res, ctx)),
        );
    }

    fn dispatched(&mut self, res: Result<String, DispatchError>, ctx: &mut Context<Self>) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let rollback = matches!(a.task.kind, OrderKind::Rollback { .. });
        let p = &mut a.task.progress;
        match res {
            Ok(agent_job) => {
                if rollback {
                    p.rollback_agent_job_id = Some(agent_job);
                } else {
                    p.agent_job_id = Some(agent_job);
                    p.state = TargetState::Queued;
                }
                self.report(ctx, true, None, None, None);
                self.follow(ctx);
            }
            Err(e) if rollback => {
                p.state = TargetState::RollbackFailed;
                p.error = Some(format!(
                    "The agent did not take the rollback: {}",
                    e.message
                ));
                p.finished_at = Some(Self::wall());
                self.report(ctx, true, None, None, None);
                self.finish_task(ctx);
            }
            Err(e) => {
                let message = if e.retryable {
                    format!("The agent could not be reached: {}", e.message)
                } else {
                    format!("The agent refused the job: {}", e.message)
                };
                self.attempt_failed(ctx, message, e.retryable, TargetState::Failed);
            }
        }
    }

    /// The active apply task's attempt failed: retried after its backoff while retries are left
    /// (and `retryable`), else the row ends in `end`.
    fn attempt_failed(
        &mut self,
        ctx: &mut Context<Self>,
        message: String,
        retryable: bool,
        end: TargetState,
    ) {
        let left = self
            .window_open_until()
            .map(|u| u.saturating_duration_since(tokio::time::Instant::now()));
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let in_window = a.task.in_window;
        let p = &mut a.task.progress;
        // Inside a maintenance window: one automatic retry, if it fits before the window
        // closes; otherwise the backoff of jobs run now.
        let wait = if in_window {
            let first = self.retries[0];
            (!self.window_retry_used && left.is_some_and(|l| l > first))
                .then_some(first)
                .filter(|_| retryable)
        } else {
            work::retry_after(p.attempt, &self.retries).filter(|_| retryable)
        };
        if in_window && wait.is_some() {
            self.window_retry_used = true;
        }
        match wait {
            Some(wait) => {
                let at = Self::wall()
                    + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::zero());
                p.state = TargetState::RetryWait;
                p.next_retry_at = Some(at);
                p.error = Some(format!(
                    "Attempt {} failed: {message} Next attempt in {} min.",
                    p.attempt,
                    wait.as_secs() / 60
                ));
                self.report(ctx, true, None, None, None);
                if let Some(h) = self.following.take() {
                    ctx.cancel_future(h);
                }
                self.arm_retry(ctx, wait);
            }
            None => {
                p.state = end;
                p.error = Some(if p.attempt > 1 {
                    format!("{message} (after {} attempts)", p.attempt)
                } else {
                    message
                });
                p.finished_at = Some(Self::wall());
                self.report(ctx, true, None, None, None);
                self.finish_task(ctx);
            }
        }
    }

    fn follow(&mut self, ctx: &mut Context<Self>) {
        let Some(a) = self.active.as_ref() else {
            return;
        };
        let id = match a.task.kind {
            OrderKind::Rollback { .. } => a.task.progress.rollback_agent_job_id.clone(),
            OrderKind::Apply(_) => a.task.progress.agent_job_id.clone(),
        };
        let Some(id) = id else { return };
        if let Some(h) = self.following.take() {
            ctx.cancel_future(h);
        }
        let stream = self.connector.follow(&self.target, &id);
        self.following = Some(
            ctx.spawn(
                actix::fut::wrap_stream::<_, Self>(stream)
                    .map(|item, act, ctx| act.followed(item, ctx))
                    .finish(),
            ),
        );
    }

    fn followed(&mut self, item: Follow, ctx: &mut Context<Self>) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        if !matches!(item, Follow::Lost(_)) {
            a.lost_since = None;
            a.lost = 0;
        }
        let rollback = matches!(a.task.kind, OrderKind::Rollback { .. });
        let p = &mut a.task.progress;
        match item {
            Follow::Event(JobEvent::Started { .. }) => {
                if p.state == TargetState::Queued {
                    p.state = TargetState::Running;
                    self.report(ctx, true, None, None, None);
                }
            }
            Follow::Event(JobEvent::Output { line, .. }) => {
                p.push_line(line.clone());
                self.report(ctx, false, Some(line), None, None);
            }
            Follow::Event(JobEvent::Package { result, .. }) => {
                p.results.push(result.clone());
                self.report(ctx, false, None, Some(result), None);
            }
            Follow::Event(JobEvent::Queued { .. } | JobEvent::Finished { .. }) => {}
            Follow::Done(job) => {
                if let Some(h) = self.following.take() {
                    ctx.cancel_future(h);
                }
                p.take_job(&job);
                if rollback {
                    p.state = if job.status == JobStatus::Succeeded {
                        TargetState::RolledBack
                    } else {
                        TargetState::RollbackFailed
                    };
                    p.finished_at = Some(Self::wall());
                    self.report(ctx, true, None, None, None);
                    self.finish_task(ctx);
                    return;
                }
                match work::outcome(&job) {
                    Ok(()) => {
                        // Patched: the row succeeds once the host answers a health poll.
                        a.verifying = true;
                        self.inventory_due = true;
                        self.arm_health(ctx, Duration::ZERO);
                    }
                    Err((end, message)) => self.attempt_failed(ctx, message, true, end),
                }
            }
            Follow::Lost(message) => {
                let since = *a.lost_since.get_or_insert_with(tokio::time::Instant::now);
                a.lost = a.lost.saturating_add(1);
                if since.elapsed() >= work::LOST_AFTER {
                    let id = p.agent_job_id.clone().unwrap_or_default();
                    p.state = if rollback {
                        TargetState::RollbackFailed
                    } else {
                        TargetState::Failed
                    };
                    p.error = Some(format!(
                        "Lost contact with the agent for {} minutes while its job {id} ran \
                         ({message}); check the host before trying again.",
                        work::LOST_AFTER.as_secs() / 60
                    ));
                    p.finished_at = Some(Self::wall());
                    self.report(ctx, true, None, None, None);
                    self.finish_task(ctx);
                    return;
                }
                let wait = retry_delay(
                    a.lost.saturating_add(1),
                    self.intervals.health.max(BACKOFF_START),
                );
                if let Some(h) = self.job_timer.take() {
                    ctx.cancel_future(h);
                }
                self.job_timer = Some(ctx.run_later(wait, |act, ctx| {
                    act.job_timer = None;
                    act.follow(ctx);
                }));
            }
        }
    }

    /// After a patched host's health poll: the row succeeds when the host answered; when it
    /// stopped answering (confirmed), the row fails and the job halts.
    fn verify_after_patch(&mut self, reachable: bool, ctx: &mut Context<Self>) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        if !a.verifying {
            return;
        }
        let p = &mut a.task.progress;
        if reachable {
            a.verifying = false;
            p.state = TargetState::Succeeded;
            p.finished_at = Some(Self::wall());
            self.report(ctx, true, None, None, None);
            self.finish_task(ctx);
        } else if self.failures >= 2 {
            a.verifying = false;
            let reason = format!(
                "{} stopped answering health checks after it was patched.",
                self.target.addr.ip()
            );
            p.state = TargetState::Failed;
            p.error = Some(reason.clone());
            p.finished_at = Some(Self::wall());
            self.report(ctx, true, None, None, Some(reason));
            self.finish_task(ctx);
        }
    }
}

/// Takes on a job's work on this host (queued behind the task running, if any). A task this
/// actor already holds for the same job and kind is not taken twice.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Assign(pub Task);

impl Handler<Assign> for HostActor {
    type Result = ();
    fn handle(&mut self, msg: Assign, ctx: &mut Context<Self>) {
        let same = |t: &Task| {
            t.job_id == msg.0.job_id
                && std::mem::discriminant(&t.kind) == std::mem::discriminant(&msg.0.kind)
        };
        if self.active.as_ref().is_some_and(|a| same(&a.task)) || self.tasks.iter().any(same) {
            return;
        }
        self.tasks.push_back(msg.0);
        self.pump(ctx);
    }
}

/// Drops what this actor holds of a job that has not started on the host: queued tasks and a
/// retry not yet due (each reported cancelled). Work the agent already runs finishes.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WithdrawJob(pub i64);

impl Handler<WithdrawJob> for HostActor {
    type Result = ();
    fn handle(&mut self, msg: WithdrawJob, ctx: &mut Context<Self>) {
        let now = Self::wall();
        let cancel = |t: &mut Task| {
            t.progress.state = TargetState::Cancelled;
            t.progress.next_retry_at = None;
            t.progress.finished_at = Some(now);
            t.progress.error = Some(match t.progress.error.take() {
                Some(e) => format!("{e} Not tried again: the job halted or was cancelled."),
                None => "Not started: the job halted or was cancelled.".into(),
            });
        };
        let (mine, rest): (Vec<Task>, Vec<Task>) = self
            .tasks
            .drain(..)
            .partition(|t| t.job_id == msg.0 && matches!(t.kind, OrderKind::Apply(_)));
        self.tasks = rest.into();
        for mut t in mine {
            cancel(&mut t);
            self.report_task(ctx, &t);
        }
        let waiting = self.active.as_ref().is_some_and(|a| {
            a.task.job_id == msg.0
                && matches!(a.task.kind, OrderKind::Apply(_))
                && matches!(
                    a.task.progress.state,
                    TargetState::RetryWait | TargetState::Waiting
                )
        });
        if waiting {
            if let Some(a) = self.active.as_mut() {
                cancel(&mut a.task);
            }
            self.report(ctx, true, None, None, None);
            self.finish_task(ctx);
        }
    }
}

/// A maintenance window of this host opened; it closes after `closes_in`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WindowOpen {
    /// Window.
    pub window_id: i64,
    /// Until it closes.
    pub closes_in: Duration,
}

impl Handler<WindowOpen> for HostActor {
    type Result = ();
    fn handle(&mut self, msg: WindowOpen, ctx: &mut Context<Self>) {
        let until = tokio::time::Instant::now() + msg.closes_in;
        self.windows.insert(msg.window_id, until);
        // Forget it once closed, even if the close message is lost.
        let id = msg.window_id;
        ctx.run_later(msg.closes_in, move |act, _| {
            if act
                .windows
                .get(&id)
                .is_some_and(|u| *u <= tokio::time::Instant::now())
            {
                act.windows.remove(&id);
            }
        });
        self.pump(ctx);
    }
}

/// A maintenance window of this host closed: window-bound work not started waits for the next.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WindowClose(pub i64);

impl Handler<WindowClose> for HostActor {
    type Result = ();
    fn handle(&mut self, msg: WindowClose, _: &mut Context<Self>) {
        self.windows.remove(&msg.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_polls_spread_over_the_interval() {
        let interval = Duration::from_secs(60);
        let mut buckets = [0u32; 10];
        for id in 1..=10_000 {
            let d = first_delay(interval, id);
            assert!(d < interval);
            buckets[usize::try_from(d.as_secs() / 6).unwrap()] += 1;
        }
        // 1,000 per tenth of the interval if perfectly even; no tenth far from it.
        assert!(
            buckets.iter().all(|&n| (900..=1100).contains(&n)),
            "{buckets:?}"
        );
    }

    #[test]
    fn jitter_shortens_by_at_most_a_tenth_and_never_lengthens() {
        let interval = Duration::from_secs(300);
        let all: Vec<Duration> = (0..1000).map(|s| jittered(interval, s)).collect();
        assert!(all
            .iter()
            .all(|d| *d >= Duration::from_secs(270) && *d <= interval));
        assert!(all.iter().any(|d| *d < Duration::from_secs(275)));
        assert!(all.iter().any(|d| *d > Duration::from_secs(295)));
    }

    #[test]
    fn failures_are_confirmed_then_backed_off_up_to_the_interval() {
        let health = Duration::from_secs(300);
        let secs: Vec<u64> = (1..=8).map(|n| retry_delay(n, health).as_secs()).collect();
        assert_eq!(secs, [5, 15, 30, 60, 120, 240, 300, 300]);
        assert_eq!(retry_delay(u32::MAX, health), health);
    }

    #[test]
    fn a_report_with_a_problem_is_degraded_with_the_reason() {
        let mut report = AgentHealth {
            status: "ok".into(),
            version: "1".into(),
            backend: "apt".into(),
            jobs_running: 0,
            jobs_queued: 0,
            exclusive_mode: false,
            cert_not_after: String::new(),
            interrupted_jobs: Vec::new(),
            package_db_interrupted: false,
            job_file_problem: None,
        };
        assert_eq!(assess(&report), (HostStatus::Healthy, None));
        report.package_db_interrupted = true;
        let (status, reason) = assess(&report);
        assert_eq!(status, HostStatus::Degraded);
        assert!(reason.unwrap().contains("interrupted transaction"));
    }
}
