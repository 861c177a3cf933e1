//! What every request handler and actor can reach: the database, the audit log and the
//! configuration the manager started with.

use crate::audit::AuditLog;
use crate::config::Config;
use crate::db::{stats, Database};
use crate::error::AppError;
use shared::status::{FleetSummary, GroupSummary, HealthReport, ServiceState, SystemOverview};
use shared::vocab::HostStatus;
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
    /// The agent package served for the one-line install, when there is one.
    pub agent_package: Option<Arc<crate::http::downloads::AgentPackage>>,
    /// What `/metrics` counts.
    pub metrics: Arc<crate::metrics::Metrics>,
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
        let scope_for_jobs = scope.clone();
        let scope = scope.clone();
        let (counts, audit_records, fleet) = self
            .db
            .run(move |c| {
                let mut counts = stats::inventory_counts(c)?;
                let visible = scope.host_ids(c)?;
                if let Some(ids) = &visible {
                    counts.hosts = i64::try_from(ids.len()).unwrap_or(i64::MAX);
                }
                if let Some(groups) = scope.groups() {
                    counts.groups = i64::try_from(groups.len()).unwrap_or(i64::MAX);
                }
                let fleet = fleet_summary(
                    &stats::host_lines(c, visible.as_deref())?,
                    &stats::group_lines(c, scope.groups())?,
                );
                Ok((counts, crate::db::audit::count(c)?, fleet))
            })
            .await?;
        // Verified up to the newest record (incrementally: only what came since the last check
        // is read), so the count and the verdict beside it agree.
        let audit_chain = match self.audit.verify_incremental().await {
            Ok(v) => v,
            Err(e) => self
                .audit
                .last_verdict()
                .ok_or_else(|| AppError::Internal(e.to_string()))?,
        };
        let active_jobs = crate::deploy::list(self, scope_for_jobs.clone())
            .await?
            .iter()
            .filter(|j| !j.state.is_finished())
            .count();
        let mut upcoming_windows = crate::deploy::maintenance::list(self, scope_for_jobs).await?;
        upcoming_windows.retain(|w| w.next_open.is_some());
        // RFC 3339 in UTC sorts as text; open windows (opened earlier) come first.
        upcoming_windows.sort_by(|a, b| a.next_open.cmp(&b.next_open));
        upcoming_windows.truncate(5);
        Ok(SystemOverview {
            active_jobs: i64::try_from(active_jobs).unwrap_or(i64::MAX),
            upcoming_windows,
            health,
            hosts: counts.hosts,
            groups: counts.groups,
            users: counts.users,
            audit_records,
            audit_chain,
            fleet,
        })
    }
}

/// Sums host lines up for the dashboard; a host is compliant once inventoried with no security
/// update pending.
pub fn fleet_summary(hosts: &[stats::HostLine], groups: &[(i64, String)]) -> FleetSummary {
    let mut s = FleetSummary::default();
    let mut compliant = std::collections::HashSet::new();
    let mut unreachable = std::collections::HashSet::new();
    for (id, status, pending, security, reboot, scanned) in hosts {
        match status.parse() {
            Ok(HostStatus::Healthy) => s.healthy += 1,
            Ok(HostStatus::Degraded) => s.degraded += 1,
            Ok(HostStatus::Unreachable) => {
                s.unreachable += 1;
                unreachable.insert(*id);
            }
            _ => s.unknown += 1,
        }
        if *scanned && *security == 0 {
            s.compliant += 1;
            compliant.insert(*id);
        }
        if *security > 0 {
            s.with_security_updates += 1;
        }
        s.pending_updates += pending;
        s.pending_security_updates += security;
        s.reboot_required += i64::from(*reboot);
    }
    let known: std::collections::HashSet<i64> = hosts.iter().map(|h| h.0).collect();
    let mut by_group: std::collections::BTreeMap<&str, GroupSummary> = Default::default();
    for (host, name) in groups.iter().filter(|(h, _)| known.contains(h)) {
        let g = by_group.entry(name).or_insert_with(|| GroupSummary {
            name: name.clone(),
            ..Default::default()
        });
        g.hosts += 1;
        g.compliant += i64::from(compliant.contains(host));
        g.unreachable += i64::from(unreachable.contains(host));
    }
    s.groups = by_group.into_values().collect();
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compliance_counts_inventoried_hosts_without_security_updates() {
        let line = |id: i64, status: &str, pending: i64, security: i64, scanned: bool| {
            (id, status.to_owned(), pending, security, false, scanned)
        };
        let hosts = [
            line(1, "healthy", 0, 0, true),
            line(2, "healthy", 3, 1, true),
            line(3, "unreachable", 2, 0, true),
            line(4, "unknown", 0, 0, false),
        ];
        let groups = [
            (1, "web".to_owned()),
            (2, "web".to_owned()),
            (3, "db".to_owned()),
            (9, "db".to_owned()),
        ];
        let s = fleet_summary(&hosts, &groups);
        assert_eq!((s.healthy, s.unreachable, s.unknown), (2, 1, 1));
        assert_eq!(
            (s.compliant, s.with_security_updates),
            (2, 1),
            "host 4 was never inventoried"
        );
        assert_eq!((s.pending_updates, s.pending_security_updates), (5, 1));
        assert_eq!(
            s.groups,
            [
                GroupSummary {
                    name: "db".into(),
                    hosts: 1,
                    compliant: 1,
                    unreachable: 1
                },
                GroupSummary {
                    name: "web".into(),
                    hosts: 2,
                    compliant: 1,
                    unreachable: 0
                },
            ],
            "host 9 is not visible"
        );
    }
}
