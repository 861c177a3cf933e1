//! How a host actor reaches its agent: the [`Connector`] trait, so the actor's timers, backoff
//! and state machine are tested with a paused clock and a scripted agent, and [`Mtls`], the real
//! one over mutual TLS with the host's pinned certificate.
//!
//! Connection policy (`fleet.agent_connections`, measured in docs/benchmarks.md):
//! - `per_poll` (default): one TLS connection per poll, closed after it: a full TLS 1.3
//!   handshake, checked against the agent's CRL (agents refuse session resumption).
//! - `kept`: one client per host kept between polls, its connection reused while the agent
//!   keeps it open (the agent's `server.keep_alive_secs` must exceed the health interval) and
//!   at most `server.max_connection_secs` (600 s), after which a new handshake checks the CRL.
//!
//! Either way the manager's client certificate and key are parsed once per change of the files
//! (a rotation applies to the next connection), not on every poll.

use super::work::{DispatchError, Follow, Order, OrderKind};
use crate::agent_client::{AgentClient, ClientIdentity};
use crate::config::AgentConnections;
use crate::pki::manager::ManagerPki;
use futures_util::future::LocalBoxFuture;
use futures_util::stream::LocalBoxStream;
use shared::agent::{AgentHealth, JobEvent, PackageList, PatchList, SystemInfo};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Where a host's agent is and which certificate it must present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host id.
    pub host_id: i64,
    /// Agent address.
    pub addr: SocketAddr,
    /// SHA-256 (hex) of the certificate pinned for the host.
    pub pin: Option<String>,
}

/// What one inventory poll brings back.
#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    /// System information.
    pub info: SystemInfo,
    /// Installed packages.
    pub packages: PackageList,
    /// Available updates.
    pub patches: PatchList,
}

/// Reaches agents. Errors are the text shown to people as the reason.
pub trait Connector: Send + Sync + 'static {
    /// `GET /health`.
    fn health(&self, target: &Target) -> LocalBoxFuture<'static, Result<AgentHealth, String>>;
    /// `GET /system/info`, `/packages` and `/patches`.
    fn inventory(&self, target: &Target) -> LocalBoxFuture<'static, Result<Inventory, String>>;
    /// The host is no longer supervised: drop what is kept for it.
    fn forget(&self, _host_id: i64) {}
    /// Sends an order (with its idempotency key); answers the agent's job id.
    fn dispatch(
        &self,
        target: &Target,
        order: &Order,
    ) -> LocalBoxFuture<'static, Result<String, DispatchError>>;
    /// Follows an agent job until it ends: its live events, then the job as it ended (or
    /// [`Follow::Lost`] when the agent cannot be reached).
    fn follow(&self, target: &Target, agent_job_id: &str) -> LocalBoxStream<'static, Follow>;
}

/// While the agent's event stream is broken, its job is read this often.
const JOB_POLL: Duration = Duration::from_secs(2);

/// Follows agent job `id` through `client`, sending what happens on `tx` until the job ends, the
/// agent is lost, or the receiver is gone. The event stream is opened before the job is read, so
/// nothing that happens between is missed; a broken stream falls back to reading the job.
async fn follow_job(
    client: &AgentClient,
    id: &str,
    tx: &tokio::sync::mpsc::UnboundedSender<Follow>,
) {
    use futures_util::StreamExt;
    let events = client.job_events().await;
    match client.job(id).await {
        Ok(job) if job.status.is_finished() => {
            let _ = tx.send(Follow::Done(Box::new(job)));
            return;
        }
        Ok(job) => {
            if job.status == shared::agent::JobStatus::Running {
                let _ = tx.send(Follow::Event(JobEvent::Started {
                    job_id: id.to_owned(),
                }));
            }
        }
        Err(e) => {
            let _ = tx.send(Follow::Lost(e.to_string()));
            return;
        }
    }
    if let Ok(mut events) = events {
        loop {
            tokio::select! {
                frame = events.next() => match frame {
                    Some(Ok(Some(event))) => {
                        if event.job_id() != id {
                            continue;
                        }
                        let finished = matches!(event, JobEvent::Finished { .. });
                        if tx.send(Follow::Event(event)).is_err() {
                            return;
                        }
                        if finished {
                            break;
                        }
                    }
                    // A notice that events were missed: the job is read below if it ended.
                    Some(Ok(None)) => match client.job(id).await {
                        Ok(job) if job.status.is_finished() => break,
                        Ok(_) => {}
                        Err(e) => {
                            let _ = tx.send(Follow::Lost(e.to_string()));
                            return;
                        }
                    },
                    Some(Err(_)) | None => break,
                },
                () = tx.closed() => return,
            }
        }
    }
    loop {
        match client.job(id).await {
            Ok(job) if job.status.is_finished() => {
                let _ = tx.send(Follow::Done(Box::new(job)));
                return;
            }
            Ok(_) => {
                tokio::select! {
                    () = tokio::time::sleep(JOB_POLL) => {}
                    () = tx.closed() => return,
                }
            }
            Err(e) => {
                let _ = tx.send(Follow::Lost(e.to_string()));
                return;
            }
        }
    }
}

