//! What every request handler and actor can reach: the database, the audit log and the
//! configuration the manager started with.

use crate::audit::AuditLog;
use crate::config::Config;
use crate::db::{stats, Database};
use crate::error::AppError;
use shared::status::{HealthReport, ServiceState, SystemOverview};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the health check waits for the database.
const HEALTH_DB_TIMEOUT: Duration = Duration::from_secs(2);

/// Shared application state. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Database pool.
    pub db: Database,
    /// Audit log writer handle.
    pub audit: AuditLog,
    /// The CA and the manager's certificates.
    pub pki: crate::pki::manager::ManagerPki,
    /// The host actors' supervisor and the event hub.
    pub fleet: crate::fleet::Fleet,
    /// Tickets that open the live event stream.
    pub tickets: Arc<crate::fleet::live::Tickets>,
    /// The CRL courier (delivery of the CRL in force to every agent).
    pub crl: Arc<crate::pki::crl::Courier>,
    /// Access-token signing keys.
    pub tokens: Arc<crate::auth::tokens::KeyCache>,
    /// Recent sign-in attempts per source address (the sign-in throttle; successes give theirs
    /// back).
    pub login_failures: Arc<crate::http::rate::Limiter>,
    /// Failed sign-ins per (name, source), existing names or not: a lock holds one name for
    /// one source only.
    pub sign_in_locks: Arc<crate::auth::login::SignInLocks>,
    /// The first-run setup, while no administrator exists.
    pub setup: Arc<crate::auth::setup::SetupGate>,
    /// Key that seals TOTP seeds.
    pub secrets: Arc<crate::secrets::SecretBox>,
    /// The WebAuthn relying party, or why security keys are unavailable.
    pub webauthn: Arc<Result<webauthn_rs::prelude::Webauthn, String>>,
    /// Starts of single sign-on per address (each fetches the provider's metadata).
    pub sso_starts: Arc<crate::http::rate::Limiter>,
    /// Requests per source to the public endpoints that write an audit record (root CA download,
    /// enrollment attempts), so nobody can grow the audit log from outside at will.
    pub public_writes: Arc<crate::http::rate::Limiter>,
    /// Serialises changes that could leave no enabled Admin (user edits, deletions, single sign-on
    /// role updates), so two of them cannot each see the other's Admin as the one remaining.
    pub admin_changes: Arc<tokio::sync::Mutex<()>>,
    /// The source-address allow-list.
    pub netguard: Arc<crate::http::allow_list::NetGuard>,
    /// Reverse proxies whose `X-Forwarded-For` names the client ([`crate::http::client`]).
    pub trusted_proxies: Arc<shared::netfilter::AllowList>,
    /// Clock of the sign-in code (tests move it).
    pub clock: Arc<crate::clock::Clock>,
    /// Configuration in force.
    pub config: Arc<Config>,
    /// Process start, for uptime.
    pub started: Instant,
}

impl AppState {
    /// Health as reported by `/status/health`.
    pub async fn health(&self) -> HealthReport {
        let database_ok = matches!(
            tokio::time::timeout(HEALTH_DB_TIMEOUT, self.db.ping()).await,
            Ok(Ok(()))
        );
        HealthReport {
            status: if database_ok {
                ServiceState::Ok
            } else {
                ServiceState::Degraded
            },
            version: env!("CARGO_PKG_VERSION").to_owned(),
            database: self.db.backend(),
            database_ok,
            uptime_seconds: self.started.elapsed().as_secs(),
        }
    }

    /// What the front page shows; hosts and groups within `scope`.
    pub async fn overview(
        &self,
        scope: &crate::auth::access::Scope,
    ) -> Result<SystemOverview, AppError> {
        let health = self.health().await;
        let scope = scope.clone();
        let (counts, audit_records) = self
            .db
            .run(move |c| {
                let mut counts = stats::inventory_counts(c)?;
                if let Some(ids) = scope.host_ids(c)? {
                    counts.hosts = i64::try_from(ids.len()).unwrap_or(i64::MAX);
                }
                if let Some(groups) = scope.groups() {
                    counts.groups = i64::try_from(groups.len()).unwrap_or(i64::MAX);
                }
                Ok((counts, crate::db::audit::count(c)?))
            })
            .await?;
        let audit_chain = match self.audit.last_verdict() {
            Some(v) => v,
            None => self
                .audit
                .verify()
                .await
                .map_err(|e| AppError::Internal(e.to_string()))?,
        };
        Ok(SystemOverview {
            health,
            hosts: counts.hosts,
            groups: counts.groups,
            users: counts.users,
            audit_records,
            audit_chain,
        })
    }
}
