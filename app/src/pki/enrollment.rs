//! Enrollment: one-time tokens, and a new host joining with one.
//!
//! A token (format in `shared::enroll`) carries its id, a random secret and the CA's fingerprint,
//! so the agent can check the manager before trusting it. Only the SHA-256 of the secret is
//! stored, and a token is consumed by one conditional update that also checks expiry, so two
//! hosts racing with the same token cannot both enroll.
//!
//! Tokens are made here for both the API and the `patch-manager enrollment-token` command:
//! [`create_token`] checks the lifetime and the group, stores the token and gives the audit entry
//! both record. [`enroll`] is the operation behind `POST /api/v1/enroll`: in one transaction the
//! token is consumed, the host row, its group membership and its certificate record are written,
//! or nothing is. A refused token answers a generic 401 and the precise reason (unknown, used,
//! expired) goes to the audit log.

use crate::audit::Requester;
use crate::clock::rfc3339;
use crate::config::Config;
use crate::db::audit::{NewAuditEntry, Outcome};
use crate::db::enrollment::{self as store, EnrollmentTokenRow, NewEnrollmentToken};
use crate::db::hosts::{self, NewHost};
use crate::db::transaction::transaction;
use crate::db::{certificates, crls, DbConnection, DbError};
use crate::error::AppError;
use crate::pki::{self, CertKind, Issued, San};
use crate::state::AppState;
use chrono::NaiveDateTime;
use sha2::{Digest, Sha256};
use shared::enroll::{EnrollRequest, EnrollResponse};
use shared::fleet::{CreatedEnrollmentToken, EnrollmentTokenInfo};
use std::net::IpAddr;

pub use shared::enroll::EnrollmentToken;

/// Shortest lifetime of a token, in minutes.
pub const MIN_MINUTES: i64 = 5;
/// Longest lifetime of a token, in minutes (a week).
pub const MAX_MINUTES: i64 = 7 * 24 * 60;
/// Most addresses one host may register.
const MAX_ADDRESSES: usize = 16;
/// Largest CSR accepted.
const MAX_CSR_BYTES: usize = 16 * 1024;
/// Tokens listed at most.
const LIST_LIMIT: i64 = 200;

/// Why a token was refused. Callers tell the client only "invalid token" and audit the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token of ours (bad format, unknown id, wrong secret, wrong CA).
    #[error("unknown or forged token")]
    Unknown,
    /// Used before.
    #[error("token already used")]
    Used,
    /// Past its expiry.
    #[error("token expired")]
    Expired,
}

/// Why a token could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TokenRequestError {
    /// The lifetime is out of range.
    #[error("minutes must be between 5 and 10080 (a week)")]
    Minutes,
    /// The group does not exist.
    #[error("no such group")]
    NoSuchGroup,
    /// The addresses vouched for are not usable.
    #[error("{0}")]
    Addresses(String),
    /// Database.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<TokenRequestError> for AppError {
    fn from(e: TokenRequestError) -> Self {
        match e {
            TokenRequestError::Minutes => AppError::invalid("minutes", e.to_string()),
            TokenRequestError::NoSuchGroup => AppError::invalid("group_id", e.to_string()),
            TokenRequestError::Addresses(_) => AppError::invalid("addresses", e.to_string()),
            TokenRequestError::Db(e) => AppError::Database(e),
        }
    }
}

fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Makes a token valid until `expires_at`, optionally binding the host to a group: a new random
/// secret, of which only the hash is stored, and the CA fingerprint the agent will check.
pub fn create(
    conn: &mut DbConnection,
    ca_fingerprint: &str,
    request: &TokenRequest,
    expires_at: NaiveDateTime,
    now: NaiveDateTime,
) -> Result<EnrollmentToken, DbError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| DbError::Inconsistent("the system random generator failed".into()))?;
    let secret = hex::encode(bytes);
    let addresses = (!request.addresses.is_empty())
        .then(|| serde_json::to_string(&request.addresses))
        .transpose()
        .map_err(|e| DbError::Inconsistent(e.to_string()))?;
    let id = store::insert(
        conn,
        &NewEnrollmentToken {
            token_hash: &hash_secret(&secret),
            group_id: request.group_id,
            created_by: request.created_by,
            expires_at,
            created_at: now,
            addresses_json: addresses.as_deref(),
            hostname: request.hostname.as_deref(),
        },
    )?;
    Ok(EnrollmentToken {
        id,
        secret,
        ca_fingerprint: ca_fingerprint.to_owned(),
    })
}

