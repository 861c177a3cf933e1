//! `patch-agent enroll`: joins the fleet with a one-time token.
//!
//! The key is generated here and never leaves the host; the manager receives a CSR. The manager
//! is verified by the CA fingerprint inside the token: asked by ALPN for its enrollment
//! certificate, its TLS chain must contain a certificate with exactly that SHA-256, and its server
//! certificate must chain to it for the name in the URL. Nothing is trusted on first use. On success the certificate, key (0600), CA and CRL are
//! written where the configuration says, and the manager's address is added to the allow-list.

use crate::config::AgentConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use shared::enroll::{EnrollRequest, EnrollResponse, EnrollmentToken};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long the whole exchange may take.
const ENROLL_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read from the manager.
const MAX_RESPONSE: usize = 1024 * 1024;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// Network or TLS failure (including a manager that does not match the token).
    #[error("cannot reach the manager: {0}")]
    Connect(String),
    /// The manager refused.
    #[error("the manager refused the enrollment ({status}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Its message.
        message: String,
    },
    /// The answer does not check out.
    #[error("unexpected answer from the manager: {0}")]
    Answer(String),
    /// Writing the files failed.
    #[error("{path}: {source}")]
    Write {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// Inputs of an enrollment.
#[derive(Debug, Clone)]
pub struct EnrollOptions {
    /// `https://host[:port]` of the manager.
    pub manager: String,
    /// The token.
    pub token: String,
    /// This host's name.
    pub hostname: String,
    /// This host's addresses; empty = the local address used to reach the manager.
    pub addresses: Vec<IpAddr>,
    /// Config file to create or update.
    pub config_path: PathBuf,
    /// The local address to connect from (`None`: the system's choice). The manager checks that
    /// an enrollment comes from one of the addresses it certifies (unless the token names them).
    pub source: Option<IpAddr>,
}

/// What was done.
#[derive(Debug, Clone)]
pub struct Enrolled {
    /// The host's id at the manager.
    pub host_id: i64,
    /// The configuration as written.
    pub config: AgentConfig,
}

/// Verifies the manager against the CA fingerprint from the token.
#[derive(Debug)]
struct PinnedCa {
    fingerprint: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| hex::encode(Sha256::digest(c.as_ref())) == self.fingerprint)
            .ok_or_else(|| {
                rustls::Error::General(
                    "the manager's CA does not match the fingerprint in the token".into(),
                )
            })?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier.verify_server_cert(end_entity, &[], server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn parse_manager(url: &str) -> Result<(String, u16), EnrollError> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| EnrollError::Usage("--manager must be an https:// URL".into()))?
        .trim_end_matches('/');
    if rest.contains('/') || rest.contains('@') || rest.is_empty() {
        return Err(EnrollError::Usage(
            "--manager takes https://host[:port] only".into(),
        ));
    }
    // [v6]:port, host:port or host.
    if let Some(v6) = rest.strip_prefix('[') {
        let (host, port) = v6
            .split_once(']')
            .ok_or_else(|| EnrollError::Usage("bad IPv6 address".into()))?;
        let port = match port.strip_prefix(':') {
            Some(p) => p
                .parse()
                .map_err(|_| EnrollError::Usage("bad port".into()))?,
            None => 443,
        };
        return Ok((host.to_owned(), port));
    }
    match rest.rsplit_once(':') {
        Some((host, port)) => Ok((
            host.to_owned(),
            port.parse()
                .map_err(|_| EnrollError::Usage("bad port".into()))?,
        )),
        None => Ok((rest.to_owned(), 443)),
    }
}

/// The environment variable `patch-agent enroll` reads the token from without `--token-file`.
pub const TOKEN_ENV: &str = "PATCH_AGENT_ENROLL_TOKEN";

