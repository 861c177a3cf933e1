//! Sign-in, token refresh, sign-out and "who am I".
//!
//! Browsers get the access token, the refresh token and a CSRF token only as
//! `Secure; HttpOnly; SameSite=Strict` cookies (the CSRF one readable); API clients ask for the
//! tokens in the answer and use `Authorization: Bearer`. Failed sign-ins are throttled per account
//! (exponential lock, at most an hour, so the admin can never be locked out for good) and per
//! source address, and every success, failure, lock and reuse is audited.

use crate::api::AppError;
use crate::auth::access::Caller;
use crate::auth::identity::{ACCESS_COOKIE, CSRF_COOKIE, REFRESH_COOKIE};
use crate::auth::mfa;
use crate::auth::{password, tokens};
use crate::db::audit::{NewAuditEntry, Outcome};
use crate::db::schema::users;
use crate::db::sessions::{self, RefreshError};
use crate::state::AppState;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;
use shared::auth::{
    ClientKind, LoginRequest, LoginResult, Me, MfaChallenge, MfaLoginRequest, RefreshRequest,
    SessionInfo,
};

/// Failures per address in [`ADDRESS_WINDOW`] before the address must wait.
const ADDRESS_MAX_FAILURES: usize = 10;
/// Window of the per-address throttle.
const ADDRESS_WINDOW: Duration = Duration::minutes(15);
/// Consecutive failures allowed before the account is locked.
const ACCOUNT_FREE_FAILURES: i64 = 5;
/// Longest account lock.
const ACCOUNT_MAX_LOCK_MINUTES: i64 = 60;

/// Lock duration after `failures` consecutive failures: none for the first five, then 1, 2, 4 …
/// minutes from the sixth on, capped at an hour.
pub fn lock_minutes(failures: i64) -> i64 {
    if failures <= ACCOUNT_FREE_FAILURES {
        return 0;
    }
    let exp = u32::try_from(failures - ACCOUNT_FREE_FAILURES - 1)
        .unwrap_or(u32::MAX)
        .min(6);
    (1_i64 << exp).min(ACCOUNT_MAX_LOCK_MINUTES)
}

pub(crate) async fn audit(
    state: &AppState,
    req: &HttpRequest,
    actor: &str,
    action: &str,
    outcome: Outcome,
    details: serde_json::Value,
) {
    let entry = NewAuditEntry {
        actor: actor.chars().take(64).collect(),
        action: action.into(),
        target: None,
        outcome,
        details,
        source_ip: req.peer_addr().map(|a| a.ip().to_string()),
        request_id: None,
    };
    state.audit.note(entry).await;
}

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

