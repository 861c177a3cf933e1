//! `GET /api/v1/audit` (Admins): the audit log, filtered and paged, with the chain's state.

use crate::error::AppError;
use crate::state::AppState;
use actix_web::{web, HttpResponse};

/// `GET /api/v1/audit?actor=&action=&host=&since=&until=&page=&per_page=`.
pub async fn list(
    state: web::Data<AppState>,
    query: web::Query<shared::audit::AuditQuery>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(crate::audit::page(&state, query.into_inner()).await?))
}
