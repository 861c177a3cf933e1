//! The manager's own certificates, prepared at start: the CA (created on first start), the client
//! certificate the manager presents to agents, and the web UI's certificate when the TLS strategy
//! is `internal`. Each is renewed when fewer than `pki.renew_before_days` remain (and the web
//! certificate also when `server.public_names` changed). Every issuance is recorded in the
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

/// The manager's PKI material.
#[derive(Clone)]
pub struct ManagerPki {
    /// The CA.
    pub ca: Arc<Ca>,
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
    let data = config.data.dir.clone();
    let (ca, created) = tokio::task::spawn_blocking(move || {
        Ca::load_or_create(&data.join("ca"), "Linux Patch Manager CA")
    })
    .await
    .map_err(|e| CertsError::Tls(e.to_string()))??;
    let ca = Arc::new(ca);
    if created {
        let root = ca.root_record()?;
        let fp = root.fingerprint_sha256.clone();
        db.run(move |c| certificates::insert(c, &root, CertKind::Ca, None, now))
            .await?;
        record(
            audit,
            "ca.created",
            &fp,
            serde_json::json!({ "fingerprint_sha256": fp }),
        )
        .await?;
    }
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
    if config.server.tls == TlsMode::Internal {
        let (cert, key) = (pki_dir.join("web.crt"), pki_dir.join("web.key"));
        let names = config.server.public_names.clone();
        let cn = names
            .first()
            .cloned()
            .unwrap_or_else(|| "patch-manager".into());
        ensure(
            config,
            db,
            audit,
            &ca,
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
        client_cert,
        client_key,
    })
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

/// The rustls configuration of the web listener, or `None` with `tls = "off"`.
pub fn web_tls(
    config: &Config,
    pki: &ManagerPki,
) -> Result<Option<rustls::ServerConfig>, CertsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (cert, key) = match config.server.tls {
        TlsMode::Off => return Ok(None),
        TlsMode::Files => (
            config.server.tls_cert.clone(),
            config.server.tls_key.clone(),
        ),
        TlsMode::Internal => {
            let dir = config.data.dir.join("pki");
            (dir.join("web.crt"), dir.join("web.key"))
        }
    };
    let err = |e: String| CertsError::Tls(e);
    let mut chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .map_err(|e| err(format!("{}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(format!("{}: {e}", cert.display())))?;
    if config.server.tls == TlsMode::Internal {
        // Send the root too: enrolling agents check it against the fingerprint in their token.
        chain.push(
            CertificateDer::from_pem_slice(pki.ca.cert_pem().as_bytes())
                .map_err(|e| err(e.to_string()))?,
        );
    }
    let key =
        PrivateKeyDer::from_pem_file(&key).map_err(|e| err(format!("{}: {e}", key.display())))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| err(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| err(e.to_string()))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(tls))
}
