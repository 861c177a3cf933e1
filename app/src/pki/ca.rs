//! The manager's internal certificate authority (rcgen, ECDSA P-256).
//!
//! The root key is created on first start in `<data>/ca/ca.key` with mode 0600 (its directory
//! 0700) and is never served; the root certificate sits beside it and is public. The CA signs:
//! each agent's server certificate (from a CSR, so agent keys never leave their host), the
//! manager's client certificate for talking to agents, and the web UI's certificate. Issued
//! certificates are valid for at most [`MAX_VALIDITY_DAYS`]; their contents come from the
//! manager's decision, never from what a CSR asks for: only the CSR's public key (and its proof of
//! possession) is used. CRLs list revoked serials.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Longest validity of an issued (leaf) certificate.
pub const MAX_VALIDITY_DAYS: i64 = 365;
/// Validity of the root certificate.
pub const ROOT_VALIDITY_DAYS: i64 = 10 * 365;

/// What went wrong with the CA.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// File-system error on the CA files.
    #[error("CA file {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// rcgen refused (bad CSR, bad key…).
    #[error("certificate operation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A request that is not acceptable (validity, names).
    #[error("{0}")]
    Invalid(String),
}

pub use shared::vocab::CertKind;

/// The extended key usage a certificate of `kind` carries.
fn eku(kind: CertKind) -> Option<ExtendedKeyUsagePurpose> {
    match kind {
        CertKind::Ca | CertKind::WebCa => None,
        CertKind::Agent | CertKind::Web | CertKind::Enrollment => {
            Some(ExtendedKeyUsagePurpose::ServerAuth)
        }
        CertKind::ManagerClient => Some(ExtendedKeyUsagePurpose::ClientAuth),
    }
}

/// A subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum San {
    /// DNS name.
    Dns(String),
    /// IP address.
    Ip(IpAddr),
}

/// An issued certificate, ready to store in `certificates` and hand out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// PEM of the certificate.
    pub cert_pem: String,
    /// Serial number, lower-case hex.
    pub serial: String,
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint_sha256: String,
    /// Subject common name.
    pub subject: String,
    /// Subject alternative names, as text.
    pub sans: Vec<String>,
    /// Start of validity (UTC).
    pub not_before: chrono::NaiveDateTime,
    /// End of validity (UTC).
    pub not_after: chrono::NaiveDateTime,
}

/// The certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    fingerprint: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `contents` to `path` with `mode`, through a temporary file renamed into place.
fn write_private(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    shared::files::write_atomic(path, contents.as_bytes(), mode).map_err(io_err(path))
}

fn sha256_hex(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

fn random_serial() -> Result<SerialNumber, PkiError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::Invalid("the system random generator failed".into()))?;
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // and no leading zero byte to strip
    Ok(SerialNumber::from_slice(&bytes))
}

fn to_naive(t: time::OffsetDateTime) -> chrono::NaiveDateTime {
    chrono::DateTime::from_timestamp(t.unix_timestamp(), 0)
        .map(|d| d.naive_utc())
        .unwrap_or_default()
}

