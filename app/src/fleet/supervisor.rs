//! The fleet supervisor: one [`HostActor`] per managed host, each under an actix `Supervisor`
//! (an actor that stops is restarted with fresh timers), started when a host is enrolled or at
//! the manager's start, retired when its host is removed. Intervals changed at run time reach
//! every actor.

use super::actor::{self, HostActor, Intervals, Update};
use super::connector::{Connector, Target};
use actix::prelude::*;
use shared::vocab::HostStatus;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

/// The supervisor of every host actor.
pub struct FleetSupervisor {
    connector: Arc<dyn Connector>,
    updates: UnboundedSender<Update>,
    intervals: Intervals,
    retries: super::work::Retries,
    hosts: HashMap<i64, Addr<HostActor>>,
    inventory_slots: Arc<tokio::sync::Semaphore>,
}

impl FleetSupervisor {
    /// A supervisor whose actors reach agents through `connector` and report on `updates`.
    pub fn new(
        connector: Arc<dyn Connector>,
        updates: UnboundedSender<Update>,
        intervals: Intervals,
    ) -> Self {
        Self {
            connector,
            updates,
            intervals,
            retries: super::work::default_retries(),
            hosts: HashMap::new(),
            inventory_slots: Arc::new(tokio::sync::Semaphore::new(actor::INVENTORY_SLOTS)),
        }
    }

    /// The waits before a failed host's retries in patch jobs.
    pub fn with_retries(mut self, retries: super::work::Retries) -> Self {
        self.retries = retries;
        self
    }
}

impl Actor for FleetSupervisor {
    type Context = Context<Self>;
}

/// Supervise a host (a new enrollment, or every host at start). A host already supervised gets
/// the new target instead.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Supervise {
    /// Where its agent is.
    pub target: Target,
    /// Its state as last recorded.
    pub status: HostStatus,
}

impl Handler<Supervise> for FleetSupervisor {
    type Result = ();
    fn handle(&mut self, msg: Supervise, _: &mut Context<Self>) {
        let id = msg.target.host_id;
        if let Some(existing) = self.hosts.get(&id) {
            existing.do_send(actor::SetTarget(msg.target));
            return;
        }
        let (connector, updates, intervals, retries, slots) = (
            self.connector.clone(),
            self.updates.clone(),
            self.intervals,
            self.retries,
            self.inventory_slots.clone(),
        );
        let addr = actix::Supervisor::start(move |_| {
            HostActor::new(msg.target, msg.status, connector, updates, intervals)
                .with_retries(retries)
                .with_inventory_slots(slots)
        });
        self.hosts.insert(id, addr);
    }
}

/// Stop supervising a host (it was removed).
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct Forget(pub i64);

impl Handler<Forget> for FleetSupervisor {
    type Result = bool;
    fn handle(&mut self, msg: Forget, _: &mut Context<Self>) -> bool {
        match self.hosts.remove(&msg.0) {
            Some(addr) => {
                addr.do_send(actor::Retire);
                true
            }
            None => false,
        }
    }
}

/// Poll one host now.
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct RefreshHost(pub i64);

impl Handler<RefreshHost> for FleetSupervisor {
    type Result = bool;
    fn handle(&mut self, msg: RefreshHost, _: &mut Context<Self>) -> bool {
        self.hosts
            .get(&msg.0)
            .map(|a| a.do_send(actor::Refresh))
            .is_some()
    }
}

/// New intervals for every actor.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetIntervals(pub Intervals);

impl Handler<SetIntervals> for FleetSupervisor {
    type Result = ();
    fn handle(&mut self, msg: SetIntervals, _: &mut Context<Self>) {
        self.intervals = msg.0;
        for addr in self.hosts.values() {
            addr.do_send(actor::SetIntervals(msg.0));
        }
    }
}

/// The address of one host's actor (tests and diagnostics).
#[derive(Debug, Message)]
#[rtype(result = "Option<Addr<HostActor>>")]
pub struct ActorOf(pub i64);

