//! Builds and starts the manager: database, audit writer, HTTP server with the JSON API and the
//! server-rendered Leptos UI. `main` and the integration tests both start it through [`start`];
//! tests bind port 0 and read the real address from [`RunningServer::addr`].

use crate::audit::AuditLog;
use crate::config::Config;
use crate::db::audit::{NewAuditEntry, Outcome};
use crate::db::{Database, DbError};
use crate::state::AppState;
use actix_web::dev::ServerHandle;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why the manager could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The data directory could not be prepared.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// Directory.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Database(#[from] DbError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The audit log could not record the start.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// The CA or the manager's certificates could not be prepared.
    #[error(transparent)]
    Certs(#[from] crate::pki::manager::CertsError),
    /// The secrets key could not be loaded.
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretError),
    /// The first-run setup could not be prepared.
    #[error(transparent)]
    Setup(#[from] crate::auth::setup::SetupError),
    /// The first CRL could not be issued.
    #[error("issuing the CRL: {0}")]
    Crl(String),
}

/// A started manager.
pub struct RunningServer {
    /// Address actually bound (useful with port 0).
    pub addr: SocketAddr,
    /// Address of the metrics listener, when it runs.
    pub metrics_addr: Option<SocketAddr>,
    /// Shared state, for tests and embedding.
    pub state: AppState,
    handle: ServerHandle,
    metrics_handle: Option<ServerHandle>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl RunningServer {
    /// Stops accepting, lets running requests finish, checkpoints the audit chain, and returns
    /// when the server is down.
    pub async fn stop(self) {
        if let Some(m) = &self.metrics_handle {
            m.stop(true).await;
        }
        self.handle.stop(true).await;
        drop(self.task.await);
        final_checkpoint(&self.state).await;
    }

    /// Runs until the server stops (signal or [`stop`](Self::stop) elsewhere), then checkpoints
    /// the audit chain.
    pub async fn wait(self) -> std::io::Result<()> {
        let served = self.task.await.map_err(std::io::Error::other);
        if let Some(m) = &self.metrics_handle {
            m.stop(true).await;
        }
        final_checkpoint(&self.state).await;
        served?
    }
}

/// The clean-shutdown checkpoint of the audit chain's head.
async fn final_checkpoint(state: &AppState) {
    match state.audit.checkpoint().await {
        Ok(Some(cp)) => tracing::info!(audit_id = cp.id, "audit chain checkpointed at shutdown"),
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "cannot write the shutdown audit checkpoint"),
    }
}

