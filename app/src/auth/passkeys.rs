//! WebAuthn second factors (security keys and passkeys) with webauthn-rs.
//!
//! Ceremony state (the challenge) is kept in `auth_challenges` between the two requests of a
//! ceremony, so any worker can finish what another started, and it is single-use: finishing
//! deletes it. Registered passkeys are stored as webauthn-rs serialises them (public key,
//! credential id, signature counter); the counter is updated after every sign-in, so a cloned
//! authenticator shows up as a counter that goes backwards and is refused.
//!
//! The ceremonies as services: [`register_start`] and [`register_finish`] on the signed-in
//! account (starting one is a change of second factors, so only within
//! [`mfa::RECENT_SIGN_IN`] of signing in), [`login_start`] and [`login_finish`] as the second
//! sign-in step.

use super::identity::Identity;
use super::login::{self, LoginError, Origin, SecondStep, SignedIn, SignedUser};
use super::mfa::{self, MfaError};
use crate::config::{Config, TlsMode};
use crate::db::audit::{NewAuditEntry, Outcome};
use crate::db::challenges::{self, NewChallenge};
use crate::db::credentials::{self, NewCredential};
use crate::db::{transaction, users, DbConnection, DbError};
use crate::error::AppError;
use crate::state::AppState;
use chrono::NaiveDateTime;
use shared::auth::{PasskeyLoginOptions, PasskeyRegisterOptions};
use std::net::{IpAddr, SocketAddr};
use webauthn_rs::prelude::{
    CredentialID, Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder,
};

/// Challenge kind of a registration ceremony.
pub const CHALLENGE_REGISTER: &str = "webauthn_register";
/// How long a ceremony may take.
pub const CEREMONY_TTL: chrono::Duration = chrono::Duration::minutes(5);

/// The relying party as configured, or why WebAuthn is off.
pub fn relying_party(config: &Config, addr: SocketAddr) -> Result<Webauthn, String> {
    let rp_id = if config.auth.webauthn_rp_id.is_empty() {
        config
            .server
            .public_names
            .iter()
            .find(|n| n.parse::<std::net::IpAddr>().is_err())
            .cloned()
            .ok_or("no DNS name in server.public_names; set auth.webauthn_rp_id")?
    } else {
        config.auth.webauthn_rp_id.clone()
    };
    let origin = if config.auth.webauthn_origin.is_empty() {
        let scheme = if config.server.tls == TlsMode::Off {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{rp_id}:{}", addr.port())
    } else {
        config.auth.webauthn_origin.clone()
    };
    let origin = Url::parse(&origin).map_err(|e| format!("auth.webauthn_origin {origin}: {e}"))?;
    WebauthnBuilder::new(&rp_id, &origin)
        .and_then(|b| b.rp_name("Linux Patch Manager").build())
        .map_err(|e| format!("WebAuthn relying party {rp_id} at {origin}: {e}"))
}

/// The stable WebAuthn user handle of a user (not secret; unique per account).
pub fn user_handle(user_id: i64) -> Uuid {
    Uuid::from_u128(u128::from(user_id.unsigned_abs()))
}

/// The user's registered passkeys: (credential row id, passkey).
pub fn passkeys(c: &mut DbConnection, user_id: i64) -> Result<Vec<(i64, Passkey)>, DbError> {
    let rows = credentials::confirmed_of_kind(c, user_id, credentials::KIND_WEBAUTHN)?;
    Ok(rows
        .into_iter()
        .map(|cred| (cred.id, cred.data))
        .filter_map(|(id, json)| match serde_json::from_str::<Passkey>(&json) {
            Ok(p) => Some((id, p)),
            Err(e) => {
                tracing::warn!(credential = id, error = %e, "stored passkey unreadable; skipped");
                None
            }
        })
        .collect())
}

/// Credential ids the user already has (so an authenticator is not registered twice).
pub fn existing_ids(c: &mut DbConnection, user_id: i64) -> Result<Vec<CredentialID>, DbError> {
    Ok(passkeys(c, user_id)?
        .into_iter()
        .map(|(_, p)| p.cred_id().clone())
        .collect())
}

/// What a registration ceremony remembers.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Registration {
    /// Name the user gave the authenticator.
    pub name: String,
    /// webauthn-rs state (the challenge).
    pub state: PasskeyRegistration,
}

