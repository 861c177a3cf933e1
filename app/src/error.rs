//! The manager's error type: what a request or a service can fail with.
//!
//! Every failure a client sees is an [`shared::ErrorEnvelope`] with a stable `code`; the mapping
//! to statuses and envelopes lives at the HTTP edge ([`crate::http::errors`]). Internal causes
//! (database text, I/O errors) are logged with the request id and never sent.

use crate::db::DbError;
use shared::vocab::ErrorCode;

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
        code: ErrorCode,
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
            code: shared::vocab::ErrorCode::ValidationFailed,
            message: message.into(),
            details: serde_json::json!({ "field": field }),
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::BadRequest { code, .. } => *code,
            Self::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            Self::UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
            Self::Unauthorized(_) => ErrorCode::Unauthorized,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::AddressNotAllowed => ErrorCode::AddressNotAllowed,
            Self::TooManyRequests { .. } => ErrorCode::TooManyRequests,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::Gone(_) => ErrorCode::Gone,
            Self::Agent(_) => ErrorCode::AgentError,
            Self::IdentityProvider(_) => ErrorCode::IdentityProviderError,
            Self::Database(DbError::UnreadableSetting { .. }) => ErrorCode::SettingUnreadable,
            Self::Database(_) => ErrorCode::DatabaseUnavailable,
            Self::Internal(_) => ErrorCode::InternalError,
        }
    }

    /// Message safe to show to the client.
    pub fn public_message(&self) -> String {
        match self {
            Self::Database(DbError::UnreadableSetting { key, .. }) => format!(
                "The stored setting \"{key}\" cannot be read; an Admin must save it again. \
                 Nothing was changed."
            ),
            Self::Database(_) => "the database is unavailable; the request was not applied".into(),
            Self::Internal(_) => "an internal error occurred".into(),
            other => other.to_string(),
        }
    }
}
