//! Hosts, groups, users, certificates and enrollment tokens as the manager's API and UI see them.

use crate::ids::{CertificateId, DiscoveryRunId, EnrollmentTokenId, GroupId, HostId, UserId};
use crate::vocab::{CertKind, CertState, HostStatus, Role};
use serde::{Deserialize, Serialize};

/// A host in lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HostSummary {
    /// Id.
    pub id: HostId,
    /// Name shown.
    pub display_name: String,
    /// DNS name.
    pub fqdn: Option<String>,
    /// Address the agent is reached at.
    pub ip_address: String,
    /// Agent port.
    pub agent_port: i32,
    /// State as last seen.
    pub status: HostStatus,
    /// OS id and version (`debian 12`).
    pub os: Option<String>,
    /// Pending updates.
    pub pending_patches: i64,
    /// Pending security updates.
    pub pending_security_patches: i64,
    /// A reboot is required.
    pub reboot_required: bool,
    /// Last successful contact (RFC 3339).
    pub last_seen_at: Option<String>,
    /// Group names.
    pub groups: Vec<String>,
}

/// How the hosts list is sorted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum HostSort {
    /// By name.
    #[default]
    Name,
    /// By state, then name.
    Status,
    /// By pending security updates, then all pending updates.
    Updates,
    /// By last contact.
    LastSeen,
}

/// `GET /api/v1/hosts?…`: filters, sort and page; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HostQuery {
    /// Part of the name, DNS name or address.
    #[serde(default)]
    pub q: Option<String>,
    /// Only hosts in this state.
    #[serde(default)]
    pub status: Option<HostStatus>,
    /// Only members of this group.
    #[serde(default)]
    pub group: Option<GroupId>,
    /// Only this OS id (`debian`, `rocky`, …).
    #[serde(default)]
    pub os: Option<String>,
    /// Only hosts with (`true`) or without (`false`) pending security updates.
    #[serde(default)]
    pub security: Option<bool>,
    /// Sort key.
    #[serde(default)]
    pub sort: Option<HostSort>,
    /// Descending.
    #[serde(default)]
    pub desc: Option<bool>,
    /// Page, from 1.
    #[serde(default)]
    pub page: Option<u32>,
    /// Hosts per page (1 to 500; 100 when absent).
    #[serde(default)]
    pub per_page: Option<u32>,
}

impl HostQuery {
    /// The query string (`?…`, empty when nothing is set), values percent-encoded.
    pub fn to_query_string(&self) -> String {
        use crate::api::encode_component as enc;
        let mut parts = Vec::new();
        if let Some(q) = self.q.as_deref().filter(|q| !q.is_empty()) {
            parts.push(format!("q={}", enc(q)));
        }
        if let Some(s) = self.status {
            parts.push(format!("status={}", s.as_str()));
        }
        if let Some(g) = self.group {
            parts.push(format!("group={g}"));
        }
        if let Some(os) = self.os.as_deref().filter(|o| !o.is_empty()) {
            parts.push(format!("os={}", enc(os)));
        }
        if let Some(b) = self.security {
            parts.push(format!("security={b}"));
        }
        if let Some(s) = self.sort {
            let word = match s {
                HostSort::Name => "name",
                HostSort::Status => "status",
                HostSort::Updates => "updates",
                HostSort::LastSeen => "last_seen",
            };
            parts.push(format!("sort={word}"));
        }
        if let Some(d) = self.desc {
            parts.push(format!("desc={d}"));
        }
        if let Some(p) = self.page {
            parts.push(format!("page={p}"));
        }
        if let Some(p) = self.per_page {
            parts.push(format!("per_page={p}"));
        }
        crate::api::join_query(&parts)
    }
}

/// One page of hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HostPage {
    /// Hosts matching the filters (all pages).
    pub total: i64,
    /// This page, from 1.
    pub page: u32,
    /// Hosts per page.
    pub per_page: u32,
    /// The hosts of this page.
    pub hosts: Vec<HostSummary>,
}

/// One host with its certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HostDetail {
    /// The summary fields.
    #[serde(flatten)]
    pub summary: HostSummary,
    /// Kernel.
    pub kernel: Option<String>,
    /// Agent version.
    pub agent_version: Option<String>,
    /// Why the state is not healthy.
    pub status_reason: Option<String>,
    /// Since when the state holds (RFC 3339).
    pub status_since: Option<String>,
    /// Last health poll, answered or not (RFC 3339).
    pub last_health_at: Option<String>,
    /// Last inventory (RFC 3339).
    pub last_patch_scan_at: Option<String>,
    /// Current certificate.
    pub certificate: Option<CertificateInfo>,
    /// Registration time (RFC 3339).
    pub created_at: String,
}

