//! `POST /api/v1/enroll`: a new host presents its one-time token and a CSR; it gets its
//! certificate, the CA certificate and the current CRL, and appears in the manager.
//!
//! Everything happens in one transaction: the token is consumed, the host row, its group
//! membership and its certificate record are written, or nothing is. A refused token answers a
//! generic 401 and the precise reason (unknown, used, expired) goes to the audit log.

use crate::api::AppError;
use crate::db::audit::{NewAuditEntry, Outcome};
use crate::db::enrollment::{self, EnrollmentToken, TokenError};
use crate::db::schema::{host_group_members, hosts};
use crate::db::{certificates, DbError};
use crate::pki::{self, CertKind, Issued, San};
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use diesel::prelude::*;
use shared::enroll::{EnrollRequest, EnrollResponse};
use std::net::IpAddr;

/// Most addresses one host may register.
const MAX_ADDRESSES: usize = 16;
/// Largest CSR accepted.
const MAX_CSR_BYTES: usize = 16 * 1024;

enum TxError {
    Db(DbError),
    Token(TokenError),
    HostExists(String),
    Csr(String),
}

impl From<diesel::result::Error> for TxError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(DbError::Query(e))
    }
}

impl From<DbError> for TxError {
    fn from(e: DbError) -> Self {
        Self::Db(e)
    }
}

fn bad(code: &'static str, message: impl Into<String>) -> AppError {
    AppError::BadRequest {
        code,
        message: message.into(),
        details: serde_json::Value::Null,
    }
}

/// Handles an enrollment.
pub async fn enroll(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<EnrollRequest>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let source_ip = req.peer_addr().map(|a| a.ip().to_string());
    let hostname = body.hostname.trim().to_ascii_lowercase();
    if !pki::valid_dns_name(&hostname) {
        return Err(bad("validation_failed", "hostname must be a DNS name"));
    }
    if body.addresses.is_empty() || body.addresses.len() > MAX_ADDRESSES {
        return Err(bad(
            "validation_failed",
            format!("give 1 to {MAX_ADDRESSES} addresses"),
        ));
    }
    let addresses: Vec<IpAddr> = body
        .addresses
        .iter()
        .map(|a| {
            a.parse().map_err(|_| {
                bad(
                    "validation_failed",
                    format!("`{}` is not an IP address", a.escape_default()),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    if body.port == 0 {
        return Err(bad("validation_failed", "port must not be 0"));
    }
    if body.csr_pem.len() > MAX_CSR_BYTES
        || rcgen::CertificateSigningRequestParams::from_pem(&body.csr_pem).is_err()
    {
        return Err(bad(
            "invalid_csr",
            "csr_pem is not a valid, self-signed certificate signing request",
        ));
    }
    let Some(token) = EnrollmentToken::parse(&body.token) else {
        audit_refusal(&state, &hostname, source_ip.clone(), "malformed token").await;
        return Err(AppError::Unauthorized(
            "invalid or expired enrollment token".into(),
        ));
    };

    let ca = state.pki.ca.clone();
    let validity = state.config.pki.validity_days;
    let (tx_host, tx_csr, port, token_id) = (
        hostname.clone(),
        body.csr_pem.clone(),
        i32::from(body.port),
        token.id,
    );
    let outcome = state
        .db
        .run(move |conn| {
            let now = chrono::Utc::now().naive_utc();
            let result = conn.transaction::<(i64, Issued, String), TxError, _>(|c| {
                let group = enrollment::consume(c, &token, ca.fingerprint(), now)?
                    .map_err(TxError::Token)?;
                let primary = addresses[0].to_string();
                let existing: Option<i64> = hosts::table
                    .filter(hosts::ip_address.eq(&primary))
                    .filter(hosts::agent_port.eq(port))
                    .select(hosts::id)
                    .first(c)
                    .optional()?;
                if existing.is_some() {
                    return Err(TxError::HostExists(format!(
                        "a host at {primary}:{port} is already registered"
                    )));
                }
                let mut sans = vec![San::Dns(tx_host.clone())];
                sans.extend(addresses.iter().map(|ip| San::Ip(*ip)));
                let issued = ca
                    .sign_csr(&tx_csr, CertKind::Agent, &tx_host, &sans, validity)
                    .map_err(|e| TxError::Csr(e.to_string()))?;
                let host_id: i64 = diesel::insert_into(hosts::table)
                    .values((
                        hosts::fqdn.eq(&tx_host),
                        hosts::ip_address.eq(&primary),
                        hosts::display_name.eq(&tx_host),
                        hosts::agent_port.eq(port),
                        hosts::status.eq("unknown"),
                        hosts::reboot_required.eq(false),
                        hosts::pending_patches.eq(0_i64),
                        hosts::pending_security_patches.eq(0_i64),
                        hosts::cert_fingerprint.eq(&issued.fingerprint_sha256),
                        hosts::created_at.eq(now),
                        hosts::updated_at.eq(now),
                    ))
                    .returning(hosts::id)
                    .get_result(c)?;
                if let Some(g) = group {
                    diesel::insert_into(host_group_members::table)
                        .values((
                            host_group_members::host_id.eq(host_id),
                            host_group_members::group_id.eq(g),
                            host_group_members::created_at.eq(now),
                        ))
                        .execute(c)?;
                }
                certificates::insert(c, &issued, CertKind::Agent, Some(host_id), now)?;
                enrollment::set_host(c, token_id, host_id)?;
                let revoked = certificates::revoked(c, now)?;
                let crl = ca
                    .crl(crate::pki::crl_number(now), &revoked, 7)
                    .map_err(|e| TxError::Db(DbError::Inconsistent(e.to_string())))?;
                Ok((host_id, issued, crl))
            });
            Ok(result)
        })
        .await?;
    match outcome {
        Ok((host_id, issued, crl_pem)) => {
            record(&state, "agent.enrolled", Outcome::Success, &format!("host:{host_id}"), source_ip, serde_json::json!({
                "hostname": hostname, "serial": issued.serial, "not_after": issued.not_after.to_string(),
            }))
            .await;
            Ok(HttpResponse::Created().json(EnrollResponse {
                host_id,
                certificate_pem: issued.cert_pem,
                ca_pem: state.pki.ca.cert_pem().to_owned(),
                crl_pem,
            }))
        }
        Err(TxError::Token(reason)) => {
            audit_refusal(&state, &hostname, source_ip, &reason.to_string()).await;
            Err(AppError::Unauthorized(
                "invalid or expired enrollment token".into(),
            ))
        }
        Err(TxError::HostExists(m)) => Err(AppError::Conflict(m)),
        Err(TxError::Csr(m)) => Err(bad("invalid_csr", m)),
        Err(TxError::Db(e)) => Err(AppError::Database(e)),
    }
}

async fn audit_refusal(state: &AppState, hostname: &str, source_ip: Option<String>, reason: &str) {
    record(
        state,
        "agent.enroll",
        Outcome::Denied,
        &format!("hostname:{hostname}"),
        source_ip,
        serde_json::json!({ "reason": reason }),
    )
    .await;
}

async fn record(
    state: &AppState,
    action: &str,
    outcome: Outcome,
    target: &str,
    source_ip: Option<String>,
    details: serde_json::Value,
) {
    let entry = NewAuditEntry {
        actor: "enrollment".into(),
        action: action.into(),
        target: Some(target.into()),
        outcome,
        details,
        source_ip,
        request_id: None,
    };
    state.audit.note(entry).await;
}
