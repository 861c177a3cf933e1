//! The public roots, for browsers and auditors; keys are never served.
//!
//! - `GET /api/v1/ca/root.crt`: the web CA's root, which browsers are told to trust for the web
//!   UI (it signs nothing else).
//! - `GET /api/v1/ca/fleet.crt`: the fleet CA's root, which agents trust for the manager's client
//!   certificate and which signs agents' certificates; for checking them, never for a browser.
//! - `GET /api/v1/ca/crl`: the fleet CA's CRL in force, to bring back by hand an agent whose CRL
//!   expired while it was unreachable.

use crate::audit::Requester;
use crate::error::AppError;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};

/// The web CA's root as PEM, with its SHA-256 fingerprint in a header for out-of-band checks.
pub async fn root_certificate(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, AppError> {
    let ca = state.pki.web_ca.clone();
    download(&state, &req, &ca, "patch-manager-web-root-ca.crt").await
}

/// The fleet CA's root as PEM, with its SHA-256 fingerprint in a header.
pub async fn fleet_certificate(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, AppError> {
    let ca = state.pki.ca.clone();
    download(&state, &req, &ca, "patch-manager-fleet-ca.crt").await
}

/// The CRL in force as PEM (not audited: it is the same public document for everyone, and
/// costs one indexed read).
pub async fn current_crl(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let crl = crate::pki::crl::current(&state).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/pkix-crl")
        .insert_header((
            "content-disposition",
            "attachment; filename=\"patch-manager-fleet.crl\"",
        ))
        .insert_header(("x-crl-number", crl.number.to_string()))
        .body(crl.pem))
}

/// Each download is audited, so downloads are limited per source
/// ([`crate::http::rate::public_write`]).
async fn download(
    state: &AppState,
    req: &HttpRequest,
    ca: &crate::pki::Ca,
    file_name: &str,
) -> Result<HttpResponse, AppError> {
    let source = crate::http::client::client_ip(req);
    crate::http::rate::public_write(state, source)?;
    let entry = Requester::named("anonymous", source)
        .success("ca.downloaded")
        .target(format!("certificate:{}", ca.fingerprint()));
    state.audit.note(entry).await;
    Ok(HttpResponse::Ok()
        .content_type("application/x-pem-file")
        .insert_header((
            "content-disposition",
            format!("attachment; filename=\"{file_name}\""),
        ))
        .insert_header(("x-certificate-sha256", ca.fingerprint().to_owned()))
        .body(ca.cert_pem().to_owned()))
}
