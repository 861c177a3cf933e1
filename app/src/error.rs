//! The manager's error type and its mapping to HTTP answers.
//!
//! Every failure a client sees is an [`shared::ErrorEnvelope`] with a stable `code`. Internal
//! causes (database text, I/O errors) are logged with the request id and never sent.

use crate::db::DbError;
use crate::middleware::current_request_id;
use actix_web::error::{JsonPayloadError, PathError, PayloadError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use shared::ErrorEnvelope;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The resource does not exist (or the caller may not know it exists).
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed: bad JSON, wrong types, invalid values.
    #[error("{message}")]
    BadRequest {
        /// Stable code (`invalid_json`, `validation_failed`, …).
        code: &'static str,
        /// Human-readable explanation.
        message: String,
        /// Structured details (offending field…).
        details: serde_json::Value,
    },
    /// The body is larger than the configured limit.
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// Configured limit.
        limit: usize,
    },
    /// The body is not JSON.
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    /// Credentials (a token) missing, wrong, used or expired; the reason is audited, not sent.
    #[error("{0}")]
    Unauthorized(String),
    /// The source address is not on the manager's allow-list.
    #[error("this address may not use the manager")]
    AddressNotAllowed,
    /// Signed in but not allowed (role, CSRF).
    #[error("{0}")]
    Forbidden(String),
    /// Too many attempts; retry later.
    #[error("{message}")]
    TooManyRequests {
        /// Explanation.
        message: String,
        /// Seconds to wait.
        retry_after: i64,
    },
    /// The request conflicts with existing data.
    #[error("{0}")]
    Conflict(String),
    /// The resource existed once and is gone for good (a completed one-time step).
    #[error("{0}")]
    Gone(String),
    /// An agent could not be reached or refused the request; the message says which and why.
    #[error("{0}")]
    Agent(String),
    /// The identity provider could not be reached or gave an unusable answer.
    #[error("{0}")]
    IdentityProvider(String),
    /// The database failed; details are logged only.
    #[error("database error")]
    Database(#[from] DbError),
    /// Something else failed on our side; details are logged only.
    #[error("internal error")]
    Internal(String),
}

impl AppError {
    /// A field failed validation (`400 validation_failed`, the field named in the details).
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code: "validation_failed",
            message: message.into(),
            details: serde_json::json!({ "field": field }),
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::BadRequest { code, .. } => code,
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::AddressNotAllowed => "address_not_allowed",
            Self::TooManyRequests { .. } => "too_many_requests",
            Self::Conflict(_) => "conflict",
            Self::Gone(_) => "gone",
            Self::Agent(_) => "agent_error",
            Self::IdentityProvider(_) => "identity_provider_error",
            Self::Database(_) => "database_unavailable",
            Self::Internal(_) => "internal_error",
        }
    }

    /// Message safe to show to the client.
    fn public_message(&self) -> String {
        match self {
            Self::Database(_) => "the database is unavailable; the request was not applied".into(),
            Self::Internal(_) => "an internal error occurred".into(),
            other => other.to_string(),
        }
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::AddressNotAllowed => StatusCode::FORBIDDEN,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Gone(_) => StatusCode::GONE,
            Self::Agent(_) | Self::IdentityProvider(_) => StatusCode::BAD_GATEWAY,
            Self::Database(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let request_id = current_request_id();
        match self {
            Self::Database(e) => {
                tracing::error!(error = %e, "request failed in the database layer")
            }
            Self::Internal(e) => tracing::error!(error = %e, "request failed"),
            _ => {}
        }
        let details = match self {
            Self::BadRequest { details, .. } => details.clone(),
            Self::PayloadTooLarge { limit } => serde_json::json!({ "limit_bytes": limit }),
            Self::TooManyRequests { retry_after, .. } => {
                serde_json::json!({ "retry_after_secs": retry_after })
            }
            _ => serde_json::Value::Null,
        };
        let body = ErrorEnvelope::new(self.code(), self.public_message(), request_id)
            .with_details(details);
        let mut res = HttpResponse::build(self.status_code());
        if let Self::TooManyRequests { retry_after, .. } = self {
            res.insert_header(("retry-after", retry_after.to_string()));
        }
        res.json(body)
    }
}

impl AppError {
    /// Maps a JSON extractor failure; `limit` is the configured body limit.
    pub fn from_json(err: &JsonPayloadError, limit: usize) -> Self {
        match err {
            JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
                Self::PayloadTooLarge { limit }
            }
            JsonPayloadError::Payload(PayloadError::Overflow) => Self::PayloadTooLarge { limit },
            JsonPayloadError::ContentType => Self::UnsupportedMediaType,
            JsonPayloadError::Deserialize(e) => Self::BadRequest {
                code: "invalid_json",
                message: format!("request body is not valid for this endpoint: {e}"),
                details: serde_json::json!({ "line": e.line(), "column": e.column() }),
            },
            other => Self::BadRequest {
                code: "invalid_body",
                message: format!("cannot read the request body: {other}"),
                details: serde_json::Value::Null,
            },
        }
    }

    /// Maps a query-string extractor failure.
    pub fn from_query(err: &QueryPayloadError) -> Self {
        Self::BadRequest {
            code: "invalid_query",
            message: format!("invalid query string: {err}"),
            details: serde_json::Value::Null,
        }
    }

    /// Maps a path extractor failure.
    pub fn from_path(err: &PathError) -> Self {
        Self::BadRequest {
            code: "invalid_path",
            message: format!("invalid path parameter: {err}"),
            details: serde_json::Value::Null,
        }
    }
}
