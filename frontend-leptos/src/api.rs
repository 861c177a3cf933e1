//! The browser's client of the manager's JSON API. Every page reads and writes through here, so
//! the API's access rules apply to the UI exactly as to any other client.
//!
//! Browsers hold their tokens only in `HttpOnly` cookies; this module adds the CSRF header (the
//! readable `lpm_csrf` cookie repeated) to every mutation, and when the access token has expired
//! it refreshes the session once and repeats the request.

use serde::de::DeserializeOwned;
use shared::api::{Endpoint, Method, NoBody};
use shared::ErrorEnvelope;

/// A failed API call, ready to show. Serializable: a page rendered on the server sends the
/// outcome of its reads to the browser with it, failures included.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApiError {
    /// HTTP status (0: the request did not reach the manager).
    pub status: u16,
    /// Stable error code from the envelope.
    pub code: String,
    /// Message for the user: a sentence, capitalised, with a full stop.
    pub message: String,
    /// The request field the refusal concerns (`details.field`), so the page can put the message
    /// beside it.
    pub field: Option<String>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl ApiError {
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    fn network(e: impl std::fmt::Display) -> Self {
        Self::new(
            0,
            "network",
            format!("The manager could not be reached ({e}). Check the connection and try again."),
        )
    }

    /// An error the page itself found (a value it cannot send), about `field` if given.
    pub fn local(message: impl Into<String>, field: Option<&str>) -> Self {
        Self {
            field: field.map(str::to_owned),
            ..Self::new(0, "invalid_input", message)
        }
    }

    fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
            field: None,
        }
    }

    /// The session is missing or expired (a refresh is worth trying).
    pub fn is_unauthorized(&self) -> bool {
        self.status == 401
    }
}

/// Turns a server message into a sentence for the page: no Markdown backticks, a capital first
/// letter and a full stop; a refusal that says when to come back says it in words.
pub fn tidy(message: &str, retry_after_secs: Option<i64>) -> String {
    let mut text: String = message.replace('`', "\u{201c}");
    // Backticks come in pairs: the first of each pair opens a quote, the second closes it.
    let mut open = true;
    text = text
        .chars()
        .map(|c| {
            if c == '\u{201c}' {
                let q = if open { '\u{201c}' } else { '\u{201d}' };
                open = !open;
                q
            } else {
                c
            }
        })
        .collect();
    let mut text = text.trim().to_owned();
    if let Some(first) = text.chars().next() {
        if first.is_lowercase() {
            text = first.to_uppercase().chain(text.chars().skip(1)).collect();
        }
    }
    if let Some(secs) = retry_after_secs.filter(|s| *s > 0) {
        let later = [
            "; try again later",
            ", try again later",
            " try again later",
            "try again later",
        ];
        for l in later {
            if let Some(i) = text.find(l) {
                text.truncate(i);
                break;
            }
        }
        let text_end = text.trim_end_matches(['.', ' ']).len();
        text.truncate(text_end);
        text.push_str(&format!(". Try again in {}.", wait_words(secs)));
        return text;
    }
    if !text.is_empty() && !text.ends_with(['.', '!', '?', ')', ':']) {
        text.push('.');
    }
    text
}

/// `45` → "45 seconds", `60` → "1 minute", `900` → "15 minutes", `5400` → "1 h 30 min".
pub fn wait_words(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s} second{}", if s == 1 { "" } else { "s" }),
        s if s < 3600 => {
            let m = (s + 59) / 60;
            format!("{m} minute{}", if m == 1 { "" } else { "s" })
        }
        s => {
            let (h, m) = (s / 3600, (s % 3600 + 59) / 60);
            if m == 0 {
                format!("{h} h")
            } else {
                format!("{h} h {m} min")
            }
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
    ApiError::new(0, "encode", tidy(&e.to_string(), None))
}

fn decode<T: DeserializeOwned>(text: String) -> Result<T, ApiError> {
    // An empty body (204) decodes as JSON null for unit-like answers.
    let text = if text.trim().is_empty() {
        "null".to_owned()
    } else {
        text
    };
    serde_json::from_str(&text).map_err(|e| {
        ApiError::new(
            200,
            "decode",
            format!("Unexpected answer from the manager ({e})."),
        )
    })
}

