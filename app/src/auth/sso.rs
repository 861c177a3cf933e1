//! Azure AD (Entra ID) single sign-on with OpenID Connect: authorization code flow with PKCE,
//! state and nonce, the ID token verified against the tenant's published keys (signature,
//! issuer, audience, expiry, nonce) by openidconnect.
//!
//! The settings live in the database (`settings` row [`SETTING`]); the client secret is sealed
//! with the manager's secrets key. Access comes only from the mappings: a claim value (an Azure
//! AD group object id or an app role) maps to Admin or to Operator with host groups, and a user
//! whose token matches no mapping gets no access. Role and groups are set from the token at
//! every sign-in, so the directory stays the source of truth. Local accounts keep working when
//! the identity provider is down (break-glass Admin).
//!
//! The sign-in as a service: [`begin`] sends the browser away, [`complete`] takes it back
//! (state, binding, code, ID token, mapping, provisioning, then the account's own second factor
//! or a session) and answers where it lands; [`pending`] hands the sign-in page the second step a
//! single sign-on left. The settings are read, saved and tested through [`status`],
//! [`settings`], [`save_settings`] and [`test_connection`].

use super::login::{self, LoginError, Origin, SignedUser};
use crate::audit::Requester;
use crate::db::audit::{NewAuditEntry, Outcome};
use crate::db::challenges::{self, NewChallenge};
use crate::db::users::NewUser;
use crate::db::{DbConnection, DbError};
use crate::error::AppError;
use crate::state::AppState;
use chrono::NaiveDateTime;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata,
    CoreResponseType, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::url;
use openidconnect::{
    AdditionalClaims, AuthenticationFlow, AuthorizationCode, Client, ClientId, ClientSecret,
    CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenFields,
    IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    StandardErrorResponse, StandardTokenResponse, TokenResponse,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shared::auth::{ClientKind, MfaChallenge, OidcStatus, OidcTestResult};
use shared::auth::{OidcMapping, OidcSettings};
use std::net::IpAddr;

/// Settings key.
pub const SETTING: &str = "auth.oidc";
/// Challenge kind of a sign-in in progress.
pub const CHALLENGE: &str = "oidc";
/// How long the user may take at the identity provider.
pub const FLOW_TTL: chrono::Duration = chrono::Duration::minutes(10);
/// Cookie binding the sign-in to the browser that started it.
pub const BINDING_COOKIE: &str = "lpm_sso";
/// Cookie carrying the second-step token after a single sign-on, for the sign-in page.
pub const PENDING_COOKIE: &str = "lpm_mfa";

/// The group and role claims Azure AD puts into ID tokens.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupClaims {
    /// Group object ids (`groups` optional claim).
    #[serde(default)]
    pub groups: Vec<String>,
    /// App roles.
    #[serde(default)]
    pub roles: Vec<String>,
}
impl AdditionalClaims for GroupClaims {}

type IdFields = IdTokenFields<
    GroupClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type SsoTokenResponse = StandardTokenResponse<IdFields, CoreTokenType>;
/// The OpenID Connect client with our claims.
pub type SsoClient = Client<
    GroupClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    SsoTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// An ID token with our claims.
pub type SsoIdToken = openidconnect::IdToken<
    GroupClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// The settings as stored: the secret sealed, never in the clear.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stored {
    /// Everything but the secret.
    pub settings: OidcSettings,
    /// The client secret, sealed.
    pub sealed_secret: Option<String>,
}

/// Reads the stored settings.
pub fn read(c: &mut DbConnection) -> Result<Stored, DbError> {
    crate::db::settings::read(c, SETTING)
}

/// Stores the settings.
pub fn write(
    c: &mut DbConnection,
    s: &Stored,
    by: &str,
    now: NaiveDateTime,
) -> Result<(), DbError> {
    crate::db::settings::write(c, SETTING, s, by, now)
}

/// Associated data of the sealed client secret.
pub const SECRET_CONTEXT: &str = "oidc:client_secret";

