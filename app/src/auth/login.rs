//! Signing in as a service: the password step (address throttle, account lock, credential
//! check), the second step's checks and its answer with a TOTP or recovery code
//! ([`second_factor`]; security keys answer it in [`super::passkeys`]), session issue, refresh,
//! sign-out and "who am I". The throttle and lock decisions
//! are pure functions of counts and times ([`lock_minutes`], [`lock_until`], [`retry_after`],
//! [`crate::http::rate::wait`]); the handlers in [`crate::api::auth`] only parse and answer.

use super::identity::Identity;
use super::{mfa, password};
use crate::db::audit::{NewAuditEntry, Outcome};
use crate::db::sessions::{self, RefreshError};
use crate::db::users::{self as repo, UserUpdate};
use crate::db::{credentials, DbConnection, DbError};
use crate::error::AppError;
use crate::state::AppState;
use chrono::{Duration, NaiveDateTime};
use shared::auth::{ClientKind, Me};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Consecutive failures allowed before the account is locked.
const ACCOUNT_FREE_FAILURES: i64 = 5;
/// Longest account lock.
const ACCOUNT_MAX_LOCK_MINUTES: i64 = 60;
/// Unknown names remembered before expired ones are swept.
const NAMES_SWEEP_ABOVE: usize = 10_000;

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

/// Until when an account (or unknown name) is locked after `failures` consecutive failures.
pub fn lock_until(failures: i64, now: NaiveDateTime) -> Option<NaiveDateTime> {
    let lock = lock_minutes(failures);
    (lock > 0).then(|| now + Duration::minutes(lock))
}

/// Seconds to wait while `locked_until` is in the future (at least one), else `None`.
pub fn retry_after(locked_until: Option<NaiveDateTime>, now: NaiveDateTime) -> Option<i64> {
    locked_until
        .filter(|t| *t > now)
        .map(|t| (t - now).num_seconds().max(1))
}

/// The audit reason of a counted failure.
pub fn failure_reason(failures: i64) -> String {
    match lock_minutes(failures) {
        0 => format!("wrong password ({failures} in a row from this source)"),
        lock => format!(
            "wrong password ({failures} in a row from this source); locked there for {lock} min"
        ),
    }
}

/// Failed sign-ins per (name, source): (count, locked until), in memory and bounded.
///
/// A lock holds one name for one source (an IPv4 address or an IPv6 /64, see
/// [`crate::http::client::source_key`]), so a stranger who types wrong passwords for the Admin
/// locks out only themselves, never the Admin at their own desk. Names that do not exist lock the
/// same way, so a lock does not reveal which names exist. Guessing from many sources is bounded by
/// the per-source throttle in front of it.
#[derive(Debug, Default)]
pub struct SignInLocks(Mutex<HashMap<LockKey, LockState>>);

/// (lower-cased name, source key).
type LockKey = (String, Option<IpAddr>);
/// (consecutive failures, locked until).
type LockState = (i64, Option<NaiveDateTime>);

impl SignInLocks {
    fn key(name: &str, source: Option<IpAddr>) -> LockKey {
        (
            name.trim().to_lowercase(),
            source.map(crate::http::client::source_key),
        )
    }

    /// Until when `name` is locked for `source`, if it is.
    pub fn locked_until(&self, name: &str, source: Option<IpAddr>) -> Option<NaiveDateTime> {
        self.0
            .lock()
            .ok()
            .and_then(|m| m.get(&Self::key(name, source)).and_then(|e| e.1))
    }

    /// Counts a failure of `name` from `source` and locks the pair when due; answers the
    /// consecutive failures of the pair.
    pub fn fail(&self, name: &str, source: Option<IpAddr>, now: NaiveDateTime) -> i64 {
        let Ok(mut m) = self.0.lock() else {
            return 0;
        };
        if m.len() > NAMES_SWEEP_ABOVE {
            m.retain(|_, e| e.1.is_some_and(|t| t > now));
        }
        let e = m.entry(Self::key(name, source)).or_insert((0, None));
        e.0 += 1;
        e.1 = lock_until(e.0, now);
        e.0
    }

    /// Forgets the failures of `name` from `source` (after a successful sign-in from there).
    pub fn clear(&self, name: &str, source: Option<IpAddr>) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(&Self::key(name, source));
        }
    }
}

