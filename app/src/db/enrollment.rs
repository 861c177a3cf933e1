//! The `enrollment_tokens` table. Only the SHA-256 of a token's secret is stored; the rules
//! (making the secret, checking and consuming a token) are in `crate::pki::enrollment`.

use super::schema::enrollment_tokens as t;
use super::{DbConnection, DbError};
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// A stored enrollment token.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = t)]
pub struct EnrollmentTokenRow {
    /// Row id (also the token's public id).
    #[diesel(deserialize_as = i64)]
    pub id: shared::ids::EnrollmentTokenId,
    /// SHA-256 of the secret, hex.
    pub token_hash: String,
    /// Group the enrolled host joins.
    pub group_id: Option<i64>,
    /// User who made it (`None` from the command line).
    pub created_by: Option<i64>,
    /// End of validity.
    pub expires_at: NaiveDateTime,
    /// When it was consumed.
    pub used_at: Option<NaiveDateTime>,
    /// The host it enrolled.
    pub used_by_host_id: Option<i64>,
    /// When it was made.
    pub created_at: NaiveDateTime,
    /// Addresses the maker vouched for (JSON list), for hosts behind NAT.
    pub addresses_json: Option<String>,
    /// The name the host must enroll under, when the token was made for a named host.
    pub hostname: Option<String>,
}

/// Insert form of a token.
#[derive(Debug, Insertable)]
#[diesel(table_name = t)]
pub struct NewEnrollmentToken<'a> {
    /// SHA-256 of the secret, hex.
    pub token_hash: &'a str,
    /// Group the enrolled host joins.
    pub group_id: Option<i64>,
    /// User who made it.
    pub created_by: Option<i64>,
    /// End of validity.
    pub expires_at: NaiveDateTime,
    /// Now.
    pub created_at: NaiveDateTime,
    /// Addresses the maker vouched for (JSON list), for hosts behind NAT.
    pub addresses_json: Option<&'a str>,
    /// The name the host must enroll under.
    pub hostname: Option<&'a str>,
}

/// Stores a token; answers its id.
pub fn insert(conn: &mut DbConnection, token: &NewEnrollmentToken<'_>) -> Result<i64, DbError> {
    Ok(diesel::insert_into(t::table)
        .values(token)
        .returning(t::id)
        .get_result(conn)?)
}

/// One token by id.
pub fn find(conn: &mut DbConnection, id: i64) -> Result<Option<EnrollmentTokenRow>, DbError> {
    Ok(t::table
        .filter(t::id.eq(id))
        .select(EnrollmentTokenRow::as_select())
        .first(conn)
        .optional()?)
}

/// Marks the token used at `now` if it is still unused and unexpired, in one statement, so of two
/// racing consumers only one wins. Answers whether this call consumed it.
pub fn mark_used(conn: &mut DbConnection, id: i64, now: NaiveDateTime) -> Result<bool, DbError> {
    let n = diesel::update(
        t::table
            .filter(t::id.eq(id))
            .filter(t::used_at.is_null())
            .filter(t::expires_at.gt(now)),
    )
    .set(t::used_at.eq(now))
    .execute(conn)?;
    Ok(n == 1)
}

/// Records which host a consumed token enrolled.
pub fn set_host(conn: &mut DbConnection, token_id: i64, host_id: i64) -> Result<(), DbError> {
    diesel::update(t::table.filter(t::id.eq(token_id)))
        .set(t::used_by_host_id.eq(host_id))
        .execute(conn)?;
    Ok(())
}

/// The newest `limit` tokens, newest first.
pub fn recent(conn: &mut DbConnection, limit: i64) -> Result<Vec<EnrollmentTokenRow>, DbError> {
    Ok(t::table
        .order(t::id.desc())
        .limit(limit)
        .select(EnrollmentTokenRow::as_select())
        .load(conn)?)
}

/// Deletes an unused token; answers whether one was deleted.
pub fn delete_unused(conn: &mut DbConnection, id: i64) -> Result<bool, DbError> {
    let n =
        diesel::delete(t::table.filter(t::id.eq(id)).filter(t::used_at.is_null())).execute(conn)?;
    Ok(n == 1)
}
