//! User accounts (`users`) and their host groups (`user_groups`): the row, the one insert form
//! that first-run setup, user administration and single sign-on share, the update form, and the
//! queries the sign-in and administration services need.

use super::schema::{host_groups, user_credentials as uc, user_groups, users};
use super::{DbConnection, DbError};
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// Role of an administrator.
pub const ROLE_ADMIN: &str = "admin";
/// Kind of a recovery-code credential (not a factor of its own).
const KIND_RECOVERY: &str = "recovery";

/// A stored account.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    /// Id.
    #[diesel(deserialize_as = i64)]
    pub id: shared::ids::UserId,
    /// Sign-in name.
    pub username: String,
    /// Display name.
    pub display_name: String,
    /// E-mail.
    pub email: Option<String>,
    /// Argon2id PHC string; `None` for single sign-on accounts.
    pub password_hash: Option<String>,
    /// `admin` or `operator`.
    pub role: String,
    /// Disabled accounts cannot sign in.
    pub is_disabled: bool,
    /// A second factor is required.
    pub mfa_required: bool,
    /// Issuer of a single sign-on account.
    pub sso_issuer: Option<String>,
    /// Subject of a single sign-on account.
    pub sso_subject: Option<String>,
    /// Consecutive failed sign-ins.
    pub failed_logins: i64,
    /// Locked until then after repeated failures.
    pub locked_until: Option<NaiveDateTime>,
    /// Last successful sign-in.
    pub last_login_at: Option<NaiveDateTime>,
    /// Last password change.
    pub password_changed_at: Option<NaiveDateTime>,
    /// Created.
    pub created_at: NaiveDateTime,
    /// Last changed.
    pub updated_at: NaiveDateTime,
}

impl User {
    /// An Admin who can sign in.
    pub fn is_enabled_admin(&self) -> bool {
        self.role == ROLE_ADMIN && !self.is_disabled
    }
}

/// An account to create: local (with a password hash) or single sign-on (issuer and subject).
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    /// Sign-in name (validated).
    pub username: &'a str,
    /// Display name.
    pub display_name: &'a str,
    /// E-mail.
    pub email: Option<&'a str>,
    /// Argon2id PHC string of a local account.
    pub password_hash: Option<&'a str>,
    /// `admin` or `operator`.
    pub role: &'a str,
    /// Always false at creation.
    pub is_disabled: bool,
    /// Second factor required.
    pub mfa_required: bool,
    /// Issuer of a single sign-on account.
    pub sso_issuer: Option<&'a str>,
    /// Subject of a single sign-on account.
    pub sso_subject: Option<&'a str>,
    /// Zero at creation.
    pub failed_logins: i64,
    /// Set when a password is given.
    pub password_changed_at: Option<NaiveDateTime>,
    /// Now.
    pub created_at: NaiveDateTime,
    /// Now.
    pub updated_at: NaiveDateTime,
}

impl<'a> NewUser<'a> {
    /// An enabled local account with this password hash.
    pub fn local(
        username: &'a str,
        display_name: &'a str,
        password_hash: &'a str,
        role: &'a str,
        now: NaiveDateTime,
    ) -> Self {
        Self {
            username,
            display_name,
            email: None,
            password_hash: Some(password_hash),
            role,
            is_disabled: false,
            mfa_required: false,
            sso_issuer: None,
            sso_subject: None,
            failed_logins: 0,
            password_changed_at: Some(now),
            created_at: now,
            updated_at: now,
        }
    }

