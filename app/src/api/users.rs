//! User administration (Admins only): create, change role, groups and MFA requirement, disable,
//! delete, reset second factors, end sessions. Every change is audited with what changed.
//!
//! The last enabled Admin cannot be disabled, demoted or deleted, so the manager always keeps a
//! way in; disabling, demoting, a new password and an MFA reset end the user's sessions at once.

use crate::api::{audit_action, rfc3339, AppError};
use crate::auth::access::Caller;
use crate::auth::setup::valid_username;
use crate::auth::{mfa, password};
use crate::db::schema::{host_groups, user_credentials as uc, user_groups, users};
use crate::db::{sessions, DbConnection, DbError};
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use shared::fleet::{NewUser, UserInfo, UserUpdate};

fn check_role(role: &str) -> Result<(), AppError> {
    match role {
        "admin" | "operator" => Ok(()),
        _ => Err(AppError::invalid("role", "role must be admin or operator")),
    }
}

fn check_display_name(name: &str) -> Result<(), AppError> {
    if name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "display_name",
            "display name: at most 128 printable characters",
        ));
    }
    Ok(())
}

fn check_email(email: &str) -> Result<(), AppError> {
    let ok = email.len() <= 254
        && email.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(AppError::invalid("email", "not an e-mail address"))
    }
}

async fn hash_password(pw: String) -> Result<String, AppError> {
    tokio::task::spawn_blocking(move || password::hash(&pw))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
        .map_err(|e| AppError::Internal(e.to_string()))
}

type Row = (
    i64,
    String,
    String,
    Option<String>,
    String,
    bool,
    bool,
    Option<String>,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
);

fn load(c: &mut DbConnection, only: Option<i64>) -> Result<Vec<UserInfo>, DbError> {
    let mut q = users::table
        .order(users::username)
        .select((
            users::id,
            users::username,
            users::display_name,
            users::email,
            users::role,
            users::is_disabled,
            users::mfa_required,
            users::sso_subject,
            users::last_login_at,
            users::locked_until,
        ))
        .into_boxed();
    if let Some(id) = only {
        q = q.filter(users::id.eq(id));
    }
    let rows: Vec<Row> = q.load(c)?;
    let groups: Vec<(i64, i64)> = user_groups::table
        .select((user_groups::user_id, user_groups::group_id))
        .load(c)?;
    let factors: Vec<(i64, i64)> = uc::table
        .filter(uc::confirmed.eq(true))
        .filter(uc::kind.ne(mfa::KIND_RECOVERY))
        .group_by(uc::user_id)
        .select((uc::user_id, diesel::dsl::count(uc::id)))
        .load(c)?;
    let now = chrono::Utc::now().naive_utc();
    Ok(rows
        .into_iter()
        .map(|r| UserInfo {
            id: r.0,
            username: r.1,
            display_name: r.2,
            email: r.3,
            role: r.4,
            disabled: r.5,
            mfa_required: r.6,
            sso: r.7.is_some(),
            last_login_at: r.8.map(rfc3339),
            locked_until: r.9.filter(|t| *t > now).map(rfc3339),
            mfa_factors: factors
                .iter()
                .find(|(u, _)| *u == r.0)
                .map_or(0, |(_, n)| *n),
            group_ids: groups
                .iter()
                .filter(|(u, _)| *u == r.0)
                .map(|(_, g)| *g)
                .collect(),
        })
        .collect())
}

fn check_groups_exist(c: &mut DbConnection, ids: &[i64]) -> Result<bool, DbError> {
    let mut uniq = ids.to_vec();
    uniq.sort_unstable();
    uniq.dedup();
    let n: i64 = host_groups::table
        .filter(host_groups::id.eq_any(&uniq))
        .count()
        .get_result(c)?;
    Ok(usize::try_from(n).ok() == Some(uniq.len()))
}

fn set_groups(
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

/// Enabled Admins other than `except`.
fn other_enabled_admins(c: &mut DbConnection, except: i64) -> Result<i64, DbError> {
    Ok(users::table
        .filter(users::role.eq("admin"))
        .filter(users::is_disabled.eq(false))
        .filter(users::id.ne(except))
        .count()
        .get_result(c)?)
}

/// `GET /api/v1/users`.
pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(state.db.run(|c| load(c, None)).await?))
}

