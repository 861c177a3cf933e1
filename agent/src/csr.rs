//! The agent's own key and certificate signing request. The private key is generated here and
//! never leaves the host; only the CSR (public key plus proof of possession) goes to the manager.

use rcgen::{CertificateParams, DnType, KeyPair, SanType, PKCS_ECDSA_P256_SHA256};
use std::net::IpAddr;

/// A new ECDSA P-256 key (PEM) and a CSR (PEM) for `common_name` with DNS names and addresses.
pub fn new_key_and_csr(
    common_name: &str,
    dns: &[String],
    ips: &[IpAddr],
) -> Result<(String, String), rcgen::Error> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    let mut sans = Vec::new();
    for d in dns {
        sans.push(SanType::DnsName(d.clone().try_into()?));
    }
    sans.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    params.subject_alt_names = sans;
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}