fn loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The issuer: the authority if given, else Azure AD's for the tenant. HTTPS only (plain HTTP
/// is accepted for loopback, where test providers run).
pub fn issuer(s: &OidcSettings) -> Result<IssuerUrl, String> {
    let text = if s.authority.trim().is_empty() {
        let tenant = s.tenant_id.trim();
        if tenant.is_empty()
            || !tenant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err("give the directory (tenant) id, or an authority URL".into());
        }
        format!("https://login.microsoftonline.com/{tenant}/v2.0")
    } else {
        s.authority.trim().trim_end_matches('/').to_owned()
    };
    let url = url::Url::parse(&text).map_err(|e| format!("authority {text}: {e}"))?;
    if url.scheme() != "https" && !(url.scheme() == "http" && loopback_host(&url)) {
        return Err("the authority must use https".into());
    }
    IssuerUrl::new(text).map_err(|e| e.to_string())
}

/// Checks settings before they are saved: (field, message) of the first problem.
pub fn validate(s: &OidcSettings) -> Result<(), (&'static str, String)> {
    let short = |field: &'static str, v: &str, max: usize| {
        if v.chars().count() > max || v.chars().any(char::is_control) {
            Err((field, format!("at most {max} printable characters")))
        } else {
            Ok(())
        }
    };
    short("tenant_id", &s.tenant_id, 100)?;
    short("authority", &s.authority, 300)?;
    short("client_id", &s.client_id, 200)?;
    short("redirect_url", &s.redirect_url, 300)?;
    short("button_label", &s.button_label, 60)?;
    if let Some(secret) = &s.client_secret {
        short("client_secret", secret, 500)?;
    }
    if !matches!(s.claim.as_str(), "" | "groups" | "roles") {
        return Err(("claim", "the claim is groups or roles".into()));
    }
    if s.scopes.len() > 20
        || s.scopes
            .iter()
            .any(|x| x.is_empty() || x.len() > 100 || x.contains(char::is_whitespace))
    {
        return Err(("scopes", "up to 20 scopes without spaces".into()));
    }
    if s.mappings.len() > 200 {
        return Err(("mappings", "at most 200 mappings".into()));
    }
    for m in &s.mappings {
        if !matches!(m.role.as_str(), "admin" | "operator") {
            return Err(("mappings", "a mapping's role is admin or operator".into()));
        }
        short("mappings", &m.value, 200)?;
        if m.value.trim().is_empty() {
            return Err(("mappings", "a mapping needs the claim value".into()));
        }
    }
    if !s.enabled {
        return Ok(());
    }
    issuer(s).map_err(|e| ("authority", e))?;
    if s.client_id.trim().is_empty() {
        return Err((
            "client_id",
            "the application (client) id is required".into(),
        ));
    }
    let redirect = url::Url::parse(&s.redirect_url).map_err(|e| ("redirect_url", e.to_string()))?;
    if redirect.scheme() != "https" && !(redirect.scheme() == "http" && loopback_host(&redirect)) {
        return Err(("redirect_url", "the redirect URL must use https".into()));
    }
    if !redirect.path().ends_with("/api/v1/auth/oidc/callback") {
        return Err((
            "redirect_url",
            "the redirect URL ends in /api/v1/auth/oidc/callback".into(),
        ));
    }
    if s.mappings.is_empty() {
        return Err((
            "mappings",
            "map at least one group or role, or nobody gets in".into(),
        ));
    }
    Ok(())
}

/// HTTP client for the identity provider: no redirects (no SSRF through them), short timeouts.
pub fn http_client() -> Result<openidconnect::reqwest::Client, String> {
    openidconnect::reqwest::ClientBuilder::new()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())
}

/// Fetches and checks the discovery document and the signing keys.
pub async fn discover(
    s: &OidcSettings,
    http: &openidconnect::reqwest::Client,
) -> Result<CoreProviderMetadata, String> {
    let issuer = issuer(s)?;
    let meta = CoreProviderMetadata::discover_async(issuer, http)
        .await
        .map_err(|e| format!("discovery failed: {}", error_chain(&e)))?;
    if meta.jwks().keys().is_empty() {
        return Err("the provider publishes no signing keys".into());
    }
    Ok(meta)
}

/// Error and its causes on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

/// The client for the discovered provider.
pub fn client(
    meta: CoreProviderMetadata,
    s: &OidcSettings,
    secret: Option<String>,
) -> Result<SsoClient, String> {
    let redirect = RedirectUrl::new(s.redirect_url.clone()).map_err(|e| e.to_string())?;
    Ok(SsoClient::from_provider_metadata(
        meta,
        ClientId::new(s.client_id.clone()),
        secret.map(ClientSecret::new),
    )
    .set_redirect_uri(redirect))
}

