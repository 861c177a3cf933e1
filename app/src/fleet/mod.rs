//! The managed fleet: hosts and their groups, always seen through the caller's
//! [`Scope`](crate::auth::access::Scope), and their supervision.
//!
//! - [`hosts`]: the host list and detail, the certificate bundle of a host, groups and their
//!   creation.
//! - [`actor`]: one actor per host, owning its polling timers, agent target and state.
//! - [`supervisor`]: starts, restarts and retires the host actors.
//! - [`connector`]: how an actor reaches its agent (a trait, and the mutual-TLS implementation).
//! - [`recorder`]: writes what the actors learn and publishes state changes.
//! - [`discovery`]: CIDR ranges probed for agents, and adoption of what was found.
//! - [`live`]: the event stream to browsers (single-use tickets, scope-filtered WebSocket).
//! - [`work`]: a host's part of patch jobs (orders, following the agent's job, retries).

pub mod actor;
pub mod connector;
pub mod discovery;
pub mod hosts;
pub mod live;
pub mod recorder;
pub mod supervisor;
pub mod work;

use actix::prelude::*;
use shared::fleet::HostStateEvent;
use std::sync::Arc;

/// Capacity of the event hub (a subscriber that falls this far behind skips to the newest).
pub const EVENT_BUFFER: usize = 4096;

/// The fleet's handle in the application state.
#[derive(Clone, Debug)]
pub struct Fleet {
    /// The supervisor of every host actor.
    pub supervisor: Addr<supervisor::FleetSupervisor>,
    /// Host state changes, for live pages.
    pub events: tokio::sync::broadcast::Sender<HostStateEvent>,
    /// Inventory polls (host id and what was written, or why nothing was), for pages and tests
    /// that wait for one.
    pub inventories: tokio::sync::broadcast::Sender<(
        i64,
        Result<crate::db::host_state::InventoryWrite, String>,
    )>,
    /// Bumped whenever who may see what changes (sign-out, account or role changes, group
    /// membership): open event streams check their user again at once.
    pub access: tokio::sync::watch::Sender<u64>,
    /// CIDR discovery runs of this process.
    pub discoveries: Arc<discovery::Discoveries>,
    /// Patch jobs' events for live pages (host rows and job states).
    pub live: tokio::sync::broadcast::Sender<shared::fleet::LiveEvent>,
    /// Rolls patch jobs out.
    pub deployer: Addr<crate::deploy::deployer::Deployer>,
    /// Opens and closes maintenance windows.
    pub scheduler: Addr<crate::deploy::scheduler::Scheduler>,
}

impl Fleet {
    /// Tells open event streams that access rights may have changed.
    pub fn access_changed(&self) {
        self.access.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Starts the supervisor; its actors report on the returned channel, which the recorder
/// ([`recorder::spawn`]) consumes once the application state exists.
pub fn start(
    connector: Arc<dyn connector::Connector>,
    intervals: actor::Intervals,
    retries: work::Retries,
) -> (Fleet, tokio::sync::mpsc::UnboundedReceiver<actor::Update>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let supervisor = supervisor::FleetSupervisor::new(connector, tx, intervals)
        .with_retries(retries)
        .start();
    let (events, _) = tokio::sync::broadcast::channel(EVENT_BUFFER);
    let (inventories, _) = tokio::sync::broadcast::channel(EVENT_BUFFER);
    let (live, _) = tokio::sync::broadcast::channel(EVENT_BUFFER);
    (
        Fleet {
            supervisor,
            events,
            inventories,
            access: tokio::sync::watch::Sender::new(0),
            discoveries: Arc::default(),
            live,
            deployer: crate::deploy::deployer::Deployer::default().start(),
            scheduler: crate::deploy::scheduler::Scheduler::default().start(),
        },
        rx,
    )
}

/// Supervises host `host_id` (after its enrollment), reading where its agent is.
pub async fn supervise(
    state: &crate::state::AppState,
    host_id: i64,
) -> Result<(), crate::db::DbError> {
    let row = state
        .db
        .run(move |c| crate::db::hosts::agent_address(c, host_id))
        .await?;
    if let Some(row) = row {
        if let Some(target) = target_of(&row) {
            state.fleet.supervisor.do_send(supervisor::Supervise {
                target,
                status: shared::vocab::HostStatus::Unknown,
            });
        }
    }
    Ok(())
}

/// Supervises every host, as recorded (at start).
pub async fn supervise_all(state: &crate::state::AppState) -> Result<usize, crate::db::DbError> {
    let rows = state.db.run(crate::db::host_state::supervised).await?;
    let mut n = 0;
    for (row, status) in rows {
        let Some(target) = target_of(&row) else {
            tracing::warn!(host_id = row.id, address = %row.ip_address, "host has no usable agent address; not supervised");
            continue;
        };
        state.fleet.supervisor.do_send(supervisor::Supervise {
            target,
            status: status.parse().unwrap_or(shared::vocab::HostStatus::Unknown),
        });
        n += 1;
    }
    Ok(n)
}

/// Where to reach a host's agent, from its row.
pub fn target_of(row: &crate::db::hosts::AgentAddressRow) -> Option<connector::Target> {
    let ip: std::net::IpAddr = row.ip_address.parse().ok()?;
    let port = u16::try_from(row.agent_port).ok()?;
    Some(connector::Target {
        host_id: row.id,
        addr: std::net::SocketAddr::new(ip, port),
        pin: row.cert_fingerprint.clone(),
    })
}
