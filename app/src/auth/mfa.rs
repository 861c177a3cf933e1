//! Second factors: TOTP (RFC 6238) and one-time recovery codes, plus the short-lived sign-in
//! challenge that sits between a correct password and a complete session.
//!
//! - TOTP seeds are 160 random bits, sealed with the manager's [`crate::secrets::SecretBox`]
//!   before they reach the database. A code is accepted for the current 30-second step and one
//!   step either side, and only if that step is later than the last one used with the credential:
//!   the check-and-record is one conditional `UPDATE`, so a code cannot be replayed, not even by
//!   two requests racing each other.
//! - Recovery codes (ten, shown once) are stored as SHA-256 hashes (they carry 50 random bits, so a
//!   slow hash adds nothing) and each works once.
//! - After the password, a user with a confirmed factor gets a sign-in challenge: an opaque token,
//!   stored hashed in `auth_challenges`, valid for five minutes and five answers; each answer
//!   claims an attempt atomically before it is checked.
//!
//! - A user changes their own factors (enrols, removes, renews recovery codes) only within
//!   [`RECENT_SIGN_IN`] of signing in ([`signed_in_recently`], checked by [`check_recent`]).
//!
//! Every function takes the time as an argument, so tests drive the clock. The functions taking
//! `&mut DbConnection` are the rules; the async ones wrap them for handlers, with the audit
//! record.

use crate::auth::identity::Identity;
use crate::clock::rfc3339;
use crate::db::audit::{NewAuditEntry, Outcome};
use crate::db::challenges::{self, NewChallenge};
use crate::db::{credentials, sessions, transaction, users, DbConnection, DbError};
use crate::error::AppError;
use crate::secrets::SecretBox;
use crate::state::AppState;
use chrono::{Duration, NaiveDateTime};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use shared::auth::{MfaCredential, MfaStatus, TotpEnrolment};
use std::net::IpAddr;
use totp_rs::{Algorithm, Builder, Totp};

/// Seconds per TOTP step.
pub const TOTP_STEP: u64 = 30;
/// Credential kind of a TOTP authenticator.
pub const KIND_TOTP: &str = credentials::KIND_TOTP;
/// Credential kind of a WebAuthn security key or passkey.
pub const KIND_WEBAUTHN: &str = credentials::KIND_WEBAUTHN;
/// Credential kind of one recovery code.
pub const KIND_RECOVERY: &str = credentials::KIND_RECOVERY;
/// Recovery codes issued at a time.
pub const RECOVERY_CODES: usize = 10;
/// Challenge kind of the second sign-in step.
pub const CHALLENGE_LOGIN: &str = "mfa_login";
/// How long the second sign-in step may take.
pub const CHALLENGE_TTL: chrono::Duration = chrono::Duration::minutes(5);
/// Wrong codes allowed per challenge.
pub const CHALLENGE_MAX_ATTEMPTS: i64 = 5;
/// Issuer shown by authenticator apps.
pub const ISSUER: &str = "Linux Patch Manager";

/// Associated data that binds a sealed TOTP seed to its owner.
pub fn seal_context(user_id: i64) -> String {
    format!("totp:user:{user_id}")
}

/// Random bytes from the system generator.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], DbError> {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| DbError::Task("random generator failed".into()))?;
    Ok(b)
}

/// Number of confirmed TOTP and WebAuthn credentials of the user (recovery codes do not count).
pub fn confirmed_factors(c: &mut DbConnection, user_id: i64) -> Result<i64, DbError> {
    credentials::confirmed_factors(c, user_id)
}

/// The TOTP generator for a seed.
pub fn totp(seed: Vec<u8>, account: &str) -> Result<Totp, String> {
    // Authenticator apps show "issuer: account"; a colon in the account would break the label.
    let account = account.replace(':', "_");
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(TOTP_STEP)
        .with_secret(seed)
        .with_account_name(account)
        .with_issuer(Some(ISSUER))
        .build()
        .map_err(|e| e.to_string())
}

/// The `otpauth://` URL of a generator.
pub fn url(t: &Totp) -> Result<String, String> {
    t.to_url().map_err(|e| e.to_string())
}

/// The seed in base32, for typing into an app by hand.
pub fn secret_base32(t: &Totp) -> String {
    t.secret().to_base32()
}

/// The code of a generator at a time.
pub fn code_at(t: &Totp, unix: u64) -> String {
    t.generate(unix).to_string()
}

/// The step (`unix time / 30`) whose code equals `code`, looking one step either side of `now`
/// (the library compares in constant time).
pub fn matching_step(t: &Totp, code: &str, now_unix: u64) -> Option<i64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.check(code, now_unix).and_then(|s| i64::try_from(s).ok())
}

