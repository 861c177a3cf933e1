//! Certificate rotation and revocation across the fleet.
//!
//! - [`renew_agent`]: asks the agent for a CSR (its new key is made on the host), signs it for the
//!   host's recorded names and installs it on the agent, which reloads without dropping
//!   established connections.
//! - [`rotate_manager_client`]: issues the manager a new client certificate; agents trust the CA,
//!   so every connection opened afterwards uses it with no outage.
//! - [`revoke`]: marks a certificate revoked, builds a new CRL and pushes it to every agent.
//!
//! Each step is recorded in `certificates` and the audit log.

use crate::agent_client::{AgentClient, AgentClientError};
use crate::certs::CertsError;
use crate::db::audit::{NewAuditEntry, Outcome};
use crate::db::schema::hosts;
use crate::db::{certificates, DbError};
use crate::pki::{CertKind, Issued, PkiError, San};
use crate::state::AppState;
use diesel::prelude::*;
use std::net::{IpAddr, SocketAddr};

/// Why a rotation or revocation failed.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// Database.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Agent.
    #[error(transparent)]
    Agent(#[from] AgentClientError),
    /// CA.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// Manager certificates.
    #[error(transparent)]
    Certs(#[from] CertsError),
    /// Unknown host or certificate.
    #[error("{0}")]
    NotFound(String),
}

/// A client to the agent at `addr` with the manager's current client certificate.
pub fn client(state: &AppState, addr: SocketAddr) -> Result<AgentClient, AgentClientError> {
    AgentClient::new(
        state.pki.ca.cert_pem(),
        &state.pki.client_cert,
        &state.pki.client_key,
        addr,
    )
}

async fn audit(
    state: &AppState,
    action: &str,
    target: String,
    outcome: Outcome,
    details: serde_json::Value,
) {
    let entry = NewAuditEntry {
        actor: "system".into(),
        action: action.into(),
        target: Some(target),
        outcome,
        details,
        source_ip: None,
        request_id: None,
    };
    state.audit.note(entry).await;
}

struct HostAddr {
    fqdn: String,
    ip: IpAddr,
    port: u16,
}

async fn host(state: &AppState, host_id: i64) -> Result<HostAddr, RotationError> {
    let row: Option<(Option<String>, String, i32, String)> = state
        .db
        .run(move |c| {
            Ok(hosts::table
                .filter(hosts::id.eq(host_id))
                .select((
                    hosts::fqdn,
                    hosts::ip_address,
                    hosts::agent_port,
                    hosts::display_name,
                ))
                .first(c)
                .optional()?)
        })
        .await?;
    let (fqdn, ip, port, display) =
        row.ok_or_else(|| RotationError::NotFound(format!("no host {host_id}")))?;
    Ok(HostAddr {
        fqdn: fqdn.unwrap_or(display),
        ip: ip
            .parse()
            .map_err(|_| RotationError::NotFound(format!("host {host_id} has no valid address")))?,
        port: u16::try_from(port)
            .map_err(|_| RotationError::NotFound(format!("host {host_id} has a bad port")))?,
    })
}

/// Renews one agent's certificate through the agent itself.
pub async fn renew_agent(state: &AppState, host_id: i64) -> Result<Issued, RotationError> {
    let h = host(state, host_id).await?;
    let agent = client(state, SocketAddr::new(h.ip, h.port))?;
    let csr = agent.request_csr().await?;
    let sans = [San::Dns(h.fqdn.clone()), San::Ip(h.ip)];
    let issued = state.pki.ca.sign_csr(
        &csr,
        CertKind::Agent,
        &h.fqdn,
        &sans,
        state.config.pki.validity_days,
    )?;
    if let Err(e) = agent.install_certificate(&issued.cert_pem).await {
        audit(
            state,
            "certificate.renew",
            format!("host:{host_id}"),
            Outcome::Failure,
            serde_json::json!({ "error": e.to_string() }),
        )
        .await;
        return Err(e.into());
    }
    let stored = issued.clone();
    state
        .db
        .run(move |c| {
            let now = chrono::Utc::now().naive_utc();
            c.transaction(|c| {
                certificates::insert(c, &stored, CertKind::Agent, Some(host_id), now)?;
                diesel::update(hosts::table.filter(hosts::id.eq(host_id)))
                    .set((
                        hosts::cert_fingerprint.eq(&stored.fingerprint_sha256),
                        hosts::updated_at.eq(now),
                    ))
                    .execute(c)?;
                Ok(())
            })
        })
        .await?;
    audit(
        state,
        "certificate.renewed",
        format!("host:{host_id}"),
        Outcome::Success,
        serde_json::json!({
        "serial": issued.serial, "not_after": issued.not_after.to_string() }),
    )
    .await;
    Ok(issued)
}

/// Renews every agent certificate that ends within `pki.renew_before_days` of `now`; answers
/// the hosts tried and what happened. Failures are audited and retried on the next round.
pub async fn renew_due(
    state: &AppState,
    now: chrono::NaiveDateTime,
) -> Result<Vec<(i64, Result<String, String>)>, RotationError> {
    let threshold = now + chrono::Duration::days(state.config.pki.renew_before_days);
    let due = state
        .db
        .run(move |c| certificates::hosts_due_for_renewal(c, threshold))
        .await?;
    let mut out = Vec::with_capacity(due.len());
    for host_id in due {
        let result = renew_agent(state, host_id)
            .await
            .map(|i| i.serial)
            .map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::warn!(host_id, error = %e, "agent certificate renewal failed; will retry");
        }
        out.push((host_id, result));
    }
    Ok(out)
}

