//! One-time enrollment tokens (format in `shared::enroll`). Only the SHA-256 of the secret is
//! stored, and a token is
//! consumed by one atomic update that also checks expiry, so two hosts racing with the same token
//! cannot both enroll.

use super::schema::enrollment_tokens as t;
use super::{DbConnection, DbError};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use sha2::{Digest, Sha256};

pub use shared::enroll::EnrollmentToken;

/// Why a token was refused. Callers tell the client only "invalid token" and audit the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token of ours (bad format, unknown id, wrong secret, wrong CA).
    #[error("unknown or forged token")]
    Unknown,
    /// Used before.
    #[error("token already used")]
    Used,
    /// Past its expiry.
    #[error("token expired")]
    Expired,
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Creates a token valid until `expires_at`, optionally binding the host to a group.
pub fn create(
    conn: &mut DbConnection,
    ca_fingerprint: &str,
    group_id: Option<i64>,
    created_by: Option<i64>,
    expires_at: NaiveDateTime,
    now: NaiveDateTime,
) -> Result<EnrollmentToken, DbError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| DbError::Inconsistent("the system random generator failed".into()))?;
    let secret = hex::encode(bytes);
    let id = diesel::insert_into(t::table)
        .values((
            t::token_hash.eq(hash(&secret)),
            t::group_id.eq(group_id),
            t::created_by.eq(created_by),
            t::expires_at.eq(expires_at),
            t::created_at.eq(now),
        ))
        .returning(t::id)
        .get_result(conn)?;
    Ok(EnrollmentToken {
        id,
        secret,
        ca_fingerprint: ca_fingerprint.to_owned(),
    })
}

/// Checks and consumes a token in one step; answers the group it binds to.
pub fn consume(
    conn: &mut DbConnection,
    token: &EnrollmentToken,
    ca_fingerprint: &str,
    now: NaiveDateTime,
) -> Result<Result<Option<i64>, TokenError>, DbError> {
    if token.ca_fingerprint != ca_fingerprint {
        return Ok(Err(TokenError::Unknown));
    }
    conn.transaction(|conn| {
        let row: Option<(String, Option<i64>, NaiveDateTime, Option<NaiveDateTime>)> = t::table
            .filter(t::id.eq(token.id))
            .select((t::token_hash, t::group_id, t::expires_at, t::used_at))
            .first(conn)
            .optional()?;
        let Some((stored, group, expires_at, used_at)) = row else {
            return Ok(Err(TokenError::Unknown));
        };
        if stored != hash(&token.secret) {
            return Ok(Err(TokenError::Unknown));
        }
        if used_at.is_some() {
            return Ok(Err(TokenError::Used));
        }
        if expires_at <= now {
            return Ok(Err(TokenError::Expired));
        }
        // The conditions again in the update itself: of two racing consumers only one wins.
        let n = diesel::update(
            t::table
                .filter(t::id.eq(token.id))
                .filter(t::used_at.is_null())
                .filter(t::expires_at.gt(now)),
        )
        .set(t::used_at.eq(now))
        .execute(conn)?;
        Ok(if n == 1 {
            Ok(group)
        } else {
            Err(TokenError::Used)
        })
    })
}

/// Records which host a consumed token enrolled.
pub fn set_host(conn: &mut DbConnection, token_id: i64, host_id: i64) -> Result<(), DbError> {
    diesel::update(t::table.filter(t::id.eq(token_id)))
        .set(t::used_by_host_id.eq(host_id))
        .execute(conn)?;
    Ok(())
}