/// What a consumed token binds the new host to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    /// Group the host joins.
    pub group_id: Option<i64>,
    /// Addresses its maker vouched for (hosts behind NAT); empty when none were named.
    pub addresses: Vec<IpAddr>,
    /// The name the host must enroll under, when the token was made for a named host.
    pub hostname: Option<String>,
}

/// The addresses stored with a token (none when the column is empty or unreadable: an unreadable
/// list vouches for nothing, so the source-address rule applies).
fn token_addresses(row: &EnrollmentTokenRow) -> Vec<IpAddr> {
    row.addresses_json
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default()
}

/// Checks and consumes a token in one step; answers what it binds the host to.
pub fn consume(
    conn: &mut DbConnection,
    token: &EnrollmentToken,
    ca_fingerprint: &str,
    now: NaiveDateTime,
) -> Result<Result<Consumed, TokenError>, DbError> {
    if token.ca_fingerprint != ca_fingerprint {
        return Ok(Err(TokenError::Unknown));
    }
    transaction(conn, |conn| {
        let Some(row) = store::find(conn, token.id)? else {
            return Ok(Err(TokenError::Unknown));
        };
        if row.token_hash != hash_secret(&token.secret) {
            return Ok(Err(TokenError::Unknown));
        }
        if row.used_at.is_some() {
            return Ok(Err(TokenError::Used));
        }
        if row.expires_at <= now {
            return Ok(Err(TokenError::Expired));
        }
        // The conditions again in the update itself: of two racing consumers only one wins.
        Ok(if store::mark_used(conn, token.id, now)? {
            Ok(Consumed {
                group_id: row.group_id,
                addresses: token_addresses(&row),
                hostname: row.hostname.clone(),
            })
        } else {
            Err(TokenError::Used)
        })
    })
}

/// What a new token is asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenRequest {
    /// Group the host joins.
    pub group_id: Option<i64>,
    /// Lifetime in minutes; `None`: `pki.enrollment_token_minutes`.
    pub minutes: Option<i64>,
    /// The user asking, when signed in.
    pub created_by: Option<i64>,
    /// Addresses the maker vouches for, for a host behind NAT whose requests arrive from another
    /// address: the host may then ask for these (and only these), from any source.
    pub addresses: Vec<IpAddr>,
    /// The name the host must enroll under (a token made for a named host).
    pub hostname: Option<String>,
}

/// A token just made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedToken {
    /// The token (its secret is shown once).
    pub token: EnrollmentToken,
    /// Group the host joins.
    pub group_id: Option<i64>,
    /// End of validity.
    pub expires_at: NaiveDateTime,
    /// Addresses vouched for.
    pub addresses: Vec<IpAddr>,
    /// The name bound.
    pub hostname: Option<String>,
}

impl CreatedToken {
    /// The audit entry of its creation, the same from the API and the command line.
    pub fn audit_entry(&self, by: &Requester) -> NewAuditEntry {
        by.success("enrollment_token.created")
            .target(format!("enrollment_token:{}", self.token.id))
            .details(serde_json::json!({
                "group_id": self.group_id,
                "expires_at": rfc3339(self.expires_at),
                "addresses": self.addresses,
                "hostname": self.hostname,
            }))
    }
}

