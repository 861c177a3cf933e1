//! Single sign-on endpoints (see [`crate::auth::sso`]) and their settings.
//!
//! `start` sends the browser to the identity provider and binds the sign-in to that browser with
//! a `SameSite=Lax` cookie (the provider's redirect back is a cross-site navigation, which
//! `Strict` cookies would not survive); `callback` checks state, binding cookie, code (with the
//! PKCE verifier) and the ID token (signature, issuer, audience, expiry, nonce), maps the claims
//! to a role, and redirects to the UI signed in — or to the sign-in page with the reason.

use crate::api::auth::{audit, browser_cookies, open_session};
use crate::api::AppError;
use crate::auth::access::Caller;
use crate::auth::sso::{self, Stored};
use crate::db::audit::{NewAuditEntry, Outcome};
use crate::state::AppState;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::{web, HttpRequest, HttpResponse};
use shared::auth::{OidcSettings, OidcStatus, OidcTestResult};

async fn stored(state: &AppState) -> Result<Stored, AppError> {
    Ok(state.db.run(sso::read).await?)
}

fn secret(state: &AppState, s: &Stored) -> Result<Option<String>, AppError> {
    s.sealed_secret
        .as_deref()
        .map(|sealed| {
            state
                .secrets
                .open(sso::SECRET_CONTEXT, sealed)
                .map_err(|e| AppError::Internal(format!("client secret: {e}")))
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        })
        .transpose()
}

fn label(s: &OidcSettings) -> String {
    if s.button_label.trim().is_empty() {
        "Sign in with Microsoft".into()
    } else {
        s.button_label.clone()
    }
}

/// `GET /api/v1/auth/oidc/status`.
pub async fn status(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let s = stored(&state).await?.settings;
    Ok(HttpResponse::Ok().json(OidcStatus {
        enabled: s.enabled,
        label: label(&s),
    }))
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

/// Cookie carrying the second-step token after a single sign-on, for the sign-in page.
pub const PENDING_COOKIE: &str = "lpm_mfa";

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
    let token = req
        .cookie(PENDING_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AppError::NotFound("no sign-in is waiting for a second factor".into()))?;
    let now = state.clock.now();
    let t = token.clone();
    let found = state
        .db
        .run(move |c| crate::auth::mfa::find_login_challenge(c, &t, now))
        .await?;
    let Some((_, user_id, _)) = found else {
        return Err(AppError::NotFound(
            "no sign-in is waiting for a second factor".into(),
        ));
    };
    let methods = state
        .db
        .run(move |c| crate::api::auth::second_factor_methods(c, user_id))
        .await?;
    Ok(HttpResponse::Ok()
        .cookie(pending_cookie(String::new(), chrono::Duration::zero()))
        .json(shared::auth::MfaChallenge {
            mfa_token: token,
            methods,
            expires_in: crate::auth::mfa::CHALLENGE_TTL.num_seconds(),
        }))
}

