//! CIDR discovery: a range probed for agents, then reviewed and adopted.
//!
//! Each address gets a TCP connect (per-probe timeout), then a TLS 1.3 handshake presenting the
//! manager's client certificate. Nothing is sent to a server until its certificate is verified
//! to come from this fleet's CA; such an agent is then asked for `/api/v1/health` on the same
//! connection, which proves it accepted the manager. Probes run with bounded concurrency; a run
//! can be cancelled (probes in flight finish, no new one starts) and ranges larger than
//! `fleet.discovery_max_addresses` are refused.
//!
//! An agent is **adoptable** when its certificate was signed by the fleet CA, is valid, is not
//! revoked and is pinned by no host: the case of hosts enrolled after the backup a database was
//! restored from. Adopting one registers the host pinned to exactly that certificate.
//!
//! Runs live in memory while the manager runs (the newest [`KEEP`]) and are written to
//! `discovery_runs` / `discovery_results` when they end, for the record.

use crate::audit::Requester;
use crate::db::discovery as store;
use crate::db::hosts::NewHost;
use crate::db::{certificates, DbError};
use crate::error::AppError;
use crate::pki::CertKind;
use crate::state::AppState;
use chrono::NaiveDateTime;
use futures_util::stream::{self, StreamExt};
use shared::fleet::{
    AdoptRefusal, AdoptRequest, AdoptResult, DiscoveredAgent, DiscoveryRequest, DiscoveryRun,
    DiscoveryState, ProbeOutcome,
};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs kept in memory.
pub const KEEP: usize = 20;
/// Default agent port.
const AGENT_PORT: u16 = 12443;
/// Found agents looked up in the database at once.
const IDENTIFY_AT_ONCE: usize = 8;
/// Largest health answer read from a probed agent.
const MAX_ANSWER: u64 = 64 * 1024;

/// One result with the certificate it was found with (kept for adoption).
#[derive(Debug, Clone)]
struct Found {
    agent: DiscoveredAgent,
    cert_pem: Option<String>,
    agent_version: Option<String>,
    /// The host it was adopted as.
    adopted: Option<i64>,
}

/// A run in progress or finished.
#[derive(Debug)]
struct Run {
    id: i64,
    cidr: String,
    port: u16,
    total: u64,
    probed: AtomicU64,
    found: Mutex<Vec<Found>>,
    state: Mutex<DiscoveryState>,
    cancel: AtomicBool,
    started: Instant,
    started_at: NaiveDateTime,
    finished: Mutex<Option<(NaiveDateTime, u64)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Run {
    fn view(&self) -> DiscoveryRun {
        let mut found: Vec<DiscoveredAgent> =
            lock(&self.found).iter().map(|f| f.agent.clone()).collect();
        found.sort_by_key(|a| a.address.parse::<IpAddr>().ok());
        let finished = *lock(&self.finished);
        DiscoveryRun {
            id: self.id.into(),
            cidr: self.cidr.clone(),
            port: self.port,
            state: *lock(&self.state),
            total: self.total,
            probed: self.probed.load(Ordering::Relaxed),
            found,
            started_at: crate::clock::rfc3339(self.started_at),
            finished_at: finished.map(|(t, _)| crate::clock::rfc3339(t)),
            elapsed_ms: finished.map_or_else(
                || u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
                |(_, ms)| ms,
            ),
        }
    }
}

/// The runs of this process, and the threads their probes run on.
#[derive(Debug, Default)]
pub struct Discoveries {
    runs: Mutex<VecDeque<Arc<Run>>>,
    /// One arbiter per core, started with the first run: a probe's TLS handshake and checks are
    /// CPU work, and a /22 probed from one thread took 3.4 s.
    threads: std::sync::OnceLock<Vec<actix::prelude::ArbiterHandle>>,
    next: std::sync::atomic::AtomicUsize,
}

impl Discoveries {
    /// The thread for the next probe.
    fn thread(&self) -> Option<actix::prelude::ArbiterHandle> {
        let threads = self.threads.get_or_init(|| {
            let n = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
            (0..n)
                .map(|_| actix::prelude::Arbiter::new().handle())
                .collect()
        });
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        threads.get(i % threads.len().max(1)).cloned()
    }

