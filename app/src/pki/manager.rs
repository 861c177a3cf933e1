//! The manager's own certificates, prepared at start. Two roots, created on first start:
//!
//! - the **fleet CA** (`<data>/ca`) signs agents' certificates, the client certificate the
//!   manager presents to agents, and the manager's *enrollment* certificate, which the web
//!   listener shows only to an enrolling agent (it asks by ALPN, [`shared::enroll::ENROLL_ALPN`])
//!   so the agent can check it against the fleet-CA fingerprint in its token;
//! - the **web CA** (`<data>/web-ca`) signs only the web UI's certificate (TLS strategy
//!   `internal`). It is the root browsers are told to trust, so trusting it never makes a browser
//!   accept an agent's certificate, whatever names an enrollment put in it.
//!
//! Each certificate is renewed when fewer than `pki.renew_before_days` remain, when
//! `server.public_names` changed, or when it was not signed by the root it must come from (web
//! certificates of earlier versions came from the fleet CA). Every issuance is recorded in the
//! `certificates` table and the audit log.

use crate::audit::AuditLog;
use crate::audit::Requester;
use crate::config::{Config, TlsMode};
use crate::db::{certificates, Database, DbError};
use crate::pki::{self, Ca, CertKind, PkiError};
use chrono::NaiveDateTime;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the certificates could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// CA or certificate problem.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// Database problem.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Audit problem.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// TLS configuration problem.
    #[error("web TLS: {0}")]
    Tls(String),
}

/// Name of the fleet CA's root.
pub const FLEET_CA_NAME: &str = "Linux Patch Manager CA";
/// Name of the web CA's root.
pub const WEB_CA_NAME: &str = "Linux Patch Manager Web CA";

/// The manager's PKI material.
#[derive(Clone)]
pub struct ManagerPki {
    /// The fleet CA (agents, the manager's client and enrollment certificates, CRLs).
    pub ca: Arc<Ca>,
    /// The web CA (the web UI's certificate only; the root browsers trust).
    pub web_ca: Arc<Ca>,
    /// The manager's client certificate for agents (PEM file).
    pub client_cert: PathBuf,
    /// Its key (PEM file, 0600).
    pub client_key: PathBuf,
}

impl std::fmt::Debug for ManagerPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerPki")
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

/// Loads or creates the CA and the manager's certificates at start; `now` is the application
/// clock's time for the records it writes. (Certificate validity itself is always the system
/// time: peers check it against their own clocks.)
pub async fn prepare(
    config: &Config,
    db: &Database,
    audit: &AuditLog,
    now: chrono::NaiveDateTime,
) -> Result<ManagerPki, CertsError> {
    let ca = root(
        db,
        audit,
        config.data.dir.join("ca"),
        FLEET_CA_NAME,
        CertKind::Ca,
        "ca.created",
        now,
    )
    .await?;
    let web_ca = root(
        db,
        audit,
        config.data.dir.join("web-ca"),
        WEB_CA_NAME,
        CertKind::WebCa,
        "web_ca.created",
        now,
    )
    .await?;
    let pki_dir = config.data.dir.join("pki");
    std::fs::create_dir_all(&pki_dir)
        .map_err(|e| CertsError::Tls(format!("{}: {e}", pki_dir.display())))?;
    let (client_cert, client_key) = (
        pki_dir.join("manager-client.crt"),
        pki_dir.join("manager-client.key"),
    );
    ensure(
        config,
        db,
        audit,
        &ca,
        CertKind::ManagerClient,
        "patch-manager",
        &[],
        &client_cert,
        &client_key,
        now,
    )
    .await?;
    let names = config.server.public_names.clone();
    let cn = names
        .first()
        .cloned()
        .unwrap_or_else(|| "patch-manager".into());
    if config.server.tls != TlsMode::Off && names.is_empty() {
        tracing::warn!(
            "server.public_names is empty: no enrollment certificate, so agents cannot enroll \
             through this listener until the manager's names are configured"
        );
    }
    if config.server.tls != TlsMode::Off && !names.is_empty() {
        let (cert, key) = (pki_dir.join("enroll.crt"), pki_dir.join("enroll.key"));
        ensure(
            config,
            db,
            audit,
            &ca,
            CertKind::Enrollment,
            &cn,
            &names,
            &cert,
            &key,
            now,
        )
        .await?;
    }
    if config.server.tls == TlsMode::Internal {
        let (cert, key) = (pki_dir.join("web.crt"), pki_dir.join("web.key"));
        ensure(
            config,
            db,
            audit,
            &web_ca,
            CertKind::Web,
            &cn,
            &names,
            &cert,
            &key,
            now,
        )
        .await?;
    }
    Ok(ManagerPki {
        ca,
        web_ca,
        client_cert,
        client_key,
    })
}

/// Loads the root in `dir`, creating, recording and auditing it on first start.
async fn root(
    db: &Database,
    audit: &AuditLog,
    dir: PathBuf,
    name: &'static str,
    kind: CertKind,
    action: &str,
    now: NaiveDateTime,
) -> Result<Arc<Ca>, CertsError> {
    let (ca, created) = tokio::task::spawn_blocking(move || Ca::load_or_create(&dir, name))
        .await
        .map_err(|e| CertsError::Tls(e.to_string()))??;
    let ca = Arc::new(ca);
    if created {
        let record_ = ca.root_record()?;
        let fp = record_.fingerprint_sha256.clone();
        db.run(move |c| certificates::insert(c, &record_, kind, None, now))
            .await?;
        record(
            audit,
            action,
            &fp,
            serde_json::json!({ "fingerprint_sha256": fp }),
        )
        .await?;
    }
    Ok(ca)
}

