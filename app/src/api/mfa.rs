//! The signed-in user's own second factors: list, enrol an authenticator app (TOTP), confirm it,
//! remove a factor, renew recovery codes. Every change is audited. Admins reset other users'
//! factors through the user administration endpoints.

use crate::api::{rfc3339, AppError};
use crate::auth::access::Caller;
use crate::auth::mfa;
use crate::db::schema::{user_credentials as uc, users};
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use diesel::prelude::*;
use shared::auth::{
    MfaCredential, MfaStatus, RecoveryCodes, TotpConfirmRequest, TotpEnrolRequest, TotpEnrolment,
};

/// Second factors change only within this long after signing in: a stolen session that is older
/// (or a browser left signed in) cannot add the thief's authenticator or remove the owner's.
pub const RECENT_SIGN_IN: chrono::Duration = chrono::Duration::minutes(15);

/// Refuses unless the caller's session began within [`RECENT_SIGN_IN`].
pub(crate) async fn require_recent_sign_in(state: &AppState, who: &Caller) -> Result<(), AppError> {
    use crate::db::schema::refresh_tokens as r;
    let sid = who.identity.session.clone();
    let started: Option<chrono::NaiveDateTime> = state
        .db
        .run(move |c| {
            Ok(r::table
                .filter(r::family_id.eq(sid))
                .select(diesel::dsl::min(r::issued_at))
                .first(c)?)
        })
        .await?;
    let now = chrono::Utc::now().naive_utc();
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
            let required: bool = users::table
                .filter(users::id.eq(uid))
                .select(users::mfa_required)
                .first(c)?;
            let rows: Vec<(
                i64,
                String,
                String,
                chrono::NaiveDateTime,
                Option<chrono::NaiveDateTime>,
            )> = uc::table
                .filter(uc::user_id.eq(uid))
                .filter(uc::confirmed.eq(true))
                .filter(uc::kind.ne(mfa::KIND_RECOVERY))
                .order(uc::id)
                .select((uc::id, uc::kind, uc::name, uc::created_at, uc::last_used_at))
                .load(c)?;
            Ok(MfaStatus {
                required,
                credentials: rows
                    .into_iter()
                    .map(|(id, kind, name, created, used)| MfaCredential {
                        id,
                        kind,
                        name,
                        created_at: rfc3339(created),
                        last_used_at: used.map(rfc3339),
                    })
                    .collect(),
                recovery_codes_left: mfa::recovery_codes_left(c, uid)?,
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(status))
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
            let username: String = users::table
                .filter(users::id.eq(uid))
                .select(users::username)
                .first(c)?;
            diesel::delete(
                uc::table
                    .filter(uc::user_id.eq(uid))
                    .filter(uc::kind.eq(mfa::KIND_TOTP))
                    .filter(uc::confirmed.eq(false)),
            )
            .execute(c)?;
            let id: i64 = diesel::insert_into(uc::table)
                .values((
                    uc::user_id.eq(uid),
                    uc::kind.eq(mfa::KIND_TOTP),
                    uc::name.eq(&name),
                    uc::data.eq(&sealed),
                    uc::confirmed.eq(false),
                    uc::created_at.eq(now),
                ))
                .returning(uc::id)
                .get_result(c)?;
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
    let outcome = state
        .db
        .run(move |c| {
            let row: Option<(String, bool)> = uc::table
                .filter(uc::id.eq(cred_id))
                .filter(uc::user_id.eq(uid))
                .filter(uc::kind.eq(mfa::KIND_TOTP))
                .select((uc::data, uc::confirmed))
                .first(c)
                .optional()?;
            let Some((sealed, confirmed)) = row else {
                return Ok(Err(AppError::NotFound("no such authenticator".into())));
            };
            if confirmed {
                return Ok(Err(AppError::Conflict(
                    "this authenticator is already confirmed".into(),
                )));
            }
            let username: String = users::table
                .filter(users::id.eq(uid))
                .select(users::username)
                .first(c)?;
            let seed = secrets
                .open(&mfa::seal_context(uid), &sealed)
                .map_err(|e| crate::db::DbError::Task(e.to_string()))?;
            let t = mfa::totp(seed, &username).map_err(crate::db::DbError::Task)?;
            let Some(step) = mfa::matching_step(&t, &code, unix) else {
                return Ok(Err(AppError::BadRequest {
                    code: "wrong_code",
                    message:
                        "that code does not match; check the app's clock and try the next code"
                            .into(),
                    details: serde_json::json!({ "field": "code" }),
                }));
            };
            c.transaction(|c| {
                mfa::consume_totp_step(c, cred_id, step, now)?;
                diesel::update(uc::table.filter(uc::id.eq(cred_id)))
                    .set(uc::confirmed.eq(true))
                    .execute(c)?;
                let codes = if mfa::recovery_codes_left(c, uid)? == 0 {
                    mfa::replace_recovery_codes(c, uid, now)?
                } else {
                    Vec::new()
                };
                Ok(Ok(codes))
            })
        })
        .await??;
    crate::api::audit_action(
        &state,
        &req,
        who.actor(),
        "mfa.totp_enrolled",
        format!("user:{uid}"),
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
    let outcome = state
        .db
        .run(move |c| {
            c.transaction(|c| {
                let row: Option<(String, bool)> = uc::table
                    .filter(uc::id.eq(cred_id))
                    .filter(uc::user_id.eq(uid))
                    .filter(uc::kind.ne(mfa::KIND_RECOVERY))
                    .select((uc::kind, uc::confirmed))
                    .first(c)
                    .optional()?;
                let Some((kind, confirmed)) = row else {
                    return Ok(Err(AppError::NotFound("no such factor".into())));
                };
                let required: bool = users::table
                    .filter(users::id.eq(uid))
                    .select(users::mfa_required)
                    .first(c)?;
                let left = mfa::confirmed_factors(c, uid)? - i64::from(confirmed);
                if left == 0 && required {
                    return Ok(Err(AppError::Conflict(
                        "your account requires a second factor: add another before removing the last"
                            .into(),
                    )));
                }
                diesel::delete(uc::table.filter(uc::id.eq(cred_id))).execute(c)?;
                if left == 0 {
                    diesel::delete(
                        uc::table
                            .filter(uc::user_id.eq(uid))
                            .filter(uc::kind.eq(mfa::KIND_RECOVERY)),
                    )
                    .execute(c)?;
                }
                Ok(Ok(kind))
            })
        })
        .await?;
    let kind = outcome?;
    crate::api::audit_action(
        &state,
        &req,
        who.actor(),
        "mfa.removed",
        format!("user:{uid}"),
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
    let codes = state
        .db
        .run(move |c| {
            if mfa::confirmed_factors(c, uid)? == 0 {
                return Ok(Err(AppError::Conflict(
                    "recovery codes come with a second factor: enrol one first".into(),
                )));
            }
            Ok(Ok(mfa::replace_recovery_codes(c, uid, now)?))
        })
        .await??;
    crate::api::audit_action(
        &state,
        &req,
        who.actor(),
        "mfa.recovery_codes_renewed",
        format!("user:{uid}"),
        serde_json::Value::Null,
    )
    .await;
    Ok(HttpResponse::Ok().json(RecoveryCodes {
        recovery_codes: codes,
    }))
}
