//! Certificate rotation and CRL updates pushed by the manager.
//!
//! `POST /tls/csr` makes a new key on this host (kept as `<state_dir>/pending.key`, 0600) and
//! answers a CSR for the current certificate's names. `PUT /tls/certificate` installs the signed
//! certificate only if it matches that pending key, chains to the configured CA and passes the
//! validity rules; key and certificate are then replaced and the TLS material reloaded, so new
//! connections get the new certificate while established ones continue. `PUT /tls/crl` installs
//! a CRL signed by the CA. Every step is audited.

use crate::config::TlsConfig;
use crate::tls::ReloadableTls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Why a rotation step was refused.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// The input does not check out.
    #[error("{0}")]
    Invalid(String),
    /// No `POST /tls/csr` came first.
    #[error("no pending key: ask for a CSR first")]
    NoPendingKey,
    /// File or reload failure.
    #[error("{0}")]
    Io(String),
}

fn pending_key(state_dir: &Path) -> PathBuf {
    state_dir.join("pending.key")
}

/// Names of the current certificate, for the CSR.
fn current_names(cfg: &TlsConfig) -> Result<(String, Vec<String>, Vec<IpAddr>), RotateError> {
    let pem = std::fs::read(&cfg.cert).map_err(|e| RotateError::Io(e.to_string()))?;
    let der = CertificateDer::from_pem_slice(&pem).map_err(|e| RotateError::Io(e.to_string()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| RotateError::Io(e.to_string()))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or("patch-agent")
        .to_owned();
    let (mut dns, mut ips) = (Vec::new(), Vec::new());
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                x509_parser::extensions::GeneralName::IPAddress(b) => match b.len() {
                    4 => ips.push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default())),
                    16 => ips.push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default())),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Ok((cn, dns, ips))
}

/// Makes the pending key and answers the CSR (PEM).
pub fn new_csr(cfg: &TlsConfig, state_dir: &Path) -> Result<String, RotateError> {
    let (cn, dns, ips) = current_names(cfg)?;
    let (key, csr) = crate::csr::new_key_and_csr(&cn, &dns, &ips)
        .map_err(|e| RotateError::Invalid(e.to_string()))?;
    write(&pending_key(state_dir), &key, 0o600)?;
    Ok(csr)
}

/// Installs a certificate for the pending key; answers its expiry (RFC 3339).
pub fn install_certificate(
    cfg: &TlsConfig,
    state_dir: &Path,
    tls: &ReloadableTls,
    cert_pem: &str,
) -> Result<String, RotateError> {
    let pending = pending_key(state_dir);
    let key_pem = std::fs::read_to_string(&pending).map_err(|_| RotateError::NoPendingKey)?;
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| RotateError::Invalid(format!("not a PEM certificate: {e}")))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| RotateError::Invalid(e.to_string()))?;
    // The certificate must carry the pending key's public key.
    let key = rcgen::KeyPair::from_pem(&key_pem).map_err(|e| RotateError::Io(e.to_string()))?;
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    if parsed.public_key().raw != spki.as_slice() {
        return Err(RotateError::Invalid(
            "the certificate is not for the pending key".into(),
        ));
    }
    // Signed by the fleet CA.
    let ca_pem = std::fs::read(&cfg.client_ca).map_err(|e| RotateError::Io(e.to_string()))?;
    let ca_der =
        CertificateDer::from_pem_slice(&ca_pem).map_err(|e| RotateError::Io(e.to_string()))?;
    let (_, ca) = x509_parser::parse_x509_certificate(ca_der.as_ref())
        .map_err(|e| RotateError::Io(e.to_string()))?;
    parsed
        .verify_signature(Some(ca.public_key()))
        .map_err(|_| {
            RotateError::Invalid("the certificate is not signed by the fleet CA".into())
        })?;
    // Validity rules, checked on a staged copy before anything is replaced.
    let staged = TlsConfig {
        cert: state_dir.join("staged.crt"),
        key: state_dir.join("staged.key"),
        client_ca: cfg.client_ca.clone(),
        crl: cfg.crl.clone(),
        manager_subject: cfg.manager_subject.clone(),
    };
    write(&staged.key, &key_pem, 0o600)?;
    write(&staged.cert, cert_pem, 0o644)?;
    let checked = ReloadableTls::load(&staged).map_err(|e| RotateError::Invalid(e.to_string()));
    let _ = std::fs::remove_file(&staged.cert);
    let _ = std::fs::remove_file(&staged.key);
    let not_after = checked?.not_after().to_rfc3339();
    write(&cfg.key, &key_pem, 0o600)?;
    write(&cfg.cert, cert_pem, 0o644)?;
    let _ = std::fs::remove_file(&pending);
    tls.reload(cfg)
        .map_err(|e| RotateError::Io(e.to_string()))?;
    Ok(not_after)
}

