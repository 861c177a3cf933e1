//! WebAuthn second factors (security keys and passkeys) with webauthn-rs.
//!
//! Ceremony state (the challenge) is kept in `auth_challenges` between the two requests of a
//! ceremony, so any worker can finish what another started, and it is single-use: finishing
//! deletes it. Registered passkeys are stored as webauthn-rs serialises them (public key,
//! credential id, signature counter); the counter is updated after every sign-in, so a cloned
//! authenticator shows up as a counter that goes backwards and is refused.

use crate::config::{Config, TlsMode};
use crate::db::challenges::{self, NewChallenge};
use crate::db::credentials::{self, NewCredential};
use crate::db::{DbConnection, DbError};
use chrono::NaiveDateTime;
use std::net::SocketAddr;
use webauthn_rs::prelude::{
    CredentialID, Passkey, PasskeyRegistration, Url, Uuid, Webauthn, WebauthnBuilder,
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