/// Stores a registration ceremony; answers its id.
pub fn start_registration(
    c: &mut DbConnection,
    user_id: i64,
    reg: &Registration,
    now: NaiveDateTime,
) -> Result<i64, DbError> {
    let json = serde_json::to_string(reg).map_err(|e| DbError::Task(e.to_string()))?;
    challenges::insert(
        c,
        &NewChallenge {
            user_id: Some(user_id),
            kind: CHALLENGE_REGISTER,
            state_json: &json,
            expires_at: now + CEREMONY_TTL,
            created_at: now,
        },
    )
}

/// Takes (reads and deletes) the user's live registration ceremony `id`.
pub fn take_registration(
    c: &mut DbConnection,
    user_id: i64,
    id: i64,
    now: NaiveDateTime,
) -> Result<Option<Registration>, DbError> {
    let row = challenges::take_live_of_user(c, id, user_id, CHALLENGE_REGISTER, now)?;
    Ok(row.and_then(|r| serde_json::from_str(&r.state_json).ok()))
}

/// Stores a newly registered passkey; answers its credential row id.
pub fn store(
    c: &mut DbConnection,
    user_id: i64,
    name: &str,
    key: &Passkey,
    now: NaiveDateTime,
) -> Result<i64, DbError> {
    let json = serde_json::to_string(key).map_err(|e| DbError::Task(e.to_string()))?;
    credentials::insert(
        c,
        &NewCredential {
            user_id,
            kind: credentials::KIND_WEBAUTHN,
            name,
            data: &json,
            confirmed: true,
            created_at: now,
        },
    )
}

/// Saves a passkey after use (its counter and backup state moved).
pub fn save_used(
    c: &mut DbConnection,
    id: i64,
    key: &Passkey,
    now: NaiveDateTime,
) -> Result<(), DbError> {
    let json = serde_json::to_string(key).map_err(|e| DbError::Task(e.to_string()))?;
    credentials::set_data_used(c, id, &json, now)
}