/// Why a sign-in was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Too many failures from the address.
    #[error("too many failed sign-ins from this address")]
    AddressThrottled(i64),
    /// The account (or name) is locked.
    #[error("too many failed sign-ins for this account; try again later")]
    Locked(i64),
    /// Unknown user, wrong password or disabled account (not told apart).
    #[error("wrong user name or password")]
    BadCredentials,
    /// Something failed inside.
    #[error("{0}")]
    Internal(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<LoginError> for AppError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::AddressThrottled(wait) | LoginError::Locked(wait) => {
                AppError::TooManyRequests {
                    message: e.to_string(),
                    retry_after: wait,
                }
            }
            LoginError::BadCredentials => AppError::Unauthorized(e.to_string()),
            LoginError::Internal(m) => AppError::Internal(m),
            LoginError::Db(e) => AppError::Database(e),
        }
    }
}

/// Where a sign-in comes from.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// Client address.
    pub ip: Option<IpAddr>,
    /// `User-Agent`.
    pub user_agent: Option<String>,
}

impl Origin {
    /// Of a request.
    pub fn of(req: &actix_web::HttpRequest) -> Self {
        Self {
            ip: crate::http::client::client_ip(req),
            user_agent: req
                .headers()
                .get("user-agent")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        }
    }
}

/// A user who passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedUser {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Role.
    pub role: String,
}

/// What the password step leads to.
#[derive(Debug)]
pub enum PasswordStep {
    /// Signed in: (user, access token, refresh token).
    SignedIn(SignedUser, String, String),
    /// A second factor is needed: the challenge token and the methods that answer it.
    MfaRequired {
        /// Sign-in challenge token.
        token: String,
        /// Methods.
        methods: Vec<String>,
    },
}

/// Audits a sign-in event (the actor, which may be what a client typed, cut to 64 characters).
pub async fn audit(
    state: &AppState,
    ip: Option<IpAddr>,
    actor: &str,
    action: &str,
    outcome: Outcome,
    details: serde_json::Value,
) {
    let actor: String = actor.chars().take(64).collect();
    state
        .audit
        .note(
            NewAuditEntry::new(actor, action, outcome)
                .details(details)
                .source(ip),
        )
        .await;
}

/// How the audit log names a sign-in under a name that may not exist: `unknown:` and a keyed
/// digest of the name, so repeated attempts with one name can be told apart without the log
/// holding what was typed.
pub fn typed_actor(state: &AppState, typed: &str) -> String {
    let digest = state
        .secrets
        .digest("sign-in name", typed.trim().to_lowercase().as_bytes());
    format!("unknown:{}", &digest[..16])
}