/// How long a kept connection may stay idle on the manager's side (the agent's
/// `server.keep_alive_secs` decides in practice).
const KEPT_IDLE: Duration = Duration::from_secs(15 * 60);
/// Longest life of a kept connection: the agent's default `server.max_connection_secs`.
const KEPT_LIFETIME: Duration = Duration::from_secs(600);

/// The manager's client certificate and key as parsed, with the files' modification times.
type Parsed = (Option<(SystemTime, SystemTime)>, Arc<ClientIdentity>);

/// A client kept for one host (policy `kept`): valid while the address, the pin and the
/// manager's identity are the same.
struct KeptClient {
    addr: SocketAddr,
    pin: Option<String>,
    identity: Arc<ClientIdentity>,
    client: Rc<AgentClient>,
}

thread_local! {
    /// Kept clients by host. Host actors and their clients live on one thread; clients are not
    /// `Send`.
    static KEPT: RefCell<HashMap<i64, KeptClient>> = RefCell::new(HashMap::new());
}

/// The real connector: the manager's current client certificate (parsed again when its files
/// change, so a rotation applies to the next connection), the fleet CA and the host's pin.
#[derive(Debug, Clone)]
pub struct Mtls {
    pki: ManagerPki,
    policy: AgentConnections,
    identity: Arc<Mutex<Option<Parsed>>>,
}

impl Mtls {
    /// The connector over `pki` with `policy`.
    pub fn new(pki: ManagerPki, policy: AgentConnections) -> Self {
        Self {
            pki,
            policy,
            identity: Arc::default(),
        }
    }

    /// The manager's client identity, parsed again only when its files changed.
    fn identity(&self) -> Result<Arc<ClientIdentity>, String> {
        let stamp = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let now = stamp(&self.pki.client_cert).zip(stamp(&self.pki.client_key));
        let mut cached = self
            .identity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, id)) = cached.as_ref() {
            if now.is_some() && *at == now {
                return Ok(id.clone());
            }
        }
        let id = Arc::new(
            ClientIdentity::load(&self.pki.client_cert, &self.pki.client_key)
                .map_err(|e| e.to_string())?,
        );
        *cached = Some((now, id.clone()));
        Ok(id)
    }

    fn client(&self, target: &Target) -> Result<Rc<AgentClient>, String> {
        let identity = self.identity()?;
        let make = |keep: Option<(Duration, Duration)>| {
            AgentClient::with_identity(
                self.pki.ca.cert_pem(),
                &identity,
                target.addr,
                target.pin.as_deref(),
                keep,
            )
            .map(Rc::new)
            .map_err(|e| e.to_string())
        };
        match self.policy {
            AgentConnections::PerPoll => make(None),
            AgentConnections::Kept => KEPT.with(|kept| {
                let mut kept = kept.borrow_mut();
                if let Some(k) = kept.get(&target.host_id) {
                    if k.addr == target.addr
                        && k.pin == target.pin
                        && Arc::ptr_eq(&k.identity, &identity)
                    {
                        return Ok(k.client.clone());
                    }
                }
                let client = make(Some((KEPT_IDLE, KEPT_LIFETIME)))?;
                kept.insert(
                    target.host_id,
                    KeptClient {
                        addr: target.addr,
                        pin: target.pin.clone(),
                        identity: identity.clone(),
                        client: client.clone(),
                    },
                );
                Ok(client)
            }),
        }
    }
}

