//! The signed-in user's own second factors: list, enrol an authenticator app (TOTP), confirm it,
//! remove a factor, renew recovery codes. Every change is audited. Admins reset other users'
//! factors through the user administration endpoints.
//!
//! The rules (changes only within [`RECENT_SIGN_IN`] of signing in; the last factor stays while
//! an admin requires one; recovery codes come with the first factor) live in
//! [`crate::auth::mfa`]; these handlers parse, call it and answer.

use crate::api::AppError;
use crate::auth::access::Caller;
use crate::auth::mfa;
use crate::http::extract::Json;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use shared::auth::{RecoveryCodes, TotpConfirmRequest, TotpEnrolRequest};

pub use crate::auth::mfa::RECENT_SIGN_IN;

/// `GET /api/v1/auth/mfa`.
pub async fn status(state: web::Data<AppState>, who: Caller) -> Result<HttpResponse, AppError> {
    let status = mfa::status(&state, &who.identity).await?;
    Ok(HttpResponse::Ok().json(status))
}

/// `POST /api/v1/auth/mfa/totp`: a new, unconfirmed authenticator. Earlier unconfirmed ones of
/// the user are dropped.
pub async fn totp_start(
    state: web::Data<AppState>,
    who: Caller,
    body: Json<TotpEnrolRequest>,
) -> Result<HttpResponse, AppError> {
    let enrolment = mfa::start_totp(&state, &who.identity, &body.name).await?;
    Ok(HttpResponse::Created().json(enrolment))
}

/// `POST /api/v1/auth/mfa/totp/{credential_id}/confirm`: proves the app holds the seed. The
/// first factor of an account also brings its recovery codes, shown once.
pub async fn totp_confirm(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    path: web::Path<i64>,
    body: Json<TotpConfirmRequest>,
) -> Result<HttpResponse, AppError> {
    let recovery_codes = mfa::confirm_totp(
        &state,
        &who.identity,
        crate::http::client::client_ip(&req),
        path.into_inner(),
        body.into_inner().code,
    )
    .await?;
    Ok(HttpResponse::Ok().json(RecoveryCodes { recovery_codes }))
}

/// `DELETE /api/v1/auth/mfa/{credential_id}`: removes one of the caller's factors. The last one
/// cannot go while an admin requires MFA on the account; with it go the recovery codes.
pub async fn remove(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    mfa::remove_factor(
        &state,
        &who.identity,
        crate::http::client::client_ip(&req),
        path.into_inner(),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/v1/auth/mfa/recovery-codes`: replaces the recovery codes (the old ones stop working).
pub async fn renew_recovery_codes(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
) -> Result<HttpResponse, AppError> {
    let recovery_codes =
        mfa::renew_recovery_codes(&state, &who.identity, crate::http::client::client_ip(&req))
            .await?;
    Ok(HttpResponse::Ok().json(RecoveryCodes { recovery_codes }))
}
