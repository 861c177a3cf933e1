//! Renewal of agent certificates through the agents themselves: the agent makes a new key and a
//! CSR on its host, the manager signs it for the host's recorded names and installs the
//! certificate, and the agent reloads without dropping established connections. A background
//! task renews every certificate that ends within `pki.renew_before_days`.

use crate::db::audit::Outcome;
use crate::db::hosts::{self, HostCertificateUpdate};
use crate::db::transaction::transaction;
use crate::db::{certificates, DbError};
use crate::pki::rotation::{client, system_entry, RotationError};
use crate::pki::{CertKind, Issued, San};
use crate::state::AppState;
use chrono::NaiveDateTime;
use std::net::{IpAddr, SocketAddr};

/// Interval of the renewal check.
pub const RENEWAL_CHECK: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

struct HostAddr {
    fqdn: String,
    ip: IpAddr,
    port: u16,
    pin: Option<String>,
}

async fn host(state: &AppState, host_id: i64) -> Result<HostAddr, RotationError> {
    let row = state
        .db
        .run(move |c| hosts::agent_address(c, host_id))
        .await?
        .ok_or_else(|| RotationError::NotFound(format!("no host {host_id}")))?;
    Ok(HostAddr {
        pin: row.cert_fingerprint,
        fqdn: row.fqdn.unwrap_or(row.display_name),
        ip: row
            .ip_address
            .parse()
            .map_err(|_| RotationError::NotFound(format!("host {host_id} has no valid address")))?,
        port: u16::try_from(row.agent_port)
            .map_err(|_| RotationError::NotFound(format!("host {host_id} has a bad port")))?,
    })
}

/// Renews one agent's certificate through the agent itself.
pub async fn renew_agent(state: &AppState, host_id: i64) -> Result<Issued, RotationError> {
    let h = host(state, host_id).await?;
    let agent = client(state, SocketAddr::new(h.ip, h.port), h.pin.as_deref())?;
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
        let entry = system_entry(
            "certificate.renew",
            format!("host:{host_id}"),
            Outcome::Failure,
        )
        .details(serde_json::json!({ "error": e.to_string() }));
        state.audit.note(entry).await;
        return Err(e.into());
    }
    let stored = issued.clone();
    let now = state.clock.now();
    state
        .db
        .run(move |c| {
            transaction(c, |c| {
                certificates::insert(c, &stored, CertKind::Agent, Some(host_id), now)?;
                hosts::set_certificate(
                    c,
                    host_id,
                    &HostCertificateUpdate {
                        cert_fingerprint: &stored.fingerprint_sha256,
                        updated_at: now,
                    },
                )?;
                Ok::<(), DbError>(())
            })
        })
        .await?;
    let entry = system_entry(
        "certificate.renewed",
        format!("host:{host_id}"),
        Outcome::Success,
    )
    .details(serde_json::json!({
        "serial": issued.serial, "not_after": issued.not_after.to_string() }));
    state.audit.note(entry).await;
    crate::pki::crl::contact_succeeded(state, host_id).await?;
    // The host's actor pins the new certificate from its next poll on.
    crate::fleet::supervise(state, host_id).await?;
    Ok(issued)
}

/// Agents renewed at once by [`renew_due`].
pub const MAX_CONCURRENT: usize = 8;

/// Renews every agent certificate that ends within `pki.renew_before_days` of `now`, at most
/// [`MAX_CONCURRENT`] at once; answers the hosts tried and what happened, in host order.
/// Failures are audited and retried on the next round.
pub async fn renew_due(
    state: &AppState,
    now: NaiveDateTime,
) -> Result<Vec<(i64, Result<String, String>)>, RotationError> {
    let threshold = now + chrono::Duration::days(state.config.pki.renew_before_days);
    let due = state
        .db
        .run(move |c| certificates::hosts_due_for_renewal(c, threshold))
        .await?;
    use futures_util::StreamExt;
    let mut out: Vec<(i64, Result<String, String>)> = futures_util::stream::iter(due)
        .map(|host_id| async move {
            let result = renew_agent(state, host_id)
                .await
                .map(|i| i.serial)
                .map_err(|e| e.to_string());
            if let Err(e) = &result {
                tracing::warn!(host_id, error = %e, "agent certificate renewal failed; will retry");
            }
            (host_id, result)
        })
        .buffer_unordered(MAX_CONCURRENT)
        .collect()
        .await;
    out.sort_by_key(|(host_id, _)| *host_id);
    Ok(out)
}

/// Spawns the periodic renewal check on the current runtime (first run after one interval); the
/// time comes from the application's clock.
pub fn spawn_renewal(state: AppState) {
    actix_web::rt::spawn(async move {
        let mut tick = actix_web::rt::time::interval(RENEWAL_CHECK);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = renew_due(&state, state.clock.now()).await {
                tracing::warn!(error = %e, "agent certificate renewal check failed");
            }
        }
    });
}