/// A real Argon2id hash with the current parameters, verified against when the user does not
/// exist so both cases cost the same.
static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The password step of `POST /auth/login`.
pub async fn password_step(
    state: &AppState,
    origin: &Origin,
    typed_name: &str,
    pw: String,
    client: ClientKind,
) -> Result<PasswordStep, LoginError> {
    let now = state.clock.now();
    let ip = origin.ip;
    // Take one of the address's attempts before the password is checked, so parallel guesses
    // each count; a success gives it back.
    if let Some(source) = ip.map(crate::http::client::source_key) {
        if let Err(wait) = state.login_failures.check(source, now) {
            audit(
                state,
                ip,
                &typed_actor(state, typed_name),
                "auth.login",
                Outcome::Denied,
                serde_json::json!({ "reason": "address throttled" }),
            )
            .await;
            return Err(LoginError::AddressThrottled(
                i64::try_from(wait).unwrap_or(60),
            ));
        }
    }
    let username = typed_name.trim().to_owned();
    let lookup = username.clone();
    let user = state
        .db
        .run(move |c| repo::find_by_name(c, &lookup))
        .await?;
    // What the audit log names: the account, or for a name that does not exist a keyed digest of
    // it (what was typed may be a password typed into the wrong field).
    let actor = user
        .as_ref()
        .map_or_else(|| typed_actor(state, &username), |u| u.username.clone());
    let locked_until = state.sign_in_locks.locked_until(&username, ip);
    if let Some(wait) = retry_after(locked_until, now) {
        audit(
            state,
            ip,
            &actor,
            "auth.login",
            Outcome::Denied,
            serde_json::json!({ "reason": "account locked" }),
        )
        .await;
        return Err(LoginError::Locked(wait));
    }
    // Verify even for unknown users so timing does not reveal which names exist.
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    let (ok, rehash) = password::in_line(move || {
        let dummy = DUMMY_HASH
            .get_or_init(|| password::hash("no such user, same cost").unwrap_or_default());
        let ok = password::verify(&pw, stored.as_deref().unwrap_or(dummy)) && stored.is_some();
        let rehash = ok && stored.as_deref().is_some_and(password::needs_rehash);
        (ok, rehash.then(|| password::hash(&pw).ok()).flatten())
    })
    .await
    .map_err(|e| LoginError::Internal(e.to_string()))?;
    let Some(user) = user.filter(|u| ok && !u.is_disabled) else {
        let reason = count_failure(state, &username, ip, now)
            .await?
            .unwrap_or_else(|| "unknown user or wrong password".into());
        audit(
            state,
            ip,
            &actor,
            "auth.login",
            Outcome::Denied,
            serde_json::json!({ "reason": reason }),
        )
        .await;
        return Err(LoginError::BadCredentials);
    };
    // mfa_required is enforced at the gate: no factor yet means enrolment only.
    if let Some(ip) = ip.map(crate::http::client::source_key) {
        state.login_failures.give_back(ip, now);
    }
    state.sign_in_locks.clear(&username, ip);
    let user_id = i64::from(user.id);
    if let Some(h) = rehash {
        let changes = UserUpdate {
            password_hash: Some(Some(h)),
            ..UserUpdate::default()
        };
        state
            .db
            .run(move |c| repo::update(c, user_id, &changes))
            .await?;
    }
    let now = state.clock.now();
    let methods = state
        .db
        .run(move |c| second_factor_methods(c, user_id))
        .await?;
    if !methods.is_empty() {
        let token = state
            .db
            .run(move |c| mfa::start_login_challenge(c, user_id, client, now))
            .await?;
        audit(
            state,
            ip,
            &user.username,
            "auth.password_ok",
            Outcome::Success,
            serde_json::json!({ "next": methods }),
        )
        .await;
        return Ok(PasswordStep::MfaRequired { token, methods });
    }
    let signed = SignedUser {
        id: user.id.into(),
        name: user.username,
        role: user.role,
    };
    let (access, refresh) = open_session(state, origin, &signed, "password").await?;
    Ok(PasswordStep::SignedIn(signed, access, refresh))
}

/// The second factors a user can sign in with (recovery codes alone are not a factor: they come
/// with one).
pub fn second_factor_methods(c: &mut DbConnection, user_id: i64) -> Result<Vec<String>, DbError> {
    let mut kinds = credentials::usable_kinds(c, user_id)?;
    if kinds.iter().all(|k| k == credentials::KIND_RECOVERY) {
        kinds.clear();
    }
    Ok(kinds)
}

/// Starts the session of a user who passed every check: clears the failure count, records the
/// sign-in, audits it. Answers (access token, refresh token).
pub async fn open_session(
    state: &AppState,
    origin: &Origin,
    user: &SignedUser,
    method: &str,
) -> Result<(String, String), LoginError> {
    let user_id = user.id;
    let now = state.clock.now();
    let ua = origin.user_agent.clone();
    let ip_text = origin.ip.map(|i| i.to_string());
    let session = state
        .db
        .run(move |c| {
            repo::update(
                c,
                user_id,
                &UserUpdate {
                    failed_logins: Some(0),
                    locked_until: Some(None),
                    last_login_at: Some(Some(now)),
                    ..UserUpdate::default()
                },
            )?;
            sessions::start(c, user_id, ua.as_deref(), ip_text.as_deref(), now)
        })
        .await?;
    let keys = state.tokens.get(&state.db, now).await?;
    let access = keys
        .issue(user_id, &user.role, &session.family_id, now)
        .map_err(|e| LoginError::Internal(e.to_string()))?;
    audit(
        state,
        origin.ip,
        &user.name,
        "auth.login",
        Outcome::Success,
        serde_json::json!({ "session": session.family_id, "method": method }),
    )
    .await;
    Ok((access, session.token))
}

/// Counts a failed sign-in of `username` from `source` (at `now`): against the pair's lock, and,
/// when the account exists, in its failure count. Answers the audit reason for an existing
/// account (`None` for a name that does not exist).
pub async fn count_failure(
    state: &AppState,
    username: &str,
    source: Option<IpAddr>,
    now: NaiveDateTime,
) -> Result<Option<String>, DbError> {
    let failures = state.sign_in_locks.fail(username, source, now);
    let name = username.to_owned();
    let exists = state
        .db
        .run(move |c| repo::count_failure(c, &name))
        .await?
        .is_some();
    Ok(exists.then(|| failure_reason(failures)))
}