/// `POST /api/v1/users`.
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    body: web::Json<NewUser>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let username = body.username.trim().to_owned();
    if !valid_username(&username) {
        return Err(AppError::invalid(
            "username",
            "user names are 3 to 64 characters of a-z, 0-9, '.', '_' and '-', starting with a letter",
        ));
    }
    check_role(&body.role)?;
    check_display_name(&body.display_name)?;
    if let Some(e) = &body.email {
        check_email(e)?;
    }
    password::check_policy(&body.password, &username)
        .map_err(|m| AppError::invalid("password", m))?;
    let phc = hash_password(body.password.clone()).await?;
    let display = if body.display_name.trim().is_empty() {
        username.clone()
    } else {
        body.display_name.trim().to_owned()
    };
    let (u, role, groups, email, mfa_required) = (
        username.clone(),
        body.role.clone(),
        body.group_ids.clone(),
        body.email.clone(),
        body.mfa_required,
    );
    let created = state
        .db
        .run(move |c| {
            let now = chrono::Utc::now().naive_utc();
            c.transaction(|c| {
                let taken: i64 = users::table
                    .filter(users::username.eq(&u))
                    .count()
                    .get_result(c)?;
                if taken > 0 {
                    return Ok(Err(AppError::Conflict(format!("user {u} exists"))));
                }
                if !check_groups_exist(c, &groups)? {
                    return Ok(Err(AppError::invalid("group_ids", "no such group")));
                }
                let id = crate::db::users::insert_local(
                    c,
                    &crate::db::users::NewLocalUser {
                        username: &u,
                        display_name: &display,
                        email: email.as_deref(),
                        password_hash: &phc,
                        role: &role,
                        mfa_required,
                    },
                    now,
                )?;
                set_groups(c, id, &groups, now)?;
                Ok::<_, DbError>(Ok(load(c, Some(id))?.pop()))
            })
        })
        .await??
        .ok_or_else(|| AppError::Internal("created user not found".into()))?;
    audit_action(
        &state,
        &req,
        who.actor(),
        "user.created",
        format!("user:{}", created.id),
        serde_json::json!({
            "username": created.username, "role": created.role,
            "groups": created.group_ids, "mfa_required": created.mfa_required,
        }),
    )
    .await;
    Ok(HttpResponse::Created().json(created))
}

/// `PATCH /api/v1/users/{user_id}`.
pub async fn update(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    path: web::Path<i64>,
    body: web::Json<UserUpdate>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let body = body.into_inner();
    if let Some(r) = &body.role {
        check_role(r)?;
    }
    if let Some(d) = &body.display_name {
        check_display_name(d)?;
    }
    if let Some(e) = body.email.as_deref().filter(|e| !e.is_empty()) {
        check_email(e)?;
    }
    let username: Option<String> = state
        .db
        .run(move |c| {
            Ok(users::table
                .filter(users::id.eq(id))
                .select(users::username)
                .first(c)
                .optional()?)
        })
        .await?;
    let username = username.ok_or_else(|| AppError::NotFound("no such user".into()))?;
    let phc = match &body.password {
        Some(pw) => {
            password::check_policy(pw, &username).map_err(|m| AppError::invalid("password", m))?;
            Some(hash_password(pw.clone()).await?)
        }
        None => None,
    };
    let me = who.identity.user_id;
    let b = body.clone();
    let _serial = state.admin_changes.lock().await;
    let changed = state
        .db
        .run(move |c| {
            let now = chrono::Utc::now().naive_utc();
            c.transaction(|c| {
                let (role, disabled): (String, bool) = users::table
                    .filter(users::id.eq(id))
                    .select((users::role, users::is_disabled))
                    .first(c)?;
                let loses_admin = role == "admin"
                    && !disabled
                    && (b.role.as_deref() == Some("operator") || b.disabled == Some(true));
                if loses_admin && other_enabled_admins(c, id)? == 0 {
                    return Ok(Err(AppError::Conflict(
                        "this is the last enabled Admin; promote another user first".into(),
                    )));
                }
                if id == me && b.disabled == Some(true) {
                    return Ok(Err(AppError::Conflict(
                        "you cannot disable yourself".into(),
                    )));
                }
                if let Some(g) = &b.group_ids {
                    if !check_groups_exist(c, g)? {
                        return Ok(Err(AppError::invalid("group_ids", "no such group")));
                    }
                    set_groups(c, id, g, now)?;
                }
                let target = users::table.filter(users::id.eq(id));
                if let Some(d) = &b.display_name {
                    let d = if d.trim().is_empty() {
                        username.clone()
                    } else {
                        d.trim().to_owned()
                    };
                    diesel::update(target)
                        .set(users::display_name.eq(d))
                        .execute(c)?;
                }
                if let Some(e) = &b.email {
                    let e = (!e.is_empty()).then(|| e.clone());
                    diesel::update(target).set(users::email.eq(e)).execute(c)?;
                }
                if let Some(r) = &b.role {
                    diesel::update(target).set(users::role.eq(r)).execute(c)?;
                }
                if let Some(d) = b.disabled {
                    diesel::update(target)
                        .set(users::is_disabled.eq(d))
                        .execute(c)?;
                }
                if let Some(m) = b.mfa_required {
                    diesel::update(target)
                        .set(users::mfa_required.eq(m))
                        .execute(c)?;
                }
                if let Some(h) = &phc {
                    diesel::update(target)
                        .set((
                            users::password_hash.eq(h),
                            users::password_changed_at.eq(now),
                            users::failed_logins.eq(0_i64),
                            users::locked_until.eq(None::<NaiveDateTime>),
                        ))
                        .execute(c)?;
                }
                diesel::update(target)
                    .set(users::updated_at.eq(now))
                    .execute(c)?;
                let demoted = role == "admin" && b.role.as_deref() == Some("operator");
                let ended = if b.disabled == Some(true) || phc.is_some() || demoted {
                    sessions::revoke_user(c, id, "changed by an admin", now)?
                } else {
                    0
                };
                Ok::<_, DbError>(Ok((load(c, Some(id))?.pop(), ended)))
            })
        })
        .await??;
    let (user, ended) = changed;
    let user = user.ok_or_else(|| AppError::NotFound("no such user".into()))?;
    audit_action(
        &state,
        &req,
        who.actor(),
        "user.updated",
        format!("user:{id}"),
        serde_json::json!({
            "role": body.role, "disabled": body.disabled, "mfa_required": body.mfa_required,
            "groups": body.group_ids, "password_changed": body.password.is_some(),
            "display_name": body.display_name, "email": body.email, "sessions_ended": ended,
        }),
    )
    .await;
    Ok(HttpResponse::Ok().json(user))
}

