//! Sign-in and account types shared by the manager's API and its web UI.

use serde::{Deserialize, Serialize};

/// `GET /api/v1/setup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SetupStatus {
    /// No administrator exists yet: the first-run setup page must be shown.
    pub required: bool,
}

/// `POST /api/v1/setup`: creates the first Admin with the one-time setup token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SetupDone {
    /// The new administrator's id.
    pub user_id: crate::ids::UserId,
}

/// `POST /api/v1/auth/login`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SessionInfo {
    /// User id.
    pub user_id: crate::ids::UserId,
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token.
    #[serde(default)]
    pub refresh_token: Option<String>,
}

/// Answer of `POST /api/v1/auth/login`: a session, or the second step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum LoginResult {
    /// Signed in.
    SignedIn(SessionInfo),
    /// The password was right; a second factor is needed.
    MfaRequired(MfaChallenge),
}

/// The second sign-in step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct MfaChallenge {
    /// Opaque token for `POST /api/v1/auth/login/mfa` (and the WebAuthn sign-in).
    pub mfa_token: String,
    /// Factors the account has: `totp`, `webauthn`, `recovery`.
    pub methods: Vec<String>,
    /// Seconds the token stays valid.
    pub expires_in: i64,
}

/// `POST /api/v1/auth/login/mfa`: a TOTP code or a recovery code (exactly one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct MfaLoginRequest {
    /// The token from the first step.
    pub mfa_token: String,
    /// Six-digit code from the authenticator app.
    #[serde(default)]
    pub code: Option<String>,
    /// One of the recovery codes.
    #[serde(default)]
    pub recovery_code: Option<String>,
}

/// `POST /api/v1/auth/mfa/totp`: starts enrolling an authenticator app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TotpEnrolRequest {
    /// Name to tell several authenticators apart (1–64 characters).
    pub name: String,
}

/// What the authenticator app needs; shown once, until confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TotpEnrolment {
    /// Credential to confirm.
    pub credential_id: crate::ids::CredentialId,
    /// The seed in base32, for typing in by hand.
    pub secret_base32: String,
    /// `otpauth://` URL (what the QR code holds).
    pub otpauth_url: String,
    /// The QR code as an SVG document.
    pub qr_svg: String,
}

/// `POST /api/v1/auth/mfa/totp/{id}/confirm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TotpConfirmRequest {
    /// Current code from the app.
    pub code: String,
}

/// Recovery codes, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RecoveryCodes {
    /// New recovery codes; empty when the account already had some.
    pub recovery_codes: Vec<String>,
}

/// One second factor of the signed-in user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct MfaCredential {
    /// Id (for removal).
    pub id: crate::ids::CredentialId,
    /// Kind of factor.
    pub kind: crate::vocab::FactorKind,
    /// Name given at enrolment.
    pub name: String,
    /// Enrolment time (RFC 3339).
    pub created_at: String,
    /// Last use (RFC 3339).
    pub last_used_at: Option<String>,
}

/// `GET /api/v1/auth/mfa`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct MfaStatus {
    /// An admin requires a second factor on this account.
    pub required: bool,
    /// Confirmed factors.
    pub credentials: Vec<MfaCredential>,
    /// Unused recovery codes.
    pub recovery_codes_left: i64,
}

/// `GET /api/v1/auth/me`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Me {
    /// User id.
    pub user_id: crate::ids::UserId,
    /// User name.
    pub username: String,
    /// Display name.
    pub display_name: String,
    /// Role.
    pub role: crate::vocab::Role,
    /// Session id.
    pub session: String,
    /// The account must enrol a second factor before anything else.
    pub mfa_enrolment_pending: bool,
}

/// `POST /api/v1/auth/mfa/webauthn/register/start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PasskeyRegisterStart {
    /// Name for the key (1–64 characters).
    pub name: String,
}

/// Options for `navigator.credentials.create` and the ceremony to finish.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PasskeyRegisterOptions {
    /// Ceremony id for the finish call.
    pub challenge_id: i64,
    /// WebAuthn `CreationChallengeResponse` (JSON, base64url binary fields).
    pub options: serde_json::Value,
}

/// `POST /api/v1/auth/mfa/webauthn/register/finish`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PasskeyRegisterFinish {
    /// Ceremony id from the start call.
    pub challenge_id: i64,
    /// The authenticator's `RegisterPublicKeyCredential` (JSON).
    pub credential: serde_json::Value,
}

/// `POST /api/v1/auth/login/webauthn/start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PasskeyLoginStart {
    /// The token from the password step.
    pub mfa_token: String,
}

/// Options for `navigator.credentials.get`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PasskeyLoginOptions {
    /// WebAuthn `RequestChallengeResponse` (JSON).
    pub options: serde_json::Value,
}

/// `POST /api/v1/auth/login/webauthn/finish`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PasskeyLoginFinish {
    /// The token from the password step.
    pub mfa_token: String,
    /// The authenticator's `PublicKeyCredential` (JSON).
    pub credential: serde_json::Value,
}

/// Azure AD (Entra ID) single sign-on over OpenID Connect (`GET`/`PUT /api/v1/settings/oidc`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    /// Offer "Sign in with Microsoft" on the sign-in page.
    #[serde(default)]
    pub enabled: bool,
    /// Directory (tenant) id or domain; gives the issuer
    /// `https://login.microsoftonline.com/<tenant>/v2.0`.
    #[serde(default)]
    pub tenant_id: String,
    /// Issuer URL, when not the Azure AD one derived from the tenant.
    #[serde(default)]
    pub authority: String,
    /// Application (client) id.
    #[serde(default)]
    pub client_id: String,
    /// Client secret: write-only. Absent on a `PUT` keeps the stored one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// A client secret is stored (answers only).
    #[serde(default)]
    pub secret_set: bool,
    /// The manager's callback as registered in Azure AD:
    /// `https://<manager>/api/v1/auth/oidc/callback`.
    #[serde(default)]
    pub redirect_url: String,
    /// Scopes requested (`openid` is always added).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// ID-token claim holding groups or app roles: `groups` or `roles`.
    #[serde(default)]
    pub claim: String,
    /// Claim values that give access; a user matching none gets none.
    #[serde(default)]
    pub mappings: Vec<OidcMapping>,
    /// Text of the sign-in button.
    #[serde(default)]
    pub button_label: String,
}

/// One claim value (an Azure AD group object id or app role) and what it gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct OidcMapping {
    /// The value in the claim.
    pub value: String,
    /// `admin` or `operator`.
    pub role: String,
    /// Host groups an Operator gets.
    #[serde(default)]
    pub group_ids: Vec<i64>,
}

/// `GET /api/v1/auth/oidc/status`: whether the sign-in page offers single sign-on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct OidcStatus {
    /// Offered.
    pub enabled: bool,
    /// Button text.
    pub label: String,
}

/// `POST /api/v1/settings/oidc/test`: what the tenant's discovery document and keys say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct OidcTestResult {
    /// Issuer from the discovery document (equal to the configured one).
    pub issuer: String,
    /// Authorization endpoint.
    pub authorization_endpoint: String,
    /// Token endpoint.
    pub token_endpoint: String,
    /// Signing keys published.
    pub keys: usize,
}
