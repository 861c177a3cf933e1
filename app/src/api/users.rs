//! User administration (Admins only): create, change role, groups and MFA requirement, disable,
//! delete, reset second factors, end sessions. Every change is audited with what changed.
//!
//! The rules (the last enabled Admin is kept; disabling, demoting, a new password and an MFA
//! reset end the user's sessions at once) live in [`crate::auth::users`]; these handlers parse,
//! call it and answer.

use crate::api::AppError;
use crate::audit::Requester;
use crate::auth::access::Caller;
use crate::auth::users;
use crate::db::transaction;
use crate::http::extract::Json;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use shared::fleet::{NewUser, UserUpdate};

/// `GET /api/v1/users`.
pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let now = state.clock.now();
    let all = transaction::run(&state.db, move |c| users::infos(c, None, now)).await?;
    Ok(HttpResponse::Ok().json(all))
}

/// `POST /api/v1/users`.
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    body: Json<NewUser>,
) -> Result<HttpResponse, AppError> {
    let created = users::create(&state, &Requester::of(&who, &req), body.into_inner()).await?;
    Ok(HttpResponse::Created().json(created))
}

/// `PATCH /api/v1/users/{user_id}`.
pub async fn update(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    path: web::Path<i64>,
    body: Json<UserUpdate>,
) -> Result<HttpResponse, AppError> {
    let me = who.identity.user_id;
    let user = users::update(
        &state,
        &Requester::of(&who, &req),
        me,
        path.into_inner(),
        body.into_inner(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(user))
}

/// `DELETE /api/v1/users/{user_id}`.
pub async fn delete(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let me = who.identity.user_id;
    users::delete(&state, &Requester::of(&who, &req), me, path.into_inner()).await?;
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
    users::reset_mfa(&state, &Requester::of(&who, &req), path.into_inner()).await?;
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
    users::force_logout(&state, &Requester::of(&who, &req), path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}