impl Ca {
    /// Loads the CA from `<dir>/ca.key` and `<dir>/ca.crt`, creating both on first start.
    /// Returns the CA and whether it was created now.
    pub fn load_or_create(dir: &Path, name: &str) -> Result<(Self, bool), PkiError> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let key_path = dir.join("ca.key");
        let cert_path = dir.join("ca.crt");
        if key_path.exists() {
            let mode = std::fs::metadata(&key_path)
                .map_err(io_err(&key_path))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(PkiError::Invalid(format!(
                    "{} is readable by other users (mode {:o}); chmod 600 it",
                    key_path.display(),
                    mode & 0o777
                )));
            }
            let key_pem = std::fs::read_to_string(&key_path).map_err(io_err(&key_path))?;
            let cert_pem = std::fs::read_to_string(&cert_path).map_err(io_err(&cert_path))?;
            let key = KeyPair::from_pem(&key_pem)?;
            let der = pem_to_der(&cert_pem)?;
            let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)?;
            return Ok((
                Self {
                    issuer,
                    cert_pem,
                    fingerprint: sha256_hex(&der),
                },
                false,
            ));
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir))?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Linux Patch Manager");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial()?);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + time::Duration::days(ROOT_VALIDITY_DAYS);
        params.key_identifier_method = KeyIdMethod::Sha256;
        let cert = params.self_signed(&key)?;
        write_private(&key_path, &key.serialize_pem(), 0o600)?;
        write_private(&cert_path, &cert.pem(), 0o644)?;
        let fingerprint = sha256_hex(cert.der());
        let cert_pem = cert.pem();
        Ok((
            Self {
                issuer: Issuer::new(params, key),
                cert_pem,
                fingerprint,
            },
            true,
        ))
    }

    /// PEM of the root certificate (public).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The root certificate described like an issued one, for the `certificates` table.
    pub fn root_record(&self) -> Result<Issued, PkiError> {
        let der = pem_to_der(&self.cert_pem)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| PkiError::Invalid(format!("root certificate: {e}")))?;
        let ts = |t: i64| {
            chrono::DateTime::from_timestamp(t, 0)
                .map(|d| d.naive_utc())
                .unwrap_or_default()
        };
        let subject: String = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
            .unwrap_or_default()
            .to_owned();
        Ok(Issued {
            cert_pem: self.cert_pem.clone(),
            serial: cert.raw_serial_as_string().replace(':', ""),
            fingerprint_sha256: self.fingerprint.clone(),
            subject,
            sans: Vec::new(),
            not_before: ts(cert.validity().not_before.timestamp()),
            not_after: ts(cert.validity().not_after.timestamp()),
        })
    }

    /// Whether `cert_pem` is a certificate this CA signed (false for anything unreadable).
    pub fn signed(&self, cert_pem: &str) -> bool {
        let (Ok(der), Ok(root)) = (pem_to_der(cert_pem), pem_to_der(&self.cert_pem)) else {
            return false;
        };
        let (Ok((_, cert)), Ok((_, root))) = (
            x509_parser::parse_x509_certificate(&der),
            x509_parser::parse_x509_certificate(&root),
        ) else {
            return false;
        };
        cert.verify_signature(Some(root.public_key())).is_ok()
    }

    /// SHA-256 fingerprint of the root certificate, hex. Carried in enrollment tokens so agents
    /// can verify the manager without trusting on first use.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Signs a CSR: only its public key is used; subject, names, usages and validity are ours.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        kind: CertKind,
        common_name: &str,
        sans: &[San],
        validity_days: i64,
    ) -> Result<Issued, PkiError> {
        let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)?;
        self.issue(&csr.public_key, kind, common_name, sans, validity_days)
    }

    /// Issues a certificate with a new key generated here (the manager's own client and web
    /// certificates); returns it and the key's PEM.
    pub fn issue_with_new_key(
        &self,
        kind: CertKind,
        common_name: &str,
        sans: &[San],
        validity_days: i64,
    ) -> Result<(Issued, String), PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let issued = self.issue(&key, kind, common_name, sans, validity_days)?;
        Ok((issued, key.serialize_pem()))
    }

    fn issue(
        &self,
        public_key: &impl rcgen::PublicKeyData,
        kind: CertKind,
        common_name: &str,
        sans: &[San],
        validity_days: i64,
    ) -> Result<Issued, PkiError> {
        if !(1..=MAX_VALIDITY_DAYS).contains(&validity_days) {
            return Err(PkiError::Invalid(format!(
                "validity must be 1 to {MAX_VALIDITY_DAYS} days, got {validity_days}"
            )));
        }
        if common_name.is_empty() || common_name.len() > 64 {
            return Err(PkiError::Invalid(
                "common name must be 1 to 64 characters".into(),
            ));
        }
        if matches!(kind, CertKind::Agent | CertKind::Web | CertKind::Enrollment) && sans.is_empty()
        {
            return Err(PkiError::Invalid(
                "a server certificate needs at least one name".into(),
            ));
        }
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Linux Patch Manager");
        params.subject_alt_names = sans
            .iter()
            .map(|s| match s {
                San::Dns(d) => Ok(SanType::DnsName(d.clone().try_into()?)),
                San::Ip(ip) => Ok(SanType::IpAddress(*ip)),
            })
            .collect::<Result<_, rcgen::Error>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let eku = eku(kind)
            .ok_or_else(|| PkiError::Invalid("the CA certificate is not issued".into()))?;
        params.extended_key_usages = vec![eku];
        params.serial_number = Some(random_serial()?);
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + time::Duration::days(validity_days);
        let cert = params.signed_by(public_key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            serial: params
                .serial_number
                .as_ref()
                .map(|s| hex::encode(s.as_ref()))
                .unwrap_or_default(),
            fingerprint_sha256: sha256_hex(cert.der()),
            subject: common_name.to_owned(),
            sans: sans
                .iter()
                .map(|s| match s {
                    San::Dns(d) => format!("DNS:{d}"),
                    San::Ip(ip) => format!("IP:{ip}"),
                })
                .collect(),
            not_before: to_naive(params.not_before),
            not_after: to_naive(params.not_after),
        })
    }

    /// A CRL listing `revoked` (serial hex, revocation time), valid for `validity` from now
    /// (system time).
    pub fn crl(
        &self,
        number: u64,
        revoked: &[(String, chrono::NaiveDateTime)],
        validity: chrono::Duration,
    ) -> Result<SignedCrl, PkiError> {
        let now = time::OffsetDateTime::now_utc();
        let revoked_certs = revoked
            .iter()
            .map(|(serial, at)| {
                let bytes = hex::decode(serial)
                    .map_err(|_| PkiError::Invalid(format!("bad serial {serial}")))?;
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&bytes),
                    revocation_time: time::OffsetDateTime::from_unix_timestamp(
                        at.and_utc().timestamp(),
                    )
                    .unwrap_or(now),
                    reason_code: Some(RevocationReason::Unspecified),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, PkiError>>()?;
        let this_update = now - time::Duration::minutes(5);
        let next_update = now + time::Duration::seconds(validity.num_seconds());
        let crl = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer)?;
        Ok(SignedCrl {
            pem: crl.pem()?,
            this_update: to_naive(this_update),
            next_update: to_naive(next_update),
        })
    }
}

