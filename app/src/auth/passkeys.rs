//! WebAuthn second factors (security keys and passkeys) with webauthn-rs.
//!
//! Ceremony state (the challenge) is kept in `auth_challenges` between the two requests of a
//! ceremony, so any worker can finish what another started, and it is single-use: finishing
//! deletes it. Registered passkeys are stored as webauthn-rs serialises them (public key,
//! credential id, signature counter); the counter is updated after every sign-in, so a cloned
//! authenticator shows up as a counter that goes backwards and is refused.

use crate::config::{Config, TlsMode};
use crate::db::schema::{auth_challenges as ch, user_credentials as uc};
use crate::db::{DbConnection, DbError};
use chrono::NaiveDateTime;
use diesel::prelude::*;
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
    let rows: Vec<(i64, String)> = uc::table
        .filter(uc::user_id.eq(user_id))
        .filter(uc::kind.eq(crate::auth::mfa::KIND_WEBAUTHN))
        .filter(uc::confirmed.eq(true))
        .select((uc::id, uc::data))
        .load(c)?;
    Ok(rows
        .into_iter()
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
    diesel::delete(ch::table.filter(ch::expires_at.lt(now))).execute(c)?;
    Ok(diesel::insert_into(ch::table)
        .values((
            ch::user_id.eq(user_id),
            ch::kind.eq(CHALLENGE_REGISTER),
            ch::state_json.eq(json),
            ch::expires_at.eq(now + CEREMONY_TTL),
            ch::created_at.eq(now),
        ))
        .returning(ch::id)
        .get_result(c)?)
}

/// Takes (reads and deletes) the user's live registration ceremony `id`.
pub fn take_registration(
    c: &mut DbConnection,
    user_id: i64,
    id: i64,
    now: NaiveDateTime,
) -> Result<Option<Registration>, DbError> {
    c.transaction(|c| {
        let json: Option<String> = ch::table
            .filter(ch::id.eq(id))
            .filter(ch::user_id.eq(user_id))
            .filter(ch::kind.eq(CHALLENGE_REGISTER))
            .filter(ch::expires_at.gt(now))
            .select(ch::state_json)
            .first(c)
            .optional()?;
        let Some(json) = json else {
            return Ok(None);
        };
        if diesel::delete(ch::table.filter(ch::id.eq(id))).execute(c)? != 1 {
            return Ok(None);
        }
        Ok(serde_json::from_str(&json).ok())
    })
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
    Ok(diesel::insert_into(uc::table)
        .values((
            uc::user_id.eq(user_id),
            uc::kind.eq(crate::auth::mfa::KIND_WEBAUTHN),
            uc::name.eq(name),
            uc::data.eq(json),
            uc::confirmed.eq(true),
            uc::created_at.eq(now),
        ))
        .returning(uc::id)
        .get_result(c)?)
}

/// Saves a passkey after use (its counter and backup state moved).
pub fn save_used(
    c: &mut DbConnection,
    id: i64,
    key: &Passkey,
    now: NaiveDateTime,
) -> Result<(), DbError> {
    let json = serde_json::to_string(key).map_err(|e| DbError::Task(e.to_string()))?;
    diesel::update(uc::table.filter(uc::id.eq(id)))
        .set((uc::data.eq(json), uc::last_used_at.eq(now)))
        .execute(c)?;
    Ok(())
}