/// The enrollment token, from `token_file` (`-` = `stdin`) or else the environment value `env`
/// (of [`TOKEN_ENV`]); never from the command line, where every local user could read it.
pub fn read_token(
    token_file: Option<&Path>,
    env: Option<std::ffi::OsString>,
    stdin: impl std::io::Read,
) -> Result<String, EnrollError> {
    use std::io::Read as _;
    let text = match token_file {
        Some(p) if p.as_os_str() == "-" => {
            let mut text = String::new();
            stdin
                .take(64 * 1024)
                .read_to_string(&mut text)
                .map_err(|e| {
                    EnrollError::Usage(format!("reading the token from standard input: {e}"))
                })?;
            text
        }
        Some(p) => std::fs::read_to_string(p).map_err(|e| {
            EnrollError::Usage(format!("reading the token from {}: {e}", p.display()))
        })?,
        None => match env {
            Some(v) => v
                .into_string()
                .map_err(|_| EnrollError::Usage(format!("{TOKEN_ENV} is not valid UTF-8")))?,
            None => {
                return Err(EnrollError::Usage(format!(
                    "no enrollment token: pass --token-file PATH, --token-file - (standard \
                     input) or set {TOKEN_ENV}"
                )))
            }
        },
    };
    let token = text.trim();
    if token.is_empty() {
        return Err(EnrollError::Usage("the enrollment token is empty".into()));
    }
    Ok(token.to_owned())
}

/// Runs the enrollment and writes the files.
pub async fn enroll(opts: &EnrollOptions) -> Result<Enrolled, EnrollError> {
    tokio::time::timeout(ENROLL_TIMEOUT, run(opts))
        .await
        .map_err(|_| EnrollError::Connect("timed out".into()))?
}

async fn run(opts: &EnrollOptions) -> Result<Enrolled, EnrollError> {
    let token = EnrollmentToken::parse(&opts.token).ok_or_else(|| {
        EnrollError::Usage(
            "the token is malformed (expected lpm1.<id>.<secret>.<fingerprint>)".into(),
        )
    })?;
    let (host, port) = parse_manager(&opts.manager)?;
    let mut config = match opts.config_path.exists() {
        true => crate::config::load(Some(&opts.config_path), &[])
            .map_err(|e| EnrollError::Usage(e.to_string()))?,
        false => AgentConfig::default(),
    };

    let addr: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| EnrollError::Connect(format!("{host}: {e}")))?
        .next()
        .ok_or_else(|| EnrollError::Connect(format!("{host} has no address")))?;
    let tcp = connect(addr, opts.source)
        .await
        .map_err(|e| EnrollError::Connect(e.to_string()))?;
    let local_ip = tcp
        .local_addr()
        .map_err(|e| EnrollError::Connect(e.to_string()))?
        .ip();
    let addresses = if opts.addresses.is_empty() {
        vec![local_ip]
    } else {
        opts.addresses.clone()
    };

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls_config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| EnrollError::Connect(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCa {
            fingerprint: token.ca_fingerprint.clone(),
            provider,
        }))
        .with_no_client_auth();
    // Asks for the manager's enrollment certificate (fleet CA) rather than its web UI's.
    tls_config.alpn_protocols = vec![shared::enroll::ENROLL_ALPN.to_vec(), b"http/1.1".to_vec()];
    let server_name =
        ServerName::try_from(host.clone()).map_err(|e| EnrollError::Usage(e.to_string()))?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(tls_config))
        .connect(server_name, tcp)
        .await
        .map_err(|e| EnrollError::Connect(e.to_string()))?;

    let (key_pem, csr_pem) = crate::csr::new_key_and_csr(
        &opts.hostname,
        std::slice::from_ref(&opts.hostname),
        &addresses,
    )
    .map_err(|e| EnrollError::Usage(format!("cannot make a key: {e}")))?;
    let request = EnrollRequest {
        token: opts.token.trim().to_owned(),
        csr_pem,
        hostname: opts.hostname.clone(),
        addresses: addresses.iter().map(ToString::to_string).collect(),
        port: config.server.listen.port(),
    };
    let body = serde_json::to_string(&request).map_err(|e| EnrollError::Usage(e.to_string()))?;
    let head = format!(
        "POST /api/v1/enroll HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes())
        .await
        .map_err(|e| EnrollError::Connect(e.to_string()))?;
    tls.write_all(body.as_bytes())
        .await
        .map_err(|e| EnrollError::Connect(e.to_string()))?;
    let mut raw = Vec::new();
    (&mut tls)
        .take(MAX_RESPONSE as u64)
        .read_to_end(&mut raw)
        .await
        .map_err(|e| EnrollError::Connect(e.to_string()))?;
    let text = String::from_utf8_lossy(&raw);
    let status: u16 = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| EnrollError::Answer("not HTTP".into()))?;
    let payload = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    if status != 201 {
        let message = serde_json::from_str::<shared::ErrorEnvelope>(payload)
            .map(|e| e.error.message)
            .unwrap_or_else(|_| payload.chars().take(200).collect());
        return Err(EnrollError::Refused { status, message });
    }
    let answer: EnrollResponse =
        serde_json::from_str(payload).map_err(|e| EnrollError::Answer(format!("bad JSON: {e}")))?;
    check_answer(&answer, &token.ca_fingerprint)?;

    write(&config.tls.key, &key_pem, 0o600)?;
    write(&config.tls.cert, &answer.certificate_pem, 0o644)?;
    write(&config.tls.client_ca, &answer.ca_pem, 0o644)?;
    if config.tls.crl.as_os_str().is_empty() {
        config.tls.crl = config.tls.client_ca.with_file_name("ca.crl");
    }
    write(&config.tls.crl, &answer.crl_pem, 0o644)?;
    let manager_ip = addr.ip().to_canonical().to_string();
    if !config.server.allow.contains(&manager_ip) {
        config.server.allow.push(manager_ip);
    }
    let text = toml::to_string(&config).map_err(|e| EnrollError::Answer(e.to_string()))?;
    write(&opts.config_path, &text, 0o600)?;
    Ok(Enrolled {
        host_id: answer.host_id.into(),
        config,
    })
}