impl Connector for Mtls {
    fn health(&self, target: &Target) -> LocalBoxFuture<'static, Result<AgentHealth, String>> {
        let client = self.client(target);
        let (host_id, kept) = (target.host_id, self.policy == AgentConnections::Kept);
        Box::pin(async move {
            let result = client?.health().await.map_err(|e| e.to_string());
            if result.is_err() && kept {
                // A kept client whose poll failed is not trusted again: its pool may hold a
                // connection the agent has dropped or one that never finished its handshake.
                KEPT.with(|k| k.borrow_mut().remove(&host_id));
            }
            result
        })
    }

    fn forget(&self, host_id: i64) {
        KEPT.with(|kept| kept.borrow_mut().remove(&host_id));
    }

    fn dispatch(
        &self,
        target: &Target,
        order: &Order,
    ) -> LocalBoxFuture<'static, Result<String, DispatchError>> {
        let client = self.client(target);
        let order = order.clone();
        Box::pin(async move {
            let client = client.map_err(|message| DispatchError {
                message,
                retryable: false,
            })?;
            let accepted = match &order.kind {
                OrderKind::Apply(req) => client.apply_patches(req, &order.key).await,
                OrderKind::Rollback { of } => client.rollback(of, &order.key).await,
            };
            accepted.map(|a| a.job_id).map_err(|e| DispatchError {
                retryable: match &e {
                    // A busy agent (exclusive mode) or a failure on its side may pass; a
                    // refusal of the request itself will not.
                    crate::agent_client::AgentClientError::Refused { status, .. } => {
                        *status >= 500 || *status == 429
                    }
                    crate::agent_client::AgentClientError::Request { .. } => true,
                    crate::agent_client::AgentClientError::Tls(_)
                    | crate::agent_client::AgentClientError::Invalid(_) => false,
                },
                message: e.to_string(),
            })
        })
    }

    fn follow(&self, target: &Target, agent_job_id: &str) -> LocalBoxStream<'static, Follow> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let client = self.client(target);
        let id = agent_job_id.to_owned();
        actix_web::rt::spawn(async move {
            match client {
                Ok(client) => follow_job(&client, &id, &tx).await,
                Err(e) => {
                    let _ = tx.send(Follow::Lost(e));
                }
            }
        });
        Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }

    fn inventory(&self, target: &Target) -> LocalBoxFuture<'static, Result<Inventory, String>> {
        let client = self.client(target);
        let (host_id, kept) = (target.host_id, self.policy == AgentConnections::Kept);
        Box::pin(async move {
            let client = client?;
            let fetched = async {
                let info = client.system_info().await.map_err(|e| e.to_string())?;
                let packages = client.packages().await.map_err(|e| e.to_string())?;
                let patches = client.patches().await.map_err(|e| e.to_string())?;
                Ok(Inventory {
                    info,
                    packages,
                    patches,
                })
            }
            .await;
            if fetched.is_err() && kept {
                KEPT.with(|k| k.borrow_mut().remove(&host_id));
            }
            fetched
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Ca, CertKind};

    fn pki(dir: &std::path::Path) -> ManagerPki {
        let (ca, _) = Ca::load_or_create(&dir.join("ca"), "Test fleet CA").unwrap();
        let (web_ca, _) = Ca::load_or_create(&dir.join("web-ca"), "Test web CA").unwrap();
        let pki = ManagerPki {
            ca: Arc::new(ca),
            web_ca: Arc::new(web_ca),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
        };
        issue_client(&pki);
        pki
    }

    fn issue_client(pki: &ManagerPki) {
        let (issued, key) = pki
            .ca
            .issue_with_new_key(CertKind::ManagerClient, "patch-manager", &[], 90)
            .unwrap();
        std::fs::write(&pki.client_cert, issued.cert_pem).unwrap();
        std::fs::write(&pki.client_key, key).unwrap();
    }

    fn target(host_id: i64, pin: Option<&str>) -> Target {
        Target {
            host_id,
            addr: "127.0.0.1:9".parse().unwrap(),
            pin: pin.map(str::to_owned),
        }
    }

    #[test]
    fn kept_clients_are_reused_until_the_host_its_pin_or_the_identity_changes() {
        let dir = tempfile::tempdir().unwrap();
        let pki = pki(dir.path());
        let kept = Mtls::new(pki.clone(), AgentConnections::Kept);
        let a = kept.client(&target(1, None)).unwrap();
        assert!(Rc::ptr_eq(&a, &kept.client(&target(1, None)).unwrap()));
        // Another host, or a new pin: a client of its own.
        let b = kept.client(&target(2, None)).unwrap();
        assert!(!Rc::ptr_eq(&a, &b));
        let pinned = kept.client(&target(1, Some(&"ab".repeat(32)))).unwrap();
        assert!(!Rc::ptr_eq(&a, &pinned));
        // A rotated client certificate (new files): new clients, parsed once.
        let before = kept.identity().unwrap();
        assert!(
            Arc::ptr_eq(&before, &kept.identity().unwrap()),
            "parsed once"
        );
        issue_client(&pki);
        // A distinct modification time, whatever the file system's granularity.
        std::fs::File::options()
            .write(true)
            .open(&pki.client_cert)
            .unwrap()
            .set_modified(SystemTime::now() + Duration::from_secs(3600))
            .unwrap();
        let after = kept.identity().unwrap();
        assert!(!Arc::ptr_eq(&before, &after));
        let c = kept.client(&target(2, None)).unwrap();
        assert!(!Rc::ptr_eq(&b, &c));
        // Forgotten hosts lose their client.
        kept.forget(2);
        assert!(KEPT.with(|k| !k.borrow().contains_key(&2)));

        // Per poll: a new client every time.
        let per_poll = Mtls::new(pki, AgentConnections::PerPoll);
        let x = per_poll.client(&target(3, None)).unwrap();
        assert!(!Rc::ptr_eq(&x, &per_poll.client(&target(3, None)).unwrap()));
    }
}
