//! The Certificates page's API (Admins only): every certificate the CA issued with its expiry
//! state, renewal of a host's certificate through its agent, rotation of the manager's client
//! certificate, revocation with an immediate CRL push, and one-time enrollment tokens.

use crate::api::{audit_action, rfc3339, AppError};
use crate::auth::access::Caller;
use crate::db::certificates::{self, CertificateRow};
use crate::db::enrollment;
use crate::db::schema::{enrollment_tokens as et, host_groups};
use crate::rotation::{self, RotationError};
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use shared::fleet::{
    CertificateInfo, CreatedEnrollmentToken, CrlPushResult, EnrollmentTokenInfo,
    NewEnrollmentToken, RevokeRequest,
};

/// The API view of a stored certificate. `superseded`: a newer certificate replaced it.
pub fn info(
    row: CertificateRow,
    renew_before_days: i64,
    superseded: Option<bool>,
) -> CertificateInfo {
    let now = chrono::Utc::now().naive_utc();
    let days = (row.not_after - now).num_days();
    let state = if row.revoked_at.is_some() {
        "revoked"
    } else if row.not_after <= now {
        "expired"
    } else if superseded == Some(true) {
        "superseded"
    } else if days < renew_before_days {
        "expiring"
    } else {
        "valid"
    };
    CertificateInfo {
        id: row.id,
        serial: row.serial,
        kind: row.kind,
        subject: row.subject,
        sans: serde_json::from_str(&row.sans_json).unwrap_or_default(),
        host_id: row.host_id,
        fingerprint_sha256: row.fingerprint_sha256,
        not_before: rfc3339(row.not_before),
        not_after: rfc3339(row.not_after),
        expires_in_days: days,
        state: state.into(),
        revoked_at: row.revoked_at.map(rfc3339),
        revocation_reason: row.revocation_reason,
    }
}

/// `GET /api/v1/certificates`: newest first.
pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let renew = state.config.pki.renew_before_days;
    let mut rows = state.db.run(certificates::list).await?;
    rows.sort_by_key(|r| std::cmp::Reverse(r.id));
    // The newest certificate per holder (host, or manager role) is current; older ones are
    // superseded.
    let mut seen = std::collections::HashSet::new();
    let out: Vec<CertificateInfo> = rows
        .into_iter()
        .map(|r| {
            let holder = (r.kind.clone(), r.host_id);
            let superseded = r.revoked_at.is_none() && !seen.insert(holder);
            info(r, renew, Some(superseded))
        })
        .collect();
    Ok(HttpResponse::Ok().json(out))
}

fn rotation_error(e: RotationError) -> AppError {
    match e {
        RotationError::NotFound(m) => AppError::NotFound(m),
        RotationError::Db(e) => AppError::Database(e),
        RotationError::Agent(e) => {
            AppError::Agent(format!("the agent did not take the certificate: {e}"))
        }
        other => AppError::Internal(other.to_string()),
    }
}

/// `POST /api/v1/hosts/{host_id}/certificate/renew`: asks the agent for a CSR from a new key,
/// signs it and installs the certificate; the agent reloads without dropping connections.
pub async fn renew_host(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let host_id = path.into_inner();
    let issued = rotation::renew_agent(&state, host_id)
        .await
        .map_err(rotation_error)?;
    audit_action(
        &state,
        &req,
        who.actor(),
        "certificate.renew_requested",
        format!("host:{host_id}"),
        serde_json::json!({ "serial": issued.serial }),
    )
    .await;
    let fp = issued.fingerprint_sha256.clone();
    let row = state
        .db
        .run(move |c| {
            Ok(crate::db::schema::certificates::table
                .filter(crate::db::schema::certificates::fingerprint_sha256.eq(fp))
                .select(CertificateRow::as_select())
                .first(c)?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(info(row, state.config.pki.renew_before_days, Some(false))))
}

/// `POST /api/v1/certificates/manager-client/rotate`: a new client certificate for talking to
/// agents; connections opened from now on use it.
pub async fn rotate_client(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
) -> Result<HttpResponse, AppError> {
    let issued = rotation::rotate_manager_client(&state)
        .await
        .map_err(rotation_error)?;
    audit_action(
        &state,
        &req,
        who.actor(),
        "certificate.rotate_requested",
        "manager_client".into(),
        serde_json::json!({ "serial": issued.serial }),
    )
    .await;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "serial": issued.serial })))
}

