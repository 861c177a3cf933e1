//! Rotation and revocation across the fleet, and the client the manager reaches agents with.
//!
//! - [`rotate_manager_client`]: issues the manager a new client certificate; agents trust the CA,
//!   so every connection opened afterwards uses it with no outage.
//! - [`revoke`]: marks a certificate revoked, builds a new CRL and pushes it to every agent.
//!
//! Each step is recorded in `certificates` and the audit log.

use crate::agent_client::{AgentClient, AgentClientError};
use crate::audit::Requester;
use crate::db::audit::{NewAuditEntry, Outcome};
use crate::db::{certificates, hosts, DbError};
use crate::pki::manager::CertsError;
use crate::pki::{CertKind, Issued, PkiError};
use crate::state::AppState;
use std::net::{IpAddr, SocketAddr};

/// Why a renewal, rotation or revocation failed.
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

impl From<RotationError> for crate::error::AppError {
    fn from(e: RotationError) -> Self {
        use crate::error::AppError;
        match e {
            RotationError::NotFound(m) => AppError::NotFound(m),
            RotationError::Db(e) => AppError::Database(e),
            RotationError::Agent(e) => {
                AppError::Agent(format!("the agent did not take the certificate: {e}"))
            }
            other => AppError::Internal(other.to_string()),
        }
    }
}

/// A client to the agent at `addr` with the manager's current client certificate, accepting only
/// the agent certificate pinned for the host (`pin`, when the host has one).
pub fn client(
    state: &AppState,
    addr: SocketAddr,
    pin: Option<&str>,
) -> Result<AgentClient, AgentClientError> {
    AgentClient::new(
        state.pki.ca.cert_pem(),
        &state.pki.client_cert,
        &state.pki.client_key,
        addr,
        pin,
    )
}

/// An audit entry of the manager itself.
pub(crate) fn system_entry(action: &str, target: String, outcome: Outcome) -> NewAuditEntry {
    Requester::named("system", None)
        .entry(action, outcome)
        .target(target)
}

/// Issues the manager a new client certificate (used by every agent connection opened after it).
pub async fn rotate_manager_client(state: &AppState) -> Result<Issued, RotationError> {
    Ok(crate::pki::manager::issue_to_files(
        &state.config,
        &state.db,
        &state.audit,
        &state.pki.ca,
        CertKind::ManagerClient,
        "patch-manager",
        &[],
        &state.pki.client_cert,
        &state.pki.client_key,
        state.clock.now(),
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
    let now = state.clock.now();
    let (changed, revoked, agents) = state
        .db
        .run(move |c| {
            let changed = certificates::revoke(c, &serial_c, &reason_c, now)?;
            let revoked = certificates::revoked(c, now)?;
            let agents = hosts::agent_addresses(c)?;
            Ok((changed, revoked, agents))
        })
        .await?;
    if changed {
        let entry = system_entry(
            "certificate.revoked",
            format!("certificate:{serial}"),
            Outcome::Success,
        )
        .details(serde_json::json!({ "reason": reason }));
        state.audit.note(entry).await;
    }
    let crl = state
        .pki
        .ca
        .crl(crate::pki::crl_number(state.clock.now()), &revoked, 7)?;
    let mut push = CrlPush {
        delivered: 0,
        failed: Vec::new(),
    };
    for agent in agents {
        let result = match (
            agent.ip_address.parse::<IpAddr>(),
            u16::try_from(agent.agent_port),
        ) {
            (Ok(ip), Ok(port)) => match client(
                state,
                SocketAddr::new(ip, port),
                agent.cert_fingerprint.as_deref(),
            ) {
                Ok(client) => client
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
            Err(e) => push.failed.push((agent.id, e)),
        }
    }
    let outcome = if push.failed.is_empty() {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    let entry = system_entry("crl.pushed", format!("certificate:{serial}"), outcome)
        .details(serde_json::json!({ "delivered": push.delivered, "failed": push.failed }));
    state.audit.note(entry).await;
    Ok(push)
}
