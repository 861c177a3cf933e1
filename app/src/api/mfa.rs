//! The signed-in user's own second factors: list, enrol an authenticator app (TOTP), confirm it,
//! remove a factor, renew recovery codes. Every change is audited. Admins reset other users'
//! factors through the user administration endpoints.

use crate::api::AppError;
use crate::auth::access::Caller;
use crate::auth::mfa;
use crate::clock::rfc3339;
use crate::db::audit::{NewAuditEntry, Outcome};
use crate::db::{credentials, sessions, transaction, users, DbConnection, DbError};
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use shared::auth::{
    MfaCredential, MfaStatus, RecoveryCodes, TotpConfirmRequest, TotpEnrolRequest, TotpEnrolment,
};

/// Second factors change only within this long after signing in: a stolen session that is older
/// (or a browser left signed in) cannot add the thief's authenticator or remove the owner's.
pub const RECENT_SIGN_IN: chrono::Duration = chrono::Duration::minutes(15);

/// Refuses unless the caller's session began within [`RECENT_SIGN_IN`].
pub(crate) async fn require_recent_sign_in(state: &AppState, who: &Caller) -> Result<(), AppError> {
    let sid = who.identity.session.clone();
    let started = state.db.run(move |c| sessions::started_at(c, &sid)).await?;
    let now = state.clock.now();
    match started {
        Some(t) if t + RECENT_SIGN_IN > now => Ok(()),
        _ => Err(AppError::Forbidden(
            "sign in again to change your second factors (allowed for 15 minutes after signing in)"
                .into(),
        )),
    }
}

/// `GET /api/v1/auth/mfa`.
pub async fn status(state: web::Data<AppState>, who: Caller) -> Result<HttpResponse, AppError> {
    let uid = who.identity.user_id;
    let status = state
        .db
        .run(move |c| {
            let required = account(c, uid)?.mfa_required;
            Ok(MfaStatus {
                required,
                credentials: credentials::factors(c, uid)?
                    .into_iter()
                    .map(|f| MfaCredential {
                        id: f.id,
                        kind: f.kind,
                        name: f.name,
                        created_at: rfc3339(f.created_at),
                        last_used_at: f.last_used_at.map(rfc3339),
                    })
                    .collect(),
                recovery_codes_left: mfa::recovery_codes_left(c, uid)?,
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(status))
}

/// The signed-in account (it exists while its session does).
fn account(c: &mut DbConnection, uid: i64) -> Result<users::User, DbError> {
    users::find(c, uid)?.ok_or_else(|| DbError::Inconsistent(format!("user {uid} not found")))
}

/// Audits a change to the caller's own factors.
async fn note(
    state: &AppState,
    req: &HttpRequest,
    who: &Caller,
    action: &str,
    details: serde_json::Value,
) {
    state
        .audit
        .note(
            NewAuditEntry::new(who.actor(), action, Outcome::Success)
                .target(format!("user:{}", who.identity.user_id))
                .details(details)
                .source(req.peer_addr().map(|a| a.ip())),
        )
        .await;
}

/// Checks a credential name: 1–64 printable characters.
pub(crate) fn valid_name(name: &str) -> Result<String, AppError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "name",
            "name must be 1 to 64 printable characters",
        ));
    }
    Ok(name.to_owned())
}

/// `POST /api/v1/auth/mfa/totp`: a new, unconfirmed authenticator. Earlier unconfirmed ones of
/// the user are dropped.
pub async fn totp_start(
    state: web::Data<AppState>,
    who: Caller,
    body: web::Json<TotpEnrolRequest>,
) -> Result<HttpResponse, AppError> {
    require_recent_sign_in(&state, &who).await?;
    let name = valid_name(&body.name)?;
    let uid = who.identity.user_id;
    let now = state.clock.now();
    let seed = mfa::random_bytes::<20>()?.to_vec();
    let sealed = state
        .secrets
        .seal(&mfa::seal_context(uid), &seed)
        .map_err(|e| AppError::Internal(e.to_string()))?;
    let (id, username) = state
        .db
        .run(move |c| {
            let username = account(c, uid)?.username;
            credentials::delete_unconfirmed_totp(c, uid)?;
            let id = credentials::insert(
                c,
                &credentials::NewCredential {
                    user_id: uid,
                    kind: mfa::KIND_TOTP,
                    name: &name,
                    data: &sealed,
                    confirmed: false,
                    created_at: now,
                },
            )?;
            Ok((id, username))
        })
        .await?;
    let t = mfa::totp(seed, &username).map_err(AppError::Internal)?;
    let url = mfa::url(&t).map_err(AppError::Internal)?;
    Ok(HttpResponse::Created().json(TotpEnrolment {
        credential_id: id,
        secret_base32: mfa::secret_base32(&t),
        qr_svg: mfa::qr_svg(&url).map_err(AppError::Internal)?,
        otpauth_url: url,
    }))
}