fn session_answer(
    client: ClientKind,
    info: (i64, String, String),
    access: String,
    refresh: String,
) -> Result<HttpResponse, AppError> {
    let (user_id, username, role) = info;
    let expires_in = tokens::ACCESS_TTL.num_seconds();
    match client {
        ClientKind::Api => Ok(HttpResponse::Ok().json(LoginResult::SignedIn(SessionInfo {
            user_id,
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
                user_id,
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

/// Takes one of the address's sign-in attempts before the password is checked, so parallel
/// guesses each count: `Err(seconds to wait)` when the address has had too many failures in the
/// window. A successful sign-in gives its attempt back ([`release_address_attempt`]).
fn reserve_address_attempt(
    state: &AppState,
    ip: Option<std::net::IpAddr>,
    now: NaiveDateTime,
) -> Result<(), i64> {
    let Some(ip) = ip.map(|i| i.to_canonical()) else {
        return Ok(());
    };
    let Ok(mut map) = state.login_failures.lock() else {
        return Ok(());
    };
    if map.len() > 50_000 {
        map.retain(|_, v| v.iter().any(|t| *t + ADDRESS_WINDOW > now));
    }
    let entries = map.entry(ip).or_default();
    entries.retain(|t| *t + ADDRESS_WINDOW > now);
    if entries.len() >= ADDRESS_MAX_FAILURES {
        return Err(entries
            .first()
            .map_or(60, |t| (*t + ADDRESS_WINDOW - now).num_seconds().max(1)));
    }
    entries.push(now);
    Ok(())
}

/// Gives back the attempt a successful sign-in reserved.
fn release_address_attempt(state: &AppState, ip: Option<std::net::IpAddr>, at: NaiveDateTime) {
    if let (Some(ip), Ok(mut map)) = (ip.map(|i| i.to_canonical()), state.login_failures.lock()) {
        if let Some(entries) = map.get_mut(&ip) {
            if let Some(pos) = entries.iter().rposition(|t| *t == at) {
                entries.remove(pos);
            }
        }
    }
}

/// A real Argon2id hash with the current parameters, verified against when the user does not
/// exist so both cases cost the same.
static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

type UserRow = (
    i64,
    String,
    Option<String>,
    String,
    bool,
    bool,
    i64,
    Option<NaiveDateTime>,
);

/// `POST /api/v1/auth/login`.
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<LoginRequest>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let now = chrono::Utc::now().naive_utc();
    let ip = req.peer_addr().map(|a| a.ip());
    if let Err(wait) = reserve_address_attempt(&state, ip, now) {
        audit(
            &state,
            &req,
            &body.username,
            "auth.login",
            Outcome::Denied,
            serde_json::json!({ "reason": "address throttled" }),
        )
        .await;
        return Err(AppError::TooManyRequests {
            message: "too many failed sign-ins from this address".into(),
            retry_after: wait,
        });
    }
    let username = body.username.trim().to_owned();
    let lookup = username.clone();
    let row: Option<UserRow> = state
        .db
        .run(move |c| {
            Ok(users::table
                .filter(users::username.eq(&lookup))
                .select((
                    users::id,
                    users::username,
                    users::password_hash,
                    users::role,
                    users::is_disabled,
                    users::mfa_required,
                    users::failed_logins,
                    users::locked_until,
                ))
                .first(c)
                .optional()?)
        })
        .await?;
    let locked_until = match &row {
        Some(r) => r.7,
        None => state
            .unknown_names
            .lock()
            .ok()
            .and_then(|m| m.get(&username).and_then(|e| e.1)),
    };
    if let Some(until) = &locked_until {
        if *until > now {
            audit(
                &state,
                &req,
                &username,
                "auth.login",
                Outcome::Denied,
                serde_json::json!({ "reason": "account locked" }),
            )
            .await;
            return Err(AppError::TooManyRequests {
                message: "too many failed sign-ins for this account; try again later".into(),
                retry_after: (*until - now).num_seconds().max(1),
            });
        }
    }
    // Verify even for unknown users so timing does not reveal which names exist.
    let stored = row.as_ref().and_then(|r| r.2.clone());
    let pw = body.password.clone();
    let (ok, rehash) = tokio::task::spawn_blocking(move || {
        let dummy = DUMMY_HASH
            .get_or_init(|| password::hash("no such user, same cost").unwrap_or_default());
        let ok = password::verify(&pw, stored.as_deref().unwrap_or(dummy)) && stored.is_some();
        let rehash = ok && stored.as_deref().is_some_and(password::needs_rehash);
        (ok, rehash.then(|| password::hash(&pw).ok()).flatten())
    })
    .await
    .map_err(|e| AppError::Internal(e.to_string()))?;
    let Some((user_id, name, _, role, _, mfa_required, _, _)) = row.filter(|r| ok && !r.4) else {
        let reason = row_failure_update(&state, &username, now)
            .await?
            .unwrap_or_else(|| "unknown user or wrong password".into());
        audit(
            &state,
            &req,
            &username,
            "auth.login",
            Outcome::Denied,
            serde_json::json!({ "reason": reason }),
        )
        .await;
        return Err(AppError::Unauthorized("wrong user name or password".into()));
    };
    let _ = mfa_required; // enforced at the gate: no factor yet means enrolment only
    release_address_attempt(&state, ip, now);
    if let Some(h) = rehash {
        state
            .db
            .run(move |c| {
                diesel::update(users::table.filter(users::id.eq(user_id)))
                    .set(users::password_hash.eq(h))
                    .execute(c)?;
                Ok(())
            })
            .await?;
    }
    let now = state.clock.now();
    let methods = state
        .db
        .run(move |c| second_factor_methods(c, user_id))
        .await?;
    if !methods.is_empty() {
        let client = body.client;
        let token = state
            .db
            .run(move |c| mfa::start_login_challenge(c, user_id, client, now))
            .await?;
        audit(
            &state,
            &req,
            &name,
            "auth.password_ok",
            Outcome::Success,
            serde_json::json!({ "next": methods }),
        )
        .await;
        return Ok(
            HttpResponse::Ok().json(LoginResult::MfaRequired(MfaChallenge {
                mfa_token: token,
                methods,
                expires_in: mfa::CHALLENGE_TTL.num_seconds(),
            })),
        );
    }
    complete_sign_in(&state, &req, (user_id, name, role), body.client, "password").await
}

/// The second factors a user can sign in with.
pub(crate) fn second_factor_methods(
    c: &mut crate::db::DbConnection,
    user_id: i64,
) -> Result<Vec<String>, crate::db::DbError> {
    use crate::db::schema::user_credentials as uc;
    let mut kinds: Vec<String> = uc::table
        .filter(uc::user_id.eq(user_id))
        .filter(uc::confirmed.eq(true))
        .filter(
            uc::last_used_at
                .is_null()
                .or(uc::kind.ne(mfa::KIND_RECOVERY)),
        )
        .select(uc::kind)
        .distinct()
        .load(c)?;
    kinds.sort();
    // Recovery codes alone are not a factor (they come with one).
    if kinds.iter().all(|k| k == mfa::KIND_RECOVERY) {
        kinds.clear();
    }
    Ok(kinds)
}

/// Ends a successful sign-in (after the password, or after the second factor): resets the
/// failure counter, starts the session, issues the tokens and audits it.
pub(crate) async fn complete_sign_in(
    state: &AppState,
    req: &HttpRequest,
    user: (i64, String, String),
    client: ClientKind,
    method: &str,
) -> Result<HttpResponse, AppError> {
    let (access, refresh) = open_session(state, req, &user, method).await?;
    session_answer(client, user, access, refresh)
}

/// Starts the session of a user who passed every check: clears the failure count, records the
/// sign-in, audits it. Answers (access token, refresh token).
pub(crate) async fn open_session(
    state: &AppState,
    req: &HttpRequest,
    user: &(i64, String, String),
    method: &str,
) -> Result<(String, String), AppError> {
    let (user_id, name, role) = (user.0, user.1.clone(), user.2.clone());
    let now = chrono::Utc::now().naive_utc();
    let ua = req
        .headers()
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let ip_text = req.peer_addr().map(|a| a.ip().to_string());
    let session = state
        .db
        .run(move |c| {
            diesel::update(users::table.filter(users::id.eq(user_id)))
                .set((
                    users::failed_logins.eq(0_i64),
                    users::locked_until.eq(None::<NaiveDateTime>),
                    users::last_login_at.eq(now),
                ))
                .execute(c)?;
            sessions::start(c, user_id, ua.as_deref(), ip_text.as_deref(), now)
        })
        .await?;
    let keys = state.tokens.get(&state.db, now).await?;
    let access = keys
        .issue(user_id, &role, &session.family_id, now)
        .map_err(|e| AppError::Internal(e.to_string()))?;
    audit(
        state,
        req,
        &name,
        "auth.login",
        Outcome::Success,
        serde_json::json!({ "session": session.family_id, "method": method }),
    )
    .await;
    Ok((access, session.token))
}

/// `POST /api/v1/auth/login/mfa`: the second step, with a TOTP code or a recovery code.
pub async fn login_mfa(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<MfaLoginRequest>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let now = state.clock.now();
    let unix = state.clock.unix();
    let refused = || {
        AppError::Unauthorized("wrong or expired code; sign in again if it keeps failing".into())
    };
    let SecondStep {
        challenge_id,
        user_id,
        challenge,
        name,
        role,
    } = second_step(&state, &req, &body.mfa_token, "totp", true, refused()).await?;
    let secrets = state.secrets.clone();
    let (ok, method) = match (body.code, body.recovery_code) {
        (Some(code), None) => {
            let account = name.clone();
            let ok = state
                .db
                .run(move |c| check_totp(c, &secrets, user_id, &account, &code, unix, now))
                .await?;
            (ok, "totp")
        }
        (None, Some(code)) => (
            state
                .db
                .run(move |c| mfa::consume_recovery_code(c, user_id, &code, now))
                .await?,
            "recovery_code",
        ),
        _ => {
            return Err(AppError::BadRequest {
                code: "validation_failed",
                message: "send exactly one of code or recovery_code".into(),
                details: serde_json::Value::Null,
            })
        }
    };
    if !ok {
        let alive = state
            .db
            .run(move |c| mfa::fail_login_challenge(c, challenge_id))
            .await?;
        let reason = row_failure_update(&state, &name, now)
            .await?
            .unwrap_or_default();
        audit(
            &state,
            &req,
            &name,
            "auth.mfa",
            Outcome::Denied,
            serde_json::json!({ "method": method, "reason": format!("wrong or replayed code; {reason}"), "challenge_alive": alive }),
        )
        .await;
        return Err(refused());
    }
    // Only one of two racing completions may turn the challenge into a session.
    if !state
        .db
        .run(move |c| mfa::end_challenge(c, challenge_id))
        .await?
    {
        return Err(refused());
    }
    if method == "recovery_code" {
        audit(
            &state,
            &req,
            &name,
            "mfa.recovery_code_used",
            Outcome::Success,
            serde_json::Value::Null,
        )
        .await;
    }
    complete_sign_in(
        &state,
        &req,
        (user_id, name, role),
        challenge.client,
        method,
    )
    .await
}

/// A live second sign-in step and its (enabled) user.
pub(crate) struct SecondStep {
    /// Challenge row.
    pub challenge_id: i64,
    /// The user who gave the right password.
    pub user_id: i64,
    /// What the challenge remembers.
    pub challenge: mfa::LoginChallenge,
    /// User name.
    pub name: String,
    /// Role.
    pub role: String,
}

/// Finds the sign-in challenge `token` names and checks its user is still enabled and not
/// locked; with `answering`, also takes one of the challenge's attempts (before the answer is
/// looked at). Otherwise audits the refusal and answers `refused`.
pub(crate) async fn second_step(
    state: &AppState,
    req: &HttpRequest,
    token: &str,
    method: &str,
    answering: bool,
    refused: AppError,
) -> Result<SecondStep, AppError> {
    let now = state.clock.now();
    let token = token.to_owned();
    let found = state
        .db
        .run(move |c| mfa::find_login_challenge(c, &token, now))
        .await?;
    let Some((challenge_id, user_id, challenge)) = found else {
        audit(
            state,
            req,
            "unknown",
            "auth.mfa",
            Outcome::Denied,
            serde_json::json!({ "method": method, "reason": "unknown or expired sign-in challenge" }),
        )
        .await;
        return Err(refused);
    };
    type Row = (String, String, bool, Option<NaiveDateTime>);
    let user: Option<Row> = state
        .db
        .run(move |c| {
            Ok(users::table
                .filter(users::id.eq(user_id))
                .select((
                    users::username,
                    users::role,
                    users::is_disabled,
                    users::locked_until,
                ))
                .first(c)
                .optional()?)
        })
        .await?;
    let Some((name, role, false, locked_until)) = user else {
        state
            .db
            .run(move |c| mfa::end_challenge(c, challenge_id))
            .await?;
        return Err(refused);
    };
    let reason = if locked_until.is_some_and(|t| t > now) {
        Some("account locked after repeated failures")
    } else if answering
        && !state
            .db
            .run(move |c| mfa::claim_attempt(c, challenge_id))
            .await?
    {
        Some("no attempts left on this sign-in challenge")
    } else {
        None
    };
    if let Some(reason) = reason {
        state
            .db
            .run(move |c| mfa::end_challenge(c, challenge_id))
            .await?;
        audit(
            state,
            req,
            &name,
            "auth.mfa",
            Outcome::Denied,
            serde_json::json!({ "method": method, "reason": reason }),
        )
        .await;
        return Err(refused);
    }
    Ok(SecondStep {
        challenge_id,
        user_id,
        challenge,
        name,
        role,
    })
}

/// Whether `code` is a fresh code of one of the user's confirmed TOTP credentials; records the
/// step so it cannot be used again.
pub(crate) fn check_totp(
    c: &mut crate::db::DbConnection,
    secrets: &crate::secrets::SecretBox,
    user_id: i64,
    account: &str,
    code: &str,
    unix: u64,
    now: NaiveDateTime,
) -> Result<bool, crate::db::DbError> {
    use crate::db::schema::user_credentials as uc;
    let creds: Vec<(i64, String)> = uc::table
        .filter(uc::user_id.eq(user_id))
        .filter(uc::kind.eq(mfa::KIND_TOTP))
        .filter(uc::confirmed.eq(true))
        .select((uc::id, uc::data))
        .load(c)?;
    for (id, sealed) in creds {
        let Ok(seed) = secrets.open(&mfa::seal_context(user_id), &sealed) else {
            tracing::warn!(credential = id, "TOTP seed cannot be opened; skipping");
            continue;
        };
        let Ok(t) = mfa::totp(seed, account) else {
            continue;
        };
        if let Some(step) = mfa::matching_step(&t, code, unix) {
            return mfa::consume_totp_step(c, id, step, now);
        }
    }
    Ok(false)
}

/// Counts a failure against an existing account and locks it when due; answers the audit reason.
pub(crate) async fn row_failure_update(
    state: &AppState,
    username: &str,
    now: NaiveDateTime,
) -> Result<Option<String>, AppError> {
    let name = username.to_owned();
    let db_name = name.clone();
    let reason = state
        .db
        .run(move |c| {
            // One atomic increment: parallel failures each count. No row: not an account.
            let counted: Option<i64> =
                diesel::update(users::table.filter(users::username.eq(&db_name)))
                    .set(users::failed_logins.eq(users::failed_logins + 1))
                    .returning(users::failed_logins)
                    .get_result(c)
                    .optional()?;
            let Some(n) = counted else {
                return Ok(None);
            };
            let lock = lock_minutes(n);
            let until = (lock > 0).then(|| now + Duration::minutes(lock));
            diesel::update(users::table.filter(users::username.eq(&db_name)))
                .set(users::locked_until.eq(until))
                .execute(c)?;
            Ok(Some(match until {
                Some(_) => format!("wrong password ({n} in a row); account locked for {lock} min"),
                None => format!("wrong password ({n} in a row)"),
            }))
        })
        .await?;
    if reason.is_none() {
        // Not an account: lock the name the same way, in memory.
        if let Ok(mut m) = state.unknown_names.lock() {
            if m.len() > 10_000 {
                m.retain(|_, e| e.1.is_some_and(|t| t > now));
            }
            let e = m.entry(name).or_insert((0, None));
            e.0 += 1;
            let lock = lock_minutes(e.0);
            e.1 = (lock > 0).then(|| now + Duration::minutes(lock));
        }
    }
    Ok(reason)
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
            code: "invalid_json",
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
    let now = chrono::Utc::now().naive_utc();
    let ip = req.peer_addr().map(|a| a.ip().to_string());
    let outcome = state
        .db
        .run(move |c| sessions::rotate(c, &presented, ip.as_deref(), now))
        .await?;
    let issued = match outcome {
        Ok(i) => i,
        Err(e) => {
            let action = if e == RefreshError::Reused {
                "session.reuse_detected"
            } else {
                "session.refresh"
            };
            audit(
                &state,
                &req,
                "unknown",
                action,
                Outcome::Denied,
                serde_json::json!({ "reason": e.to_string() }),
            )
            .await;
            return Err(AppError::Unauthorized(
                "session expired or revoked; sign in again".into(),
            ));
        }
    };
    let uid = issued.user_id;
    let user: Option<(String, String, bool)> = state
        .db
        .run(move |c| {
            Ok(users::table
                .filter(users::id.eq(uid))
                .select((users::username, users::role, users::is_disabled))
                .first(c)
                .optional()?)
        })
        .await?;
    let Some((name, role, false)) = user else {
        let family = issued.family_id.clone();
        state
            .db
            .run(move |c| sessions::revoke_family(c, &family, "user disabled", now))
            .await?;
        return Err(AppError::Unauthorized("account disabled".into()));
    };
    let keys = state.tokens.get(&state.db, now).await?;
    let access = keys
        .issue(uid, &role, &issued.family_id, now)
        .map_err(|e| AppError::Internal(e.to_string()))?;
    session_answer(client, (uid, name, role), access, issued.token)
}

/// `POST /api/v1/auth/logout`: ends the caller's session and clears the cookies.
pub async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
) -> Result<HttpResponse, AppError> {
    let who = who.identity;
    let now = chrono::Utc::now().naive_utc();
    let family = who.session.clone();
    state
        .db
        .run(move |c| sessions::revoke_family(c, &family, "logout", now))
        .await?;
    audit(
        &state,
        &req,
        &format!("user:{}", who.user_id),
        "auth.logout",
        Outcome::Success,
        serde_json::json!({ "session": who.session }),
    )
    .await;
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
    let uid = who.identity.user_id;
    let (username, display_name): (String, String) = state
        .db
        .run(move |c| {
            Ok(users::table
                .filter(users::id.eq(uid))
                .select((users::username, users::display_name))
                .first(c)?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(Me {
        user_id: uid,
        username,
        display_name,
        role: who.identity.role,
        session: who.identity.session,
        mfa_enrolment_pending: who.identity.mfa_enrolment_pending,
    }))
}
