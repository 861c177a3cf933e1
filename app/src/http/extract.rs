//! The JSON body extractor of the API. Like actix's `web::Json`, it checks the content type and
//! the body limit; unlike it, a body that does not fit the endpoint's type is refused naming the
//! offending field (`details.field`, e.g. `role` for `"role": "root"`, `group_ids[0]` for a
//! string where an id belongs), so clients and the UI can put the message next to the field.

use crate::error::AppError;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

/// The largest body the API accepts, set once by [`crate::api::configure`].
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Body limit when no [`BodyLimit`] was configured.
const DEFAULT_LIMIT: usize = 64 * 1024;

/// A JSON request body of type `T`.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    /// The body.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req.app_data::<BodyLimit>().map_or(DEFAULT_LIMIT, |l| l.0);
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase())
            .is_some_and(|m| m == "application/json" || m.ends_with("+json"));
        let mut payload = payload.take();
        Box::pin(async move {
            if !is_json {
                return Err(AppError::UnsupportedMediaType.into());
            }
            let mut body = Vec::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| AppError::BadRequest {
                    code: shared::vocab::ErrorCode::InvalidBody,
                    message: format!("cannot read the request body: {e}"),
                    details: serde_json::Value::Null,
                })?;
                if body.len() + chunk.len() > limit {
                    return Err(AppError::PayloadTooLarge { limit }.into());
                }
                body.extend_from_slice(&chunk);
            }
            parse(&body).map(Json).map_err(Into::into)
        })
    }
}

/// Parses `body` as `T`; a failure names the field it concerns, when there is one.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, AppError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(de).map_err(refusal)?;
    Ok(value)
}

fn refusal(e: serde_path_to_error::Error<serde_json::Error>) -> AppError {
    let path = e.path().to_string();
    let inner = e.inner();
    let (line, column) = (inner.line(), inner.column());
    let mut details = serde_json::json!({ "line": line, "column": column });
    let message = if path.is_empty() || path == "." {
        format!("request body is not valid for this endpoint: {inner}")
    } else {
        details["field"] = serde_json::Value::String(path.clone());
        format!("{path}: {inner}")
    };
    AppError::BadRequest {
        code: shared::vocab::ErrorCode::InvalidJson,
        message,
        details,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Probe {
        role: shared::vocab::Role,
        ids: Vec<i64>,
    }

    fn field(body: &str) -> Option<String> {
        match parse::<Probe>(body.as_bytes()) {
            Err(AppError::BadRequest { details, .. }) => {
                details["field"].as_str().map(str::to_owned)
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn refusals_name_the_field() {
        assert_eq!(
            field(r#"{"role":"root","ids":[]}"#).as_deref(),
            Some("role")
        );
        assert_eq!(
            field(r#"{"role":"admin","ids":[1,"x"]}"#).as_deref(),
            Some("ids[1]")
        );
        assert_eq!(
            field("\"nope\""),
            None,
            "a body of the wrong shape names no field"
        );
        assert!(parse::<Probe>(br#"{"role":"operator","ids":[3]}"#).is_ok());
    }
}