    fn get(&self, id: i64) -> Option<Arc<Run>> {
        lock(&self.runs).iter().find(|r| r.id == id).cloned()
    }

    fn running(&self) -> usize {
        lock(&self.runs)
            .iter()
            .filter(|r| *lock(&r.state) == DiscoveryState::Running)
            .count()
    }
}

/// The addresses of a range, refused beyond `max`.
pub fn addresses(cidr: &str, max: u64) -> Result<Vec<IpAddr>, String> {
    let cidr = cidr.trim();
    let (addr, prefix) = match cidr.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (cidr, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("{} is not an IP address", addr.escape_default()))?;
    let bits: u32 = if ip.is_ipv4() { 32 } else { 128 };
    let prefix: u32 = match prefix {
        None => bits,
        Some(p) => p
            .parse()
            .ok()
            .filter(|p| *p <= bits)
            .ok_or_else(|| format!("the prefix must be a number from 0 to {bits}"))?,
    };
    let host_bits = bits - prefix;
    let size: u128 = 1u128.checked_shl(host_bits).unwrap_or(u128::MAX);
    // An IPv4 network's first and last addresses (network, broadcast) are not hosts.
    let skip_ends = ip.is_ipv4() && host_bits >= 2;
    let hosts = if skip_ends { size - 2 } else { size };
    if hosts > u128::from(max) {
        return Err(format!(
            "{cidr} holds {hosts} addresses; at most {max} are probed at once \
             (fleet.discovery_max_addresses): split the range"
        ));
    }
    let base: u128 = match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    };
    let mask = if host_bits >= 128 {
        0
    } else {
        u128::MAX << host_bits
    };
    let network = base & mask;
    let (first, last) = match skip_ends {
        true => (network + 1, network + size - 2),
        false => (network, network + (size - 1)),
    };
    Ok((first..=last)
        .map(|n| match ip {
            // In range: an IPv4 network's addresses fit in 32 bits.
            IpAddr::V4(_) => IpAddr::from(std::net::Ipv4Addr::from(n as u32)),
            IpAddr::V6(_) => IpAddr::from(std::net::Ipv6Addr::from(n)),
        })
        .collect())
}