/// A signed CRL and its validity (UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCrl {
    /// PEM.
    pub pem: String,
    /// thisUpdate.
    pub this_update: chrono::NaiveDateTime,
    /// nextUpdate: agents refuse every client after it.
    pub next_update: chrono::NaiveDateTime,
}

/// Describes any certificate (DER) like an issued one: serial, fingerprint, subject, names and
/// validity, for the `certificates` table and for showing what an agent presented.
pub fn describe(der: &[u8]) -> Result<Issued, PkiError> {
    use sha2::{Digest, Sha256};
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| PkiError::Invalid(format!("certificate: {e}")))?;
    let ts = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(|d| d.naive_utc())
            .unwrap_or_default()
    };
    let subject = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => sans.push(format!("DNS:{d}")),
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).ok().map(std::net::IpAddr::from),
                        16 => <[u8; 16]>::try_from(*b).ok().map(std::net::IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        sans.push(format!("IP:{ip}"));
                    }
                }
                _ => {}
            }
        }
    }
    let pem = pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()));
    Ok(Issued {
        cert_pem: pem,
        serial: cert.raw_serial_as_string().replace(':', ""),
        fingerprint_sha256: hex::encode(Sha256::digest(der)),
        subject,
        sans,
        not_before: ts(cert.validity().not_before.timestamp()),
        not_after: ts(cert.validity().not_after.timestamp()),
    })
}

/// A DNS name for a certificate: 1 to 253 characters, labels of 1 to 63 letters, digits and
/// hyphens, not starting or ending with a hyphen.
pub fn valid_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Parses configured names into SANs (addresses as IP SANs).
pub fn sans_of(names: &[String]) -> Vec<San> {
    names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => San::Ip(ip),
            Err(_) => San::Dns(n.clone()),
        })
        .collect()
}

/// The number of a CRL made at `now`: milliseconds since the epoch, so every newer CRL has a
/// larger number (agents refuse one that is not newer than what they have).
pub fn crl_number(now: chrono::NaiveDateTime) -> u64 {
    u64::try_from(now.and_utc().timestamp_millis()).unwrap_or(1)
}

/// SHA-256 (hex) of a PEM certificate's DER.
pub fn fingerprint_of_pem(cert_pem: &str) -> Result<String, PkiError> {
    Ok(sha256_hex(&pem_to_der(cert_pem)?))
}

/// Reads the end of validity of a PEM certificate.
pub fn not_after(cert_pem: &str) -> Result<chrono::NaiveDateTime, PkiError> {
    let der = pem_to_der(cert_pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| PkiError::Invalid(format!("not a certificate: {e}")))?;
    chrono::DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
        .map(|d| d.naive_utc())
        .ok_or_else(|| PkiError::Invalid("unreadable expiry".into()))
}

