//! The browser's client of the manager's JSON API. Every page reads and writes through here, so
//! the API's access rules apply to the UI exactly as to any other client.
//!
//! Browsers hold their tokens only in `HttpOnly` cookies; this module adds the CSRF header (the
//! readable `lpm_csrf` cookie repeated) to every mutation, and when the access token has expired
//! it refreshes the session once and repeats the request.

use serde::de::DeserializeOwned;
use shared::api::{Endpoint, Method, NoBody};
use shared::ErrorEnvelope;

/// A failed API call, ready to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status (0: the request did not reach the manager).
    pub status: u16,
    /// Stable error code from the envelope.
    pub code: String,
    /// Message for the user.
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl ApiError {
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    fn network(e: impl std::fmt::Display) -> Self {
        Self {
            status: 0,
            code: "network".into(),
            message: format!("the manager could not be reached: {e}"),
        }
    }
}

/// Calls endpoint `E` with its path parameters and request body and decodes its answer. The
/// method, path and both body types come from the endpoint's declaration in `shared::api`, so a
/// call cannot pair a path with the wrong method or answer type.
pub async fn call<E: Endpoint>(
    params: E::Params,
    body: &E::Request,
) -> Result<E::Response, ApiError> {
    let body = match serde_json::to_value(body).map_err(encode_error)? {
        serde_json::Value::Null => None,
        v => Some(v.to_string()),
    };
    decode(send(E::METHOD, &E::path(&params), body).await?)
}

/// Calls a read endpoint with `query` (`?…`, already encoded) after its path.
pub async fn call_with_query<E>(params: E::Params, query: &str) -> Result<E::Response, ApiError>
where
    E: Endpoint<Request = NoBody>,
{
    decode(send(E::METHOD, &format!("{}{query}", E::path(&params)), None).await?)
}

/// Calls an endpoint that takes neither path parameters nor a body (most reads).
pub async fn fetch<E>() -> Result<E::Response, ApiError>
where
    E: Endpoint<Params = (), Request = NoBody>,
{
    call::<E>((), &NoBody).await
}

fn encode_error(e: serde_json::Error) -> ApiError {
    ApiError {
        status: 0,
        code: "encode".into(),
        message: e.to_string(),
    }
}

fn decode<T: DeserializeOwned>(text: String) -> Result<T, ApiError> {
    // An empty body (204) decodes as JSON null for unit-like answers.
    let text = if text.trim().is_empty() {
        "null".to_owned()
    } else {
        text
    };
    serde_json::from_str(&text).map_err(|e| ApiError {
        status: 200,
        code: "decode".into(),
        message: format!("unexpected answer from the manager: {e}"),
    })
}

#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
fn envelope_error(status: u16, text: &str) -> ApiError {
    match serde_json::from_str::<ErrorEnvelope>(text) {
        Ok(env) => ApiError {
            status,
            code: env.error.code,
            message: env.error.message,
        },
        Err(_) => ApiError {
            status,
            code: "http".into(),
            message: format!("the manager answered {status}"),
        },
    }
}

/// Sends a request; on 401 refreshes the session once and repeats it. Answers the body text of a
/// 2xx answer.
#[cfg(feature = "hydrate")]
async fn send(method: Method, path: &str, body: Option<String>) -> Result<String, ApiError> {
    let generation = REFRESH.with(|r| r.generation.get());
    let (status, text) = once(method, path, body.clone()).await?;
    if status == 401
        && !path.starts_with("/api/v1/auth/")
        && !path.starts_with("/api/v1/setup")
        && refresh_once(generation).await
    {
        let (status, text) = once(method, path, body).await?;
        return finish(status, text);
    }
    finish(status, text)
}

/// One refresh at a time: a refresh token is single-use, and a second concurrent use would look
/// like a stolen token to the manager (which then ends the session). Calls that failed while a
/// refresh was running wait for it and reuse its outcome.
#[cfg(feature = "hydrate")]
struct RefreshState {
    lock: std::rc::Rc<futures_util::lock::Mutex<bool>>,
    generation: std::cell::Cell<u64>,
}

#[cfg(feature = "hydrate")]
thread_local! {
    static REFRESH: RefreshState = RefreshState {
        lock: std::rc::Rc::new(futures_util::lock::Mutex::new(false)),
        generation: std::cell::Cell::new(0),
    };
}

/// Refreshes the session unless another call did since `seen` (the generation before the failed
/// request); answers whether the session is usable.
#[cfg(feature = "hydrate")]
async fn refresh_once(seen: u64) -> bool {
    let lock = REFRESH.with(|r| r.lock.clone());
    let mut last_ok = lock.lock().await;
    if REFRESH.with(|r| r.generation.get()) != seen {
        return *last_ok;
    }
    let ok = matches!(
        once(
            Method::Post,
            <shared::api::Refresh as Endpoint>::PATH,
            Some("{}".into())
        )
        .await,
        Ok((s, _)) if (200..300).contains(&s)
    );
    *last_ok = ok;
    REFRESH.with(|r| r.generation.set(seen + 1));
    ok
}

#[cfg(feature = "hydrate")]
fn finish(status: u16, text: String) -> Result<String, ApiError> {
    if (200..300).contains(&status) {
        Ok(text)
    } else {
        Err(envelope_error(status, &text))
    }
}

#[cfg(feature = "hydrate")]
async fn once(method: Method, path: &str, body: Option<String>) -> Result<(u16, String), ApiError> {
    use gloo_net::http::{Method as M, RequestBuilder};
    let m = match method {
        Method::Get => M::GET,
        Method::Post => M::POST,
        Method::Put => M::PUT,
        Method::Patch => M::PATCH,
        Method::Delete => M::DELETE,
    };
    let mut rb = RequestBuilder::new(path)
        .method(m)
        .header("accept", "application/json");
    if method != Method::Get {
        if let Some(token) = csrf_token() {
            rb = rb.header("x-csrf-token", &token);
        }
    }
    let req = match body {
        Some(b) => rb
            .header("content-type", "application/json")
            .body(b)
            .map_err(ApiError::network)?,
        None => rb.build().map_err(ApiError::network)?,
    };
    let res = req.send().await.map_err(ApiError::network)?;
    let status = res.status();
    let text = res.text().await.map_err(ApiError::network)?;
    Ok((status, text))
}

/// The readable CSRF cookie.
#[cfg(feature = "hydrate")]
fn csrf_token() -> Option<String> {
    use wasm_bindgen::JsCast;
    let doc = web_sys::window()?.document()?;
    let cookies = doc
        .dyn_into::<web_sys::HtmlDocument>()
        .ok()?
        .cookie()
        .ok()?;
    cookies.split(';').find_map(|c| {
        c.trim()
            .strip_prefix("lpm_csrf=")
            .map(str::to_owned)
            .filter(|v| !v.is_empty())
    })
}

/// On the server nothing calls the API through HTTP: pages load their data in the browser.
#[cfg(not(feature = "hydrate"))]
async fn send(_method: Method, _path: &str, _body: Option<String>) -> Result<String, ApiError> {
    Err(ApiError {
        status: 0,
        code: "server_side".into(),
        message: "loads in the browser".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_become_messages() {
        let e = envelope_error(
            409,
            r#"{"error":{"code":"conflict","message":"user bob exists","details":null,"request_id":"x"}}"#,
        );
        assert_eq!(
            (e.status, e.code.as_str(), e.message.as_str()),
            (409, "conflict", "user bob exists")
        );
        let e = envelope_error(502, "<html>");
        assert_eq!(e.code, "http");
        assert_eq!(decode::<()>(String::new()), Ok(()));
    }
}