/// A live second sign-in step and its (enabled) user.
pub struct SecondStep {
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
/// looked at). Otherwise audits the refusal and answers `None`.
pub async fn second_step(
    state: &AppState,
    ip: Option<IpAddr>,
    token: &str,
    method: &str,
    answering: bool,
) -> Result<Option<SecondStep>, DbError> {
    let now = state.clock.now();
    let token = token.to_owned();
    let found = state
        .db
        .run(move |c| mfa::find_login_challenge(c, &token, now))
        .await?;
    let Some((challenge_id, user_id, challenge)) = found else {
        audit(
            state,
            ip,
            "unknown",
            "auth.mfa",
            Outcome::Denied,
            serde_json::json!({ "method": method, "reason": "unknown or expired sign-in challenge" }),
        )
        .await;
        return Ok(None);
    };
    let user = state.db.run(move |c| repo::find(c, user_id)).await?;
    let Some(user) = user.filter(|u| !u.is_disabled) else {
        state
            .db
            .run(move |c| mfa::end_challenge(c, challenge_id))
            .await?;
        return Ok(None);
    };
    let reason = if retry_after(user.locked_until, now).is_some() {
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
            ip,
            &user.username,
            "auth.mfa",
            Outcome::Denied,
            serde_json::json!({ "method": method, "reason": reason }),
        )
        .await;
        return Ok(None);
    }
    Ok(Some(SecondStep {
        challenge_id,
        user_id,
        challenge,
        name: user.username,
        role: user.role,
    }))
}

/// A sign-in that became a session: how to deliver it, who, and the tokens.
#[derive(Debug)]
pub struct SignedIn {
    /// How the session is to be delivered.
    pub client: ClientKind,
    /// Who signed in.
    pub user: SignedUser,
    /// Access token.
    pub access: String,
    /// Refresh token.
    pub refresh: String,
}

/// Why the second sign-in step with a code was refused.
#[derive(Debug, thiserror::Error)]
pub enum SecondFactorError {
    /// Unknown or expired challenge, wrong or replayed code (not told apart).
    #[error("wrong or expired code; sign in again if it keeps failing")]
    Refused,
    /// Neither or both of a TOTP code and a recovery code.
    #[error("send exactly one of code or recovery_code")]
    OneAnswer,
    /// Starting the session failed.
    #[error(transparent)]
    Login(#[from] LoginError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<SecondFactorError> for AppError {
    fn from(e: SecondFactorError) -> Self {
        match e {
            SecondFactorError::Refused => AppError::Unauthorized(e.to_string()),
            SecondFactorError::OneAnswer => AppError::BadRequest {
                code: shared::vocab::ErrorCode::ValidationFailed,
                message: e.to_string(),
                details: serde_json::Value::Null,
            },
            SecondFactorError::Login(e) => e.into(),
            SecondFactorError::Db(e) => AppError::Database(e),
        }
    }
}

/// After a wrong answer to the second step (at `now`): counts a failure against the account
/// (locking it when due) and audits the refusal with `why`.
pub async fn wrong_answer(
    state: &AppState,
    ip: Option<IpAddr>,
    name: &str,
    method: &str,
    why: &str,
    challenge_alive: bool,
    now: NaiveDateTime,
) -> Result<(), DbError> {
    let lock = count_failure(state, name, ip, now)
        .await?
        .unwrap_or_default();
    audit(
        state,
        ip,
        name,
        "auth.mfa",
        Outcome::Denied,
        serde_json::json!({ "method": method, "reason": format!("{why}; {lock}"), "challenge_alive": challenge_alive }),
    )
    .await;
    Ok(())
}

/// The second step of `POST /auth/login/mfa`: exactly one of a TOTP `code` and a
/// `recovery_code` answers the sign-in challenge `token`. A recovery code works once.
pub async fn second_factor(
    state: &AppState,
    origin: &Origin,
    token: &str,
    code: Option<String>,
    recovery_code: Option<String>,
) -> Result<SignedIn, SecondFactorError> {
    let now = state.clock.now();
    let unix = state.clock.unix();
    let SecondStep {
        challenge_id,
        user_id,
        challenge,
        name,
        role,
    } = second_step(state, origin.ip, token, "totp", true)
        .await?
        .ok_or(SecondFactorError::Refused)?;
    let secrets = state.secrets.clone();
    let (ok, method) = match (code, recovery_code) {
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
                .run(move |c| mfa::consume_recovery_code(c, &secrets, user_id, &code, now))
                .await?,
            "recovery_code",
        ),
        _ => return Err(SecondFactorError::OneAnswer),
    };
    if !ok {
        let alive = state
            .db
            .run(move |c| mfa::fail_login_challenge(c, challenge_id))
            .await?;
        wrong_answer(
            state,
            origin.ip,
            &name,
            method,
            "wrong or replayed code",
            alive,
            now,
        )
        .await?;
        return Err(SecondFactorError::Refused);
    }
    // Only one of two racing completions may turn the challenge into a session.
    if !state
        .db
        .run(move |c| mfa::end_challenge(c, challenge_id))
        .await?
    {
        return Err(SecondFactorError::Refused);
    }
    if method == "recovery_code" {
        audit(
            state,
            origin.ip,
            &name,
            "mfa.recovery_code_used",
            Outcome::Success,
            serde_json::Value::Null,
        )
        .await;
    }
    let user = SignedUser {
        id: user_id,
        name,
        role,
    };
    let (access, refresh) = open_session(state, origin, &user, method).await?;
    Ok(SignedIn {
        client: challenge.client,
        user,
        access,
        refresh,
    })
}