#[cfg_attr(not(any(feature = "hydrate", feature = "ssr")), allow(dead_code))]
fn envelope_error(status: u16, text: &str) -> ApiError {
    match serde_json::from_str::<ErrorEnvelope>(text) {
        Ok(env) => {
            let details = &env.error.details;
            ApiError {
                status,
                code: env.error.code,
                message: tidy(&env.error.message, details["retry_after_secs"].as_i64()),
                field: details["field"].as_str().map(str::to_owned),
            }
        }
        Err(_) => ApiError::new(
            status,
            "http",
            format!("The manager answered with HTTP status {status}."),
        ),
    }
}

/// Sends a request; on 401 refreshes the session once and repeats it. Answers the body text of a
/// 2xx answer.
#[cfg(feature = "hydrate")]
async fn send(method: Method, path: &str, body: Option<String>) -> Result<String, ApiError> {
    let generation = REFRESH.with(|r| r.generation.get());
    let (status, text) = once(method, path, body.clone()).await?;
    if status == 401 && refreshable(path) && refresh_once(generation).await {
        let (status, text) = once(method, path, body).await?;
        return finish(status, text);
    }
    finish(status, text)
}

/// Whether a 401 from `path` means an expired access token (worth one refresh and a retry), rather
/// than a refused sign-in step: every path but the sign-in steps, the refresh itself and setup.
pub fn refreshable(path: &str) -> bool {
    const SIGN_IN: [&str; 4] = [
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/oidc/",
        "/api/v1/setup",
    ];
    !SIGN_IN.iter().any(|p| path.starts_with(p))
}

/// Refreshes the session now (the page found it expired on arrival); several callers at once share
/// one refresh. Answers whether the session is usable.
#[cfg(feature = "hydrate")]
pub async fn refresh_session() -> bool {
    let generation = REFRESH.with(|r| r.generation.get());
    refresh_once(generation).await
}

/// On the server there is no refresh token to use (its cookie is scoped to the auth paths).
#[cfg(not(feature = "hydrate"))]
pub async fn refresh_session() -> bool {
    false
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

/// Whether this browser holds a session's readable CSRF cookie: its access token may have
/// expired, but a refresh is worth trying before sending anyone to Sign in.
pub fn has_session_cookie() -> bool {
    #[cfg(feature = "hydrate")]
    {
        csrf_token().is_some()
    }
    #[cfg(all(feature = "ssr", not(feature = "hydrate")))]
    {
        leptos::prelude::use_context::<leptos_actix::Request>().is_some_and(|r| {
            r.headers()
                .get_all(actix_web::http::header::COOKIE)
                .filter_map(|v| v.to_str().ok())
                .any(|jar| cookie_value(jar, "lpm_csrf").is_some())
        })
    }
    #[cfg(not(any(feature = "hydrate", feature = "ssr")))]
    {
        false
    }
}

/// The non-empty value of cookie `name` in a `Cookie` header (or `document.cookie`).
pub fn cookie_value<'a>(jar: &'a str, name: &str) -> Option<&'a str> {
    jar.split(';').find_map(|c| {
        c.trim()
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
            .filter(|v| !v.is_empty())
    })
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
    cookie_value(&cookies, "lpm_csrf").map(str::to_owned)
}

