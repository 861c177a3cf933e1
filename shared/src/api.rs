//! Every endpoint of the manager's JSON API, declared once: method, path, path parameters, request
//! and response types. The manager registers its routes from these declarations (with the access
//! rule and handler beside each), the web UI calls them through a client typed by them, and the
//! OpenAPI document is generated from them — so a path, a method or a body type cannot differ
//! between the three, and pairing a request with the wrong answer type fails to compile.

use crate::audit::AuditPage;
use crate::auth::{
    LoginRequest, LoginResult, Me, MfaChallenge, MfaLoginRequest, MfaStatus, OidcSettings,
    OidcStatus, OidcTestResult, PasskeyLoginFinish, PasskeyLoginOptions, PasskeyLoginStart,
    PasskeyRegisterFinish, PasskeyRegisterOptions, PasskeyRegisterStart, RecoveryCodes,
    RefreshRequest, SessionInfo, SetupDone, SetupRequest, SetupStatus, TotpConfirmRequest,
    TotpEnrolRequest, TotpEnrolment,
};
use crate::enroll::{EnrollRequest, EnrollResponse};
use crate::fleet::{
    AdoptRequest, AdoptResult, AllowListSettings, CertificateInfo, CreatedEnrollmentToken,
    CrlStatus, DiscoveryRequest, DiscoveryRun, EnrollmentTokenInfo, EventTicket, GroupInfo,
    GroupUpdate, HostDetail, HostGroups, HostPackage, HostPage, HostPatch, NewEnrollmentToken,
    NewGroup, NewUser, PollingSettings, RevokeRequest, RotatedClient, UserInfo, UserUpdate,
};
use crate::ids::{
    CertificateId, CredentialId, DiscoveryRunId, EnrollmentTokenId, GroupId, HostId, JobId, UserId,
    WindowId,
};
use crate::jobs::{JobDetail, JobRollback, JobSummary, NewJob};
use crate::status::{HealthReport, SystemOverview};
use crate::windows::{NewWindow, WindowInfo};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// An HTTP method of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`: reads, no body.
    Get,
    /// `POST`.
    Post,
    /// `PUT`: replaces.
    Put,
    /// `PATCH`: changes the given fields.
    Patch,
    /// `DELETE`.
    Delete,
}

impl Method {
    /// The method's name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }
}

/// No body: the request has none (`GET`, `DELETE`, actions), or the answer is `204 No Content`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct NoBody;

/// What an answer is when it is not JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// A JSON document of the endpoint's response type (or nothing, for [`NoBody`]).
    Json,
    /// A PEM file (`application/x-pem-file`).
    Pem,
    /// A gzip-compressed tar archive (`application/gzip`).
    Archive,
    /// A redirect (`302 Found` with `Location`): part of a browser flow, not for programs.
    Redirect,
    /// A WebSocket (`101 Switching Protocols`), JSON text messages.
    WebSocket,
    /// Prometheus text exposition (`text/plain; version=0.0.4`).
    Metrics,
}

/// Values for the `{…}` segments of a path, in order.
pub trait PathParams {
    /// The segment values, in the order the path names them.
    fn segments(&self) -> Vec<String>;
}

impl PathParams for () {
    fn segments(&self) -> Vec<String> {
        Vec::new()
    }
}

macro_rules! id_params {
    ($($id:ty),*) => {$(
        impl PathParams for $id {
            fn segments(&self) -> Vec<String> {
                vec![self.to_string()]
            }
        }
    )*};
}
id_params!(
    HostId,
    GroupId,
    UserId,
    CertificateId,
    CredentialId,
    EnrollmentTokenId,
    DiscoveryRunId,
    JobId,
    WindowId
);

/// One endpoint of the API.
pub trait Endpoint {
    /// Method.
    const METHOD: Method;
    /// Path, with `{name}` segments for the parameters.
    const PATH: &'static str;
    /// What the answer is.
    const CONTENT: Content = Content::Json;
    /// One-line description (the OpenAPI summary).
    const SUMMARY: &'static str;
    /// The success status: 200, 201 for a creation, 204 with no body, 302 for a redirect.
    const STATUS: u16 = 200;
    /// The `{…}` segments of the path.
    type Params: PathParams;
    /// The request body ([`NoBody`] for none).
    type Request: Serialize + DeserializeOwned;
    /// The answer's body on success ([`NoBody`] for none or a non-JSON answer).
    type Response: Serialize + DeserializeOwned;

