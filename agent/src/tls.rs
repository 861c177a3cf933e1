//! Mutual TLS for the agent's API: TLS 1.3 only, a client certificate from the configured CA on
//! every connection, the CA's CRL honoured, and the agent's own certificate refused at load when
//! it is expired or valid for more than a year.
//!
//! The certificate, key, CA and CRL live behind [`ReloadableTls`]: the rustls `ServerConfig` holds
//! a resolver and a verifier that read the current material on every handshake, so a reload
//! applies to new connections while established ones keep the session they negotiated (for at
//! most `server.max_connection_secs`, see [`crate::server`]). Sessions are never resumed.

use crate::config::TlsConfig;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::{Arc, RwLock};

/// Longest validity accepted for the agent's certificate (a year, plus a leap day).
pub const MAX_VALIDITY_SECS: i64 = 366 * 24 * 3600;

/// Why TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM.
    #[error("{what} {path}: {message}")]
    File {
        /// Which file (`certificate`, `key`, …).
        what: &'static str,
        /// Path.
        path: String,
        /// Cause.
        message: String,
    },
    /// The certificate is not acceptable.
    #[error("certificate {path}: {message}")]
    Certificate {
        /// Path.
        path: String,
        /// Cause.
        message: String,
    },
    /// rustls refused the material.
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

/// Identity of a connected client, taken from its verified certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// Subject common name (or the whole subject when it has no CN).
    pub subject: String,
    /// Serial number, hex.
    pub serial: String,
    /// SHA-256 fingerprint of the DER certificate, hex.
    pub fingerprint: String,
}

impl ClientIdentity {
    /// Reads the identity from a DER certificate.
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned)
            .unwrap_or_else(|| cert.subject().to_string());
        Some(Self {
            subject,
            serial: cert.raw_serial_as_string().replace(':', ""),
            fingerprint: hex::encode(Sha256::digest(der)),
        })
    }
}

/// One consistent set of TLS material.
struct Material {
    key: Arc<CertifiedKey>,
    verifier: Arc<dyn ClientCertVerifier>,
    not_after: chrono::DateTime<chrono::Utc>,
    manager_subject: String,
}

/// The agent's current TLS material, replaceable while the server runs.
pub struct ReloadableTls {
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Material>>,
}

impl std::fmt::Debug for ReloadableTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadableTls")
            .field("not_after", &self.not_after())
            .finish()
    }
}

impl ReloadableTls {
    /// Loads and checks the material named by `cfg`.
    pub fn load(cfg: &TlsConfig) -> Result<Arc<Self>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let material = load_material(cfg, &provider)?;
        Ok(Arc::new(Self {
            provider,
            current: RwLock::new(Arc::new(material)),
        }))
    }

    /// Loads new material; on success new handshakes use it, on failure nothing changes.
    pub fn reload(&self, cfg: &TlsConfig) -> Result<(), TlsError> {
        let material = load_material(cfg, &self.provider)?;
        match self.current.write() {
            Ok(mut cur) => *cur = Arc::new(material),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(material),
        }
        Ok(())
    }

    fn material(&self) -> Arc<Material> {
        match self.current.read() {
            Ok(m) => m.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Expiry of the agent's certificate.
    pub fn not_after(&self) -> chrono::DateTime<chrono::Utc> {
        self.material().not_after
    }

    /// A rustls server configuration: TLS 1.3 only, client certificate mandatory, HTTP/1.1.
    pub fn server_config(self: &Arc<Self>) -> Result<ServerConfig, TlsError> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Rustls(e.to_string()))?
            .with_client_cert_verifier(Arc::new(Verifier(self.clone())))
            .with_cert_resolver(Arc::new(Resolver(self.clone())));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // No session resumption: rustls does not run the client-certificate verifier again on a
        // resumed TLS 1.3 session, so a certificate revoked after it obtained a ticket could go on
        // resuming. Without tickets and without a session cache every connection is a full
        // handshake, checked against the CRL in force at that moment.
        config.send_tls13_tickets = 0;
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        Ok(config)
    }
}