/// A host group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct GroupInfo {
    /// Id.
    pub id: GroupId,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Member hosts.
    pub hosts: i64,
}

/// `POST /api/v1/groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    /// Name (1–64 characters, unique).
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
}

/// `PATCH /api/v1/groups/{id}`: only the fields given change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct GroupUpdate {
    /// New name (1–64 characters, unique).
    #[serde(default)]
    pub name: Option<String>,
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
}

/// `PUT /api/v1/hosts/{id}/groups`: the groups a host belongs to, all at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HostGroups {
    /// Group ids (each must exist).
    pub group_ids: Vec<GroupId>,
}

/// A user account as admins see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UserInfo {
    /// Id.
    pub id: UserId,
    /// Sign-in name.
    pub username: String,
    /// Display name.
    pub display_name: String,
    /// E-mail.
    pub email: Option<String>,
    /// Role.
    pub role: Role,
    /// Cannot sign in.
    pub disabled: bool,
    /// Must use a second factor.
    pub mfa_required: bool,
    /// Confirmed second factors.
    pub mfa_factors: i64,
    /// Groups (Operators see only their hosts).
    pub group_ids: Vec<GroupId>,
    /// Signed in through single sign-on.
    pub sso: bool,
    /// Last sign-in (RFC 3339).
    pub last_login_at: Option<String>,
    /// Locked after failed sign-ins until (RFC 3339).
    pub locked_until: Option<String>,
}

/// `POST /api/v1/users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Sign-in name.
    pub username: String,
    /// Display name (the user name when empty).
    #[serde(default)]
    pub display_name: String,
    /// E-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// Initial password (policy applies).
    pub password: String,
    /// Role.
    pub role: Role,
    /// Groups of an Operator.
    #[serde(default)]
    pub group_ids: Vec<GroupId>,
    /// Require a second factor.
    #[serde(default)]
    pub mfa_required: bool,
}

/// `PATCH /api/v1/users/{id}`: only the fields given change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    /// Display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// E-mail (empty string clears it).
    #[serde(default)]
    pub email: Option<String>,
    /// New password (policy applies; ends the user's sessions).
    #[serde(default)]
    pub password: Option<String>,
    /// Role.
    #[serde(default)]
    pub role: Option<Role>,
    /// Disable (ends the user's sessions) or enable.
    #[serde(default)]
    pub disabled: Option<bool>,
    /// Require a second factor.
    #[serde(default)]
    pub mfa_required: Option<bool>,
    /// Replace the groups.
    #[serde(default)]
    pub group_ids: Option<Vec<GroupId>>,
}

/// A certificate issued by the manager's CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CertificateInfo {
    /// Id.
    pub id: CertificateId,
    /// Serial (hex).
    pub serial: String,
    /// What it is for.
    pub kind: CertKind,
    /// Subject common name.
    pub subject: String,
    /// Subject alternative names.
    pub sans: Vec<String>,
    /// Host, for agent certificates.
    pub host_id: Option<HostId>,
    /// SHA-256 fingerprint (hex).
    pub fingerprint_sha256: String,
    /// Start of validity (RFC 3339).
    pub not_before: String,
    /// End of validity (RFC 3339).
    pub not_after: String,
    /// Whole days until expiry (negative: expired).
    pub expires_in_days: i64,
    /// Where it stands (`expiring`: within the renewal window).
    pub state: CertState,
    /// Revocation time (RFC 3339).
    pub revoked_at: Option<String>,
    /// Revocation reason.
    pub revocation_reason: Option<String>,
}

/// `POST /api/v1/certificates/{id}/revoke`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// Why (1–200 characters), kept in the audit log.
    pub reason: String,
}

/// `GET`/`PUT /api/v1/settings/polling`: how often the host actors poll their agents. Saved values
/// apply to every actor at once and override the configuration file's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PollingSettings {
    /// Seconds between health polls (10 .. 86400).
    pub health_interval_secs: u64,
    /// Seconds between inventory polls (60 .. 604800).
    pub inventory_interval_secs: u64,
}