/// On the server, a page's reads go to the manager's own API in-process ([`ServerApi`]) with the
/// cookies of the request being rendered, so the same access rules apply as in the browser and
/// the page arrives with its data. Only reads: anything else waits for the browser.
#[cfg(all(feature = "ssr", not(feature = "hydrate")))]
async fn send(method: Method, path: &str, _body: Option<String>) -> Result<String, ApiError> {
    use leptos::prelude::use_context;
    let (Some(api), Some(req)) = (
        use_context::<ServerApi>(),
        use_context::<leptos_actix::Request>(),
    ) else {
        return Err(ApiError::new(0, "server_side", "Loads in the browser."));
    };
    if method != Method::Get {
        return Err(ApiError::new(0, "server_side", "Runs in the browser."));
    }
    let joined = |name: &str, sep: &str| {
        let fields: Vec<&str> = req
            .headers()
            .get_all(name)
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!fields.is_empty()).then(|| fields.join(sep))
    };
    let call = ServerCall {
        path: path.to_owned(),
        cookie: joined("cookie", "; "),
        peer: req.peer_addr(),
        forwarded_for: joined("x-forwarded-for", ","),
    };
    let (status, text) = (api.0)(call).await;
    if (200..300).contains(&status) {
        Ok(text)
    } else {
        Err(envelope_error(status, &text))
    }
}

/// Without either side (unit tests of the crate alone) nothing can be called.
#[cfg(not(any(feature = "hydrate", feature = "ssr")))]
async fn send(_method: Method, _path: &str, _body: Option<String>) -> Result<String, ApiError> {
    Err(ApiError::new(0, "server_side", "Loads in the browser."))
}

/// A read the server-side renderer asks of the manager's API.
#[cfg(feature = "ssr")]
#[derive(Debug, Clone)]
pub struct ServerCall {
    /// Path and query string.
    pub path: String,
    /// The `Cookie` headers of the page request, joined (HTTP/2 may send the cookies as
    /// several header fields).
    pub cookie: Option<String>,
    /// The socket peer of the page request.
    pub peer: Option<std::net::SocketAddr>,
    /// The page request's `X-Forwarded-For` fields, joined: with the same peer, the API resolves
    /// the same client address (trusted proxies only) for its throttles and records.
    pub forwarded_for: Option<String>,
}

/// How the server-side renderer reaches the manager's API without a network hop: the manager
/// provides it (as Leptos context) for every page it renders. Answers status and body.
#[cfg(feature = "ssr")]
#[derive(Clone)]
#[allow(clippy::type_complexity)]
pub struct ServerApi(
    pub  std::sync::Arc<
        dyn Fn(ServerCall) -> std::pin::Pin<Box<dyn std::future::Future<Output = (u16, String)>>>
            + Send
            + Sync,
    >,
);

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
            (409, "conflict", "User bob exists.")
        );
        let e = envelope_error(
            400,
            r#"{"error":{"code":"validation_failed","message":"`not-an-ip` is not an address","details":{"field":"entries[0]"},"request_id":null}}"#,
        );
        assert_eq!(e.message, "\u{201c}not-an-ip\u{201d} is not an address.");
        assert_eq!(e.field.as_deref(), Some("entries[0]"));
        let e = envelope_error(
            429,
            r#"{"error":{"code":"too_many_requests","message":"too many failed sign-ins; try again later","details":{"retry_after_secs":840},"request_id":null}}"#,
        );
        assert_eq!(
            e.message,
            "Too many failed sign-ins. Try again in 14 minutes."
        );
        let e = envelope_error(502, "<html>");
        assert_eq!(e.code, "http");
        assert_eq!(decode::<()>(String::new()), Ok(()));
    }

    #[test]
    fn waits_are_in_words() {
        assert_eq!(wait_words(1), "1 second");
        assert_eq!(wait_words(45), "45 seconds");
        assert_eq!(wait_words(61), "2 minutes");
        assert_eq!(wait_words(60), "1 minute");
        assert_eq!(wait_words(5400), "1 h 30 min");
        assert_eq!(wait_words(7200), "2 h");
    }

    #[test]
    fn only_sign_in_steps_are_not_refreshed() {
        assert!(refreshable("/api/v1/auth/me"));
        assert!(refreshable("/api/v1/auth/mfa"));
        assert!(refreshable("/api/v1/hosts?page=2"));
        assert!(!refreshable("/api/v1/auth/login/mfa"));
        assert!(!refreshable("/api/v1/auth/refresh"));
        assert!(!refreshable("/api/v1/setup"));
        assert_eq!(tidy("done", None), "Done.");
        assert_eq!(tidy("Saved!", None), "Saved!");
    }
}
