//! Who is calling: the [`Identity`] extractor. It accepts an access token from
//! `Authorization: Bearer` (API clients) or the `lpm_access` cookie (browsers), checks signature,
//! expiry, that the session is still alive and the user enabled, and — for cookie-authenticated
//! requests that change something — that the `X-CSRF-Token` header matches the `lpm_csrf` cookie.

use crate::api::AppError;
use crate::state::AppState;
use actix_web::dev::Payload;
use actix_web::http::Method;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;

/// Cookie holding the access token.
pub const ACCESS_COOKIE: &str = "lpm_access";
/// Cookie holding the refresh token (sent only to `/api/v1/auth`).
pub const REFRESH_COOKIE: &str = "lpm_refresh";
/// Cookie holding the CSRF token (readable by the page, echoed in `X-CSRF-Token`).
pub const CSRF_COOKIE: &str = "lpm_csrf";
/// Header that must repeat the CSRF cookie on cookie-authenticated mutations.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A signed-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User id.
    pub user_id: i64,
    /// `admin` or `operator`.
    pub role: String,
    /// Session id.
    pub session: String,
    /// Authenticated by cookie (browser) rather than bearer token.
    pub via_cookie: bool,
    /// The account requires a second factor and has none yet: only enrolment is allowed.
    pub mfa_enrolment_pending: bool,
}

impl Identity {
    /// Whether this user is an Admin.
    pub fn is_admin(&self) -> bool {
        self.role == "admin"
    }
}

fn unauthorized() -> actix_web::Error {
    AppError::Unauthorized("sign-in required".into()).into()
}

impl FromRequest for Identity {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AppState>>()
                .ok_or_else(unauthorized)?
                .clone();
            let bearer = req
                .headers()
                .get(actix_web::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_owned);
            let (token, via_cookie) = match bearer {
                Some(t) => (t, false),
                None => (
                    req.cookie(ACCESS_COOKIE)
                        .map(|c| c.value().to_owned())
                        .ok_or_else(unauthorized)?,
                    true,
                ),
            };
            if via_cookie && !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
            {
                let cookie = req.cookie(CSRF_COOKIE).map(|c| c.value().to_owned());
                let header = req
                    .headers()
                    .get(CSRF_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                match (cookie, header) {
                    (Some(c), Some(h))
                        if !c.is_empty() && crate::auth::ct_eq(c.as_bytes(), h.as_bytes()) => {}
                    _ => {
                        return Err(AppError::Forbidden("missing or wrong CSRF token".into()).into())
                    }
                }
            }
            let now = state.clock.now();
            let keys = state
                .tokens
                .get(&state.db, now)
                .await
                .map_err(AppError::from)?;
            let claims = keys.verify(&token, now).map_err(|_| unauthorized())?;
            let user_id = claims.user_id().ok_or_else(unauthorized)?;
            let sid = claims.sid.clone();
            let alive = state
                .db
                .run(move |c| {
                    let session = crate::db::sessions::is_active_for(c, &sid, user_id, now)?;
                    let enabled = crate::db::users::find(c, user_id)?
                        .map(|u| (u.is_disabled, u.role, u.mfa_required));
                    let factors = if enabled.as_ref().is_some_and(|e| e.2) {
                        crate::auth::mfa::confirmed_factors(c, user_id)?
                    } else {
                        0
                    };
                    Ok((session, enabled, factors))
                })
                .await
                .map_err(AppError::from)?;
            match alive {
                // The role is read from the database, so a role change applies at once.
                (true, Some((false, role, mfa_required)), factors) => Ok(Identity {
                    user_id,
                    role,
                    session: claims.sid,
                    via_cookie,
                    mfa_enrolment_pending: mfa_required && factors == 0,
                }),
                _ => Err(unauthorized()),
            }
        })
    }
}
