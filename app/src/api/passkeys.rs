//! WebAuthn endpoints: registering a security key or passkey on the signed-in account, and using
//! one as the second sign-in step. The ceremonies live in [`crate::auth::passkeys`]; these
//! handlers parse, call it and answer.

use crate::api::auth::signed_in_answer;
use crate::api::AppError;
use crate::auth::access::Caller;
use crate::auth::login::Origin;
use crate::auth::passkeys;
use crate::http::extract::Json;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use shared::auth::{
    PasskeyLoginFinish, PasskeyLoginStart, PasskeyRegisterFinish, PasskeyRegisterStart,
    RecoveryCodes,
};

/// `POST /api/v1/auth/mfa/webauthn/register/start`.
pub async fn register_start(
    state: web::Data<AppState>,
    who: Caller,
    body: Json<PasskeyRegisterStart>,
) -> Result<HttpResponse, AppError> {
    let options = passkeys::register_start(&state, &who.identity, &body.name).await?;
    Ok(HttpResponse::Ok().json(options))
}

/// `POST /api/v1/auth/mfa/webauthn/register/finish`.
pub async fn register_finish(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    body: Json<PasskeyRegisterFinish>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let recovery_codes = passkeys::register_finish(
        &state,
        &who.identity,
        crate::http::client::client_ip(&req),
        body.challenge_id,
        body.credential,
    )
    .await?;
    Ok(HttpResponse::Ok().json(RecoveryCodes { recovery_codes }))
}

/// `POST /api/v1/auth/login/webauthn/start`: the second sign-in step with a security key.
pub async fn login_start(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Json<PasskeyLoginStart>,
) -> Result<HttpResponse, AppError> {
    let options = passkeys::login_start(
        &state,
        crate::http::client::client_ip(&req),
        &body.into_inner().mfa_token,
    )
    .await?;
    Ok(HttpResponse::Ok().json(options))
}

/// `POST /api/v1/auth/login/webauthn/finish`.
pub async fn login_finish(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Json<PasskeyLoginFinish>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let signed =
        passkeys::login_finish(&state, &Origin::of(&req), &body.mfa_token, body.credential).await?;
    signed_in_answer(signed)
}
