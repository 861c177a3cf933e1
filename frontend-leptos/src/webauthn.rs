//! The browser's half of a WebAuthn ceremony: hands the manager's options to
//! `navigator.credentials` and returns the authenticator's answer as JSON. The conversions
//! between the JSON (base64url) and the browser's binary objects are webauthn-rs-proto's.

/// Registers a new credential (`navigator.credentials.create`).
#[cfg(feature = "hydrate")]
pub async fn create(options: serde_json::Value) -> Result<serde_json::Value, String> {
    let ccr: webauthn_rs_proto::CreationChallengeResponse =
        serde_json::from_value(options).map_err(|e| e.to_string())?;
    let opts: web_sys::CredentialCreationOptions = ccr.into();
    let cred = ask(|c| c.create_with_options(&opts)).await?;
    serde_json::to_value(webauthn_rs_proto::RegisterPublicKeyCredential::from(cred))
        .map_err(|e| e.to_string())
}

/// Signs the manager's challenge with a registered credential (`navigator.credentials.get`).
#[cfg(feature = "hydrate")]
pub async fn get(options: serde_json::Value) -> Result<serde_json::Value, String> {
    let rcr: webauthn_rs_proto::RequestChallengeResponse =
        serde_json::from_value(options).map_err(|e| e.to_string())?;
    let opts: web_sys::CredentialRequestOptions = rcr.into();
    let cred = ask(|c| c.get_with_options(&opts)).await?;
    serde_json::to_value(webauthn_rs_proto::PublicKeyCredential::from(cred))
        .map_err(|e| e.to_string())
}

/// Runs one `navigator.credentials` call and waits for the public-key credential it yields.
#[cfg(feature = "hydrate")]
async fn ask(
    call: impl FnOnce(
        &web_sys::CredentialsContainer,
    ) -> Result<web_sys::js_sys::Promise, wasm_bindgen::JsValue>,
) -> Result<web_sys::PublicKeyCredential, String> {
    use wasm_bindgen::JsCast;
    let container = web_sys::window()
        .ok_or("no window")?
        .navigator()
        .credentials();
    let promise = call(&container).map_err(js_error)?;
    wasm_bindgen_futures::JsFuture::from(promise)
        .await
        .map_err(js_error)?
        .dyn_into::<web_sys::PublicKeyCredential>()
        .map_err(|_| "the browser did not return a public-key credential".to_owned())
}

#[cfg(feature = "hydrate")]
fn js_error(e: wasm_bindgen::JsValue) -> String {
    // DOMException: "NotAllowedError: The operation either timed out or was not allowed."
    let text = js_sys_string(&e);
    if text.is_empty() {
        "the browser refused the security-key operation".into()
    } else {
        text
    }
}

#[cfg(feature = "hydrate")]
fn js_sys_string(e: &wasm_bindgen::JsValue) -> String {
    e.as_string().unwrap_or_else(|| format!("{e:?}"))
}

/// Only the browser talks to authenticators.
#[cfg(not(feature = "hydrate"))]
pub async fn create(_options: serde_json::Value) -> Result<serde_json::Value, String> {
    Err("security keys work in the browser".into())
}

/// Only the browser talks to authenticators.
#[cfg(not(feature = "hydrate"))]
pub async fn get(_options: serde_json::Value) -> Result<serde_json::Value, String> {
    Err("security keys work in the browser".into())
}