/// What the manager remembers between sending the browser away and its return.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Flow {
    state_hash: String,
    binding_hash: String,
    nonce: String,
    pkce_verifier: String,
}

fn sha(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// A started sign-in: where to send the browser, and the cookie that binds it.
pub struct Started {
    /// The authorization URL.
    pub url: url::Url,
    /// Value of the [`BINDING_COOKIE`].
    pub binding: String,
}

/// Starts a sign-in: records state, nonce and PKCE verifier, answers the authorization URL.
pub fn start(
    c: &mut DbConnection,
    client: &SsoClient,
    s: &OidcSettings,
    now: NaiveDateTime,
) -> Result<Started, DbError> {
    let secret = hex::encode(crate::auth::mfa::random_bytes::<32>()?);
    let binding = hex::encode(crate::auth::mfa::random_bytes::<32>()?);
    let (pkce_challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let id = challenges::insert(
        c,
        &NewChallenge {
            user_id: None,
            kind: CHALLENGE,
            state_json: "{}",
            expires_at: now + FLOW_TTL,
            created_at: now,
        },
    )?;
    let state = format!("{id}.{secret}");
    let mut req = client
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            move || CsrfToken::new(state.clone()),
            Nonce::new_random,
        )
        .set_pkce_challenge(pkce_challenge)
        .add_scope(Scope::new("openid".into()));
    let mut scopes: Vec<&str> = s.scopes.iter().map(String::as_str).collect();
    if scopes.is_empty() {
        scopes = vec!["profile", "email"];
    }
    for sc in scopes.into_iter().filter(|x| *x != "openid") {
        req = req.add_scope(Scope::new(sc.to_owned()));
    }
    let (url, _state, nonce) = req.url();
    let flow = Flow {
        state_hash: sha(&secret),
        binding_hash: sha(&binding),
        nonce: nonce.secret().clone(),
        pkce_verifier: verifier.secret().clone(),
    };
    challenges::set_state(
        c,
        id,
        &serde_json::to_string(&flow).map_err(|e| DbError::Task(e.to_string()))?,
    )?;
    Ok(Started { url, binding })
}

/// Takes (reads and deletes) the flow `state` names, if the browser's binding cookie matches.
pub fn take(
    c: &mut DbConnection,
    state: &str,
    binding: Option<&str>,
    now: NaiveDateTime,
) -> Result<Result<Flow, &'static str>, DbError> {
    let Some((id, secret)) = state.split_once('.') else {
        return Ok(Err("malformed state"));
    };
    let Ok(id) = id.parse::<i64>() else {
        return Ok(Err("malformed state"));
    };
    crate::db::transaction(c, |c| {
        let Some(row) = challenges::find(c, id, CHALLENGE)? else {
            return Ok(Err("unknown or used state"));
        };
        let (json, expires) = (row.state_json, row.expires_at);
        let Ok(flow) = serde_json::from_str::<Flow>(&json) else {
            return Ok(Err("unknown or used state"));
        };
        if !crate::auth::ct_eq(sha(secret).as_bytes(), flow.state_hash.as_bytes()) {
            return Ok(Err("state does not match"));
        }
        // Single use from here on, whatever the outcome.
        challenges::delete(c, id)?;
        if expires <= now {
            return Ok(Err("the sign-in took too long"));
        }
        match binding {
            Some(b) if crate::auth::ct_eq(sha(b).as_bytes(), flow.binding_hash.as_bytes()) => {
                Ok(Ok(flow))
            }
            _ => Ok(Err("the sign-in was started in another browser")),
        }
    })
}

/// The verified identity from the ID token.
#[derive(Debug, Clone)]
pub struct SsoIdentity {
    /// Issuer.
    pub issuer: String,
    /// Subject (stable user id at the provider).
    pub subject: String,
    /// Preferred user name, e-mail or subject, in that order.
    pub login: String,
    /// Display name.
    pub name: Option<String>,
    /// E-mail.
    pub email: Option<String>,
    /// Group or role claim values.
    pub claims: GroupClaims,
}

