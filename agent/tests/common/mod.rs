//! Test PKI and a real agent on 127.0.0.1:0.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

mod apt_root;
#[allow(dead_code)] // only the backend contract suite uses it
pub mod family_root;
#[allow(unused_imports)] // not every test binary uses it
use apt_root::run;
#[allow(unused_imports)] // not every test binary uses it
pub use apt_root::AptRoot;

use patch_agent::audit::AuditLog;
use patch_agent::backend::apt::AptBackend;
use patch_agent::config::AgentConfig;
use patch_agent::server::RunningAgent;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// A certificate and its key, in PEM.
#[derive(Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// A test certificate authority.
pub struct Ca {
    pub pem: Pem,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.not_before = OffsetDateTime::now_utc() - Duration::days(1);
        p.not_after = OffsetDateTime::now_utc() + Duration::days(3650);
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        let pem = Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        };
        Self {
            pem,
            issuer: Issuer::new(p, key),
        }
    }

    /// Issues a leaf certificate.
    pub fn issue(
        &self,
        cn: &str,
        serial: u64,
        server: bool,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Pem {
        let sans = if server {
            vec!["localhost".to_string(), "127.0.0.1".to_string()]
        } else {
            vec![]
        };
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.serial_number = Some(SerialNumber::from(serial));
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        p.not_before = not_before;
        p.not_after = not_after;
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A leaf valid from yesterday for `days`.
    pub fn leaf(&self, cn: &str, serial: u64, server: bool, days: i64) -> Pem {
        let now = OffsetDateTime::now_utc();
        self.issue(
            cn,
            serial,
            server,
            now - Duration::days(1),
            now + Duration::days(days),
        )
    }

    /// A CRL (number 1) revoking `serials`.
    pub fn crl(&self, serials: &[u64]) -> String {
        self.crl_numbered(1, serials)
    }

    /// A CRL with the given number revoking `serials`.
    pub fn crl_numbered(&self, number: u64, serials: &[u64]) -> String {
        self.crl_until(
            number,
            serials,
            OffsetDateTime::now_utc() + Duration::days(7),
        )
    }

    /// A CRL with the given number revoking `serials`, with `next_update` as its expiry.
    pub fn crl_until(&self, number: u64, serials: &[u64], next_update: OffsetDateTime) -> String {
        let now = OffsetDateTime::now_utc();
        CertificateRevocationListParams {
            this_update: now - Duration::hours(2),
            next_update,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: now - Duration::minutes(5),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer)
        .unwrap()
        .pem()
        .unwrap()
    }
}

/// Files of one agent under test.
pub struct AgentFiles {
    pub dir: tempfile::TempDir,
    pub config: AgentConfig,
}

impl AgentFiles {
    /// Writes the agent's certificate, key, CA and CRL, and a config allowing `allow`.
    pub fn new(ca: &Ca, server: &Pem, crl: Option<&str>, allow: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let w = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let mut config = AgentConfig::default();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.allow = allow.iter().map(|s| s.to_string()).collect();
        config.tls.cert = w("agent.crt", &server.cert);
        config.tls.key = w("agent.key", &server.key);
        config.tls.client_ca = w("ca.crt", &ca.pem.cert);
        config.tls.crl = crl.map(|c| w("ca.crl", c)).unwrap_or_default();
        config.audit.path = dir.path().join("audit.jsonl");
        config.jobs.state_dir = dir.path().join("state");
        Self { dir, config }
    }

    pub fn audit_path(&self) -> PathBuf {
        self.config.audit.path.clone()
    }
}

/// Starts a real agent on the machine's own dpkg database (read-only use).
pub fn start_agent(files: &AgentFiles) -> (RunningAgent, AuditLog) {
    let backend = Arc::new(AptBackend::new(None).unwrap());
    let (agent, audit, _) =
        start_agent_with(files, backend, 5, std::time::Duration::from_secs(1800));
    (agent, audit)
}

/// Starts a real agent over `backend` with the given job limits.
pub fn start_agent_with(
    files: &AgentFiles,
    backend: Arc<dyn patch_agent::backend::PackageBackend>,
    max_concurrent: usize,
    timeout: std::time::Duration,
) -> (RunningAgent, AuditLog, patch_agent::jobs::Jobs) {
    let audit = AuditLog::open(&files.config.audit.path).unwrap();
    let jobs = patch_agent::jobs::Jobs::new(
        backend.clone(),
        audit.clone(),
        files.config.jobs.state_dir.clone(),
        max_concurrent,
        timeout,
    )
    .unwrap();
    let config_file = files.dir.path().join("agent.toml");
    std::fs::write(&config_file, toml::to_string(&files.config).unwrap()).unwrap();
    let loader_file = config_file.clone();
    let loader: patch_agent::reload::ConfigLoader = Arc::new(move || {
        patch_agent::config::load(Some(&loader_file), &[]).map_err(|e| e.to_string())
    });
    let reload = patch_agent::server::ReloadSource {
        config_file: Some(config_file),
        loader,
    };
    let running = patch_agent::server::start(
        &files.config,
        backend,
        jobs.clone(),
        audit.clone(),
        Some(reload),
    )
    .unwrap();
    (running, audit, jobs)
}

/// JSON calls over mTLS.
pub struct Api {
    pub client: Client,
    pub addr: SocketAddr,
}

impl Api {
    pub fn new(ca: &Ca, addr: SocketAddr) -> Self {
        Self {
            client: Client::new(ca, Some(ca.leaf("patch-manager", 900, false, 30))),
            addr,
        }
    }

    /// Sends a request; answers the status and the parsed JSON body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, serde_json::Value) {
        self.call_with(method, path, &[], body).await
    }

    /// [`Api::call`] with extra header lines (`Name: value`).
    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        headers: &[&str],
        body: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
        let raw = match body {
            Some(b) => format!(
                "{method} /api/v1{path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            ),
            None => format!("{method} /api/v1{path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n{extra}Content-Length: 0\r\n\r\n"),
        };
        match self.client.request(self.addr, &raw).await {
            Outcome::Http(status, body) => (
                status,
                serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
            ),
            Outcome::NoAnswer(how) => panic!("{method} {path}: no answer ({how})"),
        }
    }

    pub async fn get(&self, path: &str) -> serde_json::Value {
        let (status, v) = self.call("GET", path, None).await;
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    /// Submits an async call, asserts 202, answers the job id.
    pub async fn submit(&self, method: &str, path: &str, body: Option<&str>) -> String {
        let (status, v) = self.call(method, path, body).await;
        assert_eq!(status, 202, "{method} {path}: {v}");
        v["job_id"].as_str().unwrap().to_owned()
    }

    /// Waits until the job has finished and answers it.
    pub async fn wait(&self, id: &str) -> shared::agent::Job {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let job: shared::agent::Job =
                serde_json::from_value(self.get(&format!("/jobs/{id}")).await).unwrap();
            if job.status.is_finished() {
                return job;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "job {id} did not finish: {job:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// What a client saw.
#[derive(Debug)]
pub enum Outcome {
    /// An HTTP answer: status and body.
    Http(u16, String),
    /// No HTTP answer: the connection failed or closed; the text says how.
    NoAnswer(String),
}

/// A TLS client with the given identity, protocol versions and source address.
pub struct Client {
    pub ca_cert: String,
    pub identity: Option<Pem>,
    pub tls12_only: bool,
    pub source: &'static str,
}

impl Client {
    pub fn new(ca: &Ca, identity: Option<Pem>) -> Self {
        Self {
            ca_cert: ca.pem.cert.clone(),
            identity,
            tls12_only: false,
            source: "127.0.0.1",
        }
    }

    pub fn config(&self) -> rustls::ClientConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca_cert.as_bytes()).unwrap())
            .unwrap();
        let versions: &[&rustls::SupportedProtocolVersion] = if self.tls12_only {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13]
        };
        let b = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
        match &self.identity {
            Some(id) => b
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(id.cert.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(id.key.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => b.with_no_client_auth(),
        }
    }

    /// Sends `GET path` and reports what came back.
    pub async fn get(&self, addr: SocketAddr, path: &str) -> Outcome {
        self.request(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n"),
        )
        .await
    }

    /// Sends a raw HTTP/1.1 request.
    pub async fn request(&self, addr: SocketAddr, raw: &str) -> Outcome {
        let socket = TcpSocket::new_v4().unwrap();
        socket
            .bind(format!("{}:0", self.source).parse().unwrap())
            .unwrap();
        let tcp = match socket.connect(addr).await {
            Ok(t) => t,
            Err(e) => return Outcome::NoAnswer(format!("connect: {e}")),
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::new(self.config()));
        let mut tls = match connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
        {
            Ok(t) => t,
            Err(e) => return Outcome::NoAnswer(format!("handshake: {e}")),
        };
        if let Err(e) = tls.write_all(raw.as_bytes()).await {
            return Outcome::NoAnswer(format!("write: {e}"));
        }
        let mut buf = Vec::new();
        let read = tls.read_to_end(&mut buf).await;
        let text = String::from_utf8_lossy(&buf).into_owned();
        match text.strip_prefix("HTTP/1.1 ") {
            Some(rest) => {
                let status = rest[..3].parse().unwrap();
                let body = text
                    .split_once("\r\n\r\n")
                    .map(|(_, b)| b.to_owned())
                    .unwrap_or_default();
                Outcome::Http(status, body)
            }
            None => Outcome::NoAnswer(format!("read {} bytes, then {read:?}", buf.len())),
        }
    }
}

/// Reads the audit events of a file.
pub fn audit_events(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
