//! The agent's listener: an actix-server pipeline of our own so that the allow-list is checked on
//! the bare TCP connection, before the TLS handshake, and so that handshake failures are audited.
//!
//! `TCP accept → allow-list (close silently) → TLS 1.3 handshake with client certificate
//! (failure: close, no HTTP answer) → HTTP/1.1 service (actix-web app)`.

use crate::api::{self, AgentState};
use crate::audit::AuditLog;
use crate::backend::PackageBackend;
use crate::config::AgentConfig;
use crate::ipfilter::AllowList;
use crate::reload::{ConfigLoader, Live};
use crate::tls::{ClientIdentity, ReloadableTls, TlsError};
use actix_http::{HttpService, Protocol};
use actix_server::ServerHandle;
use actix_service::{fn_service, map_config, ServiceFactoryExt};
use actix_web::dev::AppConfig;
use actix_web::middleware::from_fn;
use actix_web::{web, App};
use serde_json::json;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;
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

/// Starts the HTTPS API. Must run inside an actix system. With `reload`, changes of the config
/// and TLS files are applied live.
pub fn start(
    config: &AgentConfig,
    backend: Arc<dyn PackageBackend>,
    jobs: crate::jobs::Jobs,
    audit: AuditLog,
    reload: Option<ReloadSource>,
) -> Result<RunningAgent, StartError> {
    let tls = ReloadableTls::load(&config.tls)?;
    let acceptor = TlsAcceptor::from(Arc::new(tls.server_config()?));
    let allow = AllowList::from_entries(&config.server.allow).map_err(StartError::AllowList)?;
    let live = Live {
        allow: Arc::new(std::sync::RwLock::new(Arc::new(allow))),
        tls: tls.clone(),
    };
    if let Some(src) = reload {
        crate::reload::spawn(
            live.clone(),
            config.clone(),
            src.config_file,
            src.loader,
            audit.clone(),
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
    let state = AgentState {
        backend,
        tls: tls.clone(),
        audit: audit.clone(),
        jobs,
        tls_files: config.tls.clone(),
        state_dir: config.jobs.state_dir.clone(),
    };

    let server = actix_server::Server::build()
        .workers(2)
        .shutdown_timeout(5)
        .listen("patch-agent", listener, move || {
            let live = live.clone();
            let acceptor = acceptor.clone();
            let audit = audit.clone();
            let state = state.clone();
            let gate = fn_service(move |tcp: TcpStream| {
                let allow = live.allow_list();
                let acceptor = acceptor.clone();
                let audit = audit.clone();
                async move { admit(tcp, &allow, &acceptor, &audit).await }
            });
            let app = App::new()
                .app_data(web::Data::new(state))
                .wrap(from_fn(api::audited))
                .configure(api::configure)
                .default_service(web::to(api::not_found));
            let http = HttpService::build()
                .client_request_timeout(Duration::from_secs(10))
                .on_connect_ext(|io: &TlsStream<TcpStream>, ext| {
                    if let Some(cert) = io.get_ref().1.peer_certificates().and_then(|c| c.first()) {
                        if let Some(id) = ClientIdentity::from_der(cert.as_ref()) {
                            ext.insert(id);
                        }
                    }
                })
                .finish(map_config(app, |_| AppConfig::default()))
                .map_err(|_| ());
            gate.and_then(http)
        })
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

/// Allow-list, then handshake. Refusals close the connection and are audited.
async fn admit(
    tcp: TcpStream,
    allow: &AllowList,
    acceptor: &TlsAcceptor,
    audit: &AuditLog,
) -> Result<(TlsStream<TcpStream>, Protocol, Option<SocketAddr>), ()> {
    let peer = tcp.peer_addr().ok();
    if !peer.is_some_and(|p| allow.allows(p.ip())) {
        // Dropping the socket closes it without a byte sent: no TLS alert, no HTTP answer.
        drop(tcp);
        tracing::warn!(?peer, "connection refused: address not on the allow-list");
        audit.record(
            "connection.denied",
            json!({ "peer": peer.map(|p| p.to_string()), "reason": "address not allowed" }),
        );
        return Err(());
    }
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Ok((tls, Protocol::Http1, peer)),
        Ok(Err(e)) => {
            tracing::warn!(?peer, error = %e, "TLS handshake refused");
            audit.record(
                "tls.refused",
                json!({ "peer": peer.map(|p| p.to_string()), "reason": e.to_string() }),
            );
            Err(())
        }
        Err(_) => {
            audit.record(
                "tls.refused",
                json!({ "peer": peer.map(|p| p.to_string()), "reason": "handshake timed out" }),
            );
            Err(())
        }
    }
}
