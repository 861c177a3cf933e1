//! Sessions as families of opaque refresh tokens (`refresh_tokens`), stored as SHA-256 hashes.
//!
//! Every use rotates the token: the presented one is marked `rotated` and a new one of the same
//! family is issued. Presenting a token that was already rotated means it was copied: the whole
//! family is revoked (`reuse_detected`), which also ends the thief's session. A session idles out
//! after [`IDLE_TIMEOUT`] without a refresh and ends after [`MAX_LIFETIME`] in any case. Both
//! steps of a rotation are one transaction, and the "mark rotated" update only succeeds for a
//! token not yet revoked, so two racing uses cannot both win.

use super::schema::refresh_tokens as r;
use super::{DbConnection, DbError};
use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;
use sha2::{Digest, Sha256};

/// A session ends when it has not been refreshed for this long.
pub const IDLE_TIMEOUT: Duration = Duration::hours(1);
/// A session ends this long after sign-in whatever happens.
pub const MAX_LIFETIME: Duration = Duration::hours(12);

/// Why a refresh token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    /// Not a token we know.
    #[error("unknown refresh token")]
    Unknown,
    /// An already-used token came back: the session was revoked.
    #[error("refresh token reused; the session was revoked")]
    Reused,
    /// The session was revoked (sign-out, force logout, reuse).
    #[error("session revoked")]
    Revoked,
    /// Idle or past its maximum lifetime.
    #[error("session expired")]
    Expired,
}

/// A newly issued refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The user.
    pub user_id: i64,
    /// The session (family) id, carried in access tokens as `sid`.
    pub family_id: String,
    /// The token to hand to the client (never stored).
    pub token: String,
}

/// What a rotation reads of a stored token.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = r)]
struct TokenRow {
    id: i64,
    user_id: i64,
    family_id: String,
    expires_at: NaiveDateTime,
    revoked_reason: Option<String>,
    user_agent: Option<String>,
}

/// A refresh token to store.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = r)]
struct NewToken<'a> {
    user_id: i64,
    family_id: &'a str,
    token_hash: String,
    issued_at: NaiveDateTime,
    expires_at: NaiveDateTime,
    user_agent: Option<String>,
    source_ip: Option<&'a str>,
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn new_secret() -> Result<String, DbError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| DbError::Inconsistent("the system random generator failed".into()))?;
    Ok(hex::encode(bytes))
}

fn insert(
    conn: &mut DbConnection,
    user_id: i64,
    family: &str,
    token: &str,
    ua: Option<&str>,
    ip: Option<&str>,
    now: NaiveDateTime,
) -> Result<i64, DbError> {
    Ok(diesel::insert_into(r::table)
        .values(NewToken {
            user_id,
            family_id: family,
            token_hash: hash(token),
            issued_at: now,
            expires_at: now + IDLE_TIMEOUT,
            user_agent: ua.map(|s| s.chars().take(256).collect::<String>()),
            source_ip: ip,
        })
        .returning(r::id)
        .get_result(conn)?)
}

/// Starts a session for `user_id` at sign-in.
pub fn start(
    conn: &mut DbConnection,
    user_id: i64,
    ua: Option<&str>,
    ip: Option<&str>,
    now: NaiveDateTime,
) -> Result<Issued, DbError> {
    let family_id = ulid::Ulid::new().to_string();
    let token = new_secret()?;
    insert(conn, user_id, &family_id, &token, ua, ip, now)?;
    Ok(Issued {
        user_id,
        family_id,
        token,
    })
}