    /// An enabled single sign-on account (no password).
    pub fn sso(
        username: &'a str,
        display_name: &'a str,
        role: &'a str,
        issuer: &'a str,
        subject: &'a str,
        now: NaiveDateTime,
    ) -> Self {
        Self {
            username,
            display_name,
            email: None,
            password_hash: None,
            role,
            is_disabled: false,
            mfa_required: false,
            sso_issuer: Some(issuer),
            sso_subject: Some(subject),
            failed_logins: 0,
            password_changed_at: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// Changes to an account; `None` leaves a column alone.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = users)]
pub struct UserUpdate {
    /// Display name.
    pub display_name: Option<String>,
    /// E-mail (`Some(None)` clears it).
    pub email: Option<Option<String>>,
    /// Password hash.
    pub password_hash: Option<Option<String>>,
    /// Role.
    pub role: Option<String>,
    /// Disabled.
    pub is_disabled: Option<bool>,
    /// Second factor required.
    pub mfa_required: Option<bool>,
    /// Failure count.
    pub failed_logins: Option<i64>,
    /// Lock (`Some(None)` lifts it).
    pub locked_until: Option<Option<NaiveDateTime>>,
    /// Last sign-in.
    pub last_login_at: Option<Option<NaiveDateTime>>,
    /// Last password change.
    pub password_changed_at: Option<Option<NaiveDateTime>>,
    /// Last change.
    pub updated_at: Option<NaiveDateTime>,
}

/// Inserts an account; answers its id. The one insert of setup, administration and sign-on.
pub fn insert(c: &mut DbConnection, u: &NewUser<'_>) -> Result<i64, DbError> {
    Ok(diesel::insert_into(users::table)
        .values(u)
        .returning(users::id)
        .get_result(c)?)
}

/// Applies `changes` to account `id`; answers whether it exists.
pub fn update(c: &mut DbConnection, id: i64, changes: &UserUpdate) -> Result<bool, DbError> {
    Ok(diesel::update(users::table.filter(users::id.eq(id)))
        .set(changes)
        .execute(c)?
        == 1)
}

/// Deletes account `id` (sessions, factors, challenges and group links go with it by cascade).
pub fn delete(c: &mut DbConnection, id: i64) -> Result<bool, DbError> {
    Ok(diesel::delete(users::table.filter(users::id.eq(id))).execute(c)? == 1)
}

/// The account with this id.
pub fn find(c: &mut DbConnection, id: i64) -> Result<Option<User>, DbError> {
    Ok(users::table
        .filter(users::id.eq(id))
        .select(User::as_select())
        .first(c)
        .optional()?)
}

/// The account with this sign-in name.
pub fn find_by_name(c: &mut DbConnection, name: &str) -> Result<Option<User>, DbError> {
    Ok(users::table
        .filter(users::username.eq(name))
        .select(User::as_select())
        .first(c)
        .optional()?)
}

/// The single sign-on account of this issuer and subject.
pub fn find_by_sso(
    c: &mut DbConnection,
    issuer: &str,
    subject: &str,
) -> Result<Option<User>, DbError> {
    Ok(users::table
        .filter(users::sso_issuer.eq(issuer))
        .filter(users::sso_subject.eq(subject))
        .select(User::as_select())
        .first(c)
        .optional()?)
}

/// Every account (or only `only`), by name.
pub fn list(c: &mut DbConnection, only: Option<i64>) -> Result<Vec<User>, DbError> {
    let mut q = users::table
        .order(users::username)
        .select(User::as_select())
        .into_boxed();
    if let Some(id) = only {
        q = q.filter(users::id.eq(id));
    }
    Ok(q.load(c)?)
}

/// Whether the name is taken.
pub fn name_taken(c: &mut DbConnection, name: &str) -> Result<bool, DbError> {
    let n: i64 = users::table
        .filter(users::username.eq(name))
        .count()
        .get_result(c)?;
    Ok(n > 0)
}

/// Number of accounts.
pub fn count(c: &mut DbConnection) -> Result<i64, DbError> {
    Ok(users::table.count().get_result(c)?)
}

/// Enabled Admins other than `except`.
pub fn other_enabled_admins(c: &mut DbConnection, except: i64) -> Result<i64, DbError> {
    Ok(users::table
        .filter(users::role.eq(ROLE_ADMIN))
        .filter(users::is_disabled.eq(false))
        .filter(users::id.ne(except))
        .count()
        .get_result(c)?)
}

/// Counts one more failed sign-in for the account of this name (one atomic increment, so
/// parallel failures each count); answers the new count, `None` when no such account.
pub fn count_failure(c: &mut DbConnection, name: &str) -> Result<Option<i64>, DbError> {
    Ok(
        diesel::update(users::table.filter(users::username.eq(name)))
            .set(users::failed_logins.eq(users::failed_logins + 1))
            .returning(users::failed_logins)
            .get_result(c)
            .optional()?,
    )
}

/// Sets or lifts the lock of the account of this name.
pub fn set_locked_until(
    c: &mut DbConnection,
    name: &str,
    until: Option<NaiveDateTime>,
) -> Result<(), DbError> {
    diesel::update(users::table.filter(users::username.eq(name)))
        .set(users::locked_until.eq(until))
        .execute(c)?;
    Ok(())
}

/// A user's membership of a host group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Queryable)]
pub struct GroupLink {
    /// The user.
    pub user_id: i64,
    /// The group.
    pub group_id: i64,
}

/// How many confirmed second factors a user has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Queryable)]
pub struct FactorCount {
    /// The user.
    pub user_id: i64,
    /// Confirmed factors (recovery codes not counted).
    pub factors: i64,
}

/// Group memberships of every user.
pub fn group_links(c: &mut DbConnection) -> Result<Vec<GroupLink>, DbError> {
    Ok(user_groups::table
        .select((user_groups::user_id, user_groups::group_id))
        .load(c)?)
}

/// Confirmed second factors (recovery codes not counted) per user.
pub fn factor_counts(c: &mut DbConnection) -> Result<Vec<FactorCount>, DbError> {
    Ok(uc::table
        .filter(uc::confirmed.eq(true))
        .filter(uc::kind.ne(KIND_RECOVERY))
        .group_by(uc::user_id)
        .select((uc::user_id, diesel::dsl::count(uc::id)))
        .load(c)?)
}

/// Those of `ids` that name existing host groups (sorted, without duplicates).
pub fn existing_groups(c: &mut DbConnection, ids: &[i64]) -> Result<Vec<i64>, DbError> {
    let mut found: Vec<i64> = host_groups::table
        .filter(host_groups::id.eq_any(ids))
        .select(host_groups::id)
        .load(c)?;
    found.sort_unstable();
    found.dedup();
    Ok(found)
}

/// Replaces the host groups of a user with `ids` (duplicates ignored).
pub fn replace_groups(
    c: &mut DbConnection,
    user_id: i64,
    ids: &[i64],
    now: NaiveDateTime,
) -> Result<(), DbError> {
    let mut uniq = ids.to_vec();
    uniq.sort_unstable();
    uniq.dedup();
    diesel::delete(user_groups::table.filter(user_groups::user_id.eq(user_id))).execute(c)?;
    for g in uniq {
        diesel::insert_into(user_groups::table)
            .values((
                user_groups::user_id.eq(user_id),
                user_groups::group_id.eq(g),
                user_groups::created_at.eq(now),
            ))
            .execute(c)?;
    }
    Ok(())
}