fn file_err(what: &'static str, path: &Path, message: impl ToString) -> TlsError {
    TlsError::File {
        what,
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

fn load_material(cfg: &TlsConfig, provider: &Arc<CryptoProvider>) -> Result<Material, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cfg.cert)
        .map_err(|e| file_err("certificate", &cfg.cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err("certificate", &cfg.cert, e))?;
    let leaf = chain
        .first()
        .ok_or_else(|| file_err("certificate", &cfg.cert, "no certificate in file"))?;
    let not_after = check_validity(leaf, &cfg.cert)?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key).map_err(|e| file_err("key", &cfg.key, e))?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        file_err(
            "key",
            &cfg.key,
            format!("does not fit the certificate: {e}"),
        )
    })?;

    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&cfg.client_ca)
        .map_err(|e| file_err("client CA", &cfg.client_ca, e))?
    {
        let ca = ca.map_err(|e| file_err("client CA", &cfg.client_ca, e))?;
        roots
            .add(ca)
            .map_err(|e| file_err("client CA", &cfg.client_ca, e))?;
    }
    if roots.is_empty() {
        return Err(file_err(
            "client CA",
            &cfg.client_ca,
            "no certificate in file",
        ));
    }
    let crls: Vec<CertificateRevocationListDer<'static>> = if cfg.crl.as_os_str().is_empty() {
        Vec::new()
    } else {
        CertificateRevocationListDer::pem_file_iter(&cfg.crl)
            .map_err(|e| file_err("CRL", &cfg.crl, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| file_err("CRL", &cfg.crl, e))?
    };
    if let Some(next) = crls.iter().find_map(|c| expired_at(c)) {
        tracing::error!(
            crl = %cfg.crl.display(),
            expired_at = %next,
            "the CRL has expired: every client, the manager included, is refused until a current \
             one is installed by hand (the manager cannot push it any more): fetch \
             https://MANAGER/api/v1/ca/crl into this file"
        );
    }
    // An expired CRL refuses every client: a manager key revoked while this agent was unreachable
    // cannot be used against it once the CRL it holds has run out.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(crls)
        .enforce_revocation_expiration()
        .build()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    Ok(Material {
        key: Arc::new(certified),
        verifier,
        not_after,
        manager_subject: cfg.manager_subject.clone(),
    })
}

/// When the CRL's nextUpdate has passed, that time.
fn expired_at(crl: &CertificateRevocationListDer<'_>) -> Option<String> {
    use x509_parser::prelude::FromDer;
    let (_, parsed) =
        x509_parser::revocation_list::CertificateRevocationList::from_der(crl.as_ref()).ok()?;
    let next = parsed.next_update()?;
    (next.timestamp() <= chrono::Utc::now().timestamp()).then(|| next.to_string())
}

/// Refuses an expired certificate or one valid for more than [`MAX_VALIDITY_SECS`].
fn check_validity(
    der: &CertificateDer<'_>,
    path: &Path,
) -> Result<chrono::DateTime<chrono::Utc>, TlsError> {
    let bad = |message: String| TlsError::Certificate {
        path: path.display().to_string(),
        message,
    };
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| bad(format!("not X.509: {e}")))?;
    let nb = cert.validity().not_before.timestamp();
    let na = cert.validity().not_after.timestamp();
    if na - nb > MAX_VALIDITY_SECS {
        return Err(bad(format!(
            "valid for {} days; at most 366 are accepted",
            (na - nb) / 86_400
        )));
    }
    let now = chrono::Utc::now().timestamp();
    if now > na {
        return Err(bad("expired".into()));
    }
    chrono::DateTime::from_timestamp(na, 0).ok_or_else(|| bad("unreadable expiry".into()))
}

/// The subject common name of a certificate, if it has one.
fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

#[derive(Debug)]
struct Resolver(Arc<ReloadableTls>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.material().key.clone())
    }
}

#[derive(Debug)]
struct Verifier(Arc<ReloadableTls>);

impl ClientCertVerifier for Verifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints would have to borrow from material that a reload may replace; clients of this
        // agent hold exactly one certificate, so none are sent.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let material = self.0.material();
        let verified = material
            .verifier
            .verify_client_cert(end_entity, intermediates, now)?;
        if material.manager_subject.is_empty()
            || common_name(end_entity).as_deref() == Some(material.manager_subject.as_str())
        {
            Ok(verified)
        } else {
            Err(rustls::Error::General(format!(
                "client certificate is not the manager's (subject {:?})",
                common_name(end_entity).unwrap_or_default()
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .material()
            .verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .material()
            .verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.material().verifier.supported_verify_schemes()
    }
}
