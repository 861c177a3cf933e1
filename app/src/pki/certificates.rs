//! The certificate service behind the Certificates page: every certificate the CA issued with its
//! expiry state, renewal of a host's certificate through its agent, rotation of the manager's
//! client certificate, revocation with an immediate CRL push. Each request is audited with the
//! requester; the steps themselves are audited by [`renewal`](super::renewal) and
//! [`rotation`](super::rotation).

use crate::audit::Requester;
use crate::clock::rfc3339;
use crate::db::certificates::{self as store, CertificateRow};
use crate::error::AppError;
use crate::pki::{renewal, rotation, CertKind};
use crate::state::AppState;
use chrono::NaiveDateTime;
use shared::fleet::{CertificateInfo, CrlStatus};
use shared::vocab::CertState;

/// The API view of a stored certificate at `now`. `superseded`: a newer certificate replaced it.
pub fn info(
    row: CertificateRow,
    renew_before_days: i64,
    superseded: Option<bool>,
    now: NaiveDateTime,
) -> CertificateInfo {
    let days = (row.not_after - now).num_days();
    let state = if row.revoked_at.is_some() {
        CertState::Revoked
    } else if row.not_after <= now {
        CertState::Expired
    } else if superseded == Some(true) {
        CertState::Superseded
    } else if days < renew_before_days {
        CertState::Expiring
    } else {
        CertState::Valid
    };
    CertificateInfo {
        id: row.id,
        serial: row.serial,
        kind: row.kind,
        subject: row.subject,
        sans: serde_json::from_str(&row.sans_json).unwrap_or_default(),
        host_id: row.host_id.map(Into::into),
        fingerprint_sha256: row.fingerprint_sha256,
        not_before: rfc3339(row.not_before),
        not_after: rfc3339(row.not_after),
        expires_in_days: days,
        state,
        revoked_at: row.revoked_at.map(rfc3339),
        revocation_reason: row.revocation_reason,
    }
}

/// Every certificate, newest first. The newest certificate per holder (host, or manager role) is
/// current; older unrevoked ones are superseded.
pub fn views(
    mut rows: Vec<CertificateRow>,
    renew_before_days: i64,
    now: NaiveDateTime,
) -> Vec<CertificateInfo> {
    rows.sort_by_key(|r| std::cmp::Reverse(r.id));
    let mut seen = std::collections::HashSet::new();
    rows.into_iter()
        .map(|r| {
            let holder = (r.kind, r.host_id);
            let superseded = r.revoked_at.is_none() && !seen.insert(holder);
            info(r, renew_before_days, Some(superseded), now)
        })
        .collect()
}

/// Every certificate, newest first, with its state.
pub async fn list(state: &AppState) -> Result<Vec<CertificateInfo>, AppError> {
    let rows = state.db.run(store::list).await?;
    Ok(views(
        rows,
        state.config.pki.renew_before_days,
        state.clock.now(),
    ))
}

/// Renews a host's certificate through its agent (CSR from a new key on the host).
pub async fn renew_host(
    state: &AppState,
    by: &Requester,
    host_id: i64,
) -> Result<CertificateInfo, AppError> {
    let issued = renewal::renew_agent(state, host_id).await?;
    let entry = by
        .success("certificate.renew_requested")
        .target(format!("host:{host_id}"))
        .details(serde_json::json!({ "serial": issued.serial }));
    state.audit.note(entry).await;
    let fp = issued.fingerprint_sha256;
    let row = state
        .db
        .run(move |c| store::find_by_fingerprint(c, &fp))
        .await?
        .ok_or_else(|| AppError::Internal("the renewed certificate was not recorded".into()))?;
    Ok(info(
        row,
        state.config.pki.renew_before_days,
        Some(false),
        state.clock.now(),
    ))
}

/// A new client certificate for the manager; answers its serial.
pub async fn rotate_client(state: &AppState, by: &Requester) -> Result<String, AppError> {
    let issued = rotation::rotate_manager_client(state).await?;
    let entry = by
        .success("certificate.rotate_requested")
        .target("manager_client")
        .details(serde_json::json!({ "serial": issued.serial }));
    state.audit.note(entry).await;
    Ok(issued.serial)
}

