//! One actor per managed host ([`HostActor`]): it owns that host's polling timers, its agent
//! target (address and pinned certificate) and its state (healthy, degraded or unreachable, since
//! when, why). What it learns goes out as [`Update`]s on a channel; the recorder
//! ([`super::recorder`]) writes them to the database and publishes the state changes.
//!
//! Timing, in the pure functions below so they are tested without an actor:
//! - the first health poll falls at a point of the first interval derived from the host id
//!   ([`first_delay`]), so a fleet's polls spread evenly instead of bursting at start; later ones
//!   vary by up to a tenth of the interval ([`jittered`]);
//! - a failed poll is confirmed [`CONFIRM_AFTER`] later; a second consecutive failure makes the
//!   host unreachable, and polls then back off from 15 s, doubling, up to the health interval
//!   ([`retry_delay`]);
//! - an inventory poll (system information, packages, patches) runs after the first successful
//!   health poll and then every inventory interval.

use super::connector::{Connector, Inventory, Target};
use actix::prelude::*;
use shared::agent::AgentHealth;
use shared::vocab::HostStatus;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

/// Wait before confirming a failed poll.
pub const CONFIRM_AFTER: Duration = Duration::from_secs(10);
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

/// `interval` varied by up to a tenth either way, by `seed`.
pub fn jittered(interval: Duration, seed: u64) -> Duration {
    let millis = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
    let spread = millis / 10;
    if spread == 0 {
        return interval;
    }
    let offset = mix(seed) % (2 * spread + 1);
    Duration::from_millis(millis - spread + offset)
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
    },
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
        }
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
        };
        let changed = before != (self.status, self.reason.clone());
        let reachable = outcome.is_ok();
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
        let fut = self.connector.inventory(&self.target);
        ctx.spawn(fut.into_actor(self).map(|outcome, act, ctx| {
            act.inventory_in_flight = false;
            let ok = outcome.is_ok();
            let update = Update::Inventory {
                host_id: act.target.host_id,
                outcome: outcome.map(Box::new),
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
    fn jitter_stays_within_a_tenth() {
        let interval = Duration::from_secs(300);
        let all: Vec<Duration> = (0..1000).map(|s| jittered(interval, s)).collect();
        assert!(all
            .iter()
            .all(|d| *d >= Duration::from_secs(270) && *d <= Duration::from_secs(330)));
        assert!(all.iter().any(|d| *d < Duration::from_secs(290)));
        assert!(all.iter().any(|d| *d > Duration::from_secs(310)));
    }

    #[test]
    fn failures_are_confirmed_then_backed_off_up_to_the_interval() {
        let health = Duration::from_secs(300);
        let secs: Vec<u64> = (1..=8).map(|n| retry_delay(n, health).as_secs()).collect();
        assert_eq!(secs, [10, 15, 30, 60, 120, 240, 300, 300]);
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