/// Exchanges the code (with the PKCE verifier) and verifies the ID token (with the nonce).
pub async fn finish(
    client: &SsoClient,
    http: &openidconnect::reqwest::Client,
    flow: &Flow,
    code: String,
) -> Result<SsoIdentity, String> {
    let response = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| e.to_string())?
        .set_pkce_verifier(PkceCodeVerifier::new(flow.pkce_verifier.clone()))
        .request_async(http)
        .await
        .map_err(|e| format!("the code was not accepted: {}", error_chain(&e)))?;
    let id_token = response
        .id_token()
        .ok_or("the provider returned no ID token")?;
    verify(client, id_token, &flow.nonce)
}

/// Verifies an ID token for this client: signature against the provider's keys, issuer,
/// audience, expiry, nonce.
pub fn verify(
    client: &SsoClient,
    id_token: &SsoIdToken,
    nonce: &str,
) -> Result<SsoIdentity, String> {
    let claims = id_token
        .claims(&client.id_token_verifier(), &Nonce::new(nonce.to_owned()))
        .map_err(|e| format!("the ID token was refused: {}", error_chain(&e)))?;
    let subject = claims.subject().as_str().to_owned();
    let email = claims.email().map(|e| e.as_str().to_owned());
    let login = claims
        .preferred_username()
        .map(|u| u.as_str().to_owned())
        .or_else(|| email.clone())
        .unwrap_or_else(|| subject.clone());
    Ok(SsoIdentity {
        issuer: claims.issuer().as_str().to_owned(),
        subject,
        login,
        name: claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned()),
        email,
        claims: claims.additional_claims().clone(),
    })
}

/// Role and host groups the mappings give for these claims; `None`: no access.
pub fn map_access(s: &OidcSettings, claims: &GroupClaims) -> Option<(String, Vec<i64>)> {
    let values: &[String] = if s.claim == "roles" {
        &claims.roles
    } else {
        &claims.groups
    };
    let hits: Vec<&OidcMapping> = s
        .mappings
        .iter()
        .filter(|m| values.iter().any(|v| v == &m.value))
        .collect();
    if hits.iter().any(|m| m.role == "admin") {
        return Some(("admin".into(), Vec::new()));
    }
    if hits.is_empty() {
        return None;
    }
    let mut groups: Vec<i64> = hits.iter().flat_map(|m| m.group_ids.clone()).collect();
    groups.sort_unstable();
    groups.dedup();
    Some(("operator".into(), groups))
}

/// A user name for a new SSO account: the login lower-cased, other characters replaced, made
/// unique.
fn username_for(c: &mut DbConnection, login: &str) -> Result<String, DbError> {
    let mut base: String = login
        .to_lowercase()
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || "._-".contains(ch) {
                ch
            } else {
                '-'
            }
        })
        .take(56)
        .collect();
    if !base.starts_with(|ch: char| ch.is_ascii_lowercase()) {
        base = format!("u-{base}");
    }
    while base.len() < 3 {
        base.push('x');
    }
    for n in 1..1000 {
        let candidate = if n == 1 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        if !crate::db::users::name_taken(c, &candidate)? {
            return Ok(candidate);
        }
    }
    Err(DbError::Task("no free user name".into()))
}

/// Finds or creates the account for this identity and sets its role and groups from the
/// mapping (the last enabled Admin stays Admin; groups deleted since are skipped). Answers
/// (user id, user name, role), or `None` when the account is disabled.
pub fn provision(
    c: &mut DbConnection,
    who: &SsoIdentity,
    role: &str,
    groups: &[i64],
    now: NaiveDateTime,
) -> Result<Option<(i64, String, String)>, DbError> {
    use crate::auth::users::{self as accounts, UserError};
    let provisioned = crate::db::transaction(c, |c| {
        let existing = crate::db::users::find_by_sso(c, &who.issuer, &who.subject)?;
        let display = who.name.clone().unwrap_or_else(|| who.login.clone());
        let (id, name, role) = match existing {
            Some(u) if u.is_disabled => return Ok(None),
            Some(u) => {
                let role = accounts::sso_role(c, &u, role)?;
                crate::db::users::update(
                    c,
                    u.id.into(),
                    &crate::db::users::UserUpdate {
                        role: Some(role.to_owned()),
                        display_name: Some(display),
                        email: Some(who.email.clone()),
                        updated_at: Some(now),
                        ..Default::default()
                    },
                )?;
                (u.id.into(), u.username, role)
            }
            None => {
                let name = username_for(c, &who.login)?;
                let mut new = NewUser::sso(&name, &display, role, &who.issuer, &who.subject, now);
                new.email = who.email.as_deref();
                let id = accounts::insert_account(c, &new)?;
                (id, name, role)
            }
        };
        accounts::replace_groups(c, id, groups, true, now)?;
        Ok::<_, UserError>(Some((id, name, role.to_owned())))
    });
    match provisioned {
        Ok(p) => Ok(p),
        Err(UserError::Db(e)) => Err(e),
        Err(e) => Err(DbError::Inconsistent(e.to_string())),
    }
}

