//! Patch jobs: create, list, follow, cancel, roll back. See [`crate::deploy`].

use crate::api::AppError;
use crate::audit::Requester;
use crate::auth::access::Caller;
use crate::deploy;
use crate::http::extract::Json;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use shared::jobs::{JobRollback, NewJob};

/// `GET /api/v1/jobs`.
pub async fn list(state: web::Data<AppState>, who: Caller) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(deploy::list(&state, who.scope).await?))
}

/// `POST /api/v1/jobs`.
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    body: Json<NewJob>,
) -> Result<HttpResponse, AppError> {
    let by = Requester::of(&who, &req);
    let job = deploy::create(&state, who.scope, &by, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(job))
}

/// `GET /api/v1/jobs/{job_id}`.
pub async fn get(
    state: web::Data<AppState>,
    who: Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(deploy::detail(&state, who.scope, path.into_inner()).await?))
}

/// `POST /api/v1/jobs/{job_id}/cancel`.
pub async fn cancel(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let by = Requester::of(&who, &req);
    let job = deploy::cancel(&state, who.scope.clone(), &by, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(job))
}

/// `POST /api/v1/jobs/{job_id}/rollback`.
pub async fn rollback(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    path: web::Path<i64>,
    body: Json<JobRollback>,
) -> Result<HttpResponse, AppError> {
    let by = Requester::of(&who, &req);
    let job = deploy::rollback(
        &state,
        who.scope.clone(),
        &by,
        path.into_inner(),
        body.into_inner(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(job))
}