/// Makes a token as asked: the lifetime must be 5 minutes to a week, the group must exist and the
/// addresses vouched for (at most 16) must be unicast addresses a host can have.
pub fn create_token(
    conn: &mut DbConnection,
    config: &Config,
    ca_fingerprint: &str,
    request: &TokenRequest,
    now: NaiveDateTime,
) -> Result<CreatedToken, TokenRequestError> {
    let minutes = request
        .minutes
        .unwrap_or(config.pki.enrollment_token_minutes);
    if !(MIN_MINUTES..=MAX_MINUTES).contains(&minutes) {
        return Err(TokenRequestError::Minutes);
    }
    if request.addresses.len() > MAX_ADDRESSES {
        return Err(TokenRequestError::Addresses(format!(
            "name at most {MAX_ADDRESSES} addresses"
        )));
    }
    if let Some(bad) = request
        .addresses
        .iter()
        .find(|a| a.is_unspecified() || a.is_multicast())
    {
        return Err(TokenRequestError::Addresses(format!(
            "{bad} cannot be a host's address"
        )));
    }
    if let Some(g) = request.group_id {
        if !hosts::group_exists(conn, g)? {
            return Err(TokenRequestError::NoSuchGroup);
        }
    }
    let expires_at = now + chrono::Duration::minutes(minutes);
    let token = create(conn, ca_fingerprint, request, expires_at, now)?;
    Ok(CreatedToken {
        token,
        group_id: request.group_id,
        expires_at,
        addresses: request.addresses.clone(),
        hostname: request.hostname.clone(),
    })
}

/// The manager's address as hosts reach it: `server.public_url`, else the first public name and
/// the listening port. Never a request's Host header (which the client chooses).
pub fn manager_url(config: &Config) -> String {
    if !config.server.public_url.is_empty() {
        return config.server.public_url.trim_end_matches('/').to_owned();
    }
    let name = config
        .server
        .public_names
        .first()
        .map_or("MANAGER", String::as_str);
    let name = if name.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{name}]")
    } else {
        name.to_owned()
    };
    format!("https://{name}:{}", config.server.listen.port())
}