/// Connects to `addr`, from `source` if given.
async fn connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
) -> std::io::Result<tokio::net::TcpStream> {
    let Some(source) = source else {
        return tokio::net::TcpStream::connect(addr).await;
    };
    let socket = match source {
        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(addr).await
}

/// The CA in the answer is the pinned one, and the certificate is signed by it.
fn check_answer(answer: &EnrollResponse, fingerprint: &str) -> Result<(), EnrollError> {
    let ca = CertificateDer::from_pem_slice(answer.ca_pem.as_bytes())
        .map_err(|e| EnrollError::Answer(e.to_string()))?;
    if hex::encode(Sha256::digest(ca.as_ref())) != fingerprint {
        return Err(EnrollError::Answer(
            "the CA certificate does not match the token".into(),
        ));
    }
    let cert = CertificateDer::from_pem_slice(answer.certificate_pem.as_bytes())
        .map_err(|e| EnrollError::Answer(e.to_string()))?;
    let (_, ca_x) = x509_parser::parse_x509_certificate(ca.as_ref())
        .map_err(|e| EnrollError::Answer(e.to_string()))?;
    let (_, cert_x) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| EnrollError::Answer(e.to_string()))?;
    cert_x
        .verify_signature(Some(ca_x.public_key()))
        .map_err(|_| EnrollError::Answer("the certificate is not signed by the CA".into()))
}

fn write(path: &Path, contents: &str, mode: u32) -> Result<(), EnrollError> {
    shared::files::write_atomic(path, contents.as_bytes(), mode).map_err(|source| {
        EnrollError::Write {
            path: path.to_owned(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::parse_manager;

    #[test]
    fn manager_urls() {
        assert_eq!(
            parse_manager("https://pm.example:8443").unwrap(),
            ("pm.example".into(), 8443)
        );
        assert_eq!(
            parse_manager("https://pm.example/").unwrap(),
            ("pm.example".into(), 443)
        );
        assert_eq!(parse_manager("https://[::1]:9").unwrap(), ("::1".into(), 9));
        for bad in [
            "http://pm",
            "https://",
            "https://a/b",
            "https://u@h",
            "https://h:x",
            "pm:1",
        ] {
            assert!(parse_manager(bad).is_err(), "{bad}");
        }
    }
}