/// Revokes certificate `id` for `reason` and issues the new CRL; answers at once with the
/// delivery status while the courier takes it to every agent. Only agent and manager-client
/// certificates are revoked (they are the ones agents check against the CRL); never a
/// certificate twice.
pub async fn revoke(
    state: &AppState,
    by: &Requester,
    id: i64,
    reason: &str,
) -> Result<CrlStatus, AppError> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 200 || reason.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "reason",
            "reason must be 1 to 200 printable characters",
        ));
    }
    let row = state
        .db
        .run(move |c| store::find(c, id))
        .await?
        .ok_or_else(|| AppError::NotFound("no such certificate".into()))?;
    match row.kind {
        CertKind::Agent | CertKind::ManagerClient => {}
        CertKind::Ca | CertKind::WebCa => {
            return Err(AppError::Conflict(
                "a root cannot revoke itself; replacing a CA means re-enrolling the fleet or \
                 re-trusting the web root"
                    .into(),
            ))
        }
        CertKind::Web | CertKind::Enrollment => {
            return Err(AppError::Conflict(
                "the manager's server certificates are not checked against the fleet CRL; \
                 they are replaced at start when their names change or they near expiry"
                    .into(),
            ))
        }
    }
    if row.revoked_at.is_some() {
        return Err(AppError::Conflict(
            "this certificate is already revoked".into(),
        ));
    }
    if row.kind == CertKind::ManagerClient {
        let current = std::fs::read_to_string(&state.pki.client_cert)
            .ok()
            .and_then(|pem| crate::pki::fingerprint_of_pem(&pem).ok());
        if current.as_deref() == Some(row.fingerprint_sha256.as_str()) {
            // Agents would refuse the manager itself, including the push of this very CRL.
            return Err(AppError::Conflict(
                "this is the manager's client certificate in use: rotate it instead, which \
                 revokes it once its successor is in place"
                    .into(),
            ));
        }
    }
    rotation::revoke(state, &row.serial, reason).await?;
    let entry = by
        .success("certificate.revoke_requested")
        .target(format!("certificate:{}", row.serial))
        .details(serde_json::json!({ "reason": reason }));
    state.audit.note(entry).await;
    Ok(crate::pki::crl::status(state).await?)
}

/// The CRL in force and its delivery to every agent.
pub async fn crl_status(state: &AppState) -> Result<CrlStatus, AppError> {
    Ok(crate::pki::crl::status(state).await?)
}

/// Tries every agent lacking the current CRL again at once, and audits the request.
pub async fn retry_crl(state: &AppState, by: &Requester) -> Result<CrlStatus, AppError> {
    let status = crate::pki::crl::retry_now(state).await?;
    let entry = by
        .success("crl.retry_requested")
        .target(format!("crl:{}", status.number))
        .details(serde_json::json!({ "pending": status.pending.len() }));
    state.audit.note(entry).await;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, NaiveDate};

    fn now() -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2026, 11, 23)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap()
    }

    fn row(id: i64, kind: &str, host_id: Option<i64>, days_left: i64) -> CertificateRow {
        CertificateRow {
            id: id.into(),
            serial: format!("{id:02x}"),
            kind: kind.parse().unwrap(),
            subject: "x".into(),
            sans_json: r#"["DNS:x"]"#.into(),
            host_id,
            fingerprint_sha256: format!("{id:064x}"),
            not_before: now() - Duration::days(1),
            not_after: now() + Duration::days(days_left),
            cert_pem: String::new(),
            revoked_at: None,
            revocation_reason: None,
            created_at: now(),
        }
    }

    #[test]
    fn state_follows_revocation_expiry_replacement_and_the_renewal_window() {
        let mut revoked = row(1, "agent", Some(1), 100);
        revoked.revoked_at = Some(now());
        let rows = vec![
            revoked,
            row(2, "agent", Some(1), -1),
            row(3, "agent", Some(2), 10),
            row(4, "agent", Some(2), 200),
            row(5, "manager_client", None, 20),
        ];
        let views = views(rows, 30, now());
        let states: Vec<(i64, &str)> = views.iter().map(|v| (v.id.0, v.state.as_str())).collect();
        assert_eq!(
            states,
            [
                (5, "expiring"),
                (4, "valid"),
                (3, "superseded"),
                (2, "expired"),
                (1, "revoked"),
            ],
            "newest first; the newest per holder is current"
        );
        assert_eq!(views[0].sans, ["DNS:x"]);
        assert_eq!(views[0].expires_in_days, 20);
    }
}