/// Installs a CRL signed by the fleet CA.
pub fn install_crl(
    cfg: &TlsConfig,
    tls: &ReloadableTls,
    crl_pem: &str,
) -> Result<usize, RotateError> {
    if cfg.crl.as_os_str().is_empty() {
        return Err(RotateError::Invalid("no tls.crl path is configured".into()));
    }
    let der = CertificateRevocationListDer::from_pem_slice(crl_pem.as_bytes())
        .map_err(|e| RotateError::Invalid(format!("not a PEM CRL: {e}")))?;
    use x509_parser::prelude::FromDer;
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(der.as_ref())
        .map_err(|e| RotateError::Invalid(e.to_string()))?;
    let ca_pem = std::fs::read(&cfg.client_ca).map_err(|e| RotateError::Io(e.to_string()))?;
    let ca_der =
        CertificateDer::from_pem_slice(&ca_pem).map_err(|e| RotateError::Io(e.to_string()))?;
    let (_, ca) = x509_parser::parse_x509_certificate(ca_der.as_ref())
        .map_err(|e| RotateError::Io(e.to_string()))?;
    crl.verify_signature(ca.public_key())
        .map_err(|_| RotateError::Invalid("the CRL is not signed by the fleet CA".into()))?;
    // An expired CRL would make the agent refuse every client, the manager included.
    match crl.next_update() {
        Some(next) if next.timestamp() > chrono::Utc::now().timestamp() => {}
        Some(next) => {
            return Err(RotateError::Invalid(format!(
                "the CRL expired at {next}; the manager issues a current one"
            )))
        }
        None => {
            return Err(RotateError::Invalid(
                "the CRL has no nextUpdate; it could never expire".into(),
            ))
        }
    }
    // An older CRL (fewer revocations) must never replace a newer one. The same one again is
    // acknowledged without a change (the manager retries until it hears back).
    let number = crl.crl_number().cloned();
    if let Ok(current_pem) = std::fs::read(&cfg.crl) {
        if let Ok(current_der) = CertificateRevocationListDer::from_pem_slice(&current_pem) {
            if let Ok((_, current)) =
                x509_parser::revocation_list::CertificateRevocationList::from_der(
                    current_der.as_ref(),
                )
            {
                if let (Some(new), Some(old)) = (number.as_ref(), current.crl_number()) {
                    if new == old && current_der.as_ref() == der.as_ref() {
                        return Ok(crl.iter_revoked_certificates().count());
                    }
                    if new <= old {
                        return Err(RotateError::Invalid(format!(
                            "CRL number {new} is not newer than the installed {old}"
                        )));
                    }
                }
            }
        }
    }
    let revoked = crl.iter_revoked_certificates().count();
    write(&cfg.crl, crl_pem, 0o644)?;
    tls.reload(cfg)
        .map_err(|e| RotateError::Io(e.to_string()))?;
    Ok(revoked)
}

fn write(path: &Path, contents: &str, mode: u32) -> Result<(), RotateError> {
    shared::files::write_atomic(path, contents.as_bytes(), mode)
        .map_err(|e| RotateError::Io(format!("{}: {e}", path.display())))
}
