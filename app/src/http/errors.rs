//! The one mapping from [`AppError`] to an HTTP answer: status, the JSON envelope with the
//! request id, `Retry-After`; and from actix's extractor failures (body, query, path) to
//! [`AppError`]. Internal causes are logged here and never sent.

use crate::db::DbError;
use crate::error::AppError;
use crate::http::middleware::current_request_id;
use actix_web::error::{JsonPayloadError, PathError, PayloadError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use shared::ErrorEnvelope;

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
            Self::Database(DbError::UnreadableSetting { .. }) => StatusCode::INTERNAL_SERVER_ERROR,
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
            Self::Database(DbError::UnreadableSetting { key, reason }) => {
                serde_json::json!({ "key": key, "reason": reason })
            }
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
                code: shared::vocab::ErrorCode::InvalidJson,
                message: format!("request body is not valid for this endpoint: {e}"),
                details: serde_json::json!({ "line": e.line(), "column": e.column() }),
            },
            other => Self::BadRequest {
                code: shared::vocab::ErrorCode::InvalidBody,
                message: format!("cannot read the request body: {other}"),
                details: serde_json::Value::Null,
            },
        }
    }

    /// Maps a query-string extractor failure.
    pub fn from_query(err: &QueryPayloadError) -> Self {
        Self::BadRequest {
            code: shared::vocab::ErrorCode::InvalidQuery,
            message: format!("invalid query string: {err}"),
            details: serde_json::Value::Null,
        }
    }

    /// Maps a path extractor failure.
    pub fn from_path(err: &PathError) -> Self {
        Self::BadRequest {
            code: shared::vocab::ErrorCode::InvalidPath,
            message: format!("invalid path parameter: {err}"),
            details: serde_json::Value::Null,
        }
    }
}