/// Whether `code` is a fresh code of one of the user's confirmed TOTP credentials; records the
/// step so it cannot be used again.
pub fn check_totp(
    c: &mut DbConnection,
    secrets: &crate::secrets::SecretBox,
    user_id: i64,
    account: &str,
    code: &str,
    unix: u64,
    now: NaiveDateTime,
) -> Result<bool, DbError> {
    for cred in credentials::confirmed_of_kind(c, user_id, credentials::KIND_TOTP)? {
        let Ok(seed) = secrets.open(&mfa::seal_context(user_id), &cred.data) else {
            tracing::warn!(credential = cred.id, "TOTP seed cannot be opened; skipping");
            continue;
        };
        let Ok(t) = mfa::totp(seed, account) else {
            continue;
        };
        if let Some(step) = mfa::matching_step(&t, code, unix) {
            return mfa::consume_totp_step(c, cred.id, step, now);
        }
    }
    Ok(false)
}

/// Why a refresh was refused.
#[derive(Debug, thiserror::Error)]
pub enum RefreshRefused {
    /// Unknown, reused, revoked or expired.
    #[error("session expired or revoked; sign in again")]
    Session,
    /// The account was disabled (or deleted) since.
    #[error("account disabled")]
    Disabled,
    /// Something failed inside.
    #[error("{0}")]
    Internal(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<RefreshRefused> for AppError {
    fn from(e: RefreshRefused) -> Self {
        match e {
            RefreshRefused::Session | RefreshRefused::Disabled => {
                AppError::Unauthorized(e.to_string())
            }
            RefreshRefused::Internal(m) => AppError::Internal(m),
            RefreshRefused::Db(e) => AppError::Database(e),
        }
    }
}

/// Rotates a refresh token and issues a new access token: (user, access, refresh).
pub async fn refresh(
    state: &AppState,
    ip: Option<IpAddr>,
    presented: String,
) -> Result<(SignedUser, String, String), RefreshRefused> {
    let now = state.clock.now();
    let ip_text = ip.map(|i| i.to_string());
    let outcome = state
        .db
        .run(move |c| sessions::rotate(c, &presented, ip_text.as_deref(), now))
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
                state,
                ip,
                "unknown",
                action,
                Outcome::Denied,
                serde_json::json!({ "reason": e.to_string() }),
            )
            .await;
            return Err(RefreshRefused::Session);
        }
    };
    let uid = issued.user_id;
    let user = state.db.run(move |c| repo::find(c, uid)).await?;
    let Some(user) = user.filter(|u| !u.is_disabled) else {
        let family = issued.family_id.clone();
        state
            .db
            .run(move |c| sessions::revoke_family(c, &family, "user disabled", now))
            .await?;
        return Err(RefreshRefused::Disabled);
    };
    let keys = state.tokens.get(&state.db, now).await?;
    let access = keys
        .issue(uid, &user.role, &issued.family_id, now)
        .map_err(|e| RefreshRefused::Internal(e.to_string()))?;
    Ok((
        SignedUser {
            id: uid,
            name: user.username,
            role: user.role,
        },
        access,
        issued.token,
    ))
}