/// Interval of the renewal check.
pub const RENEWAL_CHECK: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// Spawns the periodic renewal check on the current runtime (first run after one interval).
pub fn spawn_renewal(state: AppState) {
    actix_web::rt::spawn(async move {
        let mut tick = actix_web::rt::time::interval(RENEWAL_CHECK);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = renew_due(&state, chrono::Utc::now().naive_utc()).await {
                tracing::warn!(error = %e, "agent certificate renewal check failed");
            }
        }
    });
}

/// Issues the manager a new client certificate (used by every agent connection opened after it).
pub async fn rotate_manager_client(state: &AppState) -> Result<Issued, RotationError> {
    Ok(crate::certs::issue_to_files(
        &state.config,
        &state.db,
        &state.audit,
        &state.pki.ca,
        CertKind::ManagerClient,
        "patch-manager",
        &[],
        &state.pki.client_cert,
        &state.pki.client_key,
    )
    .await?)
}

/// Outcome of pushing a CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlPush {
    /// Agents that installed it.
    pub delivered: usize,
    /// Agents that did not, with the reason.
    pub failed: Vec<(i64, String)>,
}

/// Revokes a certificate and pushes the new CRL to every agent.
pub async fn revoke(
    state: &AppState,
    serial: &str,
    reason: &str,
) -> Result<CrlPush, RotationError> {
    let (serial_c, reason_c) = (serial.to_owned(), reason.to_owned());
    let (changed, revoked, agents) = state
        .db
        .run(move |c| {
            let now = chrono::Utc::now().naive_utc();
            let changed = certificates::revoke(c, &serial_c, &reason_c, now)?;
            let revoked = certificates::revoked(c, now)?;
            let agents: Vec<(i64, String, i32)> = hosts::table
                .select((hosts::id, hosts::ip_address, hosts::agent_port))
                .load(c)?;
            Ok((changed, revoked, agents))
        })
        .await?;
    if changed {
        audit(
            state,
            "certificate.revoked",
            format!("certificate:{serial}"),
            Outcome::Success,
            serde_json::json!({ "reason": reason }),
        )
        .await;
    }
    let number = crate::pki::crl_number(chrono::Utc::now().naive_utc());
    let crl = state.pki.ca.crl(number, &revoked, 7)?;
    let mut push = CrlPush {
        delivered: 0,
        failed: Vec::new(),
    };
    for (host_id, ip, port) in agents {
        let result = match (ip.parse::<IpAddr>(), u16::try_from(port)) {
            (Ok(ip), Ok(port)) => match client(state, SocketAddr::new(ip, port)) {
                Ok(agent) => agent
                    .push_crl(&crl)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
            _ => Err("invalid address".into()),
        };
        match result {
            Ok(()) => push.delivered += 1,
            Err(e) => push.failed.push((host_id, e)),
        }
    }
    audit(
        state,
        "crl.pushed",
        format!("certificate:{serial}"),
        if push.failed.is_empty() {
            Outcome::Success
        } else {
            Outcome::Failure
        },
        serde_json::json!({ "delivered": push.delivered, "failed": push.failed }),
    )
    .await;
    Ok(push)
}