async fn record(
    audit: &AuditLog,
    action: &str,
    target: &str,
    details: serde_json::Value,
) -> Result<(), CertsError> {
    let entry = Requester::named("system", None)
        .success(action)
        .target(format!("certificate:{target}"))
        .details(details);
    audit.record(entry).await?;
    Ok(())
}

/// Issues `cert`/`key` unless a current one with the same names exists.
#[allow(clippy::too_many_arguments)]
async fn ensure(
    config: &Config,
    db: &Database,
    audit: &AuditLog,
    ca: &Ca,
    kind: CertKind,
    cn: &str,
    names: &[String],
    cert: &Path,
    key: &Path,
    now: NaiveDateTime,
) -> Result<(), CertsError> {
    let names_file = cert.with_extension("names");
    let wanted_names = names.join("\n");
    let current = std::fs::read_to_string(cert)
        .ok()
        .filter(|pem| ca.signed(pem))
        .and_then(|pem| pki::not_after(&pem).ok());
    let same_names = std::fs::read_to_string(&names_file)
        .map(|n| n == wanted_names)
        .unwrap_or(names.is_empty());
    let renew_at = now + chrono::Duration::days(config.pki.renew_before_days);
    if current.is_some_and(|na| na > renew_at) && same_names && key.exists() {
        return Ok(());
    }
    issue_to_files(config, db, audit, ca, kind, cn, names, cert, key, now)
        .await
        .map(|_| ())
}

/// Issues a new certificate and key into `cert`/`key` (replacing them atomically), records and
/// audits it; `now` is when it is recorded.
#[allow(clippy::too_many_arguments)]
pub async fn issue_to_files(
    config: &Config,
    db: &Database,
    audit: &AuditLog,
    ca: &Ca,
    kind: CertKind,
    cn: &str,
    names: &[String],
    cert: &Path,
    key: &Path,
    now: NaiveDateTime,
) -> Result<pki::Issued, CertsError> {
    let names_file = cert.with_extension("names");
    let wanted_names = names.join("\n");
    let renewed = cert.exists();
    let (issued, key_pem) =
        ca.issue_with_new_key(kind, cn, &pki::sans_of(names), config.pki.validity_days)?;
    write_file(key, &key_pem, 0o600)?;
    write_file(cert, &issued.cert_pem, 0o644)?;
    write_file(&names_file, &wanted_names, 0o644)?;
    let serial = issued.serial.clone();
    let details = serde_json::json!({ "kind": kind.as_str(), "subject": issued.subject, "sans": issued.sans,
        "not_after": issued.not_after.to_string(), "renewed": renewed });
    let stored = issued.clone();
    db.run(move |c| certificates::insert(c, &stored, kind, None, now))
        .await?;
    record(audit, "certificate.issued", &serial, details).await?;
    Ok(issued)
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), CertsError> {
    shared::files::write_atomic(path, contents.as_bytes(), mode)
        .map_err(|e| CertsError::Tls(format!("{}: {e}", path.display())))
}

/// The rustls configuration of the web listener, or `None` with `tls = "off"`: the web UI's
/// certificate (files, or the web CA's) for everyone, the enrollment certificate (with the fleet
/// root) for clients that offer [`shared::enroll::ENROLL_ALPN`].
pub fn web_tls(
    config: &Config,
    pki: &ManagerPki,
) -> Result<Option<rustls::ServerConfig>, CertsError> {
    let dir = config.data.dir.join("pki");
    let (cert, key, root) = match config.server.tls {
        TlsMode::Off => return Ok(None),
        TlsMode::Files => (
            config.server.tls_cert.clone(),
            config.server.tls_key.clone(),
            None,
        ),
        TlsMode::Internal => (
            dir.join("web.crt"),
            dir.join("web.key"),
            Some(pki.web_ca.cert_pem()),
        ),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let web = certified_key(&cert, &key, root, &provider)?;
    let enroll = if config.server.public_names.is_empty() {
        None
    } else {
        Some(certified_key(
            &dir.join("enroll.crt"),
            &dir.join("enroll.key"),
            Some(pki.ca.cert_pem()),
            &provider,
        )?)
    };
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CertsError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(ByAlpn { web, enroll }));
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(tls))
}

/// A certificate chain from `cert` (plus `root` when given: enrolling agents look for the root
/// their token names) with its key from `key`.
fn certified_key(
    cert: &Path,
    key: &Path,
    root: Option<&str>,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<rustls::sign::CertifiedKey>, CertsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let err = |path: &Path, e: String| CertsError::Tls(format!("{}: {e}", path.display()));
    let mut chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| err(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(cert, e.to_string()))?;
    if let Some(root) = root {
        chain.push(
            CertificateDer::from_pem_slice(root.as_bytes())
                .map_err(|e| CertsError::Tls(e.to_string()))?,
        );
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| err(key, e.to_string()))?;
    rustls::sign::CertifiedKey::from_der(chain, key, provider)
        .map(Arc::new)
        .map_err(|e| err(cert, format!("does not fit its key: {e}")))
}

/// Picks the web listener's certificate from what the client offers by ALPN.
#[derive(Debug)]
struct ByAlpn {
    web: Arc<rustls::sign::CertifiedKey>,
    enroll: Option<Arc<rustls::sign::CertifiedKey>>,
}

impl rustls::server::ResolvesServerCert for ByAlpn {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let enrolling = hello
            .alpn()
            .is_some_and(|mut offered| offered.any(|p| p == shared::enroll::ENROLL_ALPN));
        match (&self.enroll, enrolling) {
            (Some(enroll), true) => Some(enroll.clone()),
            _ => Some(self.web.clone()),
        }
    }
}