impl Handler<ActorOf> for FleetSupervisor {
    type Result = Option<Addr<HostActor>>;
    fn handle(&mut self, msg: ActorOf, _: &mut Context<Self>) -> Self::Result {
        self.hosts.get(&msg.0).cloned()
    }
}

/// How many hosts are supervised.
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub struct Count;

impl Handler<Count> for FleetSupervisor {
    type Result = usize;
    fn handle(&mut self, _: Count, _: &mut Context<Self>) -> usize {
        self.hosts.len()
    }
}

/// The intervals new and existing actors use.
#[derive(Debug, Message)]
#[rtype(result = "Intervals")]
pub struct CurrentIntervals;

impl Handler<CurrentIntervals> for FleetSupervisor {
    type Result = MessageResult<CurrentIntervals>;
    fn handle(&mut self, _: CurrentIntervals, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.intervals)
    }
}

/// Hands a job's work on a host to the host's actor; a host without an actor (no usable agent
/// address) has its row failed with the reason.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Assign {
    /// Host.
    pub host_id: i64,
    /// Job.
    pub job_id: i64,
    /// What to order.
    pub kind: super::work::OrderKind,
    /// The host's row as it stands.
    pub progress: super::work::Progress,
    /// Runs only inside one of the host's maintenance windows.
    pub in_window: bool,
}

impl Handler<Assign> for FleetSupervisor {
    type Result = ();
    fn handle(&mut self, msg: Assign, _: &mut Context<Self>) {
        let task = actor::Task {
            job_id: msg.job_id,
            kind: msg.kind,
            progress: msg.progress,
            in_window: msg.in_window,
        };
        if let Some(addr) = self.hosts.get(&msg.host_id) {
            addr.do_send(actor::Assign(task));
            return;
        }
        let mut progress = task.progress;
        progress.state = match task.kind {
            super::work::OrderKind::Apply(_) => shared::jobs::TargetState::Failed,
            super::work::OrderKind::Rollback { .. } => shared::jobs::TargetState::RollbackFailed,
        };
        progress.error = Some("The host is not supervised: it has no usable agent address.".into());
        progress.finished_at = Some(chrono::Utc::now().naive_utc());
        let _ = self
            .updates
            .send(Update::Target(Box::new(actor::TargetReport {
                job_id: msg.job_id,
                host_id: msg.host_id,
                progress,
                changed: true,
                line: None,
                package: None,
                halt: None,
            })));
    }
}

/// Every host actor drops what it holds of a job that has not started on its host.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Withdraw {
    /// Job.
    pub job_id: i64,
}

impl Handler<Withdraw> for FleetSupervisor {
    type Result = ();
    fn handle(&mut self, msg: Withdraw, _: &mut Context<Self>) {
        for addr in self.hosts.values() {
            addr.do_send(actor::WithdrawJob(msg.job_id));
        }
    }
}

/// A maintenance window opened for these hosts (the scheduler's announcement).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WindowOpened {
    /// Window.
    pub window_id: i64,
    /// Its hosts.
    pub hosts: Vec<i64>,
    /// Until it closes.
    pub closes_in: std::time::Duration,
}

impl Handler<WindowOpened> for FleetSupervisor {
    type Result = ();
    fn handle(&mut self, msg: WindowOpened, _: &mut Context<Self>) {
        for h in &msg.hosts {
            if let Some(addr) = self.hosts.get(h) {
                addr.do_send(actor::WindowOpen {
                    window_id: msg.window_id,
                    closes_in: msg.closes_in,
                });
            }
        }
    }
}

/// A maintenance window closed for these hosts.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WindowClosed {
    /// Window.
    pub window_id: i64,
    /// Its hosts.
    pub hosts: Vec<i64>,
}

impl Handler<WindowClosed> for FleetSupervisor {
    type Result = ();
    fn handle(&mut self, msg: WindowClosed, _: &mut Context<Self>) {
        for h in &msg.hosts {
            if let Some(addr) = self.hosts.get(h) {
                addr.do_send(actor::WindowClose(msg.window_id));
            }
        }
    }
}