/// Records `step` as used on the credential if it is later than the last one used. Answers
/// whether it was (false: a replay, or the credential is gone).
pub fn consume_totp_step(
    c: &mut DbConnection,
    credential_id: i64,
    step: i64,
    now: NaiveDateTime,
) -> Result<bool, DbError> {
    credentials::consume_step(c, credential_id, step, now)
}

/// Ten fresh recovery codes like `k7qp2-xm4ra`.
pub fn new_recovery_codes() -> Result<Vec<String>, DbError> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    (0..RECOVERY_CODES)
        .map(|_| {
            let raw = random_bytes::<10>()?;
            let chars: Vec<char> = raw
                .iter()
                .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
                .collect();
            let first: String = chars[..5].iter().collect();
            let second: String = chars[5..].iter().collect();
            Ok(format!("{first}-{second}"))
        })
        .collect()
}

/// Prefix of a recovery code stored with the keyed hash.
const KEYED: &str = "k1:";
/// Context of the keyed hash of recovery codes.
const RECOVERY_CONTEXT: &str = "recovery code";

/// SHA-256 (hex) of a recovery code (case, spaces and dashes do not matter): how codes were stored
/// before the keyed hash, and what the keyed hash is taken of.
fn recovery_sha256(code: &str) -> String {
    let norm: String = code
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    hex::encode(Sha256::digest(norm.as_bytes()))
}

/// What a recovery code is stored as: a keyed hash (HMAC under the secrets key) of its SHA-256,
/// so a database dump alone cannot test guesses against it.
pub fn recovery_hash(secrets: &SecretBox, code: &str) -> String {
    keyed(secrets, &recovery_sha256(code))
}

fn keyed(secrets: &SecretBox, sha256_hex: &str) -> String {
    format!(
        "{KEYED}{}",
        secrets.digest(RECOVERY_CONTEXT, sha256_hex.as_bytes())
    )
}

/// Re-stores recovery codes kept with the plain SHA-256 of earlier versions under the keyed hash
/// (the keyed hash is taken of the SHA-256, so no code needs to be known); answers how many.
pub fn migrate_recovery_codes(c: &mut DbConnection, secrets: &SecretBox) -> Result<usize, DbError> {
    let plain = credentials::recovery_not_keyed(c, KEYED)?;
    transaction(c, |c| {
        for (id, sha) in &plain {
            credentials::set_data(c, *id, &keyed(secrets, sha))?;
        }
        Ok::<_, DbError>(plain.len())
    })
}

/// Replaces the user's recovery codes with new ones and answers them (to show once).
pub fn replace_recovery_codes(
    c: &mut DbConnection,
    secrets: &SecretBox,
    user_id: i64,
    now: NaiveDateTime,
) -> Result<Vec<String>, DbError> {
    let codes = new_recovery_codes()?;
    let hashes: Vec<String> = codes.iter().map(|c| recovery_hash(secrets, c)).collect();
    credentials::replace_recovery(c, user_id, &hashes, now)?;
    Ok(codes)
}

/// Spends a recovery code of the user; answers whether it was valid and unused.
pub fn consume_recovery_code(
    c: &mut DbConnection,
    secrets: &SecretBox,
    user_id: i64,
    code: &str,
    now: NaiveDateTime,
) -> Result<bool, DbError> {
    credentials::consume_recovery(c, user_id, &recovery_hash(secrets, code), now)
}

/// Unused recovery codes left.
pub fn recovery_codes_left(c: &mut DbConnection, user_id: i64) -> Result<i64, DbError> {
    credentials::recovery_left(c, user_id)
}

/// What a sign-in challenge remembers between the password and the second factor.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LoginChallenge {
    /// SHA-256 of the challenge token's secret.
    pub token_hash: String,
    /// How the session is to be delivered.
    pub client: shared::auth::ClientKind,
    /// A WebAuthn sign-in ceremony started on this challenge (webauthn-rs state).
    #[serde(default)]
    pub webauthn: Option<serde_json::Value>,
}