/// Accepts any server certificate: the probe checks it against the fleet CA itself before
/// sending anything, and keeps it to show who answered.
#[derive(Debug)]
struct Capture(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        // The handshake signature is still checked: the server holds the key of what it showed.
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS client of probes: TLS 1.3, the manager's client certificate.
fn probe_tls(state: &AppState) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pki = &state.pki;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pki.client_cert)
        .map_err(|e| format!("{}: {e}", pki.client_cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", pki.client_cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&pki.client_key)
        .map_err(|e| format!("{}: {e}", pki.client_key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Capture(provider)))
        .with_client_auth_cert(chain, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// What one probe saw (before the database is asked who it is).
struct Seen {
    address: IpAddr,
    outcome: ProbeOutcome,
    cert_der: Option<Vec<u8>>,
    agent_version: Option<String>,
    note: String,
}

/// Probes one address. `None`: nothing listens (refused, unreachable or timed out).
async fn probe(
    address: IpAddr,
    port: u16,
    timeout: Duration,
    tls: Arc<rustls::ClientConfig>,
    ca: Arc<crate::pki::Ca>,
) -> Option<Seen> {
    let tcp = tokio::time::timeout(
        timeout,
        tokio::net::TcpStream::connect(SocketAddr::new(address, port)),
    )
    .await
    .ok()?
    .ok()?;
    // The health question follows the handshake at once (no wait for a delayed ACK).
    let _ = tcp.set_nodelay(true);
    let seen = |outcome, cert_der, note: &str| Seen {
        address,
        outcome,
        cert_der,
        agent_version: None,
        note: note.to_owned(),
    };
    let name = rustls::pki_types::ServerName::IpAddress(address.into());
    let handshake = tokio::time::timeout(
        timeout * 3,
        tokio_rustls::TlsConnector::from(tls).connect(name, tcp),
    )
    .await;
    let mut stream = match handshake {
        Ok(Ok(s)) => s,
        Ok(Err(_)) | Err(_) => {
            return Some(seen(
                ProbeOutcome::NoHandshake,
                None,
                "the port is open but no TLS 1.3 handshake with the manager's certificate \
                 completed",
            ))
        }
    };
    let der = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec());
    let Some(der) = der else {
        return Some(seen(
            ProbeOutcome::NoHandshake,
            None,
            "no certificate shown",
        ));
    };
    let pem = pem::encode(&pem::Pem::new("CERTIFICATE", der.clone()));
    if !ca.signed(&pem) {
        // Nothing is sent to a server this fleet did not certify.
        return Some(seen(
            ProbeOutcome::Foreign,
            Some(der),
            "TLS with a certificate from another CA: not an agent of this fleet (enroll it)",
        ));
    }
    let ask = async {
        let head = format!(
            "GET /api/v1/health HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            SocketAddr::new(address, port)
        );
        stream.write_all(head.as_bytes()).await?;
        let mut raw = Vec::new();
        (&mut stream).take(MAX_ANSWER).read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    match tokio::time::timeout(timeout * 3, ask).await {
        Ok(Ok(raw)) if raw.starts_with(b"HTTP/1.1 200") => {
            let text = String::from_utf8_lossy(&raw);
            let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
            let version = serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("agent_version")?.as_str().map(str::to_owned));
            Some(Seen {
                agent_version: version,
                ..seen(ProbeOutcome::Agent, Some(der), "")
            })
        }
        _ => Some(seen(
            ProbeOutcome::NoHandshake,
            Some(der),
            "an agent of this fleet that did not accept the manager (its allow-list or CA)",
        )),
    }
}

/// Who an agent of this fleet is to the database: managed, adoptable, or why not.
fn classify(
    c: &mut crate::db::DbConnection,
    issued: &crate::pki::Issued,
    now: NaiveDateTime,
) -> Result<(Option<i64>, bool, String), DbError> {
    if let Some(id) = crate::db::hosts::by_fingerprint(c, &issued.fingerprint_sha256)? {
        return Ok((Some(id), false, format!("already managed as host {id}")));
    }
    if issued.not_after <= now {
        return Ok((None, false, "its certificate has expired".into()));
    }
    match certificates::find_by_fingerprint(c, &issued.fingerprint_sha256)? {
        Some(row) if row.revoked_at.is_some() => Ok((
            None,
            false,
            "its certificate was revoked (the host was removed): enroll it again".into(),
        )),
        Some(_) => Ok((
            None,
            true,
            "certified by this fleet's CA and registered to no host".into(),
        )),
        None => Ok((
            None,
            true,
            "certified by this fleet's CA but unknown to this database (enrolled after the \
             backup it was restored from?)"
                .into(),
        )),
    }
}

/// `POST /api/v1/discovery`: checks the range and starts the run.
pub async fn start(
    state: &AppState,
    by: &Requester,
    req: DiscoveryRequest,
) -> Result<DiscoveryRun, AppError> {
    let fleet_cfg = &state.config.fleet;
    let port = req.port.unwrap_or(AGENT_PORT);
    if port == 0 {
        return Err(AppError::invalid("port", "port must be 1 to 65535"));
    }
    let targets = addresses(&req.cidr, fleet_cfg.discovery_max_addresses)
        .map_err(|e| AppError::invalid("cidr", e))?;
    if state.fleet.discoveries.running() >= 2 {
        return Err(AppError::Conflict(
            "two discovery runs are already going on; wait for one or cancel it".into(),
        ));
    }
    let tls = probe_tls(state).map_err(AppError::Internal)?;
    let cidr = req.cidr.trim().to_owned();
    let now = state.clock.now();
    let user = by.user_id;
    let total = targets.len() as u64;
    let row_cidr = serde_json::json!([cidr]).to_string();
    let id = state
        .db
        .run(move |c| {
            store::start(
                c,
                &row_cidr,
                user,
                i64::try_from(total).unwrap_or(i64::MAX),
                now,
            )
        })
        .await?;
    let run = Arc::new(Run {
        id,
        cidr: cidr.clone(),
        port,
        total,
        probed: AtomicU64::new(0),
        found: Mutex::new(Vec::new()),
        state: Mutex::new(DiscoveryState::Running),
        cancel: AtomicBool::new(false),
        started: Instant::now(),
        started_at: now,
        finished: Mutex::new(None),
    });
    {
        let mut runs = lock(&state.fleet.discoveries.runs);
        runs.push_front(run.clone());
        while runs.len() > KEEP {
            // Drops the oldest finished run (a running one is never dropped).
            match runs
                .iter()
                .rposition(|r| *lock(&r.state) != DiscoveryState::Running)
            {
                Some(i) => drop(runs.remove(i)),
                None => break,
            }
        }
    }
    state
        .audit
        .note(
            by.success("discovery.started")
                .target(format!("discovery:{id}"))
                .details(serde_json::json!({ "cidr": cidr, "port": port, "addresses": total })),
        )
        .await;
    let view = run.view();
    let concurrency = fleet_cfg.discovery_concurrency;
    let timeout = Duration::from_millis(fleet_cfg.discovery_timeout_ms);
    actix_web::rt::spawn(execute(
        state.clone(),
        run,
        targets,
        tls,
        concurrency,
        timeout,
    ));
    Ok(view)
}

async fn execute(
    state: AppState,
    run: Arc<Run>,
    targets: Vec<IpAddr>,
    tls: Arc<rustls::ClientConfig>,
    concurrency: usize,
    timeout: Duration,
) {
    let port = run.port;
    let ca = state.pki.ca.clone();
    let probes = stream::iter(targets)
        .take_while(|_| std::future::ready(!run.cancel.load(Ordering::SeqCst)))
        .map(|ip| {
            // Run on a probe thread; here only if none can be had.
            let (tls_there, ca_there) = (tls.clone(), ca.clone());
            let (tls_here, ca_here) = (tls.clone(), ca.clone());
            let (tx, rx) = tokio::sync::oneshot::channel();
            let spawned = state.fleet.discoveries.thread().is_some_and(|t| {
                t.spawn(async move {
                    let _ = tx.send(probe(ip, port, timeout, tls_there, ca_there).await);
                })
            });
            async move {
                if spawned {
                    rx.await.ok().flatten()
                } else {
                    probe(ip, port, timeout, tls_here, ca_here).await
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .inspect(|_| {
            run.probed.fetch_add(1, Ordering::Relaxed);
        })
        .filter_map(std::future::ready);
    futures_util::pin_mut!(probes);
    // Who each agent is goes to the database beside the probes, not between them. Both are
    // polled in one loop: chained as one stream, the lookups in flight (at most
    // IDENTIFY_AT_ONCE) would stop pulling the probes, and so stop every probe from advancing.
    let mut identifying = futures_util::stream::FuturesUnordered::new();
    let mut waiting = std::collections::VecDeque::new();
    let mut probing = true;
    while probing || !identifying.is_empty() || !waiting.is_empty() {
        while identifying.len() < IDENTIFY_AT_ONCE {
            let Some(seen) = waiting.pop_front() else {
                break;
            };
            identifying.push(identify(&state, seen, port));
        }
        tokio::select! {
            seen = probes.next(), if probing => match seen {
                Some(seen) => waiting.push_back(seen),
                None => probing = false,
            },
            Some(found) = identifying.next(), if !identifying.is_empty() => {
                lock(&run.found).push(found);
            }
        }
    }
    let cancelled = run.cancel.load(Ordering::SeqCst);
    let end = state.clock.now();
    let ms = u64::try_from(run.started.elapsed().as_millis()).unwrap_or(u64::MAX);
    *lock(&run.finished) = Some((end, ms));
    let final_state = match cancelled {
        true => DiscoveryState::Cancelled,
        false => DiscoveryState::Done,
    };
    *lock(&run.state) = final_state;
    if let Err(e) = record(&state, &run, end).await {
        tracing::warn!(run = run.id, error = %e, "discovery run not recorded");
    }
    let view = run.view();
    state
        .audit
        .note(
            Requester::named("discovery", None)
                .success("discovery.finished")
                .target(format!("discovery:{}", run.id))
                .details(serde_json::json!({
                    "state": final_state,
                    "probed": view.probed,
                    "found": view.found.len(),
                    "elapsed_ms": ms,
                })),
        )
        .await;
}

/// Adds what the database knows to a probe's result.
async fn identify(state: &AppState, seen: Seen, port: u16) -> Found {
    let issued = seen
        .cert_der
        .as_deref()
        .and_then(|der| crate::pki::describe(der).ok());
    let mut agent = DiscoveredAgent {
        address: seen.address.to_string(),
        port,
        outcome: seen.outcome,
        subject: issued.as_ref().map(|i| i.subject.clone()),
        names: issued.as_ref().map(|i| i.sans.clone()).unwrap_or_default(),
        fingerprint: issued.as_ref().map(|i| i.fingerprint_sha256.clone()),
        not_after: issued.as_ref().map(|i| crate::clock::rfc3339(i.not_after)),
        host_id: None,
        adoptable: false,
        note: seen.note,
    };
    if let (ProbeOutcome::Agent, Some(issued)) = (seen.outcome, issued.clone()) {
        let now = state.clock.now();
        match state.db.run(move |c| classify(c, &issued, now)).await {
            Ok((host_id, adoptable, note)) => {
                agent.host_id = host_id.map(Into::into);
                agent.adoptable = adoptable;
                agent.note = note;
            }
            Err(e) => agent.note = format!("not checked against the database: {e}"),
        }
    }
    Found {
        agent,
        cert_pem: issued.map(|i| i.cert_pem),
        agent_version: seen.agent_version,
        adopted: None,
    }
}

/// Writes the finished run and its results.
async fn record(state: &AppState, run: &Run, end: NaiveDateTime) -> Result<(), DbError> {
    let view = run.view();
    let found: Vec<Found> = lock(&run.found).clone();
    let id = run.id;
    state
        .db
        .run(move |c| {
            let rows: Vec<store::ResultRow<'_>> = found
                .iter()
                .map(|f| store::ResultRow {
                    address: &f.agent.address,
                    port: i32::from(f.agent.port),
                    subject: f.agent.subject.as_deref(),
                    fingerprint: f.agent.fingerprint.as_deref(),
                    agent_version: f.agent_version.as_deref(),
                    adopted_host_id: f.adopted,
                })
                .collect();
            store::finish(
                c,
                id,
                state_word(view.state),
                i64::try_from(view.probed).unwrap_or(i64::MAX),
                end,
                &rows,
            )
        })
        .await
}

fn state_word(s: DiscoveryState) -> &'static str {
    match s {
        DiscoveryState::Running => "running",
        DiscoveryState::Done => "done",
        DiscoveryState::Cancelled => "cancelled",
        DiscoveryState::Interrupted => "interrupted",
    }
}

/// Runs still marked running in the database were cut short by a restart.
pub fn mark_interrupted(c: &mut crate::db::DbConnection) -> Result<usize, DbError> {
    store::mark_interrupted(c)
}

/// `GET /api/v1/discovery`: this process's runs, newest first.
pub fn list(state: &AppState) -> Vec<DiscoveryRun> {
    lock(&state.fleet.discoveries.runs)
        .iter()
        .map(|r| r.view())
        .collect()
}

fn run_of(state: &AppState, id: i64) -> Result<Arc<Run>, AppError> {
    state.fleet.discoveries.get(id).ok_or_else(|| {
        AppError::NotFound(
            "no such discovery run since the manager started (runs are kept in memory; probe \
             again)"
                .into(),
        )
    })
}

/// `GET /api/v1/discovery/{id}`.
pub fn get(state: &AppState, id: i64) -> Result<DiscoveryRun, AppError> {
    Ok(run_of(state, id)?.view())
}

/// `POST /api/v1/discovery/{id}/cancel`: no new probe starts; those in flight finish.
pub async fn cancel(state: &AppState, by: &Requester, id: i64) -> Result<DiscoveryRun, AppError> {
    let run = run_of(state, id)?;
    if *lock(&run.state) == DiscoveryState::Running && !run.cancel.swap(true, Ordering::SeqCst) {
        state
            .audit
            .note(
                by.success("discovery.cancelled")
                    .target(format!("discovery:{id}")),
            )
            .await;
    }
    Ok(run.view())
}

/// `POST /api/v1/discovery/{id}/adopt`: registers each adoptable agent asked for as a host pinned
/// to the certificate it was found with, checked again against the database in the same
/// transaction; the others are refused with their reason.
pub async fn adopt(
    state: &AppState,
    by: &Requester,
    id: i64,
    req: AdoptRequest,
) -> Result<AdoptResult, AppError> {
    if req.addresses.is_empty() || req.addresses.len() > 4096 {
        return Err(AppError::invalid("addresses", "give 1 to 4096 addresses"));
    }
    let run = run_of(state, id)?;
    let found: Vec<Found> = lock(&run.found).clone();
    let mut refused = Vec::new();
    let mut wanted = Vec::new();
    for address in &req.addresses {
        let refuse = |reason: &str| AdoptRefusal {
            address: address.clone(),
            reason: reason.to_owned(),
        };
        match found.iter().find(|f| f.agent.address == *address) {
            None => refused.push(refuse("not among this run's results")),
            Some(f) if !f.agent.adoptable => refused.push(refuse(&f.agent.note)),
            Some(f) => match f.cert_pem.as_deref().map(crate::pki::fingerprint_of_pem) {
                Some(Ok(_)) => wanted.push(f.clone()),
                _ => refused.push(refuse("no certificate recorded")),
            },
        }
    }
    let group = req.group_id.map(i64::from);
    let now = state.clock.now();
    let (adopted, more_refused) = state
        .db
        .run(move |c| {
            crate::db::transaction::transaction(c, |c| {
                if let Some(g) = group {
                    if !crate::db::hosts::group_exists(c, g)? {
                        return Err(DbError::Inconsistent("no such group".into()));
                    }
                }
                let mut adopted = Vec::new();
                let mut refused = Vec::new();
                for f in &wanted {
                    let address = f.agent.address.clone();
                    let Some(issued) = f
                        .cert_pem
                        .as_deref()
                        .and_then(|p| pem::parse(p).ok())
                        .and_then(|p| crate::pki::describe(p.contents()).ok())
                    else {
                        continue;
                    };
                    let (_, adoptable, note) = classify(c, &issued, now)?;
                    if !adoptable {
                        refused.push(AdoptRefusal {
                            address,
                            reason: note,
                        });
                        continue;
                    }
                    if crate::db::hosts::find_by_address(c, &address, i32::from(f.agent.port))?
                        .is_some()
                    {
                        refused.push(AdoptRefusal {
                            address: address.clone(),
                            reason: format!(
                                "a host at {address}:{} is already registered",
                                f.agent.port
                            ),
                        });
                        continue;
                    }
                    let fqdn = crate::pki::valid_dns_name(&issued.subject)
                        .then_some(issued.subject.as_str());
                    let host_id = crate::db::hosts::register(
                        c,
                        &NewHost::joining(
                            fqdn,
                            &address,
                            fqdn.unwrap_or(&address),
                            i32::from(f.agent.port),
                            &issued.fingerprint_sha256,
                            now,
                        ),
                        group,
                    )?;
                    match certificates::find_by_fingerprint(c, &issued.fingerprint_sha256)? {
                        Some(row) => certificates::assign_host(c, row.id.into(), host_id)?,
                        None => {
                            certificates::insert(c, &issued, CertKind::Agent, Some(host_id), now)?;
                        }
                    }
                    store::mark_adopted(c, id, &address, host_id)?;
                    adopted.push((address, host_id));
                }
                Ok::<_, DbError>((adopted, refused))
            })
        })
        .await
        .map_err(|e| match e {
            DbError::Inconsistent(m) if m == "no such group" => AppError::invalid("group_id", m),
            e => AppError::from(e),
        })?;
    refused.extend(more_refused);
    for (address, host_id) in &adopted {
        state
            .audit
            .note(
                by.success("host.adopted")
                    .target(format!("host:{host_id}"))
                    .details(serde_json::json!({ "address": address, "discovery": id })),
            )
            .await;
        crate::fleet::supervise(state, *host_id).await?;
    }
    {
        let mut found = lock(&run.found);
        for f in found.iter_mut() {
            if let Some((_, host_id)) = adopted.iter().find(|(a, _)| *a == f.agent.address) {
                f.agent.host_id = Some((*host_id).into());
                f.adopted = Some(*host_id);
                f.agent.adoptable = false;
                f.agent.note = format!("adopted as host {host_id}");
            }
        }
    }
    Ok(AdoptResult {
        adopted: adopted.into_iter().map(|(_, h)| h.into()).collect(),
        refused,
    })
}

#[cfg(test)]
mod tests {
    use super::addresses;
    use std::net::IpAddr;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter()
            .map(|a| a.parse().unwrap())
            .collect::<Vec<IpAddr>>()
    }

    #[test]
    fn ranges_are_expanded_without_network_and_broadcast() {
        let a = addresses("10.1.2.0/30", 16).unwrap();
        assert_eq!(a, ips(&["10.1.2.1", "10.1.2.2"]));
        assert_eq!(addresses("127.20.0.0/22", 4096).unwrap().len(), 1022);
        assert_eq!(addresses("127.0.0.5", 1).unwrap().len(), 1);
        assert_eq!(addresses("10.0.0.1/31", 2).unwrap().len(), 2);
        // Host bits set in the address are ignored, as in routing.
        let a = addresses("10.1.2.77/30", 16).unwrap();
        assert_eq!(a, ips(&["10.1.2.77", "10.1.2.78"]));
        assert_eq!(addresses("::1/128", 1).unwrap().len(), 1);
        assert_eq!(addresses("fd00::/120", 256).unwrap().len(), 256);
    }

    #[test]
    fn bad_and_oversized_ranges_are_refused_with_a_reason() {
        for (bad, why) in [
            ("10.0.0.0/8", "holds 16777214 addresses"),
            ("0.0.0.0/0", "holds"),
            ("::/0", "holds"),
            ("10.0.0.0/33", "prefix must be a number from 0 to 32"),
            ("10.0.0.0/x", "prefix"),
            ("not-an-ip/24", "is not an IP address"),
            ("10.0.0.0/24; rm -rf /", "prefix"),
            ("", "is not an IP address"),
        ] {
            let e = addresses(bad, 4096).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
