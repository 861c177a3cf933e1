//! Access-token signing keys (`signing_keys`): private keys sealed by the caller, public keys in
//! the clear, retired keys kept for verification.

use super::schema::signing_keys as k;
use super::{DbConnection, DbError};
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// A stored key.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = k)]
pub struct SigningKey {
    /// Row id.
    pub id: i64,
    /// Key id (`kid` of tokens).
    pub kid: String,
    /// Always `EdDSA`.
    pub algorithm: String,
    /// Sealed PKCS#8 (or a legacy unsealed one).
    pub private_key: Vec<u8>,
    /// Public key.
    pub public_key: Vec<u8>,
    /// Created.
    pub created_at: NaiveDateTime,
    /// Signs until then.
    pub not_after: NaiveDateTime,
    /// Retired early.
    pub retired_at: Option<NaiveDateTime>,
}

/// A key to store.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = k)]
pub struct NewSigningKey<'a> {
    /// Key id.
    pub kid: &'a str,
    /// `EdDSA`.
    pub algorithm: &'a str,
    /// Sealed PKCS#8.
    pub private_key: &'a [u8],
    /// Public key.
    pub public_key: &'a [u8],
    /// Now.
    pub created_at: NaiveDateTime,
    /// Signs until then.
    pub not_after: NaiveDateTime,
}

/// The key that may sign at `now` (the latest-running one), if any.
pub fn current(c: &mut DbConnection, now: NaiveDateTime) -> Result<Option<SigningKey>, DbError> {
    Ok(k::table
        .filter(k::not_after.gt(now))
        .filter(k::retired_at.is_null())
        .order(k::not_after.desc())
        .select(SigningKey::as_select())
        .first(c)
        .optional()?)
}

/// Keys not retired that signed until after `since` (their tokens may still be alive).
pub fn verifying(c: &mut DbConnection, since: NaiveDateTime) -> Result<Vec<SigningKey>, DbError> {
    Ok(k::table
        .filter(k::not_after.gt(since))
        .filter(k::retired_at.is_null())
        .select(SigningKey::as_select())
        .load(c)?)
}

/// Stores a key.
pub fn insert(c: &mut DbConnection, new: &NewSigningKey<'_>) -> Result<(), DbError> {
    diesel::insert_into(k::table).values(new).execute(c)?;
    Ok(())
}

/// Replaces the stored private key of `kid` (sealing a legacy key in place).
pub fn set_private(c: &mut DbConnection, kid: &str, private: &[u8]) -> Result<(), DbError> {
    diesel::update(k::table.filter(k::kid.eq(kid)))
        .set(k::private_key.eq(private))
        .execute(c)?;
    Ok(())
}