/// A host's state changed (the event hub; later pushed to browsers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HostStateEvent {
    /// Host.
    pub host_id: HostId,
    /// Its state now.
    pub status: HostStatus,
    /// Why, when not healthy.
    pub reason: Option<String>,
    /// When it was seen (RFC 3339).
    pub at: String,
}

/// A message of the live event stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    /// A host's state changed.
    HostState(HostStateEvent),
    /// A host's part of a patch job changed (or its agent's job said something).
    JobTarget(crate::jobs::JobTargetEvent),
    /// A patch job's state changed.
    JobState(crate::jobs::JobStateEvent),
    /// Events may have been missed (the stream's first message, or the client fell behind):
    /// reload what is shown.
    Resync,
}

/// `POST /api/v1/events/ticket`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EventTicket {
    /// Opens `/api/v1/events/ws?ticket=…` once.
    pub ticket: String,
    /// Seconds it stays valid.
    pub expires_in_secs: u64,
}

/// An installed package as a host last reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HostPackage {
    /// Name.
    pub name: String,
    /// Architecture.
    pub arch: String,
    /// Version.
    pub version: String,
    /// Package manager state.
    pub status: String,
}

/// A pending update as a host last reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HostPatch {
    /// Package.
    pub name: String,
    /// Architecture.
    pub arch: String,
    /// Installed version.
    pub installed_version: Option<String>,
    /// Version the update brings.
    pub candidate_version: String,
    /// From a security suite.
    pub security: bool,
    /// Severity, where known.
    pub severity: Option<String>,
    /// CVE ids named by the update.
    pub cves: Vec<String>,
    /// Usually needs a reboot.
    pub reboot_likely: bool,
}

/// The CRL in force and how far its delivery to the agents has come
/// (`GET /api/v1/certificates/crl`, and the answer of a revocation, which returns at once while
/// the CRL is delivered in the background).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CrlStatus {
    /// CRL number (strictly increasing).
    pub number: i64,
    /// Issued (RFC 3339).
    pub this_update: String,
    /// Agents refuse every client once this passes (RFC 3339); the manager issues a new CRL a
    /// day after the last one, well before.
    pub next_update: String,
    /// Certificates it lists.
    pub revoked: i64,
    /// Why it was issued (`revocation`, `rotation`, `refresh`, `first`).
    pub reason: String,
    /// Enrolled agents.
    pub agents: usize,
    /// Agents that acknowledged this CRL.
    pub delivered: usize,
    /// Agents that have not, with the state of the attempts (the courier keeps trying).
    pub pending: Vec<CrlDelivery>,
}

/// One agent that does not hold the current CRL yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CrlDelivery {
    /// Host.
    pub host_id: HostId,
    /// Its name.
    pub host: String,
    /// The newest CRL number it acknowledged.
    pub acked_number: Option<i64>,
    /// Failed attempts for the current CRL.
    pub attempts: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Next attempt (RFC 3339); `None`: in the next round.
    pub next_attempt_at: Option<String>,
}

/// The manager's new client certificate after a rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RotatedClient {
    /// Serial (hex) of the certificate now in use.
    pub serial: String,
}

/// `POST /api/v1/enrollment-tokens`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewEnrollmentToken {
    /// Group the new host joins.
    #[serde(default)]
    pub group_id: Option<GroupId>,
    /// Minutes of validity (5 to 10080; the configured default when absent).
    #[serde(default)]
    pub minutes: Option<i64>,
    /// Addresses the new host will be reached at, for a host behind NAT whose requests reach the
    /// manager from another address. Empty (the default): the host must enroll from one of the
    /// addresses it asks for.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The new host's DNS name or IP address ("Add a host"): an address is vouched for like
    /// `addresses`; a name is resolved now, its addresses are vouched for, and the host must
    /// enroll under that name.
    #[serde(default)]
    pub host: Option<String>,
}

/// A token just made: the only time its secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CreatedEnrollmentToken {
    /// Id.
    pub id: EnrollmentTokenId,
    /// The whole token for `patch-agent enroll --token`.
    pub token: String,
    /// The command to run on the host.
    pub command: String,
    /// On a Debian-family host without the agent: one command that downloads the agent package
    /// from the manager, checks its SHA-256, installs it, enrolls with the token and starts the
    /// service. `None` when the manager has no agent package to serve.
    #[serde(default)]
    pub install_command: Option<String>,
    /// The command names the manager by a loopback name or address (`localhost`, `127.0.0.1`),
    /// which only the manager's own machine can reach: `server.public_url` should be set.
    #[serde(default)]
    pub manager_url_is_local: bool,
    /// Expiry (RFC 3339).
    pub expires_at: String,
    /// The name the host must enroll under, when one was given.
    #[serde(default)]
    pub hostname: Option<String>,
    /// The addresses vouched for (a name's as resolved now).
    #[serde(default)]
    pub addresses: Vec<String>,
}

