//! CIDR discovery (Admins): start, follow, cancel, adopt. See [`crate::fleet::discovery`].

use crate::api::AppError;
use crate::audit::Requester;
use crate::auth::access::Caller;
use crate::fleet::discovery;
use crate::http::extract::Json;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use shared::fleet::{AdoptRequest, DiscoveryRequest};

/// `POST /api/v1/discovery`.
pub async fn start(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    body: Json<DiscoveryRequest>,
) -> Result<HttpResponse, AppError> {
    let by = Requester::of(&who, &req);
    let run = discovery::start(&state, &by, body.into_inner()).await?;
    Ok(HttpResponse::Accepted().json(run))
}

/// `GET /api/v1/discovery`.
pub async fn list(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(discovery::list(&state))
}

/// `GET /api/v1/discovery/{run_id}`.
pub async fn get(
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(discovery::get(&state, path.into_inner())?))
}

/// `POST /api/v1/discovery/{run_id}/cancel`.
pub async fn cancel(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let by = Requester::of(&who, &req);
    Ok(HttpResponse::Ok().json(discovery::cancel(&state, &by, path.into_inner()).await?))
}

/// `POST /api/v1/discovery/{run_id}/adopt`.
pub async fn adopt(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    path: web::Path<i64>,
    body: Json<AdoptRequest>,
) -> Result<HttpResponse, AppError> {
    let by = Requester::of(&who, &req);
    let result = discovery::adopt(&state, &by, path.into_inner(), body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(result))
}
