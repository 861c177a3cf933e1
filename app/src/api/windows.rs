//! Maintenance windows: list, create, delete. See [`crate::deploy::maintenance`].

use crate::api::AppError;
use crate::audit::Requester;
use crate::auth::access::Caller;
use crate::deploy::maintenance;
use crate::http::extract::Json;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use shared::windows::NewWindow;

/// `GET /api/v1/windows`.
pub async fn list(state: web::Data<AppState>, who: Caller) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(maintenance::list(&state, who.scope).await?))
}

/// `POST /api/v1/windows`.
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    body: Json<NewWindow>,
) -> Result<HttpResponse, AppError> {
    let by = Requester::of(&who, &req);
    let window = maintenance::create(&state, who.scope, &by, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(window))
}

/// `DELETE /api/v1/windows/{window_id}`.
pub async fn delete(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let by = Requester::of(&who, &req);
    maintenance::delete(&state, who.scope, &by, path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}
