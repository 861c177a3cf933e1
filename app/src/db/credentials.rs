//! Second factors (`user_credentials`): TOTP seeds (sealed), passkeys and recovery codes (hashed).

use super::schema::user_credentials as uc;
use super::{DbConnection, DbError};
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// Kind of a TOTP authenticator.
pub const KIND_TOTP: &str = "totp";
/// Kind of a WebAuthn security key or passkey.
pub const KIND_WEBAUTHN: &str = "webauthn";
/// Kind of a one-time recovery code.
pub const KIND_RECOVERY: &str = "recovery";

/// A stored credential.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = uc)]
pub struct Credential {
    /// Id.
    pub id: i64,
    /// Owner.
    pub user_id: i64,
    /// [`KIND_TOTP`], [`KIND_WEBAUTHN`] or [`KIND_RECOVERY`].
    pub kind: String,
    /// Name the user gave it.
    pub name: String,
    /// Sealed seed, passkey JSON or code hash.
    pub data: String,
    /// Proven (an unconfirmed TOTP authenticator is still being enrolled).
    pub confirmed: bool,
    /// Last TOTP step used (replay refusal).
    pub last_used_step: Option<i64>,
    /// Created.
    pub created_at: NaiveDateTime,
    /// Last used.
    pub last_used_at: Option<NaiveDateTime>,
}

/// A credential to store.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = uc)]
pub struct NewCredential<'a> {
    /// Owner.
    pub user_id: i64,
    /// Kind.
    pub kind: &'a str,
    /// Name.
    pub name: &'a str,
    /// Data.
    pub data: &'a str,
    /// Proven.
    pub confirmed: bool,
    /// Now.
    pub created_at: NaiveDateTime,
}

/// Stores a credential; answers its id.
pub fn insert(c: &mut DbConnection, new: &NewCredential<'_>) -> Result<i64, DbError> {
    Ok(diesel::insert_into(uc::table)
        .values(new)
        .returning(uc::id)
        .get_result(c)?)
}

/// Credential `id` of `user_id`.
pub fn find_of_user(
    c: &mut DbConnection,
    user_id: i64,
    id: i64,
) -> Result<Option<Credential>, DbError> {
    Ok(uc::table
        .filter(uc::id.eq(id))
        .filter(uc::user_id.eq(user_id))
        .select(Credential::as_select())
        .first(c)
        .optional()?)
}

/// Confirmed credentials of a user of one kind.
pub fn confirmed_of_kind(
    c: &mut DbConnection,
    user_id: i64,
    kind: &str,
) -> Result<Vec<Credential>, DbError> {
    Ok(uc::table
        .filter(uc::user_id.eq(user_id))
        .filter(uc::kind.eq(kind))
        .filter(uc::confirmed.eq(true))
        .order(uc::id)
        .select(Credential::as_select())
        .load(c)?)
}

/// Confirmed second factors of a user (recovery codes excluded), oldest first.
pub fn factors(c: &mut DbConnection, user_id: i64) -> Result<Vec<Credential>, DbError> {
    Ok(uc::table
        .filter(uc::user_id.eq(user_id))
        .filter(uc::confirmed.eq(true))
        .filter(uc::kind.ne(KIND_RECOVERY))
        .order(uc::id)
        .select(Credential::as_select())
        .load(c)?)
}

/// Number of confirmed TOTP and WebAuthn factors of a user.
pub fn confirmed_factors(c: &mut DbConnection, user_id: i64) -> Result<i64, DbError> {
    Ok(uc::table
        .filter(uc::user_id.eq(user_id))
        .filter(uc::confirmed.eq(true))
        .filter(uc::kind.eq_any([KIND_TOTP, KIND_WEBAUTHN]))
        .count()
        .get_result(c)?)
}

/// Kinds a user can answer a sign-in challenge with: confirmed factors, and recovery codes not
/// yet used (sorted, distinct).
pub fn usable_kinds(c: &mut DbConnection, user_id: i64) -> Result<Vec<String>, DbError> {
    let mut kinds: Vec<String> = uc::table
        .filter(uc::user_id.eq(user_id))
        .filter(uc::confirmed.eq(true))
        .filter(uc::last_used_at.is_null().or(uc::kind.ne(KIND_RECOVERY)))
        .select(uc::kind)
        .distinct()
        .load(c)?;
    kinds.sort();
    Ok(kinds)
}

/// Drops the unconfirmed TOTP authenticators of a user (an enrolment started again).
pub fn delete_unconfirmed_totp(c: &mut DbConnection, user_id: i64) -> Result<usize, DbError> {
    Ok(diesel::delete(
        uc::table
            .filter(uc::user_id.eq(user_id))
            .filter(uc::kind.eq(KIND_TOTP))
            .filter(uc::confirmed.eq(false)),
    )
    .execute(c)?)
}

