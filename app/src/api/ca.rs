//! `GET /api/v1/ca/root.crt`: the root CA certificate (public), so operators and browsers can trust
//! the fleet's certificates. The key is never served.

use crate::db::audit::{NewAuditEntry, Outcome};
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};

/// The root certificate as PEM, with its SHA-256 fingerprint in a header for out-of-band checks.
/// Each download is audited.
pub async fn root_certificate(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let entry = NewAuditEntry {
        actor: "anonymous".into(),
        action: "ca.downloaded".into(),
        target: Some(format!("certificate:{}", state.pki.ca.fingerprint())),
        outcome: Outcome::Success,
        details: serde_json::Value::Null,
        source_ip: req.peer_addr().map(|a| a.ip().to_string()),
        request_id: None,
    };
    state.audit.note(entry).await;
    HttpResponse::Ok()
        .content_type("application/x-pem-file")
        .insert_header((
            "content-disposition",
            "attachment; filename=\"patch-manager-root-ca.crt\"",
        ))
        .insert_header((
            "x-certificate-sha256",
            state.pki.ca.fingerprint().to_owned(),
        ))
        .body(state.pki.ca.cert_pem().to_owned())
}