/// An enrollment token in lists (no secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EnrollmentTokenInfo {
    /// Id.
    pub id: EnrollmentTokenId,
    /// Group the host joins.
    pub group_id: Option<GroupId>,
    /// Expiry (RFC 3339).
    pub expires_at: String,
    /// Use time (RFC 3339).
    pub used_at: Option<String>,
    /// Host that used it.
    pub used_by_host_id: Option<HostId>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Addresses it was made for (hosts behind NAT); empty when none were named.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The name the host must enroll under, when one was given.
    #[serde(default)]
    pub hostname: Option<String>,
}

/// `GET`/`PUT /api/v1/settings/allow-list`: which source addresses may use the manager.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AllowListSettings {
    /// Enforced: every address not listed is refused (deny by default), loopback included.
    pub enabled: bool,
    /// Addresses and CIDR ranges (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`).
    pub entries: Vec<String>,
}

/// `POST /api/v1/discovery`: probe a range for agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DiscoveryRequest {
    /// The range, `address/prefix` (IPv4 or IPv6); a single address is a /32 or /128.
    pub cidr: String,
    /// Agent port (default 12443).
    #[serde(default)]
    pub port: Option<u16>,
}

/// What answered at an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ProbeOutcome {
    /// A patch-agent with a certificate from this fleet's CA that accepted the manager.
    Agent,
    /// TLS with a certificate from another CA (another fleet, or not enrolled).
    Foreign,
    /// The port is open but no TLS handshake with the manager completed (an agent whose
    /// allow-list leaves the manager out, or another service).
    NoHandshake,
}

/// One address where something answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DiscoveredAgent {
    /// Address probed.
    pub address: String,
    /// Port probed.
    pub port: u16,
    /// What answered.
    pub outcome: ProbeOutcome,
    /// The certificate's subject common name.
    pub subject: Option<String>,
    /// Its subject alternative names (`DNS:…`, `IP:…`).
    pub names: Vec<String>,
    /// SHA-256 of the certificate, hex.
    pub fingerprint: Option<String>,
    /// End of the certificate's validity (RFC 3339).
    pub not_after: Option<String>,
    /// The host this agent already is, if managed.
    pub host_id: Option<HostId>,
    /// Whether it can be adopted as a new host.
    pub adoptable: bool,
    /// Why (not), in a sentence.
    pub note: String,
}

/// State of a discovery run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum DiscoveryState {
    /// Probing.
    Running,
    /// Every address probed.
    Done,
    /// Stopped by a user; what was found so far is kept.
    Cancelled,
    /// Stopped by the manager (restart) before the end.
    Interrupted,
}

/// A discovery run and what it found so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DiscoveryRun {
    /// Id.
    pub id: DiscoveryRunId,
    /// Range probed.
    pub cidr: String,
    /// Port probed.
    pub port: u16,
    /// State.
    pub state: DiscoveryState,
    /// Addresses in the range.
    pub total: u64,
    /// Addresses probed so far.
    pub probed: u64,
    /// Addresses where something answered, by address.
    pub found: Vec<DiscoveredAgent>,
    /// Start (RFC 3339).
    pub started_at: String,
    /// End (RFC 3339).
    pub finished_at: Option<String>,
    /// Milliseconds from start to end (or to now while running).
    pub elapsed_ms: u64,
}

/// `POST /api/v1/discovery/{id}/adopt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AdoptRequest {
    /// Addresses of the run's results to adopt.
    pub addresses: Vec<String>,
    /// Put the new hosts into this group.
    #[serde(default)]
    pub group_id: Option<GroupId>,
}

/// One address adoption refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AdoptRefusal {
    /// Address.
    pub address: String,
    /// Why.
    pub reason: String,
}

/// What an adoption did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AdoptResult {
    /// New hosts, in the order asked.
    pub adopted: Vec<HostId>,
    /// Addresses not adopted, and why.
    pub refused: Vec<AdoptRefusal>,
}
