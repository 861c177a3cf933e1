//! Accounts as a service: create, change, delete, reset second factors, end sessions, and the
//! rules they share, each written once and used by user administration, first-run setup and
//! single sign-on alike:
//!
//! - the last enabled Admin is kept ([`removes_last_admin`]): it cannot be disabled, demoted or
//!   deleted, and the directory cannot demote it at sign-on either;
//! - an account is inserted by [`insert_account`] and its host groups replaced by
//!   [`replace_groups`].
//!
//! The functions taking `&mut DbConnection` are the rules (tests and the command line call them
//! directly); the async ones wrap them for handlers, with the audit record.

use crate::audit::Requester;
use crate::auth::password;
use crate::auth::setup::valid_username;
use crate::clock::rfc3339;
use crate::db::audit::{NewAuditEntry, Outcome};
use crate::db::users::{self as repo, NewUser, User, UserUpdate, ROLE_ADMIN};
use crate::db::{credentials, sessions, transaction, DbConnection, DbError};
use crate::error::AppError;
use crate::state::AppState;
use chrono::NaiveDateTime;
use shared::fleet::{NewUser as NewUserRequest, UserInfo, UserUpdate as UserUpdateRequest};
use shared::ids::GroupId;
use shared::vocab::UnknownWord;

/// Why an account change was refused.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// No such account.
    #[error("no such user")]
    NotFound,
    /// The change conflicts with the state of the accounts (last Admin, name taken, yourself).
    #[error("{0}")]
    Conflict(String),
    /// A field is not acceptable.
    #[error("{message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Hashing failed.
    #[error("{0}")]
    Internal(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<UserError> for AppError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::NotFound => AppError::NotFound("no such user".into()),
            UserError::Conflict(m) => AppError::Conflict(m),
            UserError::Invalid { field, message } => AppError::invalid(field, message),
            UserError::Internal(m) => AppError::Internal(m),
            UserError::Db(e) => AppError::from(e),
        }
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> UserError {
    UserError::Invalid {
        field,
        message: message.into(),
    }
}

/// The last-Admin rule: a change that turns an enabled Admin into something else (demoted,
/// disabled, deleted) is refused when no other enabled Admin exists.
pub fn removes_last_admin(
    was_enabled_admin: bool,
    stays_enabled_admin: bool,
    other_enabled_admins: i64,
) -> bool {
    was_enabled_admin && !stays_enabled_admin && other_enabled_admins == 0
}

/// [`removes_last_admin`] for a stored account, asking the database for the other Admins only
/// when the change matters.
fn would_remove_last_admin(
    c: &mut DbConnection,
    user: &User,
    stays_enabled_admin: bool,
) -> Result<bool, DbError> {
    if !user.is_enabled_admin() || stays_enabled_admin {
        return Ok(false);
    }
    let others = repo::other_enabled_admins(c, user.id.into())?;
    Ok(removes_last_admin(true, stays_enabled_admin, others))
}

/// The role the directory may give an existing account at sign-on: as mapped, except that the
/// last enabled Admin stays Admin (the manager would be left without anyone to administer it).
pub fn sso_role<'a>(
    c: &mut DbConnection,
    user: &User,
    mapped: &'a str,
) -> Result<&'a str, DbError> {
    if would_remove_last_admin(c, user, mapped == ROLE_ADMIN)? {
        Ok(ROLE_ADMIN)
    } else {
        Ok(mapped)
    }
}

/// Inserts an account: the one insert of user administration, first-run setup and single
/// sign-on.
pub fn insert_account(c: &mut DbConnection, new: &NewUser<'_>) -> Result<i64, DbError> {
    repo::insert(c, new)
}

/// Replaces the host groups of an account: the one group replacement of user administration and
/// single sign-on. With `skip_missing` (sign-on mappings may name a group deleted since), groups
/// that do not exist are left out; otherwise they are refused.
pub fn replace_groups(
    c: &mut DbConnection,
    user_id: i64,
    ids: &[i64],
    skip_missing: bool,
    now: NaiveDateTime,
) -> Result<(), UserError> {
    let existing = repo::existing_groups(c, ids)?;
    let mut wanted = ids.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    if !skip_missing && existing.len() != wanted.len() {
        return Err(invalid("group_ids", "no such group"));
    }
    repo::replace_groups(c, user_id, &existing, now)?;
    Ok(())
}