fn pem_to_der(pem: &str) -> Result<Vec<u8>, PkiError> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|c| c.to_vec())
        .map_err(|e| PkiError::Invalid(format!("CA certificate is not PEM: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::PublicKeyData;
    use x509_parser::prelude::{CertificateRevocationList, FromDer, GeneralName, X509Certificate};

    fn parse(pem: &str) -> Vec<u8> {
        pem_to_der(pem).unwrap()
    }

    #[test]
    fn root_is_created_once_with_a_private_key_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("ca");
        let (ca, created) = Ca::load_or_create(&ca_dir, "Test CA").unwrap();
        assert!(created);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&ca_dir.join("ca.key")), 0o600);
        assert_eq!(mode(&ca_dir), 0o700);
        let (again, created) = Ca::load_or_create(&ca_dir, "Test CA").unwrap();
        assert!(!created);
        assert_eq!(
            again.fingerprint(),
            ca.fingerprint(),
            "the same root is loaded back"
        );

        let der = parse(ca.cert_pem());
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert!(cert.is_ca());
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
        assert!(
            cert.public_key()
                .algorithm
                .algorithm
                .to_id_string()
                .starts_with("1.2.840.10045"),
            "ECDSA key"
        );

        // A key file open to others is refused.
        std::fs::set_permissions(
            ca_dir.join("ca.key"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert!(Ca::load_or_create(&ca_dir, "Test CA").is_err());
    }

    #[test]
    fn csr_is_signed_with_our_names_usages_and_validity() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) = Ca::load_or_create(&dir.path().join("ca"), "Test CA").unwrap();
        // The CSR asks for a CA certificate and other names: none of that may survive.
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut req = CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
        req.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        req.distinguished_name
            .push(DnType::CommonName, "root-of-everything");
        let csr = req.serialize_request(&key).unwrap().pem().unwrap();
        let sans = [
            San::Dns("web01.example.net".into()),
            San::Ip("192.0.2.7".parse().unwrap()),
        ];
        let issued = ca
            .sign_csr(&csr, CertKind::Agent, "web01.example.net", &sans, 365)
            .unwrap();

        let der = parse(&issued.cert_pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert!(!cert.is_ca());
        assert_eq!(
            cert.subject()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "web01.example.net"
        );
        let names: Vec<String> = cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|g| match g {
                GeneralName::DNSName(d) => d.to_string(),
                GeneralName::IPAddress(ip) => format!("{ip:?}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["web01.example.net", "[192, 0, 2, 7]"]);
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        let v = cert.validity();
        assert!(
            v.not_after.timestamp() - v.not_before.timestamp()
                <= (MAX_VALIDITY_DAYS * 86_400) + 600
        );
        assert_eq!(
            cert.public_key().raw,
            key.subject_public_key_info().as_slice(),
            "the CSR's key, not a new one"
        );
        assert!(cert
            .verify_signature(Some(
                X509Certificate::from_der(&parse(ca.cert_pem()))
                    .unwrap()
                    .1
                    .public_key()
            ))
            .is_ok());
        assert_eq!(issued.serial, cert.raw_serial_as_string().replace(':', ""));

        assert!(
            ca.sign_csr(&csr, CertKind::Agent, "x", &sans, 400).is_err(),
            "over a year refused"
        );
        assert!(ca
            .sign_csr(
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
                CertKind::Agent,
                "x",
                &sans,
                30
            )
            .is_err());
        // A CSR whose signature does not match its key is refused.
        let mut tampered = req.serialize_request(&key).unwrap().der().to_vec();
        let n = tampered.len();
        tampered[n - 5] ^= 0xff;
        let tampered_pem = ::pem::encode(&::pem::Pem::new("CERTIFICATE REQUEST", tampered));
        assert!(ca
            .sign_csr(&tampered_pem, CertKind::Agent, "x", &sans, 30)
            .is_err());
    }

    #[test]
    fn client_certificate_and_crl() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) = Ca::load_or_create(&dir.path().join("ca"), "Test CA").unwrap();
        let (issued, key_pem) = ca
            .issue_with_new_key(CertKind::ManagerClient, "patch-manager", &[], 90)
            .unwrap();
        assert!(key_pem.contains("PRIVATE KEY"));
        let der = parse(&issued.cert_pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);

        let crl_pem = ca
            .crl(
                1,
                &[(issued.serial.clone(), chrono::Utc::now().naive_utc())],
                chrono::Duration::days(7),
            )
            .unwrap()
            .pem;
        let crl_der = ::pem::parse(&crl_pem).unwrap().into_contents();
        let (_, crl) = CertificateRevocationList::from_der(&crl_der).unwrap();
        let revoked: Vec<String> = crl
            .iter_revoked_certificates()
            .map(|r| r.raw_serial_as_string().replace(':', ""))
            .collect();
        assert_eq!(revoked, [issued.serial]);
    }
}
