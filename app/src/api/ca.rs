//! `GET /api/v1/ca/root.crt`: the root CA certificate (public), so operators and browsers can trust
//! the fleet's certificates. The key is never served.

use crate::audit::Requester;
use crate::error::AppError;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};

/// The root certificate as PEM, with its SHA-256 fingerprint in a header for out-of-band checks.
/// Each download is audited, so downloads are limited per source
/// ([`crate::http::rate::public_write`]).
pub async fn root_certificate(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, AppError> {
    let source = crate::http::client::client_ip(&req);
    crate::http::rate::public_write(&state, source)?;
    let ca = &state.pki.ca;
    let entry = Requester::named("anonymous", source)
        .success("ca.downloaded")
        .target(format!("certificate:{}", ca.fingerprint()));
    state.audit.note(entry).await;
    Ok(HttpResponse::Ok()
        .content_type("application/x-pem-file")
        .insert_header((
            "content-disposition",
            "attachment; filename=\"patch-manager-root-ca.crt\"",
        ))
        .insert_header(("x-certificate-sha256", ca.fingerprint().to_owned()))
        .body(ca.cert_pem().to_owned()))
}