/// Whether `url` names the manager by a loopback name or address, which only the manager's own
/// machine can use.
pub fn is_local_url(url: &str) -> bool {
    let host = url
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap_or_default();
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host.to_ascii_lowercase().ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

/// The command to run on the new host: the token on standard input (never on a command line,
/// where `ps` shows it), the manager by its configured address.
pub fn agent_command(config: &Config, token: &str) -> String {
    format!(
        "echo {token} | patch-agent enroll --manager {} --token-file -",
        manager_url(config)
    )
}

/// The one-line install on a Debian-family host: download the agent package from the manager,
/// check it against `sha256` (so `-k` on the download costs no integrity: the digest comes from
/// this page, over the manager's own TLS), install it, enroll (token on standard input), start.
/// The package goes into a fresh private directory (`mktemp -d`, 0700), never a fixed name in
/// /tmp, where another local user could plant a symbolic link or swap the file between the
/// check and the install.
pub fn install_command(config: &Config, token: &str, sha256: &str) -> String {
    let url = manager_url(config);
    format!(
        "d=$(mktemp -d) && \
         curl -fsSk -o \"$d/patch-agent.deb\" {url}/downloads/patch-agent.deb && \
         echo \"{sha256}  $d/patch-agent.deb\" | sha256sum -c --quiet && \
         apt-get install -y \"$d/patch-agent.deb\" && \
         echo {token} | patch-agent enroll --manager {url} --token-file - && \
         systemctl enable --now patch-agent"
    )
}

/// Makes a token for a signed-in user and audits it.
pub async fn issue(
    state: &AppState,
    by: &Requester,
    body: shared::fleet::NewEnrollmentToken,
) -> Result<CreatedEnrollmentToken, AppError> {
    let fingerprint = state.pki.ca.fingerprint().to_owned();
    let config = state.config.clone();
    let addresses = body
        .addresses
        .iter()
        .map(|a| {
            a.trim().parse::<IpAddr>().map_err(|_| {
                AppError::invalid(
                    "addresses",
                    format!("{} is not an IP address", a.escape_default()),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (hostname, addresses) = match body.host.as_deref().map(str::trim) {
        None | Some("") => (None, addresses),
        Some(host) => named_host(&state.config, host, addresses).await?,
    };
    let request = TokenRequest {
        group_id: body.group_id.map(i64::from),
        minutes: body.minutes,
        created_by: by.user_id,
        addresses: addresses.clone(),
        hostname: hostname.clone(),
    };
    let now = state.clock.now();
    let created = state
        .db
        .run(move |c| Ok(create_token(c, &config, &fingerprint, &request, now)))
        .await??;
    state.audit.note(created.audit_entry(by)).await;
    let encoded = created.token.encode();
    Ok(CreatedEnrollmentToken {
        id: created.token.id.into(),
        command: agent_command(&state.config, &encoded),
        install_command: state
            .agent_package
            .as_ref()
            .map(|p| install_command(&state.config, &encoded, &p.sha256)),
        manager_url_is_local: is_local_url(&manager_url(&state.config)),
        token: encoded,
        expires_at: rfc3339(created.expires_at),
        hostname,
        addresses: addresses.iter().map(ToString::to_string).collect(),
    })
}

/// How long resolving a new host's name may take.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A host added by address or name: an address is vouched for as it is; a name must be a DNS
/// name the enrollment policy allows, is resolved now (its addresses are vouched for and shown)
/// and binds the token to that name. Answers the name bound and every address vouched for.
async fn named_host(
    config: &Config,
    host: &str,
    mut addresses: Vec<IpAddr>,
) -> Result<(Option<String>, Vec<IpAddr>), AppError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        if !addresses.contains(&ip) {
            addresses.insert(0, ip);
        }
        return Ok((None, addresses));
    }
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    if !pki::valid_dns_name(&name) {
        return Err(AppError::invalid(
            "host",
            format!(
                "{} is neither an IP address nor a DNS name",
                host.escape_default()
            ),
        ));
    }
    names_allowed(config, &name).map_err(|e| AppError::invalid("host", e.to_string()))?;
    let resolved =
        tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name.as_str(), 0)))
            .await
            .map_err(|_| AppError::invalid("host", format!("{name} did not resolve within 5 s")))?
            .map_err(|e| AppError::invalid("host", format!("{name} does not resolve: {e}")))?;
    let mut found = Vec::new();
    for a in resolved {
        let ip = a.ip().to_canonical();
        if !found.contains(&ip) && !addresses.contains(&ip) {
            found.push(ip);
        }
    }
    if found.is_empty() && addresses.is_empty() {
        return Err(AppError::invalid("host", format!("{name} has no address")));
    }
    found.extend(addresses);
    found.truncate(MAX_ADDRESSES);
    Ok((Some(name), found))
}

/// The newest tokens, secrets never shown again.
pub async fn list(state: &AppState) -> Result<Vec<EnrollmentTokenInfo>, AppError> {
    let rows = state.db.run(|c| store::recent(c, LIST_LIMIT)).await?;
    Ok(rows.into_iter().map(token_info).collect())
}

fn token_info(row: EnrollmentTokenRow) -> EnrollmentTokenInfo {
    EnrollmentTokenInfo {
        id: row.id,
        group_id: row.group_id.map(Into::into),
        expires_at: rfc3339(row.expires_at),
        used_at: row.used_at.map(rfc3339),
        used_by_host_id: row.used_by_host_id.map(Into::into),
        created_at: rfc3339(row.created_at),
        addresses: token_addresses(&row)
            .iter()
            .map(ToString::to_string)
            .collect(),
        hostname: row.hostname,
    }
}

/// Withdraws an unused token and audits it.
pub async fn withdraw(state: &AppState, by: &Requester, id: i64) -> Result<(), AppError> {
    if !state.db.run(move |c| store::delete_unused(c, id)).await? {
        return Err(AppError::NotFound("no such unused token".into()));
    }
    state
        .audit
        .note(
            by.success("enrollment_token.deleted")
                .target(format!("enrollment_token:{id}")),
        )
        .await;
    Ok(())
}

fn bad(code: shared::vocab::ErrorCode, message: impl Into<String>) -> AppError {
    AppError::BadRequest {
        code,
        message: message.into(),
        details: serde_json::Value::Null,
    }
}

fn refused() -> AppError {
    AppError::Unauthorized("invalid or expired enrollment token".into())
}

/// The naming policy of enrollment: the host's name is not one of the manager's own names
/// (`server.public_names`) and ends in `pki.fleet_domain` when one is set. (Names already on a
/// live certificate, and the addresses, are checked inside the enrollment transaction, where the
/// token is known: see [`addresses_allowed`].)
pub fn names_allowed(config: &crate::config::Config, hostname: &str) -> Result<(), AppError> {
    if config
        .server
        .public_names
        .iter()
        .any(|n| n.eq_ignore_ascii_case(hostname))
    {
        return Err(bad(
            shared::vocab::ErrorCode::ValidationFailed,
            format!("{hostname} is a name of the manager itself"),
        ));
    }
    let domain = config
        .pki
        .fleet_domain
        .trim_start_matches('.')
        .to_ascii_lowercase();
    if !domain.is_empty() && !hostname.ends_with(&format!(".{domain}")) {
        return Err(bad(
            shared::vocab::ErrorCode::ValidationFailed,
            format!("host names must end in .{domain}"),
        ));
    }
    Ok(())
}

/// The address policy of enrollment, so a token cannot buy a certificate for somebody else's
/// address. When the token's maker vouched for addresses (a host behind NAT), every address asked
/// for must be one of them, whatever the source. Otherwise the request must come from one of the
/// addresses it asks to be certified for.
pub fn addresses_allowed(
    vouched: &[IpAddr],
    addresses: &[IpAddr],
    source: Option<IpAddr>,
) -> Result<(), AppError> {
    let canon: Vec<IpAddr> = vouched.iter().map(|a| a.to_canonical()).collect();
    if !canon.is_empty() {
        return match addresses
            .iter()
            .find(|a| !canon.contains(&a.to_canonical()))
        {
            Some(a) => Err(bad(
                shared::vocab::ErrorCode::ValidationFailed,
                format!("{a} is not among the addresses this token was made for"),
            )),
            None => Ok(()),
        };
    }
    if let Some(src) = source.map(|s| s.to_canonical()) {
        if !addresses.iter().any(|a| a.to_canonical() == src) {
            return Err(bad(
                shared::vocab::ErrorCode::ValidationFailed,
                format!(
                    "the request comes from {src}, which is not among the addresses given; \
                     for a host behind NAT, make a token that names its addresses"
                ),
            ));
        }
    }
    Ok(())
}

/// Why an enrollment transaction was rolled back.
enum EnrollFailure {
    Db(DbError),
    Token(TokenError),
    Policy(AppError),
    HostExists(String),
    Csr(String),
}

impl From<DbError> for EnrollFailure {
    fn from(e: DbError) -> Self {
        Self::Db(e)
    }
}

/// A host joining with a one-time token from `source`: its certificate, the CA certificate and
/// the current CRL.
pub async fn enroll(
    state: &AppState,
    body: EnrollRequest,
    source: Option<IpAddr>,
) -> Result<EnrollResponse, AppError> {
    let by = Requester::named("enrollment", source);
    let hostname = body.hostname.trim().to_ascii_lowercase();
    if !pki::valid_dns_name(&hostname) {
        return Err(bad(
            shared::vocab::ErrorCode::ValidationFailed,
            "hostname must be a DNS name",
        ));
    }
    if body.addresses.is_empty() || body.addresses.len() > MAX_ADDRESSES {
        return Err(bad(
            shared::vocab::ErrorCode::ValidationFailed,
            format!("give 1 to {MAX_ADDRESSES} addresses"),
        ));
    }
    let addresses: Vec<IpAddr> = body
        .addresses
        .iter()
        .map(|a| {
            a.parse().map_err(|_| {
                bad(
                    shared::vocab::ErrorCode::ValidationFailed,
                    format!("`{}` is not an IP address", a.escape_default()),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    if body.port == 0 {
        return Err(bad(
            shared::vocab::ErrorCode::ValidationFailed,
            "port must not be 0",
        ));
    }
    if body.csr_pem.len() > MAX_CSR_BYTES
        || rcgen::CertificateSigningRequestParams::from_pem(&body.csr_pem).is_err()
    {
        return Err(bad(
            shared::vocab::ErrorCode::InvalidCsr,
            "csr_pem is not a valid, self-signed certificate signing request",
        ));
    }
    let refusal = |reason: &str| {
        by.entry("agent.enroll", Outcome::Denied)
            .target(format!("hostname:{hostname}"))
            .details(serde_json::json!({ "reason": reason }))
    };
    if let Err(e) = names_allowed(&state.config, &hostname) {
        state.audit.note(refusal(&e.to_string())).await;
        return Err(e);
    }
    let Some(token) = EnrollmentToken::parse(&body.token) else {
        state.audit.note(refusal("malformed token")).await;
        return Err(refused());
    };

    let crl = pki::crl::current(state).await?;
    let crl_number = crl.number;
    let ca = state.pki.ca.clone();
    let validity = state.config.pki.validity_days;
    let (host, csr, port) = (hostname.clone(), body.csr_pem, i32::from(body.port));
    let now = state.clock.now();
    let outcome = state
        .db
        .run(move |conn| {
            Ok(transaction(conn, |c| {
                let consumed =
                    consume(c, &token, ca.fingerprint(), now)?.map_err(EnrollFailure::Token)?;
                addresses_allowed(&consumed.addresses, &addresses, source)
                    .map_err(EnrollFailure::Policy)?;
                if let Some(bound) = consumed.hostname.as_deref().filter(|b| *b != host) {
                    return Err(EnrollFailure::Policy(bad(
                        shared::vocab::ErrorCode::ValidationFailed,
                        format!("this token was made for {bound}, not {host}"),
                    )));
                }
                let group = consumed.group_id;
                if !certificates::live_with_name(c, &host, now)?.is_empty() {
                    return Err(EnrollFailure::HostExists(format!(
                        "a live certificate already carries the name {host}; revoke it first"
                    )));
                }
                let primary = addresses[0].to_string();
                if hosts::find_by_address(c, &primary, port)?.is_some() {
                    return Err(EnrollFailure::HostExists(format!(
                        "a host at {primary}:{port} is already registered"
                    )));
                }
                let mut sans = vec![San::Dns(host.clone())];
                sans.extend(addresses.iter().map(|ip| San::Ip(*ip)));
                let issued = ca
                    .sign_csr(&csr, CertKind::Agent, &host, &sans, validity)
                    .map_err(|e| EnrollFailure::Csr(e.to_string()))?;
                let host_id = hosts::register(
                    c,
                    &NewHost::joining(
                        Some(&host),
                        &primary,
                        &host,
                        port,
                        &issued.fingerprint_sha256,
                        now,
                    ),
                    group,
                )?;
                certificates::insert(c, &issued, CertKind::Agent, Some(host_id), now)?;
                store::set_host(c, token.id, host_id)?;
                // The CRL in force goes with the answer; a newer one issued meanwhile reaches
                // the host through the courier.
                crls::acknowledge(c, host_id, crl_number, now)?;
                Ok::<(i64, Issued), EnrollFailure>((host_id, issued))
            }))
        })
        .await?;
    match outcome {
        Ok((host_id, issued)) => {
            let entry = by
                .success("agent.enrolled")
                .target(format!("host:{host_id}"))
                .details(serde_json::json!({
                    "hostname": hostname, "serial": issued.serial,
                    "not_after": issued.not_after.to_string(),
                }));
            state.audit.note(entry).await;
            if let Err(e) = crate::fleet::supervise(state, host_id).await {
                tracing::warn!(host_id, error = %e, "the new host is not supervised until the next start");
            }
            Ok(EnrollResponse {
                host_id: host_id.into(),
                certificate_pem: issued.cert_pem,
                ca_pem: state.pki.ca.cert_pem().to_owned(),
                crl_pem: crl.pem,
            })
        }
        Err(EnrollFailure::Token(reason)) => {
            state.audit.note(refusal(&reason.to_string())).await;
            Err(refused())
        }
        Err(EnrollFailure::Policy(e)) => {
            state.audit.note(refusal(&e.to_string())).await;
            Err(e)
        }
        Err(EnrollFailure::HostExists(m)) => Err(AppError::Conflict(m)),
        Err(EnrollFailure::Csr(m)) => Err(bad(shared::vocab::ErrorCode::InvalidCsr, m)),
        Err(EnrollFailure::Db(e)) => Err(AppError::Database(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatabaseTarget;
    use crate::db::Database;
    use chrono::NaiveDate;

    fn database(dir: &tempfile::TempDir) -> Database {
        let target = DatabaseTarget::Sqlite(dir.path().join("test.db"));
        Database::open(&target, 1, std::time::Duration::from_secs(10)).unwrap()
    }

    fn noon() -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2026, 11, 23)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap()
    }

    fn request(group_id: Option<i64>, minutes: Option<i64>) -> TokenRequest {
        TokenRequest {
            group_id,
            minutes,
            created_by: None,
            addresses: Vec::new(),
            hostname: None,
        }
    }

    #[test]
    fn a_token_stores_only_the_hash_carries_the_ca_and_expires() {
        let dir = tempfile::tempdir().unwrap();
        let db = database(&dir);
        let mut conn = db.conn().unwrap();
        let mut config = Config::default();
        config.pki.enrollment_token_minutes = 30;
        let fp = "ab".repeat(32);
        let group = hosts::insert_group(
            &mut conn,
            &hosts::NewHostGroup {
                name: "web",
                description: "",
                created_at: noon(),
                updated_at: noon(),
            },
        )
        .unwrap();

        let created =
            create_token(&mut conn, &config, &fp, &request(Some(group), None), noon()).unwrap();
        assert_eq!(created.token.ca_fingerprint, fp, "the CA is in the token");
        assert_eq!(
            created.expires_at,
            noon() + chrono::Duration::minutes(30),
            "the configured lifetime by default"
        );
        let row = store::find(&mut conn, created.token.id).unwrap().unwrap();
        assert_eq!(row.token_hash, hash_secret(&created.token.secret));
        assert_ne!(
            row.token_hash, created.token.secret,
            "the secret is not stored"
        );
        assert_eq!(row.token_hash.len(), 64);
        assert_eq!(row.group_id, Some(group));
        assert_eq!(row.expires_at, created.expires_at);
        assert_eq!(row.used_at, None);
        // Two tokens never share a secret.
        let other = create_token(&mut conn, &config, &fp, &request(None, Some(5)), noon()).unwrap();
        assert_ne!(other.token.secret, created.token.secret);
        assert_eq!(other.expires_at, noon() + chrono::Duration::minutes(5));

        // It is consumed once, with its group, and not after it expired.
        assert_eq!(
            consume(&mut conn, &created.token, &fp, noon()).unwrap(),
            Ok(Consumed {
                group_id: Some(group),
                addresses: Vec::new(),
                hostname: None,
            })
        );
        assert_eq!(
            consume(&mut conn, &created.token, &fp, noon()).unwrap(),
            Err(TokenError::Used)
        );
        let late = noon() + chrono::Duration::minutes(5);
        assert_eq!(
            consume(&mut conn, &other.token, &fp, late).unwrap(),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn lifetime_and_group_are_checked_before_anything_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let db = database(&dir);
        let mut conn = db.conn().unwrap();
        let config = Config::default();
        let fp = "cd".repeat(32);
        for minutes in [4, MAX_MINUTES + 1, 0, -5] {
            assert!(matches!(
                create_token(
                    &mut conn,
                    &config,
                    &fp,
                    &request(None, Some(minutes)),
                    noon()
                ),
                Err(TokenRequestError::Minutes)
            ));
        }
        assert!(matches!(
            create_token(
                &mut conn,
                &config,
                &fp,
                &request(Some(99), Some(60)),
                noon()
            ),
            Err(TokenRequestError::NoSuchGroup)
        ));
        assert!(store::recent(&mut conn, 10).unwrap().is_empty());
        for minutes in [MIN_MINUTES, MAX_MINUTES] {
            assert!(create_token(
                &mut conn,
                &config,
                &fp,
                &request(None, Some(minutes)),
                noon()
            )
            .is_ok());
        }
        // The API's answers for the refusals.
        assert_eq!(
            AppError::from(TokenRequestError::Minutes).code(),
            shared::vocab::ErrorCode::ValidationFailed
        );
        assert_eq!(
            AppError::from(TokenRequestError::NoSuchGroup).to_string(),
            "no such group"
        );
    }

    #[test]
    fn the_api_and_the_command_line_record_the_same_entry() {
        let created = CreatedToken {
            token: EnrollmentToken {
                id: 7,
                secret: "00".repeat(32),
                ca_fingerprint: "ab".repeat(32),
            },
            group_id: Some(3),
            expires_at: noon(),
            addresses: Vec::new(),
            hostname: None,
        };
        let cli = created.audit_entry(&Requester::named("cli", None));
        let api = created.audit_entry(&Requester {
            actor: "user:1".into(),
            user_id: Some(1),
            source: Some("192.0.2.1".parse().unwrap()),
        });
        for entry in [&cli, &api] {
            assert_eq!(entry.action, "enrollment_token.created");
            assert_eq!(entry.target.as_deref(), Some("enrollment_token:7"));
            assert_eq!(entry.outcome, Outcome::Success);
            assert_eq!(
                entry.details,
                serde_json::json!({ "group_id": 3, "expires_at": "2026-11-23T12:00:00+00:00",
                                    "addresses": [], "hostname": null })
            );
            assert!(
                !entry.details.to_string().contains(&created.token.secret),
                "the secret is never audited"
            );
        }
        assert_eq!(cli.actor, "cli");
        assert_eq!(api.actor, "user:1");
        assert_eq!(api.source_ip.as_deref(), Some("192.0.2.1"));
    }

    #[test]
    fn the_command_names_the_configured_manager() {
        let mut config = Config::default();
        config.server.listen = "0.0.0.0:8443".parse().unwrap();
        config.server.public_names.clear();
        assert_eq!(
            agent_command(&config, "lpm1.x"),
            "echo lpm1.x | patch-agent enroll --manager https://MANAGER:8443 --token-file -"
        );
        config.server.public_names = vec!["pm.example".into(), "10.0.0.1".into()];
        assert_eq!(
            agent_command(&config, "lpm1.x"),
            "echo lpm1.x | patch-agent enroll --manager https://pm.example:8443 --token-file -"
        );
        // Behind a proxy: the configured URL, whatever the listener.
        config.server.public_url = "https://patch.example.org/".into();
        assert_eq!(
            agent_command(&config, "lpm1.x"),
            "echo lpm1.x | patch-agent enroll --manager https://patch.example.org --token-file -"
        );
        assert!(!is_local_url(&manager_url(&config)));
        config.server.public_url.clear();
        config.server.public_names = vec!["::1".into()];
        assert_eq!(manager_url(&config), "https://[::1]:8443");
        assert!(is_local_url(&manager_url(&config)));
        for local in [
            "https://localhost:8080",
            "https://127.0.0.1:8443",
            "https://app.localhost",
        ] {
            assert!(is_local_url(local), "{local}");
        }
        for remote in [
            "https://pm.example:8443",
            "https://10.0.0.1:8443",
            "https://[2001:db8::1]:443",
        ] {
            assert!(!is_local_url(remote), "{remote}");
        }
    }
}