fn check_display_name(name: &str) -> Result<(), UserError> {
    if name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(invalid(
            "display_name",
            "display name: at most 128 printable characters",
        ));
    }
    Ok(())
}

fn check_email(email: &str) -> Result<(), UserError> {
    let ok = email.len() <= 254
        && email.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(invalid("email", "not an e-mail address"))
    }
}

async fn hash_password(pw: String) -> Result<String, UserError> {
    password::in_line(move || password::hash(&pw))
        .await
        .map_err(|e| UserError::Internal(e.to_string()))?
        .map_err(|e| UserError::Internal(e.to_string()))
}

/// Accounts as the administration shows them (every one, or only `only`).
pub fn infos(
    c: &mut DbConnection,
    only: Option<i64>,
    now: NaiveDateTime,
) -> Result<Vec<UserInfo>, DbError> {
    let rows = repo::list(c, only)?;
    let groups = repo::group_links(c)?;
    let factors = repo::factor_counts(c)?;
    rows.into_iter()
        .map(|u| {
            Ok(UserInfo {
                id: u.id,
                mfa_factors: factors
                    .iter()
                    .find(|f| f.user_id == u.id.0)
                    .map_or(0, |f| f.factors),
                group_ids: groups
                    .iter()
                    .filter(|l| l.user_id == u.id.0)
                    .map(|l| GroupId(l.group_id))
                    .collect(),
                username: u.username,
                display_name: u.display_name,
                email: u.email,
                role: u
                    .role
                    .parse()
                    .map_err(|e: UnknownWord| DbError::Inconsistent(e.to_string()))?,
                disabled: u.is_disabled,
                mfa_required: u.mfa_required,
                sso: u.sso_subject.is_some(),
                last_login_at: u.last_login_at.map(rfc3339),
                locked_until: u.locked_until.filter(|t| *t > now).map(rfc3339),
            })
        })
        .collect()
}

fn info(c: &mut DbConnection, id: i64, now: NaiveDateTime) -> Result<UserInfo, UserError> {
    infos(c, Some(id), now)?.pop().ok_or(UserError::NotFound)
}

/// A local account to create, validated and with its password hashed.
#[derive(Debug, Clone)]
pub struct LocalAccount {
    /// Sign-in name.
    pub username: String,
    /// Display name (the name when empty).
    pub display_name: String,
    /// E-mail.
    pub email: Option<String>,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Role.
    pub role: String,
    /// Second factor required.
    pub mfa_required: bool,
    /// Host groups.
    pub group_ids: Vec<i64>,
}

/// Creates a local account with its groups, in one transaction.
pub fn create_local(
    c: &mut DbConnection,
    a: &LocalAccount,
    now: NaiveDateTime,
) -> Result<UserInfo, UserError> {
    transaction(c, |c| {
        if repo::name_taken(c, &a.username)? {
            return Err(UserError::Conflict(format!("user {} exists", a.username)));
        }
        let mut new = NewUser::local(&a.username, &a.display_name, &a.password_hash, &a.role, now);
        new.email = a.email.as_deref();
        new.mfa_required = a.mfa_required;
        let id = insert_account(c, &new)?;
        replace_groups(c, id, &a.group_ids, false, now)?;
        info(c, id, now)
    })
}

/// Validates a creation request and hashes its password.
pub async fn prepare_local(body: NewUserRequest) -> Result<LocalAccount, UserError> {
    let username = body.username.trim().to_owned();
    if !valid_username(&username) {
        return Err(invalid(
            "username",
            "user names are 3 to 64 characters of a-z, 0-9, '.', '_' and '-', starting with a letter",
        ));
    }
    check_display_name(&body.display_name)?;
    if let Some(e) = &body.email {
        check_email(e)?;
    }
    password::check_policy(&body.password, &username).map_err(|m| invalid("password", m))?;
    let password_hash = hash_password(body.password).await?;
    let display_name = if body.display_name.trim().is_empty() {
        username.clone()
    } else {
        body.display_name.trim().to_owned()
    };
    Ok(LocalAccount {
        username,
        display_name,
        email: body.email,
        password_hash,
        role: body.role.as_str().to_owned(),
        mfa_required: body.mfa_required,
        group_ids: body.group_ids.into_iter().map(i64::from).collect(),
    })
}