/// Marks a credential confirmed.
pub fn confirm(c: &mut DbConnection, id: i64) -> Result<(), DbError> {
    diesel::update(uc::table.filter(uc::id.eq(id)))
        .set(uc::confirmed.eq(true))
        .execute(c)?;
    Ok(())
}

/// Deletes one credential.
pub fn delete(c: &mut DbConnection, id: i64) -> Result<usize, DbError> {
    Ok(diesel::delete(uc::table.filter(uc::id.eq(id))).execute(c)?)
}

/// Deletes every credential of a user of one kind.
pub fn delete_kind(c: &mut DbConnection, user_id: i64, kind: &str) -> Result<usize, DbError> {
    Ok(diesel::delete(
        uc::table
            .filter(uc::user_id.eq(user_id))
            .filter(uc::kind.eq(kind)),
    )
    .execute(c)?)
}

/// Deletes every credential of a user; answers how many.
pub fn delete_all(c: &mut DbConnection, user_id: i64) -> Result<usize, DbError> {
    Ok(diesel::delete(uc::table.filter(uc::user_id.eq(user_id))).execute(c)?)
}

/// Records TOTP `step` as used, only if it is later than the last one used (one conditional
/// update, so a replay or a race loses); answers whether it was fresh.
pub fn consume_step(
    c: &mut DbConnection,
    id: i64,
    step: i64,
    now: NaiveDateTime,
) -> Result<bool, DbError> {
    let n = diesel::update(
        uc::table
            .filter(uc::id.eq(id))
            .filter(uc::last_used_step.is_null().or(uc::last_used_step.lt(step))),
    )
    .set((uc::last_used_step.eq(step), uc::last_used_at.eq(now)))
    .execute(c)?;
    Ok(n == 1)
}

/// Uses the unused recovery code with this hash; answers whether there was one.
pub fn consume_recovery(
    c: &mut DbConnection,
    user_id: i64,
    hash: &str,
    now: NaiveDateTime,
) -> Result<bool, DbError> {
    let n = diesel::update(
        uc::table
            .filter(uc::user_id.eq(user_id))
            .filter(uc::kind.eq(KIND_RECOVERY))
            .filter(uc::data.eq(hash))
            .filter(uc::last_used_at.is_null()),
    )
    .set(uc::last_used_at.eq(now))
    .execute(c)?;
    Ok(n == 1)
}

/// Recovery codes whose stored value does not start with `keyed_prefix`: (row id, value).
pub fn recovery_not_keyed(
    c: &mut DbConnection,
    keyed_prefix: &str,
) -> Result<Vec<(i64, String)>, DbError> {
    Ok(uc::table
        .filter(uc::kind.eq(KIND_RECOVERY))
        .filter(uc::data.not_like(format!("{keyed_prefix}%")))
        .select((uc::id, uc::data))
        .load(c)?)
}

/// Replaces the stored value of a credential.
pub fn set_data(c: &mut DbConnection, id: i64, data: &str) -> Result<(), DbError> {
    diesel::update(uc::table.filter(uc::id.eq(id)))
        .set(uc::data.eq(data))
        .execute(c)?;
    Ok(())
}

/// Unused recovery codes of a user.
pub fn recovery_left(c: &mut DbConnection, user_id: i64) -> Result<i64, DbError> {
    Ok(uc::table
        .filter(uc::user_id.eq(user_id))
        .filter(uc::kind.eq(KIND_RECOVERY))
        .filter(uc::last_used_at.is_null())
        .count()
        .get_result(c)?)
}

/// Replaces the recovery codes of a user with these hashes, in one transaction.
pub fn replace_recovery(
    c: &mut DbConnection,
    user_id: i64,
    hashes: &[String],
    now: NaiveDateTime,
) -> Result<(), DbError> {
    c.transaction(|c| {
        delete_kind(c, user_id, KIND_RECOVERY)?;
        for h in hashes {
            insert(
                c,
                &NewCredential {
                    user_id,
                    kind: KIND_RECOVERY,
                    name: "recovery code",
                    data: h,
                    confirmed: true,
                    created_at: now,
                },
            )?;
        }
        Ok(())
    })
}

/// Updates the data of a credential (a passkey's counter) and marks it used.
pub fn set_data_used(
    c: &mut DbConnection,
    id: i64,
    data: &str,
    now: NaiveDateTime,
) -> Result<(), DbError> {
    diesel::update(uc::table.filter(uc::id.eq(id)))
        .set((uc::data.eq(data), uc::last_used_at.eq(now)))
        .execute(c)?;
    Ok(())
}