/// Starts the second sign-in step; answers the token `<id>.<secret>` for the client.
pub fn start_login_challenge(
    c: &mut DbConnection,
    user_id: i64,
    client: shared::auth::ClientKind,
    now: NaiveDateTime,
) -> Result<String, DbError> {
    let secret = hex::encode(random_bytes::<32>()?);
    let state = LoginChallenge {
        token_hash: hex::encode(Sha256::digest(secret.as_bytes())),
        client,
        webauthn: None,
    };
    // Expired challenges of anyone are swept here; they are small and short-lived.
    let json = serde_json::to_string(&state).unwrap_or_default();
    let id = challenges::insert(
        c,
        &NewChallenge {
            user_id: Some(user_id),
            kind: CHALLENGE_LOGIN,
            state_json: &json,
            expires_at: now + CHALLENGE_TTL,
            created_at: now,
        },
    )?;
    Ok(format!("{id}.{secret}"))
}

/// A live sign-in challenge matching the token: (challenge id, user id, state).
pub fn find_login_challenge(
    c: &mut DbConnection,
    token: &str,
    now: NaiveDateTime,
) -> Result<Option<(i64, i64, LoginChallenge)>, DbError> {
    let Some((id, secret)) = token.split_once('.') else {
        return Ok(None);
    };
    let Ok(id) = id.parse::<i64>() else {
        return Ok(None);
    };
    let Some(row) = challenges::find_live(c, id, CHALLENGE_LOGIN, now)? else {
        return Ok(None);
    };
    let Some(user_id) = row.user_id else {
        return Ok(None);
    };
    let Ok(state) = serde_json::from_str::<LoginChallenge>(&row.state_json) else {
        return Ok(None);
    };
    let presented = hex::encode(Sha256::digest(secret.as_bytes()));
    if !super::ct_eq(presented.as_bytes(), state.token_hash.as_bytes()) {
        return Ok(None);
    }
    Ok(Some((id, user_id, state)))
}

/// Takes one of the challenge's attempts before an answer is checked: one atomic
/// `attempts = attempts + 1` guarded by the limit, so parallel guesses each use one up. Answers
/// whether an attempt was left.
pub fn claim_attempt(c: &mut DbConnection, id: i64) -> Result<bool, DbError> {
    challenges::claim_attempt(c, id, CHALLENGE_MAX_ATTEMPTS)
}

/// After a wrong answer: the challenge dies once its attempts are used up. Answers whether it is
/// still alive.
pub fn fail_login_challenge(c: &mut DbConnection, id: i64) -> Result<bool, DbError> {
    challenges::delete_if_spent(c, id, CHALLENGE_MAX_ATTEMPTS)
}

/// Stores (or, with `None`, ends) the WebAuthn ceremony started on a sign-in challenge.
pub fn set_login_webauthn(
    c: &mut DbConnection,
    id: i64,
    mut state: LoginChallenge,
    webauthn: Option<serde_json::Value>,
) -> Result<(), DbError> {
    state.webauthn = webauthn;
    challenges::set_state(c, id, &serde_json::to_string(&state).unwrap_or_default())
}

/// Ends a challenge (used or abandoned). Answers whether this call removed it, so only one of
/// two racing completions wins.
pub fn end_challenge(c: &mut DbConnection, id: i64) -> Result<bool, DbError> {
    challenges::delete(c, id)
}

/// An SVG QR code of `text` (the otpauth URL) for authenticator apps.
pub fn qr_svg(text: &str) -> Result<String, String> {
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(|e| e.to_string())?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build())
}

/// Second factors change only within this long after signing in: a stolen session that is older
/// (or a browser left signed in) cannot add the thief's authenticator or remove the owner's.
pub const RECENT_SIGN_IN: Duration = Duration::minutes(15);