/// `POST /users`: creates the account and audits it.
pub async fn create(
    state: &AppState,
    by: &Requester,
    body: NewUserRequest,
) -> Result<UserInfo, UserError> {
    let account = prepare_local(body).await?;
    let now = state.clock.now();
    let created = transaction::run(&state.db, move |c| create_local(c, &account, now)).await?;
    state
        .audit
        .note(
            NewAuditEntry::new(&by.actor, "user.created", Outcome::Success)
                .target(format!("user:{}", created.id))
                .details(serde_json::json!({
                    "username": created.username, "role": created.role,
                    "groups": created.group_ids, "mfa_required": created.mfa_required,
                }))
                .source(by.source),
        )
        .await;
    Ok(created)
}

/// An administrator's change to an account, validated (the password already hashed).
#[derive(Debug, Clone, Default)]
pub struct AccountChange {
    /// New role.
    pub role: Option<String>,
    /// Disable or enable.
    pub disabled: Option<bool>,
    /// Require a second factor.
    pub mfa_required: Option<bool>,
    /// New host groups.
    pub group_ids: Option<Vec<i64>>,
    /// New display name (empty: the user name).
    pub display_name: Option<String>,
    /// New e-mail (empty: none).
    pub email: Option<String>,
    /// New password hash.
    pub password_hash: Option<String>,
}

/// Applies an administrator's change to account `id` as `me`, in one transaction; answers the
/// account and how many of its sessions ended (disabling, demoting and a new password end them).
pub fn change(
    c: &mut DbConnection,
    id: i64,
    me: i64,
    b: &AccountChange,
    now: NaiveDateTime,
) -> Result<(UserInfo, usize), UserError> {
    transaction(c, |c| {
        let user = repo::find(c, id)?.ok_or(UserError::NotFound)?;
        let new_role = b.role.as_deref().unwrap_or(&user.role);
        let new_disabled = b.disabled.unwrap_or(user.is_disabled);
        let stays = new_role == ROLE_ADMIN && !new_disabled;
        if would_remove_last_admin(c, &user, stays)? {
            return Err(UserError::Conflict(
                "this is the last enabled Admin; promote another user first".into(),
            ));
        }
        if id == me && b.disabled == Some(true) {
            return Err(UserError::Conflict("you cannot disable yourself".into()));
        }
        if let Some(g) = &b.group_ids {
            replace_groups(c, id, g, false, now)?;
        }
        let mut update = UserUpdate {
            display_name: b.display_name.as_ref().map(|d| {
                if d.trim().is_empty() {
                    user.username.clone()
                } else {
                    d.trim().to_owned()
                }
            }),
            email: b.email.as_ref().map(|e| (!e.is_empty()).then(|| e.clone())),
            role: b.role.clone(),
            is_disabled: b.disabled,
            mfa_required: b.mfa_required,
            updated_at: Some(now),
            ..UserUpdate::default()
        };
        if let Some(h) = &b.password_hash {
            update.password_hash = Some(Some(h.clone()));
            update.password_changed_at = Some(Some(now));
            update.failed_logins = Some(0);
            update.locked_until = Some(None);
        }
        repo::update(c, id, &update)?;
        let demoted = user.role == ROLE_ADMIN && b.role.as_deref() == Some("operator");
        let ended = if b.disabled == Some(true) || b.password_hash.is_some() || demoted {
            sessions::revoke_user(c, id, "changed by an admin", now)?
        } else {
            0
        };
        Ok((info(c, id, now)?, ended))
    })
}

