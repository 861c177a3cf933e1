//! Single sign-on endpoints (see [`crate::auth::sso`]) and their settings.
//!
//! `start` sends the browser to the identity provider and binds the sign-in to that browser with
//! a `SameSite=Lax` cookie (the provider's redirect back is a cross-site navigation, which
//! `Strict` cookies would not survive); `callback` checks state, binding cookie, code (with the
//! PKCE verifier) and the ID token (signature, issuer, audience, expiry, nonce), maps the claims
//! to a role, and redirects to the UI signed in — or to the sign-in page with the reason. The
//! flow lives in [`crate::auth::sso`]; these handlers parse, call it and answer with redirects
//! and cookies.

use crate::api::auth::browser_cookies;
use crate::api::AppError;
use crate::audit::Requester;
use crate::auth::access::Caller;
use crate::auth::login::Origin;
use crate::auth::mfa;
use crate::auth::sso::{self, Begin, Landing, ProviderAnswer};
use crate::http::extract::Json;
use crate::state::AppState;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::{web, HttpRequest, HttpResponse};
use shared::auth::OidcSettings;

pub use crate::auth::sso::PENDING_COOKIE;

/// `GET /api/v1/auth/oidc/status`.
pub async fn status(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(sso::status(&state).await?))
}

fn to_login(reason: &str) -> HttpResponse {
    let q: String = reason
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    HttpResponse::Found()
        .insert_header(("location", format!("/login?sso_error={q}")))
        .finish()
}

fn binding_cookie(value: String, max_age: chrono::Duration) -> Cookie<'static> {
    Cookie::build(sso::BINDING_COOKIE, value)
        .path("/api/v1/auth/oidc")
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::seconds(
            max_age.num_seconds(),
        ))
        .finish()
}

fn pending_cookie(value: String, max_age: chrono::Duration) -> Cookie<'static> {
    Cookie::build(PENDING_COOKIE, value)
        .path("/api/v1/auth")
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::seconds(
            max_age.num_seconds(),
        ))
        .finish()
}

/// `GET /api/v1/auth/login/pending`: the second step a single sign-on left for this browser (its
/// token came in an `HttpOnly` cookie), so the sign-in page can ask for the factor.
pub async fn pending(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, AppError> {
    let token = req.cookie(PENDING_COOKIE).map(|c| c.value().to_owned());
    let challenge = sso::pending(&state, token).await?;
    Ok(HttpResponse::Ok()
        .cookie(pending_cookie(String::new(), chrono::Duration::zero()))
        .json(challenge))
}

/// `GET /api/v1/auth/oidc/start`: redirects to the identity provider.
pub async fn start(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AppError> {
    match sso::begin(&state, crate::http::client::client_ip(&req)).await? {
        Begin::Refused(reason) => Ok(to_login(reason)),
        Begin::Redirect(started) => Ok(HttpResponse::Found()
            .insert_header(("location", started.url.to_string()))
            .insert_header(("cache-control", "no-store"))
            .cookie(binding_cookie(started.binding, sso::FLOW_TTL))
            .finish()),
    }
}

/// Query of the provider's redirect back.
#[derive(Debug, serde::Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /api/v1/auth/oidc/callback`.
pub async fn callback(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<CallbackQuery>,
) -> Result<HttpResponse, AppError> {
    let q = q.into_inner();
    let answer = ProviderAnswer {
        code: q.code,
        state: q.state,
        error: q.error,
        error_description: q.error_description,
    };
    let binding = req
        .cookie(sso::BINDING_COOKIE)
        .map(|c| c.value().to_owned());
    let landing = sso::complete(&state, &Origin::of(&req), answer, binding).await?;
    // The binding cookie has done its job either way.
    let spent = binding_cookie(String::new(), chrono::Duration::zero());
    match landing {
        Landing::Refused(reason) => {
            let mut res = to_login(reason);
            let _ = res.add_cookie(&spent);
            Ok(res)
        }
        Landing::SecondFactor(token) => Ok(HttpResponse::Found()
            .insert_header(("location", "/login?sso_mfa=1"))
            .cookie(pending_cookie(token, mfa::CHALLENGE_TTL))
            .cookie(spent)
            .finish()),
        Landing::SignedIn(access, refresh) => {
            let mut res = HttpResponse::Found();
            res.insert_header(("location", "/"));
            for c in browser_cookies(access, refresh)? {
                res.cookie(c);
            }
            res.cookie(spent);
            Ok(res.finish())
        }
    }
}

/// `GET /api/v1/settings/oidc`: the settings, without the secret.
pub async fn get_settings(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(sso::settings(&state).await?))
}

/// `PUT /api/v1/settings/oidc`: validates and stores; a missing secret keeps the stored one.
pub async fn put_settings(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    body: Json<OidcSettings>,
) -> Result<HttpResponse, AppError> {
    let saved = sso::save_settings(&state, &Requester::of(&who, &req), body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(saved))
}

/// `POST /api/v1/settings/oidc/test`: fetches and checks the discovery document and signing
/// keys for the given (unsaved) settings. Enables nothing.
pub async fn test_connection(body: Json<OidcSettings>) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(sso::test_connection(&body.into_inner()).await?))
}