/// `DELETE /api/v1/users/{user_id}`.
pub async fn delete(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let me = who.identity.user_id;
    let _serial = state.admin_changes.lock().await;
    let name = state
        .db
        .run(move |c| {
            c.transaction(|c| {
                let row: Option<(String, String, bool)> = users::table
                    .filter(users::id.eq(id))
                    .select((users::username, users::role, users::is_disabled))
                    .first(c)
                    .optional()?;
                let Some((name, role, disabled)) = row else {
                    return Ok(Err(AppError::NotFound("no such user".into())));
                };
                if id == me {
                    return Ok(Err(AppError::Conflict("you cannot delete yourself".into())));
                }
                if role == "admin" && !disabled && other_enabled_admins(c, id)? == 0 {
                    return Ok(Err(AppError::Conflict(
                        "this is the last enabled Admin".into(),
                    )));
                }
                // Sessions, factors, challenges and group links go with the user (cascade);
                // references in jobs and windows keep their history as NULL.
                diesel::delete(users::table.filter(users::id.eq(id))).execute(c)?;
                Ok::<_, DbError>(Ok(name))
            })
        })
        .await??;
    audit_action(
        &state,
        &req,
        who.actor(),
        "user.deleted",
        format!("user:{id}"),
        serde_json::json!({ "username": name }),
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/v1/users/{user_id}/reset-mfa`: removes every second factor and recovery code of
/// the user and ends their sessions (a lost phone; a suspected compromise).
pub async fn reset_mfa(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let (removed, ended) = state
        .db
        .run(move |c| {
            let now = chrono::Utc::now().naive_utc();
            c.transaction(|c| {
                let exists: i64 = users::table
                    .filter(users::id.eq(id))
                    .count()
                    .get_result(c)?;
                if exists == 0 {
                    return Ok(Err(AppError::NotFound("no such user".into())));
                }
                let removed = diesel::delete(uc::table.filter(uc::user_id.eq(id))).execute(c)?;
                let ended = sessions::revoke_user(c, id, "MFA reset by an admin", now)?;
                Ok::<_, DbError>(Ok((removed, ended)))
            })
        })
        .await??;
    audit_action(
        &state,
        &req,
        who.actor(),
        "mfa.reset",
        format!("user:{id}"),
        serde_json::json!({ "credentials_removed": removed, "sessions_ended": ended }),
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/v1/users/{user_id}/logout`: ends every session of the user now; their access
/// tokens stop working on the next request.
pub async fn force_logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let ended = state
        .db
        .run(move |c| {
            let exists: i64 = users::table
                .filter(users::id.eq(id))
                .count()
                .get_result(c)?;
            if exists == 0 {
                return Ok(None);
            }
            let now = chrono::Utc::now().naive_utc();
            Ok(Some(sessions::revoke_user(
                c,
                id,
                "ended by an admin",
                now,
            )?))
        })
        .await?
        .ok_or_else(|| AppError::NotFound("no such user".into()))?;
    audit_action(
        &state,
        &req,
        who.actor(),
        "session.force_logout",
        format!("user:{id}"),
        serde_json::json!({ "sessions_ended": ended }),
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}
