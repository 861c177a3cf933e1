//! Rotation and revocation across the fleet, and the client the manager reaches agents with.
//!
//! - [`rotate_manager_client`]: issues the manager a new client certificate; agents trust the CA,
//!   so every connection opened afterwards uses it with no outage. The previous one is revoked at
//!   once, and the new CRL goes to every agent (so the manager has one identity, whatever key an
//!   old copy of its data directory holds).
//! - [`revoke`]: marks a certificate revoked and issues a new CRL, which the
//!   [courier](super::crl) delivers to every agent in the background.
//!
//! Each step is recorded in `certificates` and the audit log.

use crate::agent_client::{AgentClient, AgentClientError};
use crate::audit::Requester;
use crate::db::audit::{NewAuditEntry, Outcome};
use crate::db::{certificates, DbError};
use crate::pki::manager::CertsError;
use crate::pki::{CertKind, Issued, PkiError};
use crate::state::AppState;
use std::net::SocketAddr;

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

/// Issues the manager a new client certificate (used by every agent connection opened after it),
/// revokes every earlier one and issues the CRL that says so.
pub async fn rotate_manager_client(state: &AppState) -> Result<Issued, RotationError> {
    let issued = crate::pki::manager::issue_to_files(
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
    .await?;
    let keep = issued.serial.clone();
    let now = state.clock.now();
    let revoked = state
        .db
        .run(move |c| {
            let mut revoked = Vec::new();
            for serial in certificates::live_of_kind(c, CertKind::ManagerClient, now)? {
                if serial != keep
                    && certificates::revoke(c, &serial, "superseded by rotation", now)?
                {
                    revoked.push(serial);
                }
            }
            Ok(revoked)
        })
        .await?;
    for serial in &revoked {
        let entry = system_entry(
            "certificate.revoked",
            format!("certificate:{serial}"),
            Outcome::Success,
        )
        .details(serde_json::json!({ "reason": "superseded by rotation" }));
        state.audit.note(entry).await;
    }
    crate::pki::crl::issue(state, "rotation").await?;
    Ok(issued)
}

/// Revokes a certificate and issues the new CRL; the courier delivers it to every agent in the
/// background. Answers whether this call revoked it (false: it was revoked already).
pub async fn revoke(state: &AppState, serial: &str, reason: &str) -> Result<bool, RotationError> {
    let (serial_c, reason_c) = (serial.to_owned(), reason.to_owned());
    let now = state.clock.now();
    let (changed, unpinned) = state
        .db
        .run(move |c| {
            crate::db::transaction::transaction(c, |c| {
                let changed = certificates::revoke(c, &serial_c, &reason_c, now)?;
                // A host pinned to the revoked certificate is refused from now on (whoever holds
                // that key): the manager stops trusting it, not only the agents.
                let unpinned = match certificates::fingerprint_of(c, &serial_c)? {
                    Some(fp) if changed => crate::db::hosts::unpin_revoked(c, &fp)?,
                    _ => None,
                };
                Ok::<_, DbError>((changed, unpinned))
            })
        })
        .await?;
    if let Some(host_id) = unpinned {
        crate::fleet::supervise(state, host_id).await?;
    }
    if changed {
        let entry = system_entry(
            "certificate.revoked",
            format!("certificate:{serial}"),
            Outcome::Success,
        )
        .details(serde_json::json!({ "reason": reason }));
        state.audit.note(entry).await;
        crate::pki::crl::issue(state, "revocation").await?;
    }
    Ok(changed)
}
