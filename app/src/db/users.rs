//! Writing user accounts: the one insert that first-run setup and user administration share.

use super::schema::users;
use super::{DbConnection, DbError};
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// A local account to create (the password already hashed).
#[derive(Debug, Clone)]
pub struct NewLocalUser<'a> {
    /// Sign-in name (validated).
    pub username: &'a str,
    /// Display name.
    pub display_name: &'a str,
    /// E-mail.
    pub email: Option<&'a str>,
    /// Argon2id PHC string.
    pub password_hash: &'a str,
    /// `admin` or `operator`.
    pub role: &'a str,
    /// Second factor required.
    pub mfa_required: bool,
}

/// Inserts an enabled local account; answers its id.
pub fn insert_local(
    c: &mut DbConnection,
    u: &NewLocalUser<'_>,
    now: NaiveDateTime,
) -> Result<i64, DbError> {
    Ok(diesel::insert_into(users::table)
        .values((
            users::username.eq(u.username),
            users::display_name.eq(u.display_name),
            users::email.eq(u.email),
            users::password_hash.eq(u.password_hash),
            users::role.eq(u.role),
            users::is_disabled.eq(false),
            users::mfa_required.eq(u.mfa_required),
            users::failed_logins.eq(0_i64),
            users::password_changed_at.eq(now),
            users::created_at.eq(now),
            users::updated_at.eq(now),
        ))
        .returning(users::id)
        .get_result(c)?)
}