/// `PATCH /users/{id}`: validates, applies and audits an administrator's change.
pub async fn update(
    state: &AppState,
    by: &Requester,
    me: i64,
    id: i64,
    body: UserUpdateRequest,
) -> Result<UserInfo, UserError> {
    if let Some(d) = &body.display_name {
        check_display_name(d)?;
    }
    if let Some(e) = body.email.as_deref().filter(|e| !e.is_empty()) {
        check_email(e)?;
    }
    let user = transaction::run(&state.db, move |c| {
        repo::find(c, id)?.ok_or(UserError::NotFound)
    })
    .await?;
    let password_hash = match &body.password {
        Some(pw) => {
            password::check_policy(pw, &user.username).map_err(|m| invalid("password", m))?;
            Some(hash_password(pw.clone()).await?)
        }
        None => None,
    };
    let change_set = AccountChange {
        role: body.role.map(|r| r.as_str().to_owned()),
        disabled: body.disabled,
        mfa_required: body.mfa_required,
        group_ids: body
            .group_ids
            .as_ref()
            .map(|g| g.iter().copied().map(i64::from).collect()),
        display_name: body.display_name.clone(),
        email: body.email.clone(),
        password_hash,
    };
    let (info, ended) = {
        let _serial = state.admin_changes.lock().await;
        let now = state.clock.now();
        transaction::run(&state.db, move |c| change(c, id, me, &change_set, now)).await?
    };
    state
        .audit
        .note(
            NewAuditEntry::new(&by.actor, "user.updated", Outcome::Success)
                .target(format!("user:{id}"))
                .details(serde_json::json!({
                    "role": body.role, "disabled": body.disabled, "mfa_required": body.mfa_required,
                    "groups": body.group_ids, "password_changed": body.password.is_some(),
                    "display_name": body.display_name, "email": body.email, "sessions_ended": ended,
                }))
                .source(by.source),
        )
        .await;
    state.fleet.access_changed();
    Ok(info)
}

/// Deletes account `id` as `me`; answers its name. Sessions, factors, challenges and group links
/// go with it; references in jobs and windows keep their history as NULL.
pub fn remove(c: &mut DbConnection, id: i64, me: i64) -> Result<String, UserError> {
    transaction(c, |c| {
        let user = repo::find(c, id)?.ok_or(UserError::NotFound)?;
        if id == me {
            return Err(UserError::Conflict("you cannot delete yourself".into()));
        }
        if would_remove_last_admin(c, &user, false)? {
            return Err(UserError::Conflict("this is the last enabled Admin".into()));
        }
        repo::delete(c, id)?;
        Ok(user.username)
    })
}

/// `DELETE /users/{id}`: deletes and audits.
pub async fn delete(state: &AppState, by: &Requester, me: i64, id: i64) -> Result<(), UserError> {
    let name = {
        let _serial = state.admin_changes.lock().await;
        transaction::run(&state.db, move |c| remove(c, id, me)).await?
    };
    state
        .audit
        .note(
            NewAuditEntry::new(&by.actor, "user.deleted", Outcome::Success)
                .target(format!("user:{id}"))
                .details(serde_json::json!({ "username": name }))
                .source(by.source),
        )
        .await;
    state.fleet.access_changed();
    Ok(())
}

/// Removes every second factor and recovery code of account `id` and ends its sessions; answers
/// (credentials removed, sessions ended).
pub fn clear_mfa(
    c: &mut DbConnection,
    id: i64,
    now: NaiveDateTime,
) -> Result<(usize, usize), UserError> {
    transaction(c, |c| {
        repo::find(c, id)?.ok_or(UserError::NotFound)?;
        let removed = credentials::delete_all(c, id)?;
        let ended = sessions::revoke_user(c, id, "MFA reset by an admin", now)?;
        Ok((removed, ended))
    })
}

/// `POST /users/{id}/reset-mfa`: a lost phone, a suspected compromise.
pub async fn reset_mfa(state: &AppState, by: &Requester, id: i64) -> Result<(), UserError> {
    let now = state.clock.now();
    let (removed, ended) = transaction::run(&state.db, move |c| clear_mfa(c, id, now)).await?;
    state
        .audit
        .note(
            NewAuditEntry::new(&by.actor, "mfa.reset", Outcome::Success)
                .target(format!("user:{id}"))
                .details(
                    serde_json::json!({ "credentials_removed": removed, "sessions_ended": ended }),
                )
                .source(by.source),
        )
        .await;
    state.fleet.access_changed();
    Ok(())
}

/// Ends every session of account `id`; answers how many.
pub fn end_sessions(c: &mut DbConnection, id: i64, now: NaiveDateTime) -> Result<usize, UserError> {
    repo::find(c, id)?.ok_or(UserError::NotFound)?;
    Ok(sessions::revoke_user(c, id, "ended by an admin", now)?)
}

