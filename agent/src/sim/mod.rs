//! The fleet simulator: many agents in one process, each on its own loopback address
//! (`127.x.y.z:12443`) with its own certificate from the manager's CA, obtained through the real
//! enrollment path, served by the real agent stack ([`crate::server::Endpoint`]: allow-list, TLS
//! 1.3 with client certificates, the HTTP API) over a simulated package manager
//! ([`backend::SimBackend`]). An agent can be killed (its listener closes: connections are
//! refused, as from a stopped service) and revived.
//!
//! All agents share one actix thread and one audit log (`<dir>/audit.jsonl`); each keeps its own
//! TLS files and job state under `<dir>/agents/<address>/`.

pub mod backend;

use crate::audit::AuditLog;
use crate::config::AgentConfig;
use crate::server::Endpoint;
use actix_service::{Service, ServiceFactory};
use backend::{SimBackend, SimProfile};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// The `i`-th address (from 0) counted from `base`.
pub fn address(base: Ipv4Addr, i: usize) -> Option<Ipv4Addr> {
    let n = u32::from(base).checked_add(u32::try_from(i).ok()?)?;
    let ip = Ipv4Addr::from(n);
    ip.is_loopback().then_some(ip)
}

/// Why the simulator could not go on.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Files.
    #[error("{path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// An agent could not enroll.
    #[error("{address}: enrollment failed: {message}")]
    Enroll {
        /// The agent.
        address: Ipv4Addr,
        /// What the enrollment said.
        message: String,
    },
    /// An agent could not start.
    #[error("{address}: {message}")]
    Start {
        /// The agent.
        address: Ipv4Addr,
        /// Cause.
        message: String,
    },
    /// Addresses run out of 127.0.0.0/8.
    #[error("the addresses run past 127.255.255.255")]
    Range,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SimError + '_ {
    move |source| SimError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where an agent keeps its files.
fn agent_dir(dir: &Path, ip: Ipv4Addr) -> PathBuf {
    dir.join("agents").join(ip.to_string())
}

/// Enrolls one simulated agent for every token, at the first addresses from `base` not enrolled
/// under `dir` yet, at most `parallel` at once, through `POST /api/v1/enroll` like `patch-agent
/// enroll` (each from its own address). Agents already enrolled are kept and consume no token.
/// Answers the addresses enrolled now, in order.
pub async fn enroll(
    dir: &Path,
    manager: &str,
    tokens: &[String],
    base: Ipv4Addr,
    port: u16,
    parallel: usize,
) -> Result<Vec<Ipv4Addr>, SimError> {
    use futures_util::stream::{self, StreamExt, TryStreamExt};
    let mut addresses = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while addresses.len() < tokens.len() {
        let ip = address(base, i).ok_or(SimError::Range)?;
        if !agent_dir(dir, ip).join("agent.toml").exists() {
            addresses.push(ip);
        }
        i += 1;
    }
    stream::iter(addresses.iter().copied().zip(tokens.iter()))
        .map(|(ip, token)| enroll_one(dir, manager, token, ip, port))
        .buffer_unordered(parallel.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(addresses)
}

async fn enroll_one(
    dir: &Path,
    manager: &str,
    token: &str,
    ip: Ipv4Addr,
    port: u16,
) -> Result<(), SimError> {
    let home = agent_dir(dir, ip);
    let config_path = home.join("agent.toml");
    std::fs::create_dir_all(&home).map_err(io(&home))?;
    let mut config = AgentConfig::default();
    config.server.listen = SocketAddr::new(IpAddr::V4(ip), port);
    config.tls.cert = home.join("tls/agent.crt");
    config.tls.key = home.join("tls/agent.key");
    config.tls.client_ca = home.join("tls/ca.crt");
    config.tls.crl = home.join("tls/ca.crl");
    config.jobs.state_dir = home.join("state");
    config.audit.path = dir.join("audit.jsonl");
    let text = toml::to_string(&config).map_err(|e| SimError::Enroll {
        address: ip,
        message: e.to_string(),
    })?;
    let staged = home.join("agent.toml.new");
    std::fs::write(&staged, text).map_err(io(&staged))?;
    let done = crate::enroll::enroll(&crate::enroll::EnrollOptions {
        manager: manager.to_owned(),
        token: token.to_owned(),
        hostname: format!("sim-{}.fleet.test", ip.to_string().replace('.', "-")),
        addresses: vec![IpAddr::V4(ip)],
        config_path: staged.clone(),
        source: Some(IpAddr::V4(ip)),
    })
    .await;
    match done {
        // Only a complete enrollment is kept: a rerun retries the others.
        Ok(_) => std::fs::rename(&staged, &config_path).map_err(io(&config_path)),
        Err(e) => {
            drop(std::fs::remove_file(&staged));
            Err(SimError::Enroll {
                address: ip,
                message: e.to_string(),
            })
        }
    }
}

/// How the simulated hosts behave.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Installed packages per host.
    pub packages: usize,
    /// Most pending updates per host.
    pub max_updates: usize,
    /// Delay of every package-database read.
    pub latency: Duration,
    /// Share of failing package-database reads, in millionths.
    pub failure_ppm: u32,
    /// Share of failing jobs, in millionths.
    pub job_failure_ppm: u32,
    /// Seconds an idle connection stays open (`server.keep_alive_secs` of every agent).
    pub keep_alive_secs: u64,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            packages: 600,
            max_updates: 25,
            latency: Duration::ZERO,
            failure_ppm: 0,
            job_failure_ppm: 0,
            keep_alive_secs: 5,
        }
    }
}