/// `GET /api/v1/auth/oidc/start`: redirects to the identity provider.
pub async fn start(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AppError> {
    let st = stored(&state).await?;
    if !st.settings.enabled {
        return Ok(to_login("sso_disabled"));
    }
    if let Some(ip) = req.peer_addr().map(|a| a.ip()) {
        if let Err(wait) = state.sso_starts.check(ip, state.clock.now()) {
            return Err(AppError::TooManyRequests {
                message: "too many single sign-on attempts from this address".into(),
                retry_after: i64::try_from(wait).unwrap_or(60),
            });
        }
    }
    let http = sso::http_client().map_err(AppError::Internal)?;
    let meta = match sso::discover(&st.settings, &http).await {
        Ok(m) => m,
        Err(why) => {
            audit(
                &state,
                &req,
                "anonymous",
                "auth.sso",
                Outcome::Failure,
                serde_json::json!({ "reason": format!("identity provider unreachable: {why}") }),
            )
            .await;
            return Ok(to_login("provider_unreachable"));
        }
    };
    let client =
        sso::client(meta, &st.settings, secret(&state, &st)?).map_err(AppError::Internal)?;
    let now = state.clock.now();
    let settings = st.settings.clone();
    let started = state
        .db
        .run(move |c| sso::start(c, &client, &settings, now))
        .await?;
    Ok(HttpResponse::Found()
        .insert_header(("location", started.url.to_string()))
        .insert_header(("cache-control", "no-store"))
        .cookie(binding_cookie(started.binding, sso::FLOW_TTL))
        .finish())
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
    let deny = |reason: String, code: &'static str| {
        let state = state.clone();
        let req = req.clone();
        async move {
            audit(
                &state,
                &req,
                "anonymous",
                "auth.sso",
                Outcome::Denied,
                serde_json::json!({ "reason": reason }),
            )
            .await;
            let mut res = to_login(code);
            // The binding cookie has done its job either way.
            let _ = res.add_cookie(&binding_cookie(String::new(), chrono::Duration::zero()));
            Ok(res)
        }
    };
    if let Some(e) = q.error {
        let why = format!(
            "the identity provider answered {}: {}",
            e.chars().take(100).collect::<String>(),
            q.error_description
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect::<String>()
        );
        return deny(why, "provider_refused").await;
    }
    let (Some(code), Some(st_param)) = (q.code, q.state) else {
        return deny("callback without code or state".into(), "bad_callback").await;
    };
    let binding = req
        .cookie(sso::BINDING_COOKIE)
        .map(|c| c.value().to_owned());
    let now = state.clock.now();
    let flow = state
        .db
        .run(move |c| sso::take(c, &st_param, binding.as_deref(), now))
        .await?;
    let flow = match flow {
        Ok(f) => f,
        Err(why) => return deny(why.into(), "bad_state").await,
    };
    let st = stored(&state).await?;
    if !st.settings.enabled {
        return deny("single sign-on was turned off".into(), "sso_disabled").await;
    }
    let http = sso::http_client().map_err(AppError::Internal)?;
    let meta = match sso::discover(&st.settings, &http).await {
        Ok(m) => m,
        Err(why) => {
            return deny(
                format!("identity provider unreachable: {why}"),
                "provider_unreachable",
            )
            .await
        }
    };
    let client =
        sso::client(meta, &st.settings, secret(&state, &st)?).map_err(AppError::Internal)?;
    let who = match sso::finish(&client, &http, &flow, code).await {
        Ok(w) => w,
        Err(why) => return deny(why, "token_refused").await,
    };
    let Some((role, groups)) = sso::map_access(&st.settings, &who.claims) else {
        return deny(
            format!(
                "{} ({}) is in no mapped group or role",
                who.login, who.subject
            ),
            "no_access",
        )
        .await;
    };
    let w = who.clone();
    let r = role.clone();
    let _serial = state.admin_changes.lock().await;
    let user = state
        .db
        .run(move |c| sso::provision(c, &w, &r, &groups, now))
        .await?;
    drop(_serial);
    let Some(user) = user else {
        return deny(
            format!("account of {} is disabled", who.login),
            "account_disabled",
        )
        .await;
    };
    if user.2 != role {
        audit(
            &state,
            &req,
            &user.1,
            "auth.sso",
            Outcome::Success,
            serde_json::json!({
                "note": "kept the Admin role the directory no longer gives: this is the last enabled Admin",
            }),
        )
        .await;
    }
    // An account with its own second factor uses it here too: the directory's sign-in replaces
    // the password, not the factor.
    let uid = user.0;
    let methods = state
        .db
        .run(move |c| crate::api::auth::second_factor_methods(c, uid))
        .await?;
    if !methods.is_empty() {
        let token = state
            .db
            .run(move |c| {
                crate::auth::mfa::start_login_challenge(
                    c,
                    uid,
                    shared::auth::ClientKind::Browser,
                    now,
                )
            })
            .await?;
        audit(
            &state,
            &req,
            &user.1,
            "auth.sso",
            Outcome::Success,
            serde_json::json!({ "next": methods }),
        )
        .await;
        return Ok(HttpResponse::Found()
            .insert_header(("location", "/login?sso_mfa=1"))
            .cookie(pending_cookie(token, crate::auth::mfa::CHALLENGE_TTL))
            .cookie(binding_cookie(String::new(), chrono::Duration::zero()))
            .finish());
    }
    let (access, refresh) = open_session(&state, &req, &user, "sso").await?;
    let mut res = HttpResponse::Found();
    res.insert_header(("location", "/"));
    for c in browser_cookies(access, refresh)? {
        res.cookie(c);
    }
    res.cookie(binding_cookie(String::new(), chrono::Duration::zero()));
    Ok(res.finish())
}

/// `GET /api/v1/settings/oidc`: the settings, without the secret.
pub async fn get_settings(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let st = stored(&state).await?;
    let mut s = st.settings;
    s.client_secret = None;
    s.secret_set = st.sealed_secret.is_some();
    Ok(HttpResponse::Ok().json(s))
}

/// `PUT /api/v1/settings/oidc`: validates and stores; a missing secret keeps the stored one.
pub async fn put_settings(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    body: web::Json<OidcSettings>,
) -> Result<HttpResponse, AppError> {
    let mut s = body.into_inner();
    sso::validate(&s).map_err(|(field, m)| AppError::invalid(field, m))?;
    let old = stored(&state).await?;
    let sealed_secret = match s.client_secret.take().filter(|x| !x.is_empty()) {
        Some(secret) => Some(
            state
                .secrets
                .seal(sso::SECRET_CONTEXT, secret.as_bytes())
                .map_err(|e| AppError::Internal(e.to_string()))?,
        ),
        None => old.sealed_secret.clone(),
    };
    s.secret_set = false;
    let new = Stored {
        settings: s.clone(),
        sealed_secret,
    };
    let (n, by) = (new.clone(), who.actor());
    let now = state.clock.now();
    state.db.run(move |c| sso::write(c, &n, &by, now)).await?;
    state
        .audit
        .note(
            NewAuditEntry::new(who.actor(), "settings.oidc_changed", Outcome::Success)
                .target(sso::SETTING)
                .details(serde_json::json!({
                    "before": old.settings, "after": s,
                    "secret_changed": new.sealed_secret != old.sealed_secret,
                }))
                .source(req.peer_addr().map(|a| a.ip())),
        )
        .await;
    s.secret_set = new.sealed_secret.is_some();
    Ok(HttpResponse::Ok().json(s))
}

/// `POST /api/v1/settings/oidc/test`: fetches and checks the discovery document and signing
/// keys for the given (unsaved) settings. Enables nothing.
pub async fn test_connection(body: web::Json<OidcSettings>) -> Result<HttpResponse, AppError> {
    let s = body.into_inner();
    sso::issuer(&s).map_err(|m| AppError::invalid("authority", m))?;
    let http = sso::http_client().map_err(AppError::Internal)?;
    let meta = sso::discover(&s, &http)
        .await
        .map_err(AppError::IdentityProvider)?;
    Ok(HttpResponse::Ok().json(OidcTestResult {
        issuer: meta.issuer().as_str().to_owned(),
        authorization_endpoint: meta.authorization_endpoint().as_str().to_owned(),
        token_endpoint: meta
            .token_endpoint()
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default(),
        keys: meta.jwks().keys().len(),
    }))
}
