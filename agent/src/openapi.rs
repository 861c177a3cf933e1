//! The OpenAPI 3.1 document of the agent's API, generated from [`crate::api::ROUTES`] (the same
//! table the router is built from) with [`shared::openapi::Document`]: each route names its request
//! and response types, and their JSON Schemas come from those types.
//! Served at `GET /api/v1/openapi.json` and printed by `patch-agent openapi`.

use crate::api::{BODY_LIMIT, ROUTES};
use serde_json::Value;
use shared::openapi::Document;
use std::sync::LazyLock;

/// Path prefix of every route.
pub const PREFIX: &str = "/api/v1";

/// Error statuses every route may answer.
const ERRORS: &[u16] = &[400, 404, 500, 503];
/// Error statuses of routes that take a body.
const BODY_ERRORS: &[u16] = &[400, 404, 413, 500, 503];

/// Builds the document.
pub fn builder() -> Document {
    let mut doc = Document::new("patch-agent API", env!("CARGO_PKG_VERSION"))
        .description(
            "Served on port 12443 over TLS 1.3; a client certificate from the fleet CA is required.",
        )
        .error_description(400, "invalid input (name, version, JSON, query)")
        .error_description(404, "no such resource")
        .error_description(413, format!("request body larger than {BODY_LIMIT} bytes"))
        .error_description(500, "the package manager or the agent failed")
        .error_description(503, "exclusive mode: a rollback is running");
    for r in ROUTES {
        let errors = if r.request.is_some() {
            BODY_ERRORS
        } else {
            ERRORS
        };
        let op = doc
            .route(
                r.method,
                &format!("{PREFIX}{}", r.path),
                r.summary,
                r.request,
                r.response,
                errors,
            )
            .status(r.ok);
        for (name, description) in r.query {
            op.query(name, description);
        }
        // `PUT /packages/{name}` without a body moves to the candidate version.
        if r.method == "PUT" && r.path.starts_with("/packages/") {
            op.optional_body();
        }
    }
    doc
}

/// The document as JSON (built once).
pub fn document() -> Value {
    static DOCUMENT: LazyLock<Value> = LazyLock::new(|| builder().to_json());
    DOCUMENT.clone()
}
