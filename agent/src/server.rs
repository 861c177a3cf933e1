//! The agent's listener: an actix-server pipeline of our own so that the allow-list is checked on
//! the bare TCP connection, before the TLS handshake, and so that handshake failures are audited.
//!
//! `TCP accept → allow-list (close silently) → TLS 1.3 handshake with client certificate
//! (failure: close, no HTTP answer) → HTTP/1.1 service (actix-web app)`.
//!
//! Every connection lives at most `server.max_connection_secs` from its accept, busy or idle
//! ([`Capped`]): a certificate revoked while it holds a kept-alive connection loses it within
//! that bound, and TLS sessions are never resumed (see [`crate::tls`]), so its next connection
//! is a full handshake against the current CRL.

use crate::api::{self, AgentState};
use crate::audit::AuditLog;
use crate::backend::PackageBackend;
use crate::config::AgentConfig;
use crate::ipfilter::AllowList;
use crate::refusals::Refusals;
use crate::reload::{ConfigLoader, Live};
use crate::tls::{ClientIdentity, ReloadableTls, TlsError};
use actix_http::{HttpService, Protocol};
use actix_server::ServerHandle;
use actix_service::{fn_service, map_config, ServiceFactoryExt};
use actix_web::dev::AppConfig;
use actix_web::middleware::from_fn;
use actix_web::{web, App};
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// TLS material unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Allow-list unusable.
    #[error("server.allow: {0}")]
    AllowList(String),
    /// Listener.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

/// A running agent listener.
pub struct RunningAgent {
    /// Bound address.
    pub addr: SocketAddr,
    /// TLS material, for reloads.
    pub tls: Arc<ReloadableTls>,
    handle: ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl std::fmt::Debug for RunningAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningAgent")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl RunningAgent {
    /// Stops the listener gracefully.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        drop(self.task.await);
    }

    /// Runs until stopped.
    pub async fn wait(self) -> std::io::Result<()> {
        self.task.await.map_err(std::io::Error::other)?
    }
}

/// Where the configuration comes from, so that changes can be reloaded while running.
pub struct ReloadSource {
    /// The config file to watch (besides the TLS files), if any.
    pub config_file: Option<std::path::PathBuf>,
    /// Loads and validates the configuration again.
    pub loader: ConfigLoader,
}

/// One agent's serving state, ready to take connections: its TLS material, allow-list, API state
/// and refusal throttle. [`start`] serves one on its own listener; the fleet simulator serves many
/// in one process.
#[derive(Clone)]
pub struct Endpoint {
    /// What a reload may replace.
    pub live: Live,
    /// State of the API handlers.
    pub state: AgentState,
    acceptor: TlsAcceptor,
    refusals: Arc<Refusals>,
    keep_alive: Duration,
}

impl Endpoint {
    /// Loads the TLS material and the allow-list of `config`; starts the refusal throttle's sweep.
    /// Must run inside an actix system.
    pub fn new(
        config: &AgentConfig,
        backend: Arc<dyn PackageBackend>,
        jobs: crate::jobs::Jobs,
        audit: AuditLog,
    ) -> Result<Self, StartError> {
        let tls = ReloadableTls::load(&config.tls)?;
        let acceptor = TlsAcceptor::from(Arc::new(tls.server_config()?));
        let allow = AllowList::from_entries(&config.server.allow).map_err(StartError::AllowList)?;
        let live = Live {
            allow: Arc::new(std::sync::RwLock::new(Arc::new(allow))),
            tls: tls.clone(),
            max_connection_secs: Arc::new(std::sync::atomic::AtomicU64::new(
                config.server.max_connection_secs,
            )),
        };
        let state = AgentState {
            backend,
            tls,
            audit: audit.clone(),
            jobs,
            tls_files: config.tls.clone(),
            state_dir: config.jobs.state_dir.clone(),
            audit_path: config.audit.path.clone(),
            metrics: Arc::default(),
        };
        let refusals = Refusals::new(
            audit,
            Duration::from_secs(config.audit.refusal_interval_secs),
        );
        Refusals::spawn_sweep(&refusals);
        Ok(Self {
            live,
            state,
            acceptor,
            refusals,
            keep_alive: Duration::from_secs(config.server.keep_alive_secs),
        })
    }

    /// The factory of the service that takes this agent's accepted TCP connections.
    pub fn service(
        &self,
    ) -> impl actix_service::ServiceFactory<
        TcpStream,
        Config = (),
        Response = (),
        Error = (),
        InitError = (),
    > {
        connection_service(
            self.live.clone(),
            self.acceptor.clone(),
            self.refusals.clone(),
            self.state.clone(),
            self.keep_alive,
        )
    }
}