/// Uses a refresh token: answers a new one of the same session, or why not.
pub fn rotate(
    conn: &mut DbConnection,
    presented: &str,
    ip: Option<&str>,
    now: NaiveDateTime,
) -> Result<Result<Issued, RefreshError>, DbError> {
    conn.transaction(|conn| {
        let row: Option<TokenRow> = r::table
            .filter(r::token_hash.eq(hash(presented)))
            .select(TokenRow::as_select())
            .first(conn)
            .optional()?;
        let Some(TokenRow {
            id,
            user_id,
            family_id: family,
            expires_at,
            revoked_reason: revoked,
            user_agent: ua,
        }) = row
        else {
            return Ok(Err(RefreshError::Unknown));
        };
        match revoked.as_deref() {
            Some("rotated") => {
                revoke_family(conn, &family, "reuse_detected", now)?;
                return Ok(Err(RefreshError::Reused));
            }
            Some(_) => return Ok(Err(RefreshError::Revoked)),
            None => {}
        }
        let started = started_at(conn, &family)?;
        if expires_at <= now || started.is_some_and(|s| s + MAX_LIFETIME <= now) {
            revoke_family(conn, &family, "expired", now)?;
            return Ok(Err(RefreshError::Expired));
        }
        let token = new_secret()?;
        let new_id = insert(conn, user_id, &family, &token, ua.as_deref(), ip, now)?;
        let claimed = diesel::update(
            r::table
                .filter(r::id.eq(id))
                .filter(r::revoked_at.is_null()),
        )
        .set((
            r::revoked_at.eq(now),
            r::revoked_reason.eq("rotated"),
            r::replaced_by.eq(new_id),
            r::last_used_at.eq(now),
        ))
        .execute(conn)?;
        if claimed != 1 {
            // Someone used it between our read and this update: treat it as reuse.
            diesel::delete(r::table.filter(r::id.eq(new_id))).execute(conn)?;
            revoke_family(conn, &family, "reuse_detected", now)?;
            return Ok(Err(RefreshError::Reused));
        }
        Ok(Ok(Issued {
            user_id,
            family_id: family,
            token,
        }))
    })
}

/// Ends a session (sign-out, reuse); answers how many live tokens were revoked.
pub fn revoke_family(
    conn: &mut DbConnection,
    family: &str,
    reason: &str,
    now: NaiveDateTime,
) -> Result<usize, DbError> {
    Ok(diesel::update(
        r::table
            .filter(r::family_id.eq(family))
            .filter(r::revoked_at.is_null()),
    )
    .set((r::revoked_at.eq(now), r::revoked_reason.eq(reason)))
    .execute(conn)?)
}

/// Ends every session of a user (admin force-logout, disable, password change).
pub fn revoke_user(
    conn: &mut DbConnection,
    user_id: i64,
    reason: &str,
    now: NaiveDateTime,
) -> Result<usize, DbError> {
    Ok(diesel::update(
        r::table
            .filter(r::user_id.eq(user_id))
            .filter(r::revoked_at.is_null()),
    )
    .set((r::revoked_at.eq(now), r::revoked_reason.eq(reason)))
    .execute(conn)?)
}

/// Whether a session is still alive (its access tokens are refused once it is not).
pub fn is_active(
    conn: &mut DbConnection,
    family: &str,
    now: NaiveDateTime,
) -> Result<bool, DbError> {
    let live: i64 = r::table
        .filter(r::family_id.eq(family))
        .filter(r::revoked_at.is_null())
        .filter(r::expires_at.gt(now))
        .count()
        .get_result(conn)?;
    Ok(live > 0)
}

/// When a session began (its first token was issued); `None` for an unknown session.
pub fn started_at(conn: &mut DbConnection, family: &str) -> Result<Option<NaiveDateTime>, DbError> {
    Ok(r::table
        .filter(r::family_id.eq(family))
        .select(diesel::dsl::min(r::issued_at))
        .first(conn)?)
}

/// Whether session `family` of `user_id` is still alive.
pub fn is_active_for(
    conn: &mut DbConnection,
    family: &str,
    user_id: i64,
    now: NaiveDateTime,
) -> Result<bool, DbError> {
    let live: i64 = r::table
        .filter(r::family_id.eq(family))
        .filter(r::user_id.eq(user_id))
        .filter(r::revoked_at.is_null())
        .filter(r::expires_at.gt(now))
        .count()
        .get_result(conn)?;
    Ok(live > 0)
}