/// `POST /users/{id}/logout`: their access tokens stop working on the next request.
pub async fn force_logout(state: &AppState, by: &Requester, id: i64) -> Result<(), UserError> {
    let now = state.clock.now();
    let ended = transaction::run(&state.db, move |c| end_sessions(c, id, now)).await?;
    state
        .audit
        .note(
            NewAuditEntry::new(&by.actor, "session.force_logout", Outcome::Success)
                .target(format!("user:{id}"))
                .details(serde_json::json!({ "sessions_ended": ended }))
                .source(by.source),
        )
        .await;
    state.fleet.access_changed();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatabaseTarget;
    use crate::db::Database;

    #[test]
    fn last_admin_rule() {
        assert!(removes_last_admin(true, false, 0), "last Admin demoted");
        assert!(!removes_last_admin(true, false, 1), "another Admin remains");
        assert!(!removes_last_admin(true, true, 0), "stays Admin");
        assert!(!removes_last_admin(false, false, 0), "was not an Admin");
    }

    fn db() -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(
            &DatabaseTarget::Sqlite(dir.path().join("t.db")),
            2,
            std::time::Duration::from_secs(5),
        )
        .unwrap();
        (dir, db)
    }

    fn account(name: &str, role: &str, groups: Vec<i64>) -> LocalAccount {
        LocalAccount {
            username: name.into(),
            display_name: name.into(),
            email: None,
            password_hash: "x".into(),
            role: role.into(),
            mfa_required: false,
            group_ids: groups,
        }
    }

    fn now() -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_800_000_000, 0)
            .unwrap()
            .naive_utc()
    }

    #[test]
    fn last_enabled_admin_is_kept() {
        let (_dir, db) = db();
        let c = &mut *db.conn().unwrap();
        let a = create_local(c, &account("alice", "admin", vec![]), now()).unwrap();
        let o = create_local(c, &account("oscar", "operator", vec![]), now()).unwrap();
        let demote = AccountChange {
            role: Some("operator".into()),
            ..AccountChange::default()
        };
        let disable = AccountChange {
            disabled: Some(true),
            ..AccountChange::default()
        };
        assert!(matches!(
            change(c, a.id.0, o.id.0, &demote, now()),
            Err(UserError::Conflict(_))
        ));
        assert!(matches!(
            change(c, a.id.0, o.id.0, &disable, now()),
            Err(UserError::Conflict(_))
        ));
        assert!(matches!(
            remove(c, a.id.0, o.id.0),
            Err(UserError::Conflict(_))
        ));
        // With a second Admin, the first may go.
        let promote = AccountChange {
            role: Some("admin".into()),
            ..AccountChange::default()
        };
        change(c, o.id.0, a.id.0, &promote, now()).unwrap();
        let (alice, _) = change(c, a.id.0, o.id.0, &demote, now()).unwrap();
        assert_eq!(alice.role, shared::vocab::Role::Operator);
        // Now Oscar is the last one.
        assert!(matches!(
            remove(c, o.id.0, a.id.0),
            Err(UserError::Conflict(_))
        ));
        let user = repo::find(c, o.id.0).unwrap().unwrap();
        assert_eq!(sso_role(c, &user, "operator").unwrap(), "admin");
        assert_eq!(remove(c, a.id.0, o.id.0).unwrap(), "alice");
    }

    #[test]
    fn names_and_groups() {
        let (_dir, db) = db();
        let c = &mut *db.conn().unwrap();
        create_local(c, &account("alice", "admin", vec![]), now()).unwrap();
        assert!(matches!(
            create_local(c, &account("alice", "admin", vec![]), now()),
            Err(UserError::Conflict(_))
        ));
        assert!(matches!(
            create_local(c, &account("bob", "operator", vec![42]), now()),
            Err(UserError::Invalid {
                field: "group_ids",
                ..
            })
        ));
        assert!(
            !repo::name_taken(c, "bob").unwrap(),
            "a refused creation leaves nothing behind"
        );
        let bob = create_local(c, &account("bob", "operator", vec![]), now()).unwrap();
        replace_groups(c, bob.id.0, &[42, 42], true, now()).unwrap();
        assert!(
            info(c, bob.id.0, now()).unwrap().group_ids.is_empty(),
            "missing groups skipped"
        );
    }
}
