//! Request-wide plumbing, applied once to every route: a request id, its log span, the JSON
//! envelope for failures that did not come from our handlers, and security headers.
//!
//! The request id (a ULID) is generated here, never taken from the client, so log lines cannot be
//! forged by a caller. It is echoed in `X-Request-Id` and made available to
//! [`crate::error::AppError`] through a task-local while the request is being handled.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse};
use shared::ErrorEnvelope;
use std::time::Instant;
use tracing::Instrument;

/// Response header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Id of the request being handled on this task, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Assigns the request id, logs the request, envelopes bare error answers and sets headers.
pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let id = ulid::Ulid::new().to_string();
    let started = Instant::now();
    let span = tracing::info_span!(
        "http",
        request_id = %id,
        method = %req.method(),
        path = %req.path(),
    );
    let outcome = REQUEST_ID
        .scope(id.clone(), next.call(req).instrument(span.clone()))
        .await;
    // Services below answer errors as responses; an `Err` here is rare and actix renders it.
    // (Holding a clone of the request to build a response ourselves is not allowed: routing
    // needs the request uniquely.)
    let mut res = outcome?.map_into_boxed_body();
    if res.status().is_client_error() || res.status().is_server_error() {
        res = envelope_bare_error(res, &id);
    }
    let headers = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id) {
        headers.insert(HeaderName::from_static(REQUEST_ID_HEADER), v);
    }
    set_security_headers(headers);
    let status = res.status().as_u16();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(status, elapsed_ms, "request failed");
        } else {
            tracing::info!(status, elapsed_ms, "request");
        }
    });
    Ok(res)
}

/// Replaces the body of an error answer that is neither JSON (ours) nor HTML (a rendered page)
/// with the JSON envelope: actix's own 404/405 answers and anything else without a body.
fn envelope_bare_error(res: ServiceResponse<BoxBody>, id: &str) -> ServiceResponse<BoxBody> {
    let content_type = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("application/json") || content_type.starts_with("text/html") {
        return res;
    }
    let status = res.status();
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such resource"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "method not allowed on this resource")
        }
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("unsupported_media_type", "unsupported content type")
        }
        StatusCode::BAD_REQUEST => ("bad_request", "the request could not be understood"),
        StatusCode::FORBIDDEN => ("forbidden", "access denied"),
        StatusCode::UNAUTHORIZED => ("unauthorized", "authentication required"),
        s if s.is_server_error() => ("internal_error", "an internal error occurred"),
        _ => ("request_failed", "the request failed"),
    };
    let body = ErrorEnvelope::new(code, message, Some(id.to_owned()));
    let (req, old) = res.into_parts();
    let mut new = HttpResponse::build(status).json(body);
    // Keep headers such as `Allow` on 405.
    for (name, value) in old.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            new.headers_mut().insert(name.clone(), value.clone());
        }
    }
    ServiceResponse::new(req, new)
}

/// Headers every answer carries. The CSP allows the inline hydration loader and WebAssembly
/// compilation, and nothing from other origins.
fn set_security_headers(headers: &mut actix_web::http::header::HeaderMap) {
    const HEADERS: [(&str, &str); 5] = [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-opener-policy", "same-origin"),
        (
            "content-security-policy",
            "default-src 'self'; script-src 'self' 'unsafe-inline' 'wasm-unsafe-eval'; \
             style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    ];
    for (name, value) in HEADERS {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
}