/// Prepares the data directory, opens the database, starts the audit writer and the HTTP server.
/// Must run inside an actix system (`#[actix_web::main]` or `#[actix_rt::test]`).
pub async fn start(config: Config) -> Result<RunningServer, StartupError> {
    config.validate()?;
    prepare_data_dir(&config.data.dir)?;
    let target = config.database_target()?;
    let (pool_size, pool_timeout) = (
        config.database.pool_size,
        Duration::from_secs(config.database.pool_timeout_secs),
    );
    let db = tokio::task::spawn_blocking(move || Database::open(&target, pool_size, pool_timeout))
        .await
        .map_err(|e| DbError::Task(e.to_string()))??;

    let clock = Arc::new(crate::clock::Clock::default());
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let signer = crate::audit::checkpoint::Signer::load_or_create(&config.data.dir)
        .map_err(crate::audit::AuditError::from)?;
    let audit = AuditLog::start_with(
        db.clone(),
        clock.clone(),
        crate::audit::AuditOptions {
            checkpoints: Some(Arc::new(signer)),
            checkpoint_every_records: config.audit.checkpoint_every_records,
            metrics: Some(metrics.clone()),
        },
    );
    audit
        .record(NewAuditEntry {
            actor: "system".into(),
            action: "manager.started".into(),
            target: None,
            outcome: Outcome::Success,
            details: serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "database": db.backend(),
            }),
            source_ip: None,
            request_id: None,
        })
        .await?;
    let pki = crate::pki::manager::prepare(&config, &db, &audit, clock.now()).await?;
    let netguard = Arc::new(crate::http::allow_list::NetGuard::load(&db).await?);
    crate::settings::report_unreadable(&db, &audit).await?;
    let secrets = Arc::new(crate::secrets::SecretBox::load_or_create(&config.data.dir)?);
    let key = secrets.clone();
    let migrated = db
        .run(move |c| crate::auth::mfa::migrate_recovery_codes(c, &key))
        .await?;
    if migrated > 0 {
        tracing::info!(migrated, "recovery codes re-stored under the keyed hash");
    }
    let setup = Arc::new(crate::auth::setup::SetupGate::prepare(&db, &config.data.dir).await?);
    // A full verification now, on the verifier's own thread and connection (a long chain does not
    // delay the start), then incremental ones.
    audit.spawn_periodic_verification(Duration::from_secs(config.audit.verify_interval_secs));
    audit.spawn_periodic_checkpoints(Duration::from_secs(config.audit.checkpoint_interval_secs));
    let tls = crate::pki::manager::web_tls(&config, &pki)?;

    let listener =
        TcpListener::bind(config.server.listen).map_err(|source| StartupError::Bind {
            addr: config.server.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartupError::Bind {
        addr: config.server.listen,
        source,
    })?;

    // Bound before anything serves, so a taken port stops the start with nothing running.
    let metrics_socket = match config.metrics.address()? {
        Some(at) => {
            let listener =
                TcpListener::bind(at).map_err(|source| StartupError::Bind { addr: at, source })?;
            let bound = listener
                .local_addr()
                .map_err(|source| StartupError::Bind { addr: at, source })?;
            Some((listener, bound))
        }
        None => None,
    };

    let scheme = if tls.is_some() { "https" } else { "http" };
    // Intervals saved in Settings win over the file's; an unreadable saved value is reported
    // (report_unreadable) and the file's intervals are used.
    let fleet_config = config.fleet.clone();
    let intervals = match db
        .run(move |c| crate::settings::read_polling(c, &fleet_config))
        .await
    {
        Ok(p) => crate::fleet::actor::Intervals::from_settings(&p),
        Err(_) => crate::fleet::actor::Intervals::from_settings(&config.fleet.polling()),
    };
    let (fleet, fleet_updates) = crate::fleet::start(
        Arc::new(crate::fleet::connector::Mtls::new(
            pki.clone(),
            config.fleet.agent_connections,
        )),
        intervals,
        config
            .fleet
            .job_retry_after_secs
            .map(std::time::Duration::from_secs),
    );
    let state = AppState {
        fleet,
        tickets: Arc::default(),
        db,
        audit,
        pki,
        crl: Arc::default(),
        setup,
        tokens: Arc::new(crate::auth::tokens::KeyCache::new(secrets.clone())),
        secrets,
        webauthn: Arc::new(crate::auth::passkeys::relying_party(&config, addr)),
        netguard,
        admin_changes: Arc::default(),
        sso_starts: Arc::new(crate::http::rate::Limiter::new(30, Duration::from_secs(60))),
        public_writes: Arc::new(crate::http::rate::Limiter::new(
            config.server.public_writes_per_minute,
            Duration::from_secs(60),
        )),
        clock,
        trusted_proxies: Arc::new(
            shared::netfilter::AllowList::from_entries(&config.server.trusted_proxies).map_err(
                |e| crate::config::ConfigError::Invalid {
                    key: "server.trusted_proxies".into(),
                    message: e,
                },
            )?,
        ),
        login_failures: Arc::default(),
        sign_in_locks: Arc::default(),
        metrics,
        agent_package: crate::http::downloads::AgentPackage::load(&config.server.agent_package)
            .map(Arc::new),
        config: Arc::new(config),
        started: Instant::now(),
    };
    if let Err(why) = state.webauthn.as_ref() {
        tracing::warn!(reason = %why, "security keys and passkeys are unavailable");
    }
    let server = crate::http::build_server(state.clone(), listener, addr, tls)
        .map_err(|source| StartupError::Bind { addr, source })?;
    let handle = server.handle();
    let task = actix_web::rt::spawn(server);
    let metrics_listener = match metrics_socket {
        Some((listener, bound)) => {
            if !bound.ip().is_loopback() {
                tracing::warn!(%bound, "the metrics listener is reachable from other machines; \
                    it answers without sign-in");
            }
            let server =
                crate::metrics::serve_listener(state.clone(), listener).map_err(|source| {
                    StartupError::Bind {
                        addr: bound,
                        source,
                    }
                })?;
            let handle = server.handle();
            actix_web::rt::spawn(server);
            tracing::info!(%bound, "metrics listening (GET /metrics, plain HTTP)");
            Some((bound, handle))
        }
        None => None,
    };
    crate::pki::renewal::spawn_renewal(state.clone());
    // The first CRL exists before the courier runs, so start-up writes the same records each time.
    crate::pki::crl::current(&state)
        .await
        .map_err(|e| StartupError::Crl(e.to_string()))?;
    crate::pki::crl::spawn(state.clone());
    crate::fleet::recorder::spawn(state.clone(), fleet_updates);
    let supervised = crate::fleet::supervise_all(&state).await?;
    // After the host actors (the supervisor's mailbox keeps the order): windows open now are
    // announced, unfinished patch jobs are taken up where they stood.
    state
        .fleet
        .scheduler
        .do_send(crate::deploy::scheduler::Attach(state.clone()));
    state
        .fleet
        .deployer
        .do_send(crate::deploy::deployer::Attach(state.clone()));
    let interrupted = state
        .db
        .run(crate::fleet::discovery::mark_interrupted)
        .await?;
    if interrupted > 0 {
        tracing::warn!(
            runs = interrupted,
            "discovery runs cut short by the last stop marked interrupted"
        );
    }
    tracing::info!(hosts = supervised, "host actors started");
    tracing::info!(%addr, scheme, database = ?state.db.backend(), ca_sha256 = state.pki.ca.fingerprint(), "patch-manager listening");
    Ok(RunningServer {
        addr,
        metrics_addr: metrics_listener.as_ref().map(|(a, _)| *a),
        metrics_handle: metrics_listener.map(|(_, h)| h),
        state,
        handle,
        task,
    })
}

/// Creates the data directory with mode 0700 if it is missing; warns if an existing one is open
/// to other users (it will hold the CA key and the database).
fn prepare_data_dir(dir: &Path) -> Result<(), StartupError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let err = |source| StartupError::DataDir {
        path: dir.display().to_string(),
        source,
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?;
    }
    let mode = std::fs::metadata(dir).map_err(err)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(dir = %dir.display(), mode = format!("{:o}", mode & 0o777),
            "data directory is accessible to other users; chmod 700 is recommended");
    }
    Ok(())
}