/// Starts the HTTPS API. Must run inside an actix system. With `reload`, changes of the config
/// and TLS files are applied live.
pub fn start(
    config: &AgentConfig,
    backend: Arc<dyn PackageBackend>,
    jobs: crate::jobs::Jobs,
    audit: AuditLog,
    reload: Option<ReloadSource>,
) -> Result<RunningAgent, StartError> {
    let endpoint = Endpoint::new(config, backend, jobs, audit.clone())?;
    let tls = endpoint.live.tls.clone();
    if let Some(src) = reload {
        crate::reload::spawn(
            endpoint.live.clone(),
            config.clone(),
            src.config_file,
            src.loader,
            audit,
        );
    }
    let listen = config.server.listen;
    let listener = TcpListener::bind(listen).map_err(|source| StartError::Bind {
        addr: listen,
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: listen,
        source,
    })?;
    let server = actix_server::Server::build()
        .workers(2)
        .shutdown_timeout(5)
        .listen("patch-agent", listener, move || endpoint.service())
        .map_err(|source| StartError::Bind { addr, source })?
        .run();
    let handle = server.handle();
    let task = actix_web::rt::spawn(server);
    tracing::info!(%addr, "patch-agent listening (TLS 1.3, client certificates required)");
    Ok(RunningAgent {
        addr,
        tls,
        handle,
        task,
    })
}

/// What serves one accepted TCP connection: allow-list, TLS handshake, then the HTTP API. One
/// factory per listener; the fleet simulator runs many of them in one process.
fn connection_service(
    live: Live,
    acceptor: TlsAcceptor,
    refusals: Arc<Refusals>,
    state: AgentState,
    keep_alive: Duration,
) -> impl actix_service::ServiceFactory<TcpStream, Config = (), Response = (), Error = (), InitError = ()>
{
    let gate = fn_service(move |tcp: TcpStream| {
        let allow = live.allow_list();
        let cap = live.max_connection();
        let acceptor = acceptor.clone();
        let refusals = refusals.clone();
        async move { admit(tcp, &allow, cap, &acceptor, &refusals).await }
    });
    let app = App::new()
        .app_data(web::Data::new(state))
        .wrap(from_fn(api::audited))
        .configure(api::configure)
        .default_service(web::to(api::not_found));
    let http = HttpService::build()
        .client_request_timeout(Duration::from_secs(10))
        .keep_alive(keep_alive)
        .on_connect_ext(|io: &Capped<TlsStream<TcpStream>>, ext| {
            if let Some(cert) = io
                .get_ref()
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
            {
                if let Some(id) = ClientIdentity::from_der(cert.as_ref()) {
                    ext.insert(id);
                }
            }
        })
        .finish(map_config(app, |_| AppConfig::default()))
        .map_err(|_| ())
        .map_init_err(|_| ());
    gate.and_then(http)
}

/// Allow-list, then handshake. Refusals close the connection and are audited (throttled per
/// source, see [`crate::refusals`]).
async fn admit(
    tcp: TcpStream,
    allow: &AllowList,
    cap: Duration,
    acceptor: &TlsAcceptor,
    refusals: &Refusals,
) -> Result<(Capped<TlsStream<TcpStream>>, Protocol, Option<SocketAddr>), ()> {
    let deadline = tokio::time::Instant::now() + cap;
    let peer = tcp.peer_addr().ok();
    // Answers go out as soon as they are written (actix-http's own listeners do the same).
    let _ = tcp.set_nodelay(true);
    if !peer.is_some_and(|p| allow.allows(p.ip())) {
        // Dropping the socket closes it without a byte sent: no TLS alert, no HTTP answer.
        drop(tcp);
        tracing::debug!(?peer, "connection refused: address not on the allow-list");
        refusals.refused(peer, "connection.denied", "address not allowed");
        return Err(());
    }
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Ok((Capped::new(tls, deadline), Protocol::Http1, peer)),
        Ok(Err(e)) => {
            tracing::debug!(?peer, error = %e, "TLS handshake refused");
            refusals.refused(peer, "tls.refused", &e.to_string());
            Err(())
        }
        Err(_) => {
            refusals.refused(peer, "tls.refused", "handshake timed out");
            Err(())
        }
    }
}

/// A connection that ends at a deadline however busy it is: from then on reads see the end of
/// the stream (the HTTP layer stops taking requests and closes) and writes fail (a response
/// still being sent is cut off), so the connection is dropped.
pub struct Capped<T> {
    inner: T,
    deadline: Pin<Box<tokio::time::Sleep>>,
    expired: bool,
}

impl<T> Capped<T> {
    /// Wraps `inner` until `deadline`.
    pub fn new(inner: T, deadline: tokio::time::Instant) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            expired: false,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Whether the deadline has passed; registers the task to be woken when it does.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.expired && self.deadline.as_mut().poll(cx).is_ready() {
            self.expired = true;
            tracing::debug!("connection closed: lifetime cap reached");
        }
        self.expired
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Capped<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.expired(cx) {
            // End of stream.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Capped<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.expired(cx) {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connection lifetime cap reached",
            )));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
