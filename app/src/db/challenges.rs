//! Short-lived ceremony state (`auth_challenges`): the second sign-in step, WebAuthn
//! registrations and single sign-on flows. Each row holds JSON the owning service understands.

use super::schema::auth_challenges as ch;
use super::{DbConnection, DbError};
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// A stored challenge.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = ch)]
pub struct Challenge {
    /// Id.
    pub id: i64,
    /// The user it belongs to, when known.
    pub user_id: Option<i64>,
    /// Kind (`mfa_login`, `webauthn_register`, `oidc`).
    pub kind: String,
    /// State as JSON.
    pub state_json: String,
    /// Dead from then on.
    pub expires_at: NaiveDateTime,
    /// Created.
    pub created_at: NaiveDateTime,
    /// Answers tried.
    pub attempts: i64,
}

/// A challenge to store.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = ch)]
pub struct NewChallenge<'a> {
    /// The user it belongs to, when known.
    pub user_id: Option<i64>,
    /// Kind.
    pub kind: &'a str,
    /// State as JSON.
    pub state_json: &'a str,
    /// Dead from then on.
    pub expires_at: NaiveDateTime,
    /// Now.
    pub created_at: NaiveDateTime,
}

/// Deletes the expired challenges of anyone (they are small and short-lived), then stores `new`;
/// answers its id.
pub fn insert(c: &mut DbConnection, new: &NewChallenge<'_>) -> Result<i64, DbError> {
    diesel::delete(ch::table.filter(ch::expires_at.lt(new.created_at))).execute(c)?;
    Ok(diesel::insert_into(ch::table)
        .values(new)
        .returning(ch::id)
        .get_result(c)?)
}

/// Challenge `id` of this kind (expired ones included: the caller decides).
pub fn find(c: &mut DbConnection, id: i64, kind: &str) -> Result<Option<Challenge>, DbError> {
    Ok(ch::table
        .filter(ch::id.eq(id))
        .filter(ch::kind.eq(kind))
        .select(Challenge::as_select())
        .first(c)
        .optional()?)
}

/// Live (unexpired) challenge `id` of this kind.
pub fn find_live(
    c: &mut DbConnection,
    id: i64,
    kind: &str,
    now: NaiveDateTime,
) -> Result<Option<Challenge>, DbError> {
    Ok(find(c, id, kind)?.filter(|row| row.expires_at > now))
}

/// Replaces the state of challenge `id`.
pub fn set_state(c: &mut DbConnection, id: i64, json: &str) -> Result<(), DbError> {
    diesel::update(ch::table.filter(ch::id.eq(id)))
        .set(ch::state_json.eq(json))
        .execute(c)?;
    Ok(())
}

/// Takes one attempt of challenge `id`, if it has any left (atomically, before the answer is
/// looked at).
pub fn claim_attempt(c: &mut DbConnection, id: i64, max: i64) -> Result<bool, DbError> {
    let n = diesel::update(ch::table.filter(ch::id.eq(id)).filter(ch::attempts.lt(max)))
        .set(ch::attempts.eq(ch::attempts + 1))
        .execute(c)?;
    Ok(n == 1)
}

/// Deletes challenge `id` if it has used `max` attempts; answers whether it is still alive.
pub fn delete_if_spent(c: &mut DbConnection, id: i64, max: i64) -> Result<bool, DbError> {
    let spent =
        diesel::delete(ch::table.filter(ch::id.eq(id)).filter(ch::attempts.ge(max))).execute(c)?;
    Ok(spent == 0)
}

/// Deletes challenge `id`; answers whether this call deleted it (only one of two racing callers
/// does).
pub fn delete(c: &mut DbConnection, id: i64) -> Result<bool, DbError> {
    Ok(diesel::delete(ch::table.filter(ch::id.eq(id))).execute(c)? == 1)
}

/// Takes (reads and deletes, in one transaction) the live challenge `id` of this kind and user.
pub fn take_live_of_user(
    c: &mut DbConnection,
    id: i64,
    user_id: i64,
    kind: &str,
    now: NaiveDateTime,
) -> Result<Option<Challenge>, DbError> {
    c.transaction(|c| {
        let Some(row) = find_live(c, id, kind, now)?.filter(|r| r.user_id == Some(user_id)) else {
            return Ok(None);
        };
        if !delete(c, id)? {
            return Ok(None);
        }
        Ok(Some(row))
    })
}