/// One simulated agent.
struct SimAgent {
    address: SocketAddr,
    endpoint: Endpoint,
    /// Stops it: the agent's task on its arbiter answers once its listener is closed.
    serving: Option<tokio::sync::oneshot::Sender<tokio::sync::oneshot::Sender<()>>>,
}

/// A running simulated fleet. Its agents are served by one arbiter (thread) per core, as
/// independent hosts would answer in parallel; the fleet itself is driven from one actix system
/// thread (not `Send`).
pub struct SimFleet {
    agents: Vec<SimAgent>,
    arbiters: Vec<actix_rt::Arbiter>,
}

impl std::fmt::Debug for SimFleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimFleet")
            .field("agents", &self.agents.len())
            .finish()
    }
}

impl SimFleet {
    /// Loads every agent enrolled under `dir` (sorted by address) and starts them all. Must run
    /// inside an actix system.
    pub async fn start(dir: &Path, behaviour: &Behaviour) -> Result<Self, SimError> {
        let agents_dir = dir.join("agents");
        let mut ips: Vec<Ipv4Addr> = std::fs::read_dir(&agents_dir)
            .map_err(io(&agents_dir))?
            .filter_map(Result::ok)
            .filter(|e| e.path().join("agent.toml").exists())
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        ips.sort();
        let audit_path = dir.join("audit.jsonl");
        let audit = AuditLog::open(&audit_path).map_err(|e| SimError::Start {
            address: Ipv4Addr::LOCALHOST,
            message: format!("{}: {e}", audit_path.display()),
        })?;
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let mut fleet = Self {
            agents: Vec::with_capacity(ips.len()),
            arbiters: (0..threads).map(|_| actix_rt::Arbiter::new()).collect(),
        };
        for ip in ips {
            let failed = |message: String| SimError::Start {
                address: ip,
                message,
            };
            let config_path = agent_dir(dir, ip).join("agent.toml");
            let mut config =
                crate::config::load(Some(&config_path), &[]).map_err(|e| failed(e.to_string()))?;
            config.server.keep_alive_secs = behaviour.keep_alive_secs;
            let backend = Arc::new(SimBackend::new(SimProfile {
                seed: u64::from(u32::from(ip)),
                packages: behaviour.packages,
                max_updates: behaviour.max_updates,
                latency: behaviour.latency,
                failure_ppm: behaviour.failure_ppm,
                job_failure_ppm: behaviour.job_failure_ppm,
            }));
            let jobs = crate::jobs::Jobs::new(
                backend.clone(),
                audit.clone(),
                config.jobs.state_dir.clone(),
                1,
                Duration::from_secs(60),
            )
            .map_err(|e| failed(e.to_string()))?;
            let endpoint = Endpoint::new(&config, backend, jobs, audit.clone())
                .map_err(|e| failed(e.to_string()))?;
            fleet.agents.push(SimAgent {
                address: config.server.listen,
                endpoint,
                serving: None,
            });
        }
        for i in 0..fleet.agents.len() {
            fleet.revive(i).await?;
        }
        Ok(fleet)
    }

    /// Number of agents.
    pub fn len(&self) -> usize {
        self.agents.len()
    }