/// `POST /api/v1/certificates/{certificate_id}/revoke`: revokes and pushes the new CRL to every
/// agent at once; the answer says which agents did not take it.
pub async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    path: web::Path<i64>,
    body: web::Json<RevokeRequest>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let reason = body.into_inner().reason.trim().to_owned();
    if reason.is_empty() || reason.chars().count() > 200 || reason.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "reason",
            "reason must be 1 to 200 printable characters",
        ));
    }
    let row: Option<(String, String, Option<NaiveDateTime>)> = state
        .db
        .run(move |c| {
            use crate::db::schema::certificates as t;
            Ok(t::table
                .filter(t::id.eq(id))
                .select((t::serial, t::kind, t::revoked_at))
                .first(c)
                .optional()?)
        })
        .await?;
    let Some((serial, kind, revoked_at)) = row else {
        return Err(AppError::NotFound("no such certificate".into()));
    };
    if kind == "ca" {
        return Err(AppError::Conflict(
            "the root CA cannot revoke itself; replacing the CA means re-enrolling the fleet"
                .into(),
        ));
    }
    if revoked_at.is_some() {
        return Err(AppError::Conflict(
            "this certificate is already revoked".into(),
        ));
    }
    let push = rotation::revoke(&state, &serial, &reason)
        .await
        .map_err(rotation_error)?;
    audit_action(
        &state,
        &req,
        who.actor(),
        "certificate.revoke_requested",
        format!("certificate:{serial}"),
        serde_json::json!({ "reason": reason, "crl_delivered": push.delivered, "crl_failed": push.failed.len() }),
    )
    .await;
    Ok(HttpResponse::Ok().json(CrlPushResult {
        delivered: push.delivered,
        failed: push.failed,
    }))
}

/// `GET /api/v1/enrollment-tokens`: newest first, secrets never shown again.
pub async fn list_tokens(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    type Row = (
        i64,
        Option<i64>,
        NaiveDateTime,
        Option<NaiveDateTime>,
        Option<i64>,
        NaiveDateTime,
    );
    let rows: Vec<Row> = state
        .db
        .run(|c| {
            Ok(et::table
                .order(et::id.desc())
                .limit(200)
                .select((
                    et::id,
                    et::group_id,
                    et::expires_at,
                    et::used_at,
                    et::used_by_host_id,
                    et::created_at,
                ))
                .load(c)?)
        })
        .await?;
    let out: Vec<EnrollmentTokenInfo> = rows
        .into_iter()
        .map(
            |(id, group_id, expires, used, host, created)| EnrollmentTokenInfo {
                id,
                group_id,
                expires_at: rfc3339(expires),
                used_at: used.map(rfc3339),
                used_by_host_id: host,
                created_at: rfc3339(created),
            },
        )
        .collect();
    Ok(HttpResponse::Ok().json(out))
}

/// `POST /api/v1/enrollment-tokens`: a one-time token (optionally binding the host to a group)
/// and the command to run on the new host. The secret is shown in this answer only.
pub async fn create_token(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    body: web::Json<NewEnrollmentToken>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let minutes = body
        .minutes
        .unwrap_or(state.config.pki.enrollment_token_minutes);
    if !(5..=7 * 24 * 60).contains(&minutes) {
        return Err(AppError::invalid(
            "minutes",
            "minutes must be between 5 and 10080 (a week)",
        ));
    }
    let group_id = body.group_id;
    let fingerprint = state.pki.ca.fingerprint().to_owned();
    let uid = who.identity.user_id;
    let now = chrono::Utc::now().naive_utc();
    let expires = now + chrono::Duration::minutes(minutes);
    let token = state
        .db
        .run(move |c| {
            if let Some(g) = group_id {
                let exists: i64 = host_groups::table
                    .filter(host_groups::id.eq(g))
                    .count()
                    .get_result(c)?;
                if exists == 0 {
                    return Ok(None);
                }
            }
            Ok(Some(enrollment::create(
                c,
                &fingerprint,
                group_id,
                Some(uid),
                expires,
                now,
            )?))
        })
        .await?
        .ok_or_else(|| AppError::invalid("group_id", "no such group"))?;
    audit_action(
        &state,
        &req,
        who.actor(),
        "enrollment_token.created",
        format!("enrollment_token:{}", token.id),
        serde_json::json!({ "group_id": group_id, "expires_at": rfc3339(expires) }),
    )
    .await;
    // The configured public name, not the request's Host header (which the client chooses).
    let host = match state.config.server.public_names.first() {
        Some(name) => format!("{name}:{}", state.config.server.listen.port()),
        None => format!("MANAGER:{}", state.config.server.listen.port()),
    };
    let encoded = token.encode();
    Ok(HttpResponse::Created().json(CreatedEnrollmentToken {
        id: token.id,
        command: format!("patch-agent enroll --manager https://{host} --token {encoded}"),
        token: encoded,
        expires_at: rfc3339(expires),
    }))
}

/// `DELETE /api/v1/enrollment-tokens/{token_id}`: withdraws an unused token.
pub async fn delete_token(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let n = state
        .db
        .run(move |c| {
            Ok(diesel::delete(
                et::table
                    .filter(et::id.eq(id))
                    .filter(et::used_at.is_null()),
            )
            .execute(c)?)
        })
        .await?;
    if n == 0 {
        return Err(AppError::NotFound("no such unused token".into()));
    }
    audit_action(
        &state,
        &req,
        who.actor(),
        "enrollment_token.deleted",
        format!("enrollment_token:{id}"),
        serde_json::Value::Null,
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}
