//! The OpenAPI 3.1 document of the manager's JSON API, generated from the endpoint declarations
//! in `shared::api` (the same ones the route table and the UI client use) with the JSON Schemas of
//! their types. `patch-manager openapi` prints it; `GET /api/v1/openapi.json` serves it.

use actix_web::HttpResponse;
use serde_json::Value;
use shared::openapi::Document;
use std::sync::OnceLock;

/// The document (built once).
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = Document::new(
            "Linux Patch Manager — patch-manager",
            env!("CARGO_PKG_VERSION"),
        )
        .description(
            "The manager's JSON API. Browsers authenticate with HttpOnly cookies and send the \
                 CSRF token in X-CSRF-Token on changes; programs use `Authorization: Bearer` with \
                 the access token from /api/v1/auth/login (client: api). Every failure is an error \
                 envelope with a stable code.",
        )
        .error_description(401, "Sign-in required, or the credentials were refused.")
        .error_description(403, "Not allowed: role, CSRF, or the source address.")
        .error_description(404, "No such resource, or not visible to the caller.")
        .error_description(
            429,
            "Too many attempts; details.retry_after_secs says how long to wait.",
        );
        shared::api::describe(&mut doc);
        doc.to_json()
    })
}

/// `GET /api/v1/openapi.json`.
pub async fn serve() -> HttpResponse {
    HttpResponse::Ok().json(document())
}
