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
//! Every function takes the time as an argument, so tests drive the clock.

use crate::db::challenges::{self, NewChallenge};
use crate::db::{credentials, DbConnection, DbError};
use chrono::NaiveDateTime;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
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

/// Hash under which a recovery code is stored (case, spaces and dashes do not matter).
pub fn recovery_hash(code: &str) -> String {
    let norm: String = code
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    hex::encode(Sha256::digest(norm.as_bytes()))
}

/// Replaces the user's recovery codes with new ones and answers them (to show once).
pub fn replace_recovery_codes(
    c: &mut DbConnection,
    user_id: i64,
    now: NaiveDateTime,
) -> Result<Vec<String>, DbError> {
    let codes = new_recovery_codes()?;
    let hashes: Vec<String> = codes.iter().map(|c| recovery_hash(c)).collect();
    credentials::replace_recovery(c, user_id, &hashes, now)?;
    Ok(codes)
}

/// Spends a recovery code of the user; answers whether it was valid and unused.
pub fn consume_recovery_code(
    c: &mut DbConnection,
    user_id: i64,
    code: &str,
    now: NaiveDateTime,
) -> Result<bool, DbError> {
    credentials::consume_recovery(c, user_id, &recovery_hash(code), now)
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
        assert_eq!(recovery_hash("AbCdE-fGhJk"), recovery_hash("abcde fghjk"));
        assert_ne!(recovery_hash("abcde-fghjk"), recovery_hash("abcde-fghjm"));
    }

    #[test]
    fn qr_renders_svg() {
        let t = totp(random_bytes::<20>().unwrap().to_vec(), "alice").unwrap();
        let svg = qr_svg(&url(&t).unwrap()).unwrap();
        assert!(svg.contains("<svg") || svg.contains("<?xml"));
    }
}
