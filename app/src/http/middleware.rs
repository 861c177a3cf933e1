//! Request-wide plumbing, applied once to every route: a request id, its log span, the JSON
//! envelope for failures that did not come from our handlers, security headers, and the draining
//! of a request body that a refusal left unread.
//!
//! Why drain: a request refused before its body was read (a 415 for `text/plain`, a 401 from the
//! gate) would otherwise drop the body's stream while the client is still sending it. Over HTTP/2
//! that resets the stream, and a client that has not yet read the answer sees a framing error
//! instead of the refusal. Reading the rest of the body (bounded by the body limit and
//! [`DRAIN_TIMEOUT`]) before answering lets every refusal arrive.
//!
//! The request id (a ULID) is generated here, never taken from the client, so log lines cannot be
//! forged by a caller. It is echoed in `X-Request-Id` and made available to
//! [`crate::error::AppError`] through a task-local while the request is being handled.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{Error, HttpMessage, HttpResponse};
use futures_util::{Stream, StreamExt};
use shared::vocab::ErrorCode;
use shared::ErrorEnvelope;
use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Longest wait for the unread rest of a refused request's body.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes read from a refused request's body when no application state names the limit.
const DEFAULT_DRAIN_LIMIT: usize = 1 << 20;

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
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let id = ulid::Ulid::new().to_string();
    let state = req.app_data::<actix_web::web::Data<crate::state::AppState>>();
    let drain_limit = state.map_or(DEFAULT_DRAIN_LIMIT, |s| s.config.server.body_limit_bytes);
    let https = state.is_some_and(|s| s.config.server.tls != crate::config::TlsMode::Off);
    let body = SharedPayload(Rc::new(RefCell::new(req.take_payload())));
    req.set_payload(Payload::Stream {
        payload: Box::pin(body.clone()),
    });
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
        body.drain(drain_limit).await;
        res = envelope_bare_error(res, &id);
    }
    let api = res.request().path().starts_with("/api/");
    let headers = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id) {
        headers.insert(HeaderName::from_static(REQUEST_ID_HEADER), v);
    }
    set_security_headers(headers, https);
    // API answers carry sessions, tokens and fleet data: never kept by a browser or a proxy.
    if api && !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    let status = res.status().as_u16();
    let elapsed = started.elapsed();
    if let Some(state) = res
        .request()
        .app_data::<actix_web::web::Data<crate::state::AppState>>()
    {
        let route = res.request().match_pattern();
        state.metrics.http.observe(
            res.request().method().as_str(),
            route.as_deref().unwrap_or("unmatched"),
            status,
            elapsed,
        );
    }
    let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
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
        StatusCode::NOT_FOUND => (ErrorCode::NotFound, "no such resource"),
        StatusCode::METHOD_NOT_ALLOWED => (
            ErrorCode::MethodNotAllowed,
            "method not allowed on this resource",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (ErrorCode::PayloadTooLarge, "request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            (ErrorCode::UnsupportedMediaType, "unsupported content type")
        }
        StatusCode::BAD_REQUEST => (ErrorCode::BadRequest, "the request could not be understood"),
        StatusCode::FORBIDDEN => (ErrorCode::Forbidden, "access denied"),
        StatusCode::UNAUTHORIZED => (ErrorCode::Unauthorized, "authentication required"),
        s if s.is_server_error() => (ErrorCode::InternalError, "an internal error occurred"),
        _ => (ErrorCode::RequestFailed, "the request failed"),
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

/// Headers every answer carries. The Content-Security-Policy ([`shared::csp`]) is the page's own
/// when a page set one (with its nonce for the hydration loader), else the one without a nonce:
/// no inline script runs either way. HSTS when the manager serves HTTPS itself.
fn set_security_headers(headers: &mut actix_web::http::header::HeaderMap, https: bool) {
    const HEADERS: [(&str, &str); 4] = [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-opener-policy", "same-origin"),
    ];
    for (name, value) in HEADERS {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        if let Ok(v) = HeaderValue::from_str(&shared::csp::policy(None)) {
            headers.insert(header::CONTENT_SECURITY_POLICY, v);
        }
    }
    if https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
}

/// The request body, shared between the handler (which may read it) and this middleware (which
/// reads what a refusal left unread). Requests live on one worker thread, so `Rc` is enough.
#[derive(Clone)]
struct SharedPayload(Rc<RefCell<Payload>>);

impl Stream for SharedPayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.0.try_borrow_mut() {
            Ok(mut payload) => Pin::new(&mut *payload).poll_next(cx),
            // Never polled from two places at once; if it were, end the stream rather than panic.
            Err(_) => Poll::Ready(None),
        }
    }
}

impl SharedPayload {
    /// Reads and discards what is left of the body, at most `limit` bytes and [`DRAIN_TIMEOUT`].
    async fn drain(mut self, limit: usize) {
        let read = async {
            let mut seen = 0_usize;
            while let Some(Ok(chunk)) = self.next().await {
                seen = seen.saturating_add(chunk.len());
                if seen > limit {
                    break;
                }
            }
        };
        // Past the bound the client gets its answer with the stream reset; nothing else to do.
        drop(tokio::time::timeout(DRAIN_TIMEOUT, read).await);
    }
}
