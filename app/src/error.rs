//! The manager's error type: what a request or a service can fail with.
//!
//! Every failure a client sees is an [`shared::ErrorEnvelope`] with a stable `code`; the mapping
//! to statuses and envelopes lives at the HTTP edge ([`crate::http::errors`]). Internal causes
//! (database text, I/O errors) are logged with the request id and never sent.

use crate::db::DbError;

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
            Self::Database(DbError::UnreadableSetting { .. }) => "setting_unreadable",
            Self::Database(_) => "database_unavailable",
            Self::Internal(_) => "internal_error",
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