/// `POST /api/v1/auth/mfa/totp/{credential_id}/confirm`: proves the app holds the seed. The
/// first factor of an account also brings its recovery codes, shown once.
pub async fn totp_confirm(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    path: web::Path<i64>,
    body: web::Json<TotpConfirmRequest>,
) -> Result<HttpResponse, AppError> {
    let cred_id = path.into_inner();
    let uid = who.identity.user_id;
    let now = state.clock.now();
    let unix = state.clock.unix();
    let secrets = state.secrets.clone();
    let code = body.into_inner().code;
    let outcome = transaction::run(&state.db, move |c| {
        let Some(cred) =
            credentials::find_of_user(c, uid, cred_id)?.filter(|cr| cr.kind == mfa::KIND_TOTP)
        else {
            return Err(AppError::NotFound("no such authenticator".into()));
        };
        if cred.confirmed {
            return Err(AppError::Conflict(
                "this authenticator is already confirmed".into(),
            ));
        }
        let username = account(c, uid)?.username;
        let seed = secrets
            .open(&mfa::seal_context(uid), &cred.data)
            .map_err(|e| DbError::Task(e.to_string()))?;
        let t = mfa::totp(seed, &username).map_err(DbError::Task)?;
        let Some(step) = mfa::matching_step(&t, &code, unix) else {
            return Err(AppError::BadRequest {
                code: "wrong_code",
                message: "that code does not match; check the app's clock and try the next code"
                    .into(),
                details: serde_json::json!({ "field": "code" }),
            });
        };
        transaction(c, |c| {
            mfa::consume_totp_step(c, cred_id, step, now)?;
            credentials::confirm(c, cred_id)?;
            let codes = if mfa::recovery_codes_left(c, uid)? == 0 {
                mfa::replace_recovery_codes(c, uid, now)?
            } else {
                Vec::new()
            };
            Ok(codes)
        })
    })
    .await?;
    note(
        &state,
        &req,
        &who,
        "mfa.totp_enrolled",
        serde_json::json!({ "credential": cred_id }),
    )
    .await;
    Ok(HttpResponse::Ok().json(RecoveryCodes {
        recovery_codes: outcome,
    }))
}

/// `DELETE /api/v1/auth/mfa/{credential_id}`: removes one of the caller's factors. The last one
/// cannot go while an admin requires MFA on the account; with it go the recovery codes.
pub async fn remove(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    require_recent_sign_in(&state, &who).await?;
    let cred_id = path.into_inner();
    let uid = who.identity.user_id;
    let kind = transaction::run(&state.db, move |c| {
        transaction(c, |c| {
            let Some(cred) = credentials::find_of_user(c, uid, cred_id)?
                .filter(|cr| cr.kind != mfa::KIND_RECOVERY)
            else {
                return Err(AppError::NotFound("no such factor".into()));
            };
            let required = account(c, uid)?.mfa_required;
            let left = mfa::confirmed_factors(c, uid)? - i64::from(cred.confirmed);
            if left == 0 && required {
                return Err(AppError::Conflict(
                    "your account requires a second factor: add another before removing the last"
                        .into(),
                ));
            }
            credentials::delete(c, cred_id)?;
            if left == 0 {
                credentials::delete_kind(c, uid, mfa::KIND_RECOVERY)?;
            }
            Ok(cred.kind)
        })
    })
    .await?;
    note(
        &state,
        &req,
        &who,
        "mfa.removed",
        serde_json::json!({ "credential": cred_id, "kind": kind }),
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/v1/auth/mfa/recovery-codes`: replaces the recovery codes (the old ones stop working).
pub async fn renew_recovery_codes(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
) -> Result<HttpResponse, AppError> {
    require_recent_sign_in(&state, &who).await?;
    let uid = who.identity.user_id;
    let now = state.clock.now();
    let codes = transaction::run(&state.db, move |c| {
        if mfa::confirmed_factors(c, uid)? == 0 {
            return Err(AppError::Conflict(
                "recovery codes come with a second factor: enrol one first".into(),
            ));
        }
        Ok(mfa::replace_recovery_codes(c, uid, now)?)
    })
    .await?;
    note(
        &state,
        &req,
        &who,
        "mfa.recovery_codes_renewed",
        serde_json::Value::Null,
    )
    .await;
    Ok(HttpResponse::Ok().json(RecoveryCodes {
        recovery_codes: codes,
    }))
}
