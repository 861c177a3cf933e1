//! Sign-in, token refresh, sign-out and "who am I".
//!
//! Browsers get the access token, the refresh token and a CSRF token only as
//! `Secure; HttpOnly; SameSite=Strict` cookies (the CSRF one readable); API clients ask for the
//! tokens in the answer and use `Authorization: Bearer`. Failed sign-ins are throttled per account
//! (exponential lock, at most an hour, so the admin can never be locked out for good) and per
//! source address, and every success, failure, lock and reuse is audited. The rules live in
//! [`crate::auth::login`]; these handlers parse, call it and answer.

use crate::api::AppError;
use crate::auth::access::Caller;
use crate::auth::identity::{ACCESS_COOKIE, CSRF_COOKIE, REFRESH_COOKIE};
use crate::auth::login::{self, Origin, PasswordStep, SignedIn, SignedUser};
use crate::auth::{mfa, tokens};
use crate::db::sessions;
use crate::http::extract::Json;
use crate::state::AppState;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Duration;
use shared::auth::{
    ClientKind, LoginRequest, LoginResult, MfaChallenge, MfaLoginRequest, RefreshRequest,
    SessionInfo,
};

pub use crate::auth::login::lock_minutes;

fn cookie(
    name: &'static str,
    value: String,
    path: &'static str,
    max_age: Duration,
    http_only: bool,
) -> Cookie<'static> {
    Cookie::build(name, value)
        .path(path)
        .secure(true)
        .http_only(http_only)
        .same_site(SameSite::Strict)
        .max_age(actix_web::cookie::time::Duration::seconds(
            max_age.num_seconds(),
        ))
        .finish()
}

fn random_hex() -> Result<String, AppError> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| AppError::Internal("random generator failed".into()))?;
    Ok(hex::encode(b))
}

/// The answer to a sign-in that became a session (after a second factor).
pub(crate) fn signed_in_answer(s: SignedIn) -> Result<HttpResponse, AppError> {
    session_answer(s.client, s.user, s.access, s.refresh)
}

fn session_answer(
    client: ClientKind,
    user: SignedUser,
    access: String,
    refresh: String,
) -> Result<HttpResponse, AppError> {
    let SignedUser {
        id: user_id,
        name: username,
        role,
    } = user;
    let expires_in = tokens::ACCESS_TTL.num_seconds();
    match client {
        ClientKind::Api => Ok(HttpResponse::Ok().json(LoginResult::SignedIn(SessionInfo {
            user_id: user_id.into(),
            username,
            role,
            expires_in,
            access_token: Some(access),
            refresh_token: Some(refresh),
        }))),
        ClientKind::Browser => {
            let mut res = HttpResponse::Ok();
            for c in browser_cookies(access, refresh)? {
                res.cookie(c);
            }
            Ok(res.json(LoginResult::SignedIn(SessionInfo {
                user_id: user_id.into(),
                username,
                role,
                expires_in,
                access_token: None,
                refresh_token: None,
            })))
        }
    }
}

/// The cookies that carry a browser session: access and refresh tokens (`HttpOnly`), and the
/// CSRF token the page repeats in a header.
pub(crate) fn browser_cookies(
    access: String,
    refresh: String,
) -> Result<[Cookie<'static>; 3], AppError> {
    Ok([
        cookie(ACCESS_COOKIE, access, "/", tokens::ACCESS_TTL, true),
        cookie(
            REFRESH_COOKIE,
            refresh,
            "/api/v1/auth",
            sessions::IDLE_TIMEOUT,
            true,
        ),
        cookie(
            CSRF_COOKIE,
            random_hex()?,
            "/",
            sessions::MAX_LIFETIME,
            false,
        ),
    ])
}

/// `POST /api/v1/auth/login`.
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Json<LoginRequest>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let client = body.client;
    let step = login::password_step(
        &state,
        &Origin::of(&req),
        &body.username,
        body.password,
        client,
    )
    .await?;
    match step {
        PasswordStep::SignedIn(user, access, refresh) => {
            session_answer(client, user, access, refresh)
        }
        PasswordStep::MfaRequired { token, methods } => Ok(HttpResponse::Ok().json(
            LoginResult::MfaRequired(MfaChallenge {
                mfa_token: token,
                methods,
                expires_in: mfa::CHALLENGE_TTL.num_seconds(),
            }),
        )),
    }
}

/// `POST /api/v1/auth/login/mfa`: the second step, with a TOTP code or a recovery code.
pub async fn login_mfa(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Json<MfaLoginRequest>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let signed = login::second_factor(
        &state,
        &Origin::of(&req),
        &body.mfa_token,
        body.code,
        body.recovery_code,
    )
    .await?;
    signed_in_answer(signed)
}

/// `POST /api/v1/auth/refresh`: rotates the refresh token and issues a new access token.
pub async fn refresh(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let body: RefreshRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RefreshRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| AppError::BadRequest {
            code: shared::vocab::ErrorCode::InvalidJson,
            message: e.to_string(),
            details: serde_json::Value::Null,
        })?
    };
    let (presented, client) = match body.refresh_token {
        Some(t) => (t, ClientKind::Api),
        None => (
            req.cookie(REFRESH_COOKIE)
                .map(|c| c.value().to_owned())
                .ok_or_else(|| AppError::Unauthorized("sign-in required".into()))?,
            ClientKind::Browser,
        ),
    };
    let (user, access, refresh) =
        login::refresh(&state, crate::http::client::client_ip(&req), presented).await?;
    session_answer(client, user, access, refresh)
}

/// `POST /api/v1/auth/logout`: ends the caller's session and clears the cookies.
pub async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
) -> Result<HttpResponse, AppError> {
    let who = who.identity;
    login::logout(
        &state,
        crate::http::client::client_ip(&req),
        who.user_id,
        who.session,
    )
    .await?;
    let mut res = HttpResponse::NoContent();
    for (name, path) in [
        (ACCESS_COOKIE, "/"),
        (REFRESH_COOKIE, "/api/v1/auth"),
        (CSRF_COOKIE, "/"),
    ] {
        res.cookie(cookie(
            name,
            String::new(),
            path,
            Duration::zero(),
            name != CSRF_COOKIE,
        ));
    }
    Ok(res.finish())
}

/// `GET /api/v1/auth/me`.
pub async fn me(state: web::Data<AppState>, who: Caller) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(login::me(&state, &who.identity).await?))
}
