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