/// Why a WebAuthn ceremony was refused.
#[derive(Debug, thiserror::Error)]
pub enum PasskeyError {
    /// No relying party is configured (the reason says why).
    #[error("security keys are not available on this manager: {0}")]
    Unavailable(String),
    /// The second-factor rules refused (not signed in recently, a bad name).
    #[error(transparent)]
    Mfa(#[from] MfaError),
    /// The client's credential is not a WebAuthn answer (the message says which).
    #[error("{0}")]
    InvalidCredential(String),
    /// No such registration in progress.
    #[error("no such registration in progress (it expires after five minutes)")]
    NoRegistration,
    /// The authenticator's registration was not accepted.
    #[error("the authenticator's answer was not accepted: {0}")]
    Rejected(String),
    /// The authenticator is registered already.
    #[error("this security key is already registered")]
    AlreadyRegistered,
    /// The account has no security key to sign in with.
    #[error("this account has no security key")]
    NoKey,
    /// The sign-in challenge or the key's answer was refused (not told apart).
    #[error("the security key was not accepted; sign in again if it keeps failing")]
    Refused,
    /// Starting the session failed.
    #[error(transparent)]
    Login(#[from] LoginError),
    /// Something failed inside.
    #[error("{0}")]
    Internal(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<PasskeyError> for AppError {
    fn from(e: PasskeyError) -> Self {
        match e {
            PasskeyError::Unavailable(_)
            | PasskeyError::AlreadyRegistered
            | PasskeyError::NoKey => AppError::Conflict(e.to_string()),
            PasskeyError::Mfa(e) => e.into(),
            PasskeyError::InvalidCredential(message) => AppError::BadRequest {
                code: shared::vocab::ErrorCode::InvalidCredential,
                message,
                details: serde_json::json!({ "field": "credential" }),
            },
            PasskeyError::NoRegistration => AppError::NotFound(e.to_string()),
            PasskeyError::Rejected(_) => AppError::BadRequest {
                code: shared::vocab::ErrorCode::WebauthnRejected,
                message: e.to_string(),
                details: serde_json::Value::Null,
            },
            PasskeyError::Refused => AppError::Unauthorized(e.to_string()),
            PasskeyError::Login(e) => e.into(),
            PasskeyError::Internal(m) => AppError::Internal(m),
            PasskeyError::Db(e) => AppError::Database(e),
        }
    }
}

/// The manager's relying party, or why security keys are off.
fn rp(state: &AppState) -> Result<&Webauthn, PasskeyError> {
    state
        .webauthn
        .as_ref()
        .as_ref()
        .map_err(|why| PasskeyError::Unavailable(why.clone()))
}

/// Registers the authenticator's answer as a passkey of the user, unless it is one already; the
/// first factor of an account also brings its recovery codes. Answers (credential id, codes).
pub fn add(
    c: &mut DbConnection,
    secrets: &crate::secrets::SecretBox,
    uid: i64,
    name: &str,
    key: &Passkey,
    now: NaiveDateTime,
) -> Result<(i64, Vec<String>), PasskeyError> {
    transaction(c, |c| {
        // Authenticators are asked not to register twice, but the answer is theirs to give:
        // check here too.
        if existing_ids(c, uid)?.contains(key.cred_id()) {
            return Err(PasskeyError::AlreadyRegistered);
        }
        let cred_id = store(c, uid, name, key, now)?;
        let codes = if mfa::recovery_codes_left(c, uid)? == 0 {
            mfa::replace_recovery_codes(c, secrets, uid, now)?
        } else {
            Vec::new()
        };
        Ok((cred_id, codes))
    })
}

/// Starts registering a security key or passkey on the caller's account (within
/// [`mfa::RECENT_SIGN_IN`] of signing in).
pub async fn register_start(
    state: &AppState,
    who: &Identity,
    name: &str,
) -> Result<PasskeyRegisterOptions, PasskeyError> {
    mfa::require_recent_sign_in(state, who).await?;
    let rp = rp(state)?;
    let name = mfa::valid_name(name)?;
    let uid = who.user_id;
    let (username, display, existing) = state
        .db
        .run(move |c| {
            let u = users::find(c, uid)?
                .ok_or_else(|| DbError::Inconsistent(format!("user {uid} not found")))?;
            Ok((u.username, u.display_name, existing_ids(c, uid)?))
        })
        .await?;
    let (options, reg_state) = rp
        .start_passkey_registration(user_handle(uid), &username, &display, Some(existing))
        .map_err(|e| PasskeyError::Internal(format!("WebAuthn registration start: {e}")))?;
    let now = state.clock.now();
    let reg = Registration {
        name,
        state: reg_state,
    };
    let challenge_id = state
        .db
        .run(move |c| start_registration(c, uid, &reg, now))
        .await?;
    let options =
        serde_json::to_value(options).map_err(|e| PasskeyError::Internal(e.to_string()))?;
    Ok(PasskeyRegisterOptions {
        challenge_id,
        options,
    })
}

/// Finishes the caller's registration ceremony `challenge_id` with the authenticator's answer;
/// audited. Answers the recovery codes the first factor brings (else none).
pub async fn register_finish(
    state: &AppState,
    who: &Identity,
    ip: Option<IpAddr>,
    challenge_id: i64,
    credential: serde_json::Value,
) -> Result<Vec<String>, PasskeyError> {
    let rp = rp(state)?;
    let credential: RegisterPublicKeyCredential =
        serde_json::from_value(credential).map_err(|e| {
            PasskeyError::InvalidCredential(format!("not a WebAuthn registration: {e}"))
        })?;
    let uid = who.user_id;
    let now = state.clock.now();
    let reg = state
        .db
        .run(move |c| take_registration(c, uid, challenge_id, now))
        .await?
        .ok_or(PasskeyError::NoRegistration)?;
    let key = rp
        .finish_passkey_registration(&credential, &reg.state)
        .map_err(|e| PasskeyError::Rejected(e.to_string()))?;
    let name = reg.name.clone();
    let secrets = state.secrets.clone();
    let (cred_id, codes) =
        crate::db::transaction::run(&state.db, move |c| add(c, &secrets, uid, &name, &key, now))
            .await?;
    state
        .audit
        .note(
            NewAuditEntry::new(
                format!("user:{uid}"),
                "mfa.webauthn_enrolled",
                Outcome::Success,
            )
            .target(format!("user:{uid}"))
            .details(serde_json::json!({ "credential": cred_id, "name": reg.name }))
            .source(ip),
        )
        .await;
    Ok(codes)
}

/// Starts the second sign-in step with a security key on the sign-in challenge `token`.
pub async fn login_start(
    state: &AppState,
    ip: Option<IpAddr>,
    token: &str,
) -> Result<PasskeyLoginOptions, PasskeyError> {
    let rp = rp(state)?;
    let step = login::second_step(state, ip, token, "webauthn", false)
        .await?
        .ok_or(PasskeyError::Refused)?;
    let (challenge_id, user_id, challenge) = (step.challenge_id, step.user_id, step.challenge);
    let keys: Vec<_> = state
        .db
        .run(move |c| passkeys(c, user_id))
        .await?
        .into_iter()
        .map(|(_, k)| k)
        .collect();
    if keys.is_empty() {
        return Err(PasskeyError::NoKey);
    }
    let (options, auth_state) = rp
        .start_passkey_authentication(&keys)
        .map_err(|e| PasskeyError::Internal(format!("WebAuthn sign-in start: {e}")))?;
    let saved =
        serde_json::to_value(&auth_state).map_err(|e| PasskeyError::Internal(e.to_string()))?;
    state
        .db
        .run(move |c| mfa::set_login_webauthn(c, challenge_id, challenge, Some(saved)))
        .await?;
    let options =
        serde_json::to_value(options).map_err(|e| PasskeyError::Internal(e.to_string()))?;
    Ok(PasskeyLoginOptions { options })
}

/// Finishes the second sign-in step with the key's assertion: records the key's new signature
/// counter and starts the session. A wrong answer counts as a failed sign-in.
pub async fn login_finish(
    state: &AppState,
    origin: &Origin,
    token: &str,
    credential: serde_json::Value,
) -> Result<SignedIn, PasskeyError> {
    let rp = rp(state)?;
    let now = state.clock.now();
    let credential: PublicKeyCredential = serde_json::from_value(credential)
        .map_err(|e| PasskeyError::InvalidCredential(format!("not a WebAuthn assertion: {e}")))?;
    let SecondStep {
        challenge_id,
        user_id,
        challenge,
        name,
        role,
    } = login::second_step(state, origin.ip, token, "webauthn", true)
        .await?
        .ok_or(PasskeyError::Refused)?;
    let auth_state: Option<PasskeyAuthentication> = challenge
        .webauthn
        .clone()
        .and_then(|v| serde_json::from_value(v).ok());
    let verdict = match auth_state {
        Some(s) => rp
            .finish_passkey_authentication(&credential, &s)
            .map_err(|e| e.to_string()),
        None => Err("no security-key ceremony was started on this sign-in".into()),
    };
    let client = challenge.client;
    let result = match verdict {
        Ok(r) => r,
        Err(why) => {
            // The ceremony is spent either way: the next try starts a new one.
            let alive = state
                .db
                .run(move |c| {
                    mfa::set_login_webauthn(c, challenge_id, challenge, None)?;
                    mfa::fail_login_challenge(c, challenge_id)
                })
                .await?;
            login::wrong_answer(state, origin.ip, &name, "webauthn", &why, alive, now).await?;
            return Err(PasskeyError::Refused);
        }
    };
    // Record the new signature counter on the key that signed, and end the challenge: one of two
    // racing completions wins.
    let won = state
        .db
        .run(move |c| {
            transaction(c, |c| {
                for (id, mut key) in passkeys(c, user_id)? {
                    if key.update_credential(&result).is_some() {
                        save_used(c, id, &key, now)?;
                    }
                }
                mfa::end_challenge(c, challenge_id)
            })
        })
        .await?;
    if !won {
        return Err(PasskeyError::Refused);
    }
    let user = SignedUser {
        id: user_id,
        name,
        role,
    };
    let (access, refresh) = login::open_session(state, origin, &user, "webauthn").await?;
    Ok(SignedIn {
        client,
        user,
        access,
        refresh,
    })
}