    /// The path with `params` filled in.
    fn path(params: &Self::Params) -> String {
        fill(Self::PATH, &params.segments())
    }
}

/// Replaces each `{…}` segment of `template` by the next value (percent-encoding what is not
/// safe in a path segment).
pub fn fill(template: &str, values: &[String]) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut values = values.iter();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        for b in values.next().map_or("", String::as_str).bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

/// Percent-encodes a query-string value (everything but unreserved characters).
pub fn encode_component(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `?a=1&b=2` from `["a=1", "b=2"]`; empty for none.
pub fn join_query(parts: &[String]) -> String {
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Declares endpoints: a doc line (the summary), then `Name: METHOD "path" [as Content], Params,
/// Request => Response;`.
macro_rules! endpoints {
    ($(
        $(#[doc = $doc:literal])+
        $name:ident: $method:ident $path:literal $(as $content:ident)?,
        $params:ty, $req:ty => $resp:ty $(, $status:literal)?;
    )*) => {
        $(
            $(#[doc = $doc])+
            #[derive(Debug, Clone, Copy)]
            pub struct $name;

            impl Endpoint for $name {
                const METHOD: Method = Method::$method;
                const PATH: &'static str = $path;
                $(const CONTENT: Content = Content::$content;)?
                $(const STATUS: u16 = $status;)?
                const SUMMARY: &'static str = endpoints!(@first $($doc),+);
                type Params = $params;
                type Request = $req;
                type Response = $resp;
            }
        )*

        /// Method and path of every endpoint, in declaration order (the manager checks that its
        /// route table registers exactly these).
        pub const ALL: &[(Method, &str)] = &[$((Method::$method, $path)),*];

        /// Adds every endpoint to an OpenAPI document, with the schemas of its types.
        #[cfg(feature = "schema")]
        pub fn describe(doc: &mut crate::openapi::Document) {
            $(describe_one::<$name>(doc);)*
        }
    };
    (@first $first:literal $(, $rest:literal)*) => { $first.trim_ascii() };
}

endpoints! {
    /// Liveness and database health.
    Health: Get "/status/health", (), NoBody => HealthReport;
    /// This API's OpenAPI 3.1 document.
    OpenApiDocument: Get "/api/v1/openapi.json", (), NoBody => serde_json::Value;
    /// The web CA's root certificate (PEM): the root browsers trust for the web UI.
    RootCertificate: Get "/api/v1/ca/root.crt" as Pem, (), NoBody => NoBody;
    /// The fleet CA's root certificate (PEM), which signs agents' certificates and the manager's
    /// client certificate; for checking those, never for a browser.
    FleetCertificate: Get "/api/v1/ca/fleet.crt" as Pem, (), NoBody => NoBody;
    /// The CRL in force (PEM), signed by the fleet CA: an agent that was unreachable until its
    /// CRL expired is brought back by copying this into its `tls.crl` file.
    CurrentCrl: Get "/api/v1/ca/crl" as Pem, (), NoBody => NoBody;
    /// Prometheus metrics (text exposition): requests and latency by route, sign-in outcomes,
    /// the audit chain, certificate expiry, hosts and jobs by state, poll latency. Admins only;
    /// a scraper without an Admin token reads the loopback listener (`metrics.listen`).
    Metrics: Get "/metrics" as Metrics, (), NoBody => NoBody;
    /// What the front page shows: health, counts, the audit chain's state.
    Overview: Get "/api/v1/overview", (), NoBody => SystemOverview;
    /// A new host enrols with a one-time token and its CSR.
    Enroll: Post "/api/v1/enroll", (), EnrollRequest => EnrollResponse, 201;
    /// Whether first-run setup is still pending.
    GetSetup: Get "/api/v1/setup", (), NoBody => SetupStatus;
    /// First-run setup: the one-time token creates the first Admin.
    CompleteSetup: Post "/api/v1/setup", (), SetupRequest => SetupDone, 201;
    /// Sign in with user name and password.
    Login: Post "/api/v1/auth/login", (), LoginRequest => LoginResult;
    /// The second sign-in step with a code (TOTP or recovery code).
    LoginMfa: Post "/api/v1/auth/login/mfa", (), MfaLoginRequest => LoginResult;
    /// The second step a single sign-on left pending for this browser.
    LoginPending: Get "/api/v1/auth/login/pending", (), NoBody => MfaChallenge;
    /// Starts the second sign-in step with a security key.
    LoginWebauthnStart: Post "/api/v1/auth/login/webauthn/start", (), PasskeyLoginStart => PasskeyLoginOptions;
    /// Finishes the second sign-in step with a security key.
    LoginWebauthnFinish: Post "/api/v1/auth/login/webauthn/finish", (), PasskeyLoginFinish => LoginResult;
    /// Exchanges the refresh token for new tokens (rotated on every use).
    Refresh: Post "/api/v1/auth/refresh", (), RefreshRequest => SessionInfo;
    /// Whether single sign-on is offered.
    OidcStatusGet: Get "/api/v1/auth/oidc/status", (), NoBody => OidcStatus;
    /// Starts single sign-on (a browser redirect to the identity provider).
    OidcStart: Get "/api/v1/auth/oidc/start" as Redirect, (), NoBody => NoBody, 302;
    /// The identity provider's redirect back (a browser redirect to the UI).
    OidcCallback: Get "/api/v1/auth/oidc/callback" as Redirect, (), NoBody => NoBody, 302;
    /// Signs out this session.
    Logout: Post "/api/v1/auth/logout", (), NoBody => NoBody, 204;
    /// Who is signed in.
    GetMe: Get "/api/v1/auth/me", (), NoBody => Me;
    /// The signed-in user's second factors.
    GetMfa: Get "/api/v1/auth/mfa", (), NoBody => MfaStatus;
    /// Starts enrolling an authenticator app.
    TotpStart: Post "/api/v1/auth/mfa/totp", (), TotpEnrolRequest => TotpEnrolment, 201;
    /// Confirms an authenticator app with a code.
    TotpConfirm: Post "/api/v1/auth/mfa/totp/{credential_id}/confirm", CredentialId, TotpConfirmRequest => RecoveryCodes;
    /// Replaces the recovery codes.
    RenewRecoveryCodes: Post "/api/v1/auth/mfa/recovery-codes", (), NoBody => RecoveryCodes;
    /// Starts registering a security key.
    WebauthnRegisterStart: Post "/api/v1/auth/mfa/webauthn/register/start", (), PasskeyRegisterStart => PasskeyRegisterOptions;
    /// Finishes registering a security key.
    WebauthnRegisterFinish: Post "/api/v1/auth/mfa/webauthn/register/finish", (), PasskeyRegisterFinish => RecoveryCodes;
    /// Removes a second factor.
    RemoveFactor: Delete "/api/v1/auth/mfa/{credential_id}", CredentialId, NoBody => NoBody, 204;
    /// The audit log, newest first, filtered and paged (`AuditQuery` in the query string), with
    /// the hash chain verified up to its newest record.
    ListAudit: Get "/api/v1/audit", (), NoBody => AuditPage;
    /// Hosts the caller may see, filtered, sorted and paged (`HostQuery` in the query string).
    ListHosts: Get "/api/v1/hosts", (), NoBody => HostPage;
    /// One host with its certificate.
    GetHost: Get "/api/v1/hosts/{host_id}", HostId, NoBody => HostDetail;
    /// The host's public certificate bundle (tar.gz).
    HostBundle: Get "/api/v1/hosts/{host_id}/certificate-bundle" as Archive, HostId, NoBody => NoBody;
    /// Renews the host's agent certificate through the agent.
    RenewHostCertificate: Post "/api/v1/hosts/{host_id}/certificate/renew", HostId, NoBody => CertificateInfo;
    /// Removes the host: its actor stops, its certificates are revoked, its inventory goes.
    DeleteHost: Delete "/api/v1/hosts/{host_id}", HostId, NoBody => NoBody, 204;
    /// Poll the host's agent now (health, then inventory).
    RefreshHost: Post "/api/v1/hosts/{host_id}/refresh", HostId, NoBody => NoBody, 202;
    /// The host's installed packages as last reported, by name.
    HostPackages: Get "/api/v1/hosts/{host_id}/packages", HostId, NoBody => Vec<HostPackage>;
    /// The host's pending updates as last reported, security first.
    HostPatches: Get "/api/v1/hosts/{host_id}/patches", HostId, NoBody => Vec<HostPatch>;
    /// A single-use ticket (30 s) that opens the live event stream.
    IssueEventTicket: Post "/api/v1/events/ticket", (), NoBody => EventTicket, 201;
    /// Live events (`?ticket=`): host state changes, filtered to the hosts the ticket's user may
    /// see. Each message is a `LiveEvent` in JSON; the first is always a `Resync` (what changed
    /// between the client's last read and its subscription is on no stream: read again).
    EventStream: Get "/api/v1/events/ws" as WebSocket, (), NoBody => NoBody, 101;
    /// Starts probing a range for agents (TCP, then TLS with the manager's client certificate).
    StartDiscovery: Post "/api/v1/discovery", (), DiscoveryRequest => DiscoveryRun, 202;
    /// Discovery runs, newest first.
    ListDiscoveries: Get "/api/v1/discovery", (), NoBody => Vec<DiscoveryRun>;
    /// One discovery run, with its progress and what it found.
    GetDiscovery: Get "/api/v1/discovery/{run_id}", DiscoveryRunId, NoBody => DiscoveryRun;
    /// Stops a running discovery; what it found so far is kept.
    CancelDiscovery: Post "/api/v1/discovery/{run_id}/cancel", DiscoveryRunId, NoBody => DiscoveryRun;
    /// Adopts agents a run found as hosts.
    AdoptDiscovered: Post "/api/v1/discovery/{run_id}/adopt", DiscoveryRunId, AdoptRequest => AdoptResult;
    /// Patch jobs with at least one host the caller may see, newest first.
    ListJobs: Get "/api/v1/jobs", (), NoBody => Vec<JobSummary>;
    /// Creates a patch job on hosts and groups and starts rolling it out, wave by wave.
    CreateJob: Post "/api/v1/jobs", (), NewJob => JobDetail, 201;
    /// One patch job with its hosts (those the caller may see).
    GetJob: Get "/api/v1/jobs/{job_id}", JobId, NoBody => JobDetail;
    /// Cancels what a running job has not started; hosts being patched finish.
    CancelJob: Post "/api/v1/jobs/{job_id}/cancel", JobId, NoBody => JobDetail;
    /// Rolls an ended job back on its hosts (each agent undoes its job).
    RollbackJob: Post "/api/v1/jobs/{job_id}/rollback", JobId, JobRollback => JobDetail;
    /// Maintenance windows of the hosts and groups the caller may see, with their next opening.
    ListWindows: Get "/api/v1/windows", (), NoBody => Vec<WindowInfo>;
    /// Creates a maintenance window for a host or a group.
    CreateWindow: Post "/api/v1/windows", (), NewWindow => WindowInfo, 201;
    /// Deletes a maintenance window.
    DeleteWindow: Delete "/api/v1/windows/{window_id}", WindowId, NoBody => NoBody, 204;
    /// Host groups the caller may see.
    ListGroups: Get "/api/v1/groups", (), NoBody => Vec<GroupInfo>;
    /// Creates a host group.
    CreateGroup: Post "/api/v1/groups", (), NewGroup => GroupInfo, 201;
    /// Renames a group or changes its description.
    UpdateGroup: Patch "/api/v1/groups/{group_id}", GroupId, GroupUpdate => GroupInfo;
    /// Deletes a group: its hosts stay (in their other groups), its Operators lose access to them.
    DeleteGroup: Delete "/api/v1/groups/{group_id}", GroupId, NoBody => NoBody, 204;
    /// Replaces the groups a host belongs to.
    SetHostGroups: Put "/api/v1/hosts/{host_id}/groups", HostId, HostGroups => HostGroups;
    /// Every user account.
    ListUsers: Get "/api/v1/users", (), NoBody => Vec<UserInfo>;
    /// Creates a local account.
    CreateUser: Post "/api/v1/users", (), NewUser => UserInfo, 201;
    /// Changes the given fields of an account.
    UpdateUser: Patch "/api/v1/users/{user_id}", UserId, UserUpdate => UserInfo;
    /// Deletes an account.
    DeleteUser: Delete "/api/v1/users/{user_id}", UserId, NoBody => NoBody, 204;
    /// Removes every second factor of an account and ends its sessions.
    ResetUserMfa: Post "/api/v1/users/{user_id}/reset-mfa", UserId, NoBody => NoBody, 204;
    /// Ends every session of an account.
    LogoutUser: Post "/api/v1/users/{user_id}/logout", UserId, NoBody => NoBody, 204;
    /// Every certificate the CA issued.
    ListCertificates: Get "/api/v1/certificates", (), NoBody => Vec<CertificateInfo>;
    /// Rotates the manager's client certificate for agents.
    RotateManagerClient: Post "/api/v1/certificates/manager-client/rotate", (), NoBody => RotatedClient;
    /// Revokes a certificate and pushes the new CRL to the agents.
    RevokeCertificate: Post "/api/v1/certificates/{certificate_id}/revoke", CertificateId, RevokeRequest => CrlStatus;
    /// The CRL in force and its delivery to every agent.
    GetCrlStatus: Get "/api/v1/certificates/crl", (), NoBody => CrlStatus;
    /// Tries every agent that lacks the current CRL again at once (backoffs cleared).
    RetryCrlDelivery: Post "/api/v1/certificates/crl/retry", (), NoBody => CrlStatus, 202;
    /// How often the host actors poll their agents.
    GetPolling: Get "/api/v1/settings/polling", (), NoBody => PollingSettings;
    /// New poll intervals, applied to every host actor at once.
    PutPolling: Put "/api/v1/settings/polling", (), PollingSettings => PollingSettings;
    /// The manager's source-address allow-list.
    GetAllowList: Get "/api/v1/settings/allow-list", (), NoBody => AllowListSettings;
    /// Replaces the allow-list.
    PutAllowList: Put "/api/v1/settings/allow-list", (), AllowListSettings => AllowListSettings;
    /// Single sign-on settings (the client secret is never sent back).
    GetOidcSettings: Get "/api/v1/settings/oidc", (), NoBody => OidcSettings;
    /// Replaces the single sign-on settings.
    PutOidcSettings: Put "/api/v1/settings/oidc", (), OidcSettings => OidcSettings;
    /// Checks the tenant's discovery document and keys without enabling anything.
    TestOidc: Post "/api/v1/settings/oidc/test", (), OidcSettings => OidcTestResult;
    /// Enrollment tokens (no secrets).
    ListEnrollmentTokens: Get "/api/v1/enrollment-tokens", (), NoBody => Vec<EnrollmentTokenInfo>;
    /// Makes a one-time enrollment token (its secret is shown once).
    CreateEnrollmentToken: Post "/api/v1/enrollment-tokens", (), NewEnrollmentToken => CreatedEnrollmentToken, 201;
    /// Withdraws an unused enrollment token.
    DeleteEnrollmentToken: Delete "/api/v1/enrollment-tokens/{token_id}", EnrollmentTokenId, NoBody => NoBody, 204;
}

/// Adds endpoint `E` to `doc`: its body schema (none for [`NoBody`]), its success answer and the
/// error statuses every route can answer with.
#[cfg(feature = "schema")]
fn describe_one<E>(doc: &mut crate::openapi::Document)
where
    E: Endpoint,
    E::Request: schemars::JsonSchema + 'static,
    E::Response: schemars::JsonSchema + 'static,
{
    use crate::openapi::{schema_of, SchemaFn};
    use std::any::TypeId;
    let request: Option<SchemaFn> = (TypeId::of::<E::Request>() != TypeId::of::<NoBody>())
        .then_some(schema_of::<E::Request> as SchemaFn);
    let mut errors = vec![400, 401, 403, 404, 429, 500, 503];
    if request.is_some() {
        errors.extend([413, 415]);
    }
    errors.sort_unstable();
    let op = doc.route(
        E::METHOD.as_str(),
        E::PATH,
        E::SUMMARY,
        request,
        schema_of::<E::Response>,
        &errors,
    );
    op.status(E::STATUS);
    match E::CONTENT {
        Content::Json if TypeId::of::<E::Response>() == TypeId::of::<NoBody>() => op.media(None),
        Content::Json => op.media(Some(crate::openapi::JSON)),
        Content::Pem => op.media(Some("application/x-pem-file")),
        Content::Archive => op.media(Some("application/gzip")),
        Content::Metrics => op.media(Some("text/plain")),
        Content::Redirect | Content::WebSocket => op.media(None),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fill_in_order_and_encode() {
        assert_eq!(UpdateUser::path(&UserId(7)), "/api/v1/users/7");
        assert_eq!(
            fill("/a/{x}/b/{y}", &["1 2".into(), "é/".into()]),
            "/a/1%202/b/%C3%A9%2F"
        );
        assert_eq!(ListHosts::path(&()), "/api/v1/hosts");
        assert_eq!(GetMe::SUMMARY, "Who is signed in.");
    }

    #[test]
    fn every_endpoint_is_declared_once() {
        let mut seen = std::collections::HashSet::new();
        for (m, p) in ALL {
            assert!(seen.insert((m.as_str(), *p)), "{m:?} {p} declared twice");
            let params = p.matches('{').count();
            assert_eq!(params, p.matches('}').count(), "{p}");
        }
    }
}
