//! `GET /status/health`: liveness and database reachability for monitoring. Unauthenticated on
//! purpose (load balancers and systemd watchdogs call it); it reveals version and engine only.

use crate::state::AppState;
use actix_web::{web, HttpResponse};
use shared::status::ServiceState;

/// 200 with the report when healthy, 503 with the same report when degraded.
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let report = state.health().await;
    match report.status {
        ServiceState::Ok => HttpResponse::Ok().json(report),
        ServiceState::Degraded => HttpResponse::ServiceUnavailable().json(report),
    }
}

/// `GET /api/v1/overview`: the front page's figures, hosts and groups counted within the
/// caller's scope.
pub async fn overview(
    state: web::Data<AppState>,
    who: crate::auth::access::Caller,
) -> Result<HttpResponse, crate::api::AppError> {
    Ok(HttpResponse::Ok().json(state.overview(&who.scope).await?))
}
