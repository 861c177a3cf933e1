//! Sign-in and account types shared by the manager's API and its web UI.

use serde::{Deserialize, Serialize};

/// `GET /api/v1/setup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupStatus {
    /// No administrator exists yet: the first-run setup page must be shown.
    pub required: bool,
}

/// `POST /api/v1/setup`: creates the first Admin with the one-time setup token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    /// The token from the manager's log or its `setup-token` file.
    pub token: String,
    /// The administrator's user name.
    pub username: String,
    /// Display name (the user name when empty).
    #[serde(default)]
    pub display_name: String,
    /// The password (policy: at least 12 characters, not containing the user name).
    pub password: String,
}

/// Answer of a successful setup (`201 Created`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupDone {
    /// The new administrator's id.
    pub user_id: i64,
}

/// `POST /api/v1/auth/login`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
    /// `browser` (default: tokens only in `HttpOnly` cookies) or `api` (tokens in the answer,
    /// no cookies; use `Authorization: Bearer`).
    #[serde(default)]
    pub client: ClientKind,
}

/// Who signs in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    /// A browser: cookies only.
    #[default]
    Browser,
    /// A program: tokens in the body.
    Api,
}

/// Answer of a sign-in or refresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// User id.
    pub user_id: i64,
    /// User name.
    pub username: String,
    /// `admin` or `operator`.
    pub role: String,
    /// Seconds the access token is valid.
    pub expires_in: i64,
    /// The access token (API clients only).
    pub access_token: Option<String>,
    /// The refresh token (API clients only).
    pub refresh_token: Option<String>,
}

/// `POST /api/v1/auth/refresh` body for API clients (browsers send the cookie).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token.
    #[serde(default)]
    pub refresh_token: Option<String>,
}