/// Why a change to the caller's own second factors was refused.
#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    /// The session began longer than [`RECENT_SIGN_IN`] ago (or is gone).
    #[error(
        "sign in again to change your second factors (allowed for 15 minutes after signing in)"
    )]
    NotRecent,
    /// A field is not acceptable.
    #[error("{message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// No such factor of the caller.
    #[error("{0}")]
    NotFound(&'static str),
    /// The change conflicts with the account's factors.
    #[error("{0}")]
    Conflict(&'static str),
    /// The confirmation code does not match the new authenticator.
    #[error("that code does not match; check the app's clock and try the next code")]
    WrongCode,
    /// Something failed inside.
    #[error("{0}")]
    Internal(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<MfaError> for AppError {
    fn from(e: MfaError) -> Self {
        match e {
            MfaError::NotRecent => AppError::Forbidden(e.to_string()),
            MfaError::Invalid { field, message } => AppError::invalid(field, message),
            MfaError::NotFound(m) => AppError::NotFound(m.into()),
            MfaError::Conflict(m) => AppError::Conflict(m.into()),
            MfaError::WrongCode => AppError::BadRequest {
                code: shared::vocab::ErrorCode::WrongCode,
                message: e.to_string(),
                details: serde_json::json!({ "field": "code" }),
            },
            MfaError::Internal(m) => AppError::Internal(m),
            MfaError::Db(e) => AppError::Database(e),
        }
    }
}

/// The re-authentication rule: a session that began at `started` may change second factors at
/// `now` (strictly less than [`RECENT_SIGN_IN`] later). An unknown session may not.
pub fn signed_in_recently(started: Option<NaiveDateTime>, now: NaiveDateTime) -> bool {
    started.is_some_and(|t| t + RECENT_SIGN_IN > now)
}

/// [`signed_in_recently`] for the stored session `family`.
pub fn check_recent(
    c: &mut DbConnection,
    family: &str,
    now: NaiveDateTime,
) -> Result<(), MfaError> {
    if signed_in_recently(sessions::started_at(c, family)?, now) {
        Ok(())
    } else {
        Err(MfaError::NotRecent)
    }
}

/// Refuses unless the caller's session began within [`RECENT_SIGN_IN`].
pub async fn require_recent_sign_in(state: &AppState, who: &Identity) -> Result<(), MfaError> {
    let sid = who.session.clone();
    let now = state.clock.now();
    crate::db::transaction::run(&state.db, move |c| check_recent(c, &sid, now)).await
}

/// Checks a credential name: 1–64 printable characters.
pub fn valid_name(name: &str) -> Result<String, MfaError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(MfaError::Invalid {
            field: "name",
            message: "name must be 1 to 64 printable characters".into(),
        });
    }
    Ok(name.to_owned())
}

/// The signed-in account (it exists while its session does).
fn account(c: &mut DbConnection, uid: i64) -> Result<users::User, DbError> {
    users::find(c, uid)?.ok_or_else(|| DbError::Inconsistent(format!("user {uid} not found")))
}

/// Audits a change to the caller's own factors.
async fn note(
    state: &AppState,
    who: &Identity,
    ip: Option<IpAddr>,
    action: &str,
    details: serde_json::Value,
) {
    state
        .audit
        .note(
            NewAuditEntry::new(format!("user:{}", who.user_id), action, Outcome::Success)
                .target(format!("user:{}", who.user_id))
                .details(details)
                .source(ip),
        )
        .await;
}

/// The user's factors, whether an admin requires one, and the recovery codes left.
pub fn status_of(c: &mut DbConnection, uid: i64) -> Result<MfaStatus, DbError> {
    let required = account(c, uid)?.mfa_required;
    Ok(MfaStatus {
        required,
        credentials: credentials::factors(c, uid)?
            .into_iter()
            .map(|f| {
                Ok(MfaCredential {
                    id: f.id.into(),
                    kind: f.kind.parse().map_err(|e: shared::vocab::UnknownWord| {
                        DbError::Inconsistent(e.to_string())
                    })?,
                    name: f.name,
                    created_at: rfc3339(f.created_at),
                    last_used_at: f.last_used_at.map(rfc3339),
                })
            })
            .collect::<Result<_, DbError>>()?,
        recovery_codes_left: recovery_codes_left(c, uid)?,
    })
}

/// [`status_of`] the caller.
pub async fn status(state: &AppState, who: &Identity) -> Result<MfaStatus, MfaError> {
    let uid = who.user_id;
    Ok(state.db.run(move |c| status_of(c, uid)).await?)
}

/// Adds a new, unconfirmed TOTP credential with its sealed seed; earlier unconfirmed ones of the
/// user are dropped. Answers (credential id, user name).
pub fn add_unconfirmed_totp(
    c: &mut DbConnection,
    uid: i64,
    name: &str,
    sealed: &str,
    now: NaiveDateTime,
) -> Result<(i64, String), DbError> {
    let username = account(c, uid)?.username;
    credentials::delete_unconfirmed_totp(c, uid)?;
    let id = credentials::insert(
        c,
        &credentials::NewCredential {
            user_id: uid,
            kind: KIND_TOTP,
            name,
            data: sealed,
            confirmed: false,
            created_at: now,
        },
    )?;
    Ok((id, username))
}

/// Starts enrolling an authenticator app (within [`RECENT_SIGN_IN`] of signing in).
pub async fn start_totp(
    state: &AppState,
    who: &Identity,
    name: &str,
) -> Result<TotpEnrolment, MfaError> {
    require_recent_sign_in(state, who).await?;
    let name = valid_name(name)?;
    let uid = who.user_id;
    let now = state.clock.now();
    let seed = random_bytes::<20>()?.to_vec();
    let sealed = state
        .secrets
        .seal(&seal_context(uid), &seed)
        .map_err(|e| MfaError::Internal(e.to_string()))?;
    let (id, username) = state
        .db
        .run(move |c| add_unconfirmed_totp(c, uid, &name, &sealed, now))
        .await?;
    let t = totp(seed, &username).map_err(MfaError::Internal)?;
    let url = url(&t).map_err(MfaError::Internal)?;
    Ok(TotpEnrolment {
        credential_id: id.into(),
        secret_base32: secret_base32(&t),
        qr_svg: qr_svg(&url).map_err(MfaError::Internal)?,
        otpauth_url: url,
    })
}

/// Confirms the unconfirmed TOTP credential `cred_id` of the user with a code of its app. The
/// first factor of an account also brings its recovery codes (answered, to show once).
pub fn confirm(
    c: &mut DbConnection,
    secrets: &SecretBox,
    uid: i64,
    cred_id: i64,
    code: &str,
    unix: u64,
    now: NaiveDateTime,
) -> Result<Vec<String>, MfaError> {
    let Some(cred) = credentials::find_of_user(c, uid, cred_id)?.filter(|cr| cr.kind == KIND_TOTP)
    else {
        return Err(MfaError::NotFound("no such authenticator"));
    };
    if cred.confirmed {
        return Err(MfaError::Conflict(
            "this authenticator is already confirmed",
        ));
    }
    let username = account(c, uid)?.username;
    let seed = secrets
        .open(&seal_context(uid), &cred.data)
        .map_err(|e| DbError::Task(e.to_string()))?;
    let t = totp(seed, &username).map_err(DbError::Task)?;
    let Some(step) = matching_step(&t, code, unix) else {
        return Err(MfaError::WrongCode);
    };
    transaction(c, |c| {
        consume_totp_step(c, cred_id, step, now)?;
        credentials::confirm(c, cred_id)?;
        let codes = if recovery_codes_left(c, uid)? == 0 {
            replace_recovery_codes(c, secrets, uid, now)?
        } else {
            Vec::new()
        };
        Ok(codes)
    })
}

/// [`confirm`] for the caller, audited.
pub async fn confirm_totp(
    state: &AppState,
    who: &Identity,
    ip: Option<IpAddr>,
    cred_id: i64,
    code: String,
) -> Result<Vec<String>, MfaError> {
    let uid = who.user_id;
    let now = state.clock.now();
    let unix = state.clock.unix();
    let secrets = state.secrets.clone();
    let codes = crate::db::transaction::run(&state.db, move |c| {
        confirm(c, &secrets, uid, cred_id, &code, unix, now)
    })
    .await?;
    note(
        state,
        who,
        ip,
        "mfa.totp_enrolled",
        serde_json::json!({ "credential": cred_id }),
    )
    .await;
    Ok(codes)
}

/// Removes the user's factor `cred_id`. The last one cannot go while an admin requires MFA on the
/// account; with it go the recovery codes. Answers the kind removed.
pub fn remove(c: &mut DbConnection, uid: i64, cred_id: i64) -> Result<String, MfaError> {
    transaction(c, |c| {
        let Some(cred) =
            credentials::find_of_user(c, uid, cred_id)?.filter(|cr| cr.kind != KIND_RECOVERY)
        else {
            return Err(MfaError::NotFound("no such factor"));
        };
        let required = account(c, uid)?.mfa_required;
        let left = confirmed_factors(c, uid)? - i64::from(cred.confirmed);
        if left == 0 && required {
            return Err(MfaError::Conflict(
                "your account requires a second factor: add another before removing the last",
            ));
        }
        credentials::delete(c, cred_id)?;
        if left == 0 {
            credentials::delete_kind(c, uid, KIND_RECOVERY)?;
        }
        Ok(cred.kind)
    })
}

/// [`remove`] for the caller (within [`RECENT_SIGN_IN`] of signing in), audited.
pub async fn remove_factor(
    state: &AppState,
    who: &Identity,
    ip: Option<IpAddr>,
    cred_id: i64,
) -> Result<(), MfaError> {
    require_recent_sign_in(state, who).await?;
    let uid = who.user_id;
    let kind = crate::db::transaction::run(&state.db, move |c| remove(c, uid, cred_id)).await?;
    note(
        state,
        who,
        ip,
        "mfa.removed",
        serde_json::json!({ "credential": cred_id, "kind": kind }),
    )
    .await;
    Ok(())
}

/// New recovery codes for a user who has a second factor (the old ones stop working).
pub fn renew(
    c: &mut DbConnection,
    secrets: &SecretBox,
    uid: i64,
    now: NaiveDateTime,
) -> Result<Vec<String>, MfaError> {
    if confirmed_factors(c, uid)? == 0 {
        return Err(MfaError::Conflict(
            "recovery codes come with a second factor: enrol one first",
        ));
    }
    Ok(replace_recovery_codes(c, secrets, uid, now)?)
}

/// [`renew`] for the caller (within [`RECENT_SIGN_IN`] of signing in), audited.
pub async fn renew_recovery_codes(
    state: &AppState,
    who: &Identity,
    ip: Option<IpAddr>,
) -> Result<Vec<String>, MfaError> {
    require_recent_sign_in(state, who).await?;
    let uid = who.user_id;
    let now = state.clock.now();
    let secrets = state.secrets.clone();
    let codes =
        crate::db::transaction::run(&state.db, move |c| renew(c, &secrets, uid, now)).await?;
    note(
        state,
        who,
        ip,
        "mfa.recovery_codes_renewed",
        serde_json::Value::Null,
    )
    .await;
    Ok(codes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1, truncated to six digits.
    #[test]
    fn rfc6238_vectors() {
        let t = totp(b"12345678901234567890".to_vec(), "a").unwrap();
        for (time, code) in [
            (59_u64, "287082"),
            (1_111_111_109, "081804"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(code_at(&t, time), code, "t={time}");
            assert_eq!(
                matching_step(&t, code, time),
                Some(i64::try_from(time / 30).unwrap())
            );
        }
    }

    #[test]
    fn window_is_one_step_either_side() {
        let t = totp(random_bytes::<20>().unwrap().to_vec(), "a").unwrap();
        let now = 1_800_000_000_u64;
        let code = code_at(&t, now);
        assert!(matching_step(&t, &code, now + 30).is_some());
        assert!(matching_step(&t, &code, now - 30).is_some());
        assert!(matching_step(&t, &code, now + 90).is_none());
        assert!(matching_step(&t, &code, now - 90).is_none());
        assert!(matching_step(&t, "12345", now).is_none());
        assert!(matching_step(&t, "abcdef", now).is_none());
    }

    #[test]
    fn recovery_codes_are_distinct_and_normalised() {
        let codes = new_recovery_codes().unwrap();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let mut uniq = codes.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), RECOVERY_CODES);
        let dir = tempfile::tempdir().unwrap();
        let key = SecretBox::load_or_create(dir.path()).unwrap();
        let other = SecretBox::load_or_create(&dir.path().join("other")).unwrap();
        let h = |k: &SecretBox, c: &str| recovery_hash(k, c);
        assert_eq!(h(&key, "AbCdE-fGhJk"), h(&key, "abcde fghjk"));
        assert_ne!(h(&key, "abcde-fghjk"), h(&key, "abcde-fghjm"));
        assert_ne!(
            h(&key, "abcde-fghjk"),
            h(&other, "abcde-fghjk"),
            "keyed: another installation's key gives another hash"
        );
        assert!(!h(&key, "abcde-fghjk").contains(&recovery_sha256("abcde-fghjk")));
    }

    #[test]
    fn qr_renders_svg() {
        let t = totp(random_bytes::<20>().unwrap().to_vec(), "alice").unwrap();
        let svg = qr_svg(&url(&t).unwrap()).unwrap();
        assert!(svg.contains("<svg") || svg.contains("<?xml"));
    }

    fn t(secs: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0)
            .unwrap()
            .naive_utc()
    }

    /// Unix time of [`t`].
    fn unix(secs: i64) -> u64 {
        u64::try_from(t(secs).and_utc().timestamp()).unwrap()
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        db: crate::db::Database,
        secrets: SecretBox,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Database::open(
            &crate::config::DatabaseTarget::Sqlite(dir.path().join("t.db")),
            2,
            std::time::Duration::from_secs(5),
        )
        .unwrap();
        let secrets = SecretBox::load_or_create(dir.path()).unwrap();
        Fixture {
            _dir: dir,
            db,
            secrets,
        }
    }

    fn user(c: &mut DbConnection, name: &str, mfa_required: bool) -> i64 {
        let account = crate::auth::users::LocalAccount {
            username: name.into(),
            display_name: name.into(),
            email: None,
            password_hash: "x".into(),
            role: "operator".into(),
            mfa_required,
            group_ids: vec![],
        };
        crate::auth::users::create_local(c, &account, t(0))
            .unwrap()
            .id
            .0
    }

    /// Enrols and confirms an authenticator at `t(0)`: (credential id, generator, recovery codes).
    fn enrol(f: &Fixture, c: &mut DbConnection, uid: i64) -> (i64, Totp, Vec<String>) {
        let seed = random_bytes::<20>().unwrap().to_vec();
        let sealed = f.secrets.seal(&seal_context(uid), &seed).unwrap();
        let (id, username) = add_unconfirmed_totp(c, uid, "phone", &sealed, t(0)).unwrap();
        let gen = totp(seed, &username).unwrap();
        let codes = confirm(
            c,
            &f.secrets,
            uid,
            id,
            &code_at(&gen, unix(0)),
            unix(0),
            t(0),
        )
        .unwrap();
        (id, gen, codes)
    }

    fn signs_in_with_totp(
        f: &Fixture,
        c: &mut DbConnection,
        uid: i64,
        gen: &Totp,
        at: i64,
    ) -> bool {
        let name = users::find(c, uid).unwrap().unwrap().username;
        crate::auth::login::check_totp(
            c,
            &f.secrets,
            uid,
            &name,
            &code_at(gen, unix(at)),
            unix(at),
            t(at),
        )
        .unwrap()
    }

    #[test]
    fn factor_changes_only_within_fifteen_minutes_of_signing_in() {
        assert!(signed_in_recently(Some(t(0)), t(0)));
        assert!(signed_in_recently(Some(t(0)), t(15 * 60 - 1)));
        assert!(!signed_in_recently(Some(t(0)), t(15 * 60)));
        assert!(!signed_in_recently(None, t(0)), "no such session");

        let f = fixture();
        let c = &mut *f.db.conn().unwrap();
        let uid = user(c, "alice", false);
        let session = sessions::start(c, uid, None, None, t(0)).unwrap();
        assert!(check_recent(c, &session.family_id, t(14 * 60)).is_ok());
        assert!(matches!(
            check_recent(c, &session.family_id, t(15 * 60)),
            Err(MfaError::NotRecent)
        ));
        assert!(matches!(
            check_recent(c, "no-such-session", t(0)),
            Err(MfaError::NotRecent)
        ));
        // A refresh does not make a session recent: the sign-in does.
        sessions::rotate(c, &session.token, None, t(14 * 60))
            .unwrap()
            .unwrap();
        assert!(matches!(
            check_recent(c, &session.family_id, t(16 * 60)),
            Err(MfaError::NotRecent)
        ));
        let refused: AppError = MfaError::NotRecent.into();
        assert_eq!(refused.code(), shared::vocab::ErrorCode::Forbidden);
    }

    #[test]
    fn confirmation_needs_the_apps_code_once() {
        let f = fixture();
        let c = &mut *f.db.conn().unwrap();
        let uid = user(c, "alice", false);
        let seed = random_bytes::<20>().unwrap().to_vec();
        let sealed = f.secrets.seal(&seal_context(uid), &seed).unwrap();
        let (id, username) = add_unconfirmed_totp(c, uid, "phone", &sealed, t(0)).unwrap();
        let gen = totp(seed, &username).unwrap();
        assert!(matches!(
            confirm(c, &f.secrets, uid, id, "000000x", unix(0), t(0)),
            Err(MfaError::WrongCode)
        ));
        let codes = confirm(
            c,
            &f.secrets,
            uid,
            id,
            &code_at(&gen, unix(0)),
            unix(0),
            t(0),
        )
        .unwrap();
        assert_eq!(codes.len(), RECOVERY_CODES, "the first factor brings codes");
        assert!(matches!(
            confirm(
                c,
                &f.secrets,
                uid,
                id,
                &code_at(&gen, unix(30)),
                unix(30),
                t(30)
            ),
            Err(MfaError::Conflict(_))
        ));
        let other = user(c, "bob", false);
        assert!(matches!(
            confirm(
                c,
                &f.secrets,
                other,
                id,
                &code_at(&gen, unix(30)),
                unix(30),
                t(30)
            ),
            Err(MfaError::NotFound(_))
        ));
    }

    #[test]
    fn recovery_codes_of_earlier_versions_are_migrated_to_the_keyed_hash() {
        let f = fixture();
        let c = &mut *f.db.conn().unwrap();
        let uid = user(c, "alice", false);
        // As an earlier version stored them: the plain SHA-256.
        let codes = ["abcde-fghjk", "mnpqr-stvwx"];
        let plain: Vec<String> = codes.iter().map(|c| recovery_sha256(c)).collect();
        credentials::replace_recovery(c, uid, &plain, t(0)).unwrap();
        assert!(
            !consume_recovery_code(c, &f.secrets, uid, codes[0], t(1)).unwrap(),
            "not usable before the migration (stored differently)"
        );
        assert_eq!(migrate_recovery_codes(c, &f.secrets).unwrap(), 2);
        assert_eq!(
            migrate_recovery_codes(c, &f.secrets).unwrap(),
            0,
            "once only"
        );
        assert!(credentials::recovery_not_keyed(c, KEYED)
            .unwrap()
            .is_empty());
        assert!(consume_recovery_code(c, &f.secrets, uid, codes[0], t(2)).unwrap());
        assert!(!consume_recovery_code(c, &f.secrets, uid, codes[0], t(3)).unwrap());
        assert!(consume_recovery_code(c, &f.secrets, uid, "MNPQR STVWX", t(4)).unwrap());
    }

    #[test]
    fn recovery_codes_work_once_and_renewal_retires_them() {
        let f = fixture();
        let c = &mut *f.db.conn().unwrap();
        let uid = user(c, "alice", false);
        assert!(
            matches!(renew(c, &f.secrets, uid, t(0)), Err(MfaError::Conflict(_))),
            "no codes without a factor"
        );
        let (_, _, codes) = enrol(&f, c, uid);
        assert!(consume_recovery_code(c, &f.secrets, uid, &codes[0], t(1)).unwrap());
        assert!(
            !consume_recovery_code(c, &f.secrets, uid, &codes[0], t(2)).unwrap(),
            "a recovery code works once"
        );
        assert!(
            consume_recovery_code(c, &f.secrets, uid, &codes[1].to_uppercase(), t(3)).unwrap(),
            "case does not matter"
        );
        assert_eq!(recovery_codes_left(c, uid).unwrap(), 8);
        let other = user(c, "bob", false);
        assert!(
            !consume_recovery_code(c, &f.secrets, other, &codes[2], t(4)).unwrap(),
            "codes are the owner's"
        );
        let fresh = renew(c, &f.secrets, uid, t(5)).unwrap();
        assert_eq!(recovery_codes_left(c, uid).unwrap(), 10);
        assert!(
            !consume_recovery_code(c, &f.secrets, uid, &codes[2], t(6)).unwrap(),
            "renewal retires the old codes"
        );
        assert!(consume_recovery_code(c, &f.secrets, uid, &fresh[0], t(7)).unwrap());
    }

    #[test]
    fn a_removed_factor_cannot_be_used() {
        let f = fixture();
        let c = &mut *f.db.conn().unwrap();
        let uid = user(c, "alice", false);
        let (id, gen, codes) = enrol(&f, c, uid);
        assert!(signs_in_with_totp(&f, c, uid, &gen, 60));
        assert_eq!(remove(c, uid, id).unwrap(), KIND_TOTP);
        assert!(
            !signs_in_with_totp(&f, c, uid, &gen, 120),
            "the removed authenticator's codes are refused"
        );
        assert!(
            !consume_recovery_code(c, &f.secrets, uid, &codes[0], t(120)).unwrap(),
            "the recovery codes go with the last factor"
        );
        assert_eq!(confirmed_factors(c, uid).unwrap(), 0);
        assert!(status_of(c, uid).unwrap().credentials.is_empty());
        assert!(matches!(remove(c, uid, id), Err(MfaError::NotFound(_))));
    }

    #[test]
    fn the_last_factor_stays_while_required() {
        let f = fixture();
        let c = &mut *f.db.conn().unwrap();
        let uid = user(c, "alice", true);
        let (first, gen, _) = enrol(&f, c, uid);
        assert!(matches!(remove(c, uid, first), Err(MfaError::Conflict(_))));
        assert!(signs_in_with_totp(&f, c, uid, &gen, 60), "still usable");
        // With a second authenticator the first may go; the codes stay with the second.
        let seed = random_bytes::<20>().unwrap().to_vec();
        let sealed = f.secrets.seal(&seal_context(uid), &seed).unwrap();
        let (second, name) = add_unconfirmed_totp(c, uid, "tablet", &sealed, t(0)).unwrap();
        let gen2 = totp(seed, &name).unwrap();
        let codes = confirm(
            c,
            &f.secrets,
            uid,
            second,
            &code_at(&gen2, unix(0)),
            unix(0),
            t(0),
        )
        .unwrap();
        assert!(codes.is_empty(), "codes exist already");
        remove(c, uid, first).unwrap();
        assert_eq!(recovery_codes_left(c, uid).unwrap(), 10);
        assert!(!signs_in_with_totp(&f, c, uid, &gen, 120));
        assert!(signs_in_with_totp(&f, c, uid, &gen2, 120));
    }
}