/// Why a single sign-on request was refused (a refused sign-in itself lands on the sign-in page
/// instead: see [`Landing`]).
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    /// Too many starts from the address.
    #[error("too many single sign-on attempts from this address")]
    Throttled(i64),
    /// A setting is not acceptable.
    #[error("{message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The identity provider could not be reached or gave an unusable answer.
    #[error("{0}")]
    Provider(String),
    /// No sign-in waits for a second factor in this browser.
    #[error("no sign-in is waiting for a second factor")]
    NothingPending,
    /// Starting the session failed.
    #[error(transparent)]
    Login(#[from] LoginError),
    /// Something failed inside.
    #[error("{0}")]
    Internal(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<SsoError> for AppError {
    fn from(e: SsoError) -> Self {
        match e {
            SsoError::Throttled(retry_after) => AppError::TooManyRequests {
                message: e.to_string(),
                retry_after,
            },
            SsoError::Invalid { field, message } => AppError::invalid(field, message),
            SsoError::Provider(m) => AppError::IdentityProvider(m),
            SsoError::NothingPending => AppError::NotFound(e.to_string()),
            SsoError::Login(e) => e.into(),
            SsoError::Internal(m) => AppError::Internal(m),
            SsoError::Db(e) => AppError::Database(e),
        }
    }
}

/// The stored settings.
async fn stored(state: &AppState) -> Result<Stored, DbError> {
    state.db.run(read).await
}

/// The client secret in the clear, if one is stored.
fn client_secret(state: &AppState, s: &Stored) -> Result<Option<String>, SsoError> {
    s.sealed_secret
        .as_deref()
        .map(|sealed| {
            state
                .secrets
                .open(SECRET_CONTEXT, sealed)
                .map_err(|e| SsoError::Internal(format!("client secret: {e}")))
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        })
        .transpose()
}

/// The sign-in button's label.
pub fn label(s: &OidcSettings) -> String {
    if s.button_label.trim().is_empty() {
        "Sign in with Microsoft".into()
    } else {
        s.button_label.clone()
    }
}

/// Whether single sign-on is on, and the button's label.
pub async fn status(state: &AppState) -> Result<OidcStatus, SsoError> {
    let s = stored(state).await?.settings;
    Ok(OidcStatus {
        enabled: s.enabled,
        label: label(&s),
    })
}

/// The settings, without the secret (only whether one is set).
pub async fn settings(state: &AppState) -> Result<OidcSettings, SsoError> {
    let st = stored(state).await?;
    let mut s = st.settings;
    s.client_secret = None;
    s.secret_set = st.sealed_secret.is_some();
    Ok(s)
}

/// Validates and stores the settings (a missing secret keeps the stored one), audited. Answers
/// them as [`settings`] would.
pub async fn save_settings(
    state: &AppState,
    actor: &Requester,
    mut s: OidcSettings,
) -> Result<OidcSettings, SsoError> {
    validate(&s).map_err(|(field, message)| SsoError::Invalid { field, message })?;
    let old = stored(state).await?;
    let sealed_secret = match s.client_secret.take().filter(|x| !x.is_empty()) {
        Some(secret) => Some(
            state
                .secrets
                .seal(SECRET_CONTEXT, secret.as_bytes())
                .map_err(|e| SsoError::Internal(e.to_string()))?,
        ),
        None => old.sealed_secret.clone(),
    };
    s.secret_set = false;
    let new = Stored {
        settings: s.clone(),
        sealed_secret,
    };
    let (n, by) = (new.clone(), actor.actor.clone());
    let now = state.clock.now();
    state.db.run(move |c| write(c, &n, &by, now)).await?;
    state
        .audit
        .note(
            NewAuditEntry::new(
                actor.actor.clone(),
                "settings.oidc_changed",
                Outcome::Success,
            )
            .target(SETTING)
            .details(serde_json::json!({
                "before": old.settings, "after": s,
                "secret_changed": new.sealed_secret != old.sealed_secret,
            }))
            .source(actor.source),
        )
        .await;
    s.secret_set = new.sealed_secret.is_some();
    Ok(s)
}

/// Fetches and checks the discovery document and signing keys for the given (unsaved) settings.
/// Enables nothing.
pub async fn test_connection(s: &OidcSettings) -> Result<OidcTestResult, SsoError> {
    issuer(s).map_err(|message| SsoError::Invalid {
        field: "authority",
        message,
    })?;
    let http = http_client().map_err(SsoError::Internal)?;
    let meta = discover(s, &http).await.map_err(SsoError::Provider)?;
    Ok(OidcTestResult {
        issuer: meta.issuer().as_str().to_owned(),
        authorization_endpoint: meta.authorization_endpoint().as_str().to_owned(),
        token_endpoint: meta
            .token_endpoint()
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default(),
        keys: meta.jwks().keys().len(),
    })
}

/// The second step a single sign-on left for this browser (its token, from the
/// [`PENDING_COOKIE`]), so the sign-in page can ask for the factor.
pub async fn pending(state: &AppState, token: Option<String>) -> Result<MfaChallenge, SsoError> {
    let token = token
        .filter(|t| !t.is_empty())
        .ok_or(SsoError::NothingPending)?;
    let now = state.clock.now();
    let t = token.clone();
    let found = state
        .db
        .run(move |c| super::mfa::find_login_challenge(c, &t, now))
        .await?;
    let Some((_, user_id, _)) = found else {
        return Err(SsoError::NothingPending);
    };
    let methods = state
        .db
        .run(move |c| login::second_factor_methods(c, user_id))
        .await?;
    Ok(MfaChallenge {
        mfa_token: token,
        methods,
        expires_in: super::mfa::CHALLENGE_TTL.num_seconds(),
    })
}

/// Where [`begin`] sends the browser.
pub enum Begin {
    /// Back to the sign-in page with this reason.
    Refused(&'static str),
    /// To the identity provider, bound to the browser.
    Redirect(Started),
}

/// Starts a single sign-on from `ip`: checks it is on and the address not throttled, discovers
/// the provider and records the flow.
pub async fn begin(state: &AppState, ip: Option<IpAddr>) -> Result<Begin, SsoError> {
    let st = stored(state).await?;
    if !st.settings.enabled {
        return Ok(Begin::Refused("sso_disabled"));
    }
    if let Some(ip) = ip {
        if let Err(wait) = state.sso_starts.check(ip, state.clock.now()) {
            return Err(SsoError::Throttled(i64::try_from(wait).unwrap_or(60)));
        }
    }
    let http = http_client().map_err(SsoError::Internal)?;
    let meta = match discover(&st.settings, &http).await {
        Ok(m) => m,
        Err(why) => {
            login::audit(
                state,
                ip,
                "anonymous",
                "auth.sso",
                Outcome::Failure,
                serde_json::json!({ "reason": format!("identity provider unreachable: {why}") }),
            )
            .await;
            return Ok(Begin::Refused("provider_unreachable"));
        }
    };
    let client =
        client(meta, &st.settings, client_secret(state, &st)?).map_err(SsoError::Internal)?;
    let now = state.clock.now();
    let settings = st.settings.clone();
    let started = state
        .db
        .run(move |c| start(c, &client, &settings, now))
        .await?;
    Ok(Begin::Redirect(started))
}

/// What the identity provider sent the browser back with.
#[derive(Debug, Default)]
pub struct ProviderAnswer {
    /// Authorization code.
    pub code: Option<String>,
    /// The state [`begin`] sent.
    pub state: Option<String>,
    /// The provider's error code.
    pub error: Option<String>,
    /// The provider's explanation.
    pub error_description: Option<String>,
}

/// Where [`complete`] lands the browser.
#[derive(Debug)]
pub enum Landing {
    /// On the sign-in page with this reason (the refusal is audited).
    Refused(&'static str),
    /// On the sign-in page, to answer the account's second factor on this sign-in challenge.
    SecondFactor(String),
    /// Signed in: (access token, refresh token).
    SignedIn(String, String),
}

/// Audits a refused sign-on and answers where it lands.
async fn deny(
    state: &AppState,
    ip: Option<IpAddr>,
    reason: String,
    code: &'static str,
) -> Result<Landing, SsoError> {
    login::audit(
        state,
        ip,
        "anonymous",
        "auth.sso",
        Outcome::Denied,
        serde_json::json!({ "reason": reason }),
    )
    .await;
    Ok(Landing::Refused(code))
}

/// Completes a single sign-on: checks state and the browser's `binding` cookie, exchanges the
/// code (with the PKCE verifier), verifies the ID token, maps the claims to a role and host
/// groups, provisions the account, then asks for the account's own second factor or starts the
/// session.
pub async fn complete(
    state: &AppState,
    origin: &Origin,
    answer: ProviderAnswer,
    binding: Option<String>,
) -> Result<Landing, SsoError> {
    let ip = origin.ip;
    if let Some(e) = answer.error {
        let why = format!(
            "the identity provider answered {}: {}",
            e.chars().take(100).collect::<String>(),
            answer
                .error_description
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect::<String>()
        );
        return deny(state, ip, why, "provider_refused").await;
    }
    let (Some(code), Some(st_param)) = (answer.code, answer.state) else {
        return deny(
            state,
            ip,
            "callback without code or state".into(),
            "bad_callback",
        )
        .await;
    };
    let now = state.clock.now();
    let flow = state
        .db
        .run(move |c| take(c, &st_param, binding.as_deref(), now))
        .await?;
    let flow = match flow {
        Ok(f) => f,
        Err(why) => return deny(state, ip, why.into(), "bad_state").await,
    };
    let st = stored(state).await?;
    if !st.settings.enabled {
        return deny(
            state,
            ip,
            "single sign-on was turned off".into(),
            "sso_disabled",
        )
        .await;
    }
    let http = http_client().map_err(SsoError::Internal)?;
    let meta = match discover(&st.settings, &http).await {
        Ok(m) => m,
        Err(why) => {
            return deny(
                state,
                ip,
                format!("identity provider unreachable: {why}"),
                "provider_unreachable",
            )
            .await
        }
    };
    let client =
        client(meta, &st.settings, client_secret(state, &st)?).map_err(SsoError::Internal)?;
    let who = match finish(&client, &http, &flow, code).await {
        Ok(w) => w,
        Err(why) => return deny(state, ip, why, "token_refused").await,
    };
    let Some((role, groups)) = map_access(&st.settings, &who.claims) else {
        return deny(
            state,
            ip,
            format!(
                "{} ({}) is in no mapped group or role",
                who.login, who.subject
            ),
            "no_access",
        )
        .await;
    };
    let (w, r) = (who.clone(), role.clone());
    let serial = state.admin_changes.lock().await;
    let user = state
        .db
        .run(move |c| provision(c, &w, &r, &groups, now))
        .await?;
    drop(serial);
    let Some((uid, name, kept_role)) = user else {
        return deny(
            state,
            ip,
            format!("account of {} is disabled", who.login),
            "account_disabled",
        )
        .await;
    };
    if kept_role != role {
        login::audit(
            state,
            ip,
            &name,
            "auth.sso",
            Outcome::Success,
            serde_json::json!({
                "note": "kept the Admin role the directory no longer gives: this is the last enabled Admin",
            }),
        )
        .await;
    }
    // An account with its own second factor uses it here too: the directory's sign-in replaces
    // the password, not the factor.
    let methods = state
        .db
        .run(move |c| login::second_factor_methods(c, uid))
        .await?;
    if !methods.is_empty() {
        let token = state
            .db
            .run(move |c| super::mfa::start_login_challenge(c, uid, ClientKind::Browser, now))
            .await?;
        login::audit(
            state,
            ip,
            &name,
            "auth.sso",
            Outcome::Success,
            serde_json::json!({ "next": methods }),
        )
        .await;
        return Ok(Landing::SecondFactor(token));
    }
    let user = SignedUser {
        id: uid,
        name,
        role: kept_role,
    };
    let (access, refresh) = login::open_session(state, origin, &user, "sso").await?;
    Ok(Landing::SignedIn(access, refresh))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> OidcSettings {
        OidcSettings {
            enabled: true,
            tenant_id: "contoso.onmicrosoft.com".into(),
            client_id: "app".into(),
            redirect_url: "https://pm.example.com/api/v1/auth/oidc/callback".into(),
            claim: "groups".into(),
            mappings: vec![
                OidcMapping {
                    value: "g-admins".into(),
                    role: "admin".into(),
                    group_ids: vec![],
                },
                OidcMapping {
                    value: "g-web".into(),
                    role: "operator".into(),
                    group_ids: vec![2, 1],
                },
                OidcMapping {
                    value: "g-db".into(),
                    role: "operator".into(),
                    group_ids: vec![3, 1],
                },
            ],
            ..OidcSettings::default()
        }
    }

    #[test]
    fn mapping_gives_least_surprise() {
        let s = settings();
        let claims = |g: &[&str]| GroupClaims {
            groups: g.iter().map(|x| x.to_string()).collect(),
            roles: vec![],
        };
        assert_eq!(
            map_access(&s, &claims(&["g-web", "g-db"])),
            Some(("operator".into(), vec![1, 2, 3]))
        );
        assert_eq!(
            map_access(&s, &claims(&["g-web", "g-admins"])),
            Some(("admin".into(), vec![]))
        );
        assert_eq!(
            map_access(&s, &claims(&["g-unknown"])),
            None,
            "unknown group: no access"
        );
        assert_eq!(map_access(&s, &claims(&[])), None);
    }

    #[test]
    fn issuer_and_validation() {
        let mut s = settings();
        assert_eq!(
            issuer(&s).unwrap().as_str(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0"
        );
        assert!(validate(&s).is_ok());
        s.authority = "http://idp.example.com".into();
        assert!(issuer(&s).is_err(), "plain http outside loopback");
        s.authority = "http://127.0.0.1:9000".into();
        assert!(issuer(&s).is_ok());
        s.authority.clear();
        s.tenant_id = "../../evil".into();
        assert!(issuer(&s).is_err());
        let mut s = settings();
        s.redirect_url = "https://pm.example.com/elsewhere".into();
        assert_eq!(validate(&s).unwrap_err().0, "redirect_url");
        let mut s = settings();
        s.mappings.clear();
        assert_eq!(validate(&s).unwrap_err().0, "mappings");
        let mut s = settings();
        s.mappings[0].role = "root".into();
        assert_eq!(validate(&s).unwrap_err().0, "mappings");
    }

    #[test]
    fn provisioning_keeps_the_last_admin_and_skips_missing_groups() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Database::open(
            &crate::config::DatabaseTarget::Sqlite(dir.path().join("t.db")),
            2,
            std::time::Duration::from_secs(5),
        )
        .unwrap();
        let c = &mut *db.conn().unwrap();
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0)
            .unwrap()
            .naive_utc();
        let who = SsoIdentity {
            issuer: "https://idp.example".into(),
            subject: "s-1".into(),
            login: "Ada@Example.com".into(),
            name: Some("Ada".into()),
            email: Some("ada@example.com".into()),
            claims: GroupClaims::default(),
        };
        let (id, name, role) = provision(c, &who, "admin", &[], now).unwrap().unwrap();
        assert_eq!((name.as_str(), role.as_str()), ("ada-example.com", "admin"));
        // The directory demotes the only Admin: refused, the account stays Admin.
        let (again, _, role) = provision(c, &who, "operator", &[7], now).unwrap().unwrap();
        assert_eq!((again, role.as_str()), (id, "admin"));
        let user = crate::db::users::find(c, id).unwrap().unwrap();
        assert_eq!(user.email.as_deref(), Some("ada@example.com"));
        assert!(
            crate::db::users::group_links(c).unwrap().is_empty(),
            "a group deleted since is skipped"
        );
        crate::db::users::update(
            c,
            id,
            &crate::db::users::UserUpdate {
                is_disabled: Some(true),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(provision(c, &who, "admin", &[], now).unwrap(), None);
    }
}
