//! `POST /api/v1/enroll`: a new host presents its one-time token and a CSR; it gets its
//! certificate, the CA certificate and the current CRL, and appears in the manager. The rules are
//! in [`crate::pki::enrollment::enroll`].

use crate::api::AppError;
use crate::http::extract::Json;
use crate::pki::enrollment;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use shared::enroll::EnrollRequest;

/// Handles an enrollment.
pub async fn enroll(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Json<EnrollRequest>,
) -> Result<HttpResponse, AppError> {
    let source = crate::http::client::client_ip(&req);
    // Every attempt is audited (refusals too): limited per source.
    crate::http::rate::public_write(&state, source)?;
    let answer = enrollment::enroll(&state, body.into_inner(), source).await?;
    Ok(HttpResponse::Created().json(answer))
}
