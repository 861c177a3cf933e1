//! The JSON error envelope every failing HTTP answer of the manager and the agent carries.
//!
//! `{"error":{"code":"not_found","message":"…","request_id":"01J…","details":null}}`: `code` is a
//! stable, machine-readable identifier clients can branch on; `message` is for humans; `request_id`
//! matches the `X-Request-Id` response header and the server's log lines; `details` holds structured
//! extra information (for instance which field failed validation) or `null`.

use serde::{Deserialize, Serialize};

/// The outer object of an error answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ErrorEnvelope {
    /// The error itself.
    pub error: ErrorBody,
}

/// The error inside an [`ErrorEnvelope`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// Stable, snake_case identifier of the kind of failure (`not_found`, `validation_failed`, …).
    pub code: String,
    /// Human-readable explanation; never contains internal causes such as SQL text.
    pub message: String,
    /// Identifier of the request, as sent in the `X-Request-Id` header.
    pub request_id: Option<String>,
    /// Structured details, or `null`.
    pub details: serde_json::Value,
}

impl ErrorEnvelope {
    /// Builds an envelope without details.
    pub fn new(
        code: impl Into<String>,
        message: impl Into<String>,
        request_id: Option<String>,
    ) -> Self {
        Self {
            error: ErrorBody {
                code: code.into(),
                message: message.into(),
                request_id,
                details: serde_json::Value::Null,
            },
        }
    }

    /// Attaches structured details.
    #[must_use]
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.error.details = details;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_the_documented_shape() {
        let env = ErrorEnvelope::new("not_found", "no such host", Some("01ABC".into()))
            .with_details(serde_json::json!({"host_id": 7}));
        let v = serde_json::to_value(&env).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": {"code": "not_found", "message": "no such host",
                "request_id": "01ABC", "details": {"host_id": 7}}})
        );
        let back: ErrorEnvelope = serde_json::from_value(v).unwrap();
        assert_eq!(back, env);
    }
}