/// Ends the session `family` of `user_id` (sign-out) and audits it.
pub async fn logout(
    state: &AppState,
    ip: Option<IpAddr>,
    user_id: i64,
    family: String,
) -> Result<(), DbError> {
    let now = state.clock.now();
    let f = family.clone();
    state
        .db
        .run(move |c| sessions::revoke_family(c, &f, "logout", now))
        .await?;
    audit(
        state,
        ip,
        &format!("user:{user_id}"),
        "auth.logout",
        Outcome::Success,
        serde_json::json!({ "session": family }),
    )
    .await;
    state.fleet.access_changed();
    Ok(())
}

/// Who the signed-in caller is, as `GET /auth/me` answers.
pub async fn me(state: &AppState, who: &Identity) -> Result<Me, LoginError> {
    let uid = who.user_id;
    let user = state
        .db
        .run(move |c| repo::find(c, uid))
        .await?
        .ok_or_else(|| LoginError::Internal("signed-in user not found".into()))?;
    Ok(Me {
        user_id: uid.into(),
        username: user.username,
        display_name: user.display_name,
        role: who
            .role
            .parse()
            .map_err(|e: shared::vocab::UnknownWord| LoginError::Internal(e.to_string()))?,
        session: who.session.clone(),
        mfa_enrolment_pending: who.mfa_enrolment_pending,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0)
            .unwrap()
            .naive_utc()
    }

    #[test]
    fn lock_grows_then_caps() {
        assert_eq!((0..=5).map(lock_minutes).sum::<i64>(), 0);
        assert_eq!([6, 7, 8, 9].map(lock_minutes), [1, 2, 4, 8]);
        assert_eq!(lock_minutes(1000), 60);
        assert_eq!(lock_until(5, t(0)), None);
        assert_eq!(lock_until(6, t(0)), Some(t(60)));
        assert_eq!(lock_until(12, t(0)), Some(t(3600)));
    }

    #[test]
    fn locked_only_while_in_the_future() {
        assert_eq!(retry_after(None, t(0)), None);
        assert_eq!(retry_after(Some(t(90)), t(0)), Some(90));
        assert_eq!(retry_after(Some(t(0)), t(0)), None);
        assert_eq!(retry_after(Some(t(-1)), t(0)), None);
        assert_eq!(
            retry_after(Some(t(0) + Duration::milliseconds(10)), t(0)),
            Some(1),
            "never less than a second"
        );
    }

    #[test]
    fn reasons_name_the_lock() {
        assert_eq!(
            failure_reason(3),
            "wrong password (3 in a row from this source)"
        );
        assert_eq!(
            failure_reason(7),
            "wrong password (7 in a row from this source); locked there for 2 min"
        );
    }

    #[test]
    fn locks_hold_one_name_for_one_source() {
        let locks = SignInLocks::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for i in 0..5 {
            locks.fail("ghost", Some(a), t(i));
            assert_eq!(locks.locked_until("ghost", Some(a)), None);
        }
        assert_eq!(
            locks.fail("Ghost ", Some(a), t(5)),
            6,
            "names compare case-blind"
        );
        assert_eq!(locks.locked_until("ghost", Some(a)), Some(t(65)));
        assert_eq!(locks.locked_until("other", Some(a)), None);
        assert_eq!(
            locks.locked_until("ghost", Some(b)),
            None,
            "another source is not locked"
        );
        // One IPv6 /64 is one source.
        let (v6a, v6b): (IpAddr, IpAddr) = (
            "2001:db8:0:1::a".parse().unwrap(),
            "2001:db8:0:1::b".parse().unwrap(),
        );
        for i in 0..6 {
            locks.fail("admin", Some(v6a), t(i));
        }
        assert!(locks.locked_until("admin", Some(v6b)).is_some());
        locks.clear("admin", Some(v6b));
        assert_eq!(locks.locked_until("admin", Some(v6a)), None);
    }

    #[test]
    fn address_throttle_after_ten_failures() {
        let l = crate::http::rate::Limiter::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for i in 0..10 {
            assert!(l.check(ip, t(i)).is_ok());
        }
        assert_eq!(l.check(ip, t(10)), Err(15 * 60 - 10));
        assert!(l.check(ip, t(15 * 60)).is_ok(), "the first left the window");
    }
}
