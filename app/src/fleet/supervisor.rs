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
    hosts: HashMap<i64, Addr<HostActor>>,
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
            hosts: HashMap::new(),
        }
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
        let (connector, updates, intervals) =
            (self.connector.clone(), self.updates.clone(), self.intervals);
        let addr = actix::Supervisor::start(move |_| {
            HostActor::new(msg.target, msg.status, connector, updates, intervals)
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