    /// Whether there is no agent.
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// The address of agent `i`.
    pub fn address(&self, i: usize) -> Option<SocketAddr> {
        self.agents.get(i).map(|a| a.address)
    }

    /// The index of the agent at `ip`.
    pub fn index_of(&self, ip: IpAddr) -> Option<usize> {
        self.agents.iter().position(|a| a.address.ip() == ip)
    }

    /// Whether agent `i` is serving.
    pub fn is_up(&self, i: usize) -> bool {
        self.agents.get(i).is_some_and(|a| a.serving.is_some())
    }

    /// Stops agent `i`: its listener is closed when this returns, so connections to it are
    /// refused from now on. Connections it is serving are cut.
    pub async fn kill(&mut self, i: usize) -> bool {
        match self.agents.get_mut(i).and_then(|a| a.serving.take()) {
            Some(stop) => {
                let (closed, done) = tokio::sync::oneshot::channel();
                if stop.send(closed).is_ok() {
                    // An error means the task is gone already, listener and all.
                    let _ = done.await;
                }
                true
            }
            None => false,
        }
    }

    /// Starts agent `i` again (no-op if it is serving).
    pub async fn revive(&mut self, i: usize) -> Result<(), SimError> {
        let Some(agent) = self.agents.get_mut(i) else {
            return Ok(());
        };
        if agent.serving.is_some() {
            return Ok(());
        }
        let ip = match agent.address.ip() {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        };
        let failed = |message: String| SimError::Start {
            address: ip,
            message,
        };
        let socket = tokio::net::TcpSocket::new_v4().map_err(|e| failed(e.to_string()))?;
        socket
            .set_reuseaddr(true)
            .map_err(|e| failed(e.to_string()))?;
        socket
            .bind(agent.address)
            .map_err(|e| failed(format!("cannot listen on {}: {e}", agent.address)))?;
        // Listening starts on the agent's arbiter, whose runtime then owns the listener.
        let endpoint = agent.endpoint.clone();
        let (stop_tx, stop_rx) =
            tokio::sync::oneshot::channel::<tokio::sync::oneshot::Sender<()>>();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
        let arbiter = &self.arbiters[i % self.arbiters.len().max(1)];
        // The closure moves to the arbiter's thread, where the (non-Send) service runs.
        let spawned = arbiter.spawn_fn(move || {
            actix_rt::spawn(run_agent(socket, endpoint, stop_rx, ready_tx));
        });
        if !spawned {
            return Err(failed("the agent's arbiter has stopped".into()));
        }
        match ready_rx.await {
            Ok(Ok(())) => {
                agent.serving = Some(stop_tx);
                Ok(())
            }
            Ok(Err(m)) => Err(failed(m)),
            Err(_) => Err(failed("the agent's task ended before it served".into())),
        }
    }
}

/// One agent on its arbiter: listens, serves until told to stop (or the stop sender is
/// dropped), then confirms once its listener and connections are gone.
async fn run_agent(
    socket: tokio::net::TcpSocket,
    endpoint: Endpoint,
    stop_rx: tokio::sync::oneshot::Receiver<tokio::sync::oneshot::Sender<()>>,
    ready_tx: tokio::sync::oneshot::Sender<Result<(), String>>,
) {
    let listener = match socket.listen(1024) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready_tx.send(Err(e.to_string()));
            return;
        }
    };
    let Ok(service) = endpoint.service().new_service(()).await else {
        let _ = ready_tx.send(Err("the HTTP service did not start".into()));
        return;
    };
    let _ = ready_tx.send(Ok(()));
    tokio::select! {
        () = serve(listener, service) => {}
        stop = stop_rx => {
            // The listener and every connection end with this task; then say so.
            if let Ok(closed) = stop {
                actix_rt::spawn(async move {
                    let _ = closed.send(());
                });
            }
        }
    }
}

/// Accepts connections until aborted; each runs in a task of its own, aborted with the listener.
async fn serve<S>(listener: tokio::net::TcpListener, service: S)
where
    S: Service<tokio::net::TcpStream, Response = (), Error = ()> + 'static,
{
    let service = Rc::new(service);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    let service = service.clone();
                    connections.spawn_local(async move {
                        let _finished: Result<(), ()> = service.call(tcp).await;
                    });
                }
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

impl Drop for SimFleet {
    fn drop(&mut self) {
        for agent in &mut self.agents {
            // A dropped stop sender ends the agent's task (its listener closes).
            drop(agent.serving.take());
        }
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}
