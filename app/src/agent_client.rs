//! The manager's mTLS client to agents (awc over rustls): the manager's client certificate, the
//! fleet CA as the only trust root, agents addressed by IP (their certificates carry IP SANs).
//! The certificate files are read when a client is made, so a rotated manager certificate is
//! used by every connection opened after the rotation.
//!
//! Each agent is also **pinned**: the SHA-256 of the certificate the manager issued it at
//! enrollment or its latest renewal is stored with the host, and a client made with that pin
//! refuses an agent presenting any other certificate — even one the fleet CA signed for the same
//! address (another host's, or one bought with a stray enrollment token).

use serde::de::DeserializeOwned;
use serde::Serialize;
use shared::agent::{
    AgentHealth, ApplyRequest, CertificateInstall, CertificateInstalled, CrlInstall, CrlInstalled,
    CsrResponse, Job, JobAccepted, JobEvent, PackageList, PatchList, SystemInfo,
};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The pin stored for a host whose pinned certificate was revoked: no certificate matches it, so
/// the manager refuses that agent (whoever holds its key) until the host is enrolled again.
pub const REVOKED_PIN: &str = "revoked";

/// Longest a health poll may take, from connecting to the last byte of the answer. With the
/// host actor's confirmation after [`crate::fleet::actor::CONFIRM_AFTER`] this bounds how long a
/// host that stopped answering takes to be shown unreachable: one health interval + 10 s.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// Failure talking to an agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentClientError {
    /// Local TLS material unusable.
    #[error("client TLS: {0}")]
    Tls(String),
    /// A value the manager was about to send is not valid (no request was made).
    #[error("{0}")]
    Invalid(String),
    /// Network, TLS or HTTP failure.
    #[error("agent {addr}: {message}")]
    Request {
        /// Agent.
        addr: SocketAddr,
        /// What happened.
        message: String,
    },
    /// The agent answered with an error envelope.
    #[error("agent {addr} answered {status}: {message}")]
    Refused {
        /// Agent.
        addr: SocketAddr,
        /// HTTP status.
        status: u16,
        /// Its message.
        message: String,
    },
}

/// Verifies an agent's certificate against the fleet CA, then against the pinned SHA-256.
#[derive(Debug)]
struct Pinned {
    fleet: Arc<rustls::client::WebPkiServerVerifier>,
    sha256: Vec<u8>,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let verified = self.fleet.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let presented = ring::digest::digest(&ring::digest::SHA256, end_entity.as_ref());
        if presented.as_ref() == self.sha256.as_slice() {
            Ok(verified)
        } else {
            Err(rustls::Error::General(
                "the agent presented a certificate other than the one pinned for this host \
                 (issued at its enrollment or latest renewal)"
                    .into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.fleet.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.fleet.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.fleet.supported_verify_schemes()
    }
}

/// TCP connections with Nagle's algorithm off. The request follows the TLS handshake's last
/// flight at once; with Nagle on, it waited for the agent's delayed ACK, 40 ms on every poll
/// (measured with the fleet simulator).
fn tcp_nodelay() -> impl actix_service::Service<
    actix_tls::connect::ConnectInfo<awc::http::Uri>,
    Response = actix_tls::connect::Connection<awc::http::Uri, tokio::net::TcpStream>,
    Error = actix_tls::connect::ConnectError,
> + Clone {
    use actix_service::ServiceExt;
    actix_tls::connect::Connector::default().service().map(
        |conn: actix_tls::connect::Connection<awc::http::Uri, tokio::net::TcpStream>| {
            // Failing to set it only costs latency.
            let _ = conn.io_ref().set_nodelay(true);
            conn
        },
    )
}

/// An agent job id as a path segment: a ULID (26 letters and digits), refused otherwise.
fn job_segment(id: &str) -> Result<&str, AgentClientError> {
    if id.len() == 26 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(id)
    } else {
        Err(AgentClientError::Invalid(format!(
            "{:?} is not an agent job id",
            id.chars().take(40).collect::<String>()
        )))
    }
}

/// The manager's client certificate chain and key, parsed.
pub struct ClientIdentity {
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl ClientIdentity {
    /// Reads the PEM files `cert` (chain) and `key`.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, AgentClientError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let tls = |e: String| AgentClientError::Tls(e);
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| tls(format!("{}: {e}", cert.display())))?
            .collect::<Result<_, _>>()
            .map_err(|e| tls(format!("{}: {e}", cert.display())))?;
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| tls(format!("{}: {e}", key.display())))?;
        Ok(Self { chain, key })
    }
}

/// A client for one agent.
pub struct AgentClient {
    client: awc::Client,
    addr: SocketAddr,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl AgentClient {
    /// A client presenting the certificate in `cert`/`key`, trusting only `ca_pem`, and, with
    /// `pin` (SHA-256 of the agent's certificate, hex), only the agent presenting that
    /// certificate. One connection per request sequence, not kept.
    pub fn new(
        ca_pem: &str,
        cert: &Path,
        key: &Path,
        addr: SocketAddr,
        pin: Option<&str>,
    ) -> Result<Self, AgentClientError> {
        Self::with_identity(ca_pem, &ClientIdentity::load(cert, key)?, addr, pin, None)
    }

    /// Like [`AgentClient::new`] with the identity already parsed; with `keep` (idle time,
    /// lifetime) the connection is kept open between requests that long.
    pub fn with_identity(
        ca_pem: &str,
        identity: &ClientIdentity,
        addr: SocketAddr,
        pin: Option<&str>,
        keep: Option<(Duration, Duration)>,
    ) -> Result<Self, AgentClientError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;
        let tls = |e: String| AgentClientError::Tls(e);
        if pin == Some(REVOKED_PIN) {
            return Err(tls(
                "this host's certificate was revoked: the manager no longer talks to its agent; \
                 enroll the host again"
                    .into(),
            ));
        }
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(
                CertificateDer::from_pem_slice(ca_pem.as_bytes())
                    .map_err(|e| tls(e.to_string()))?,
            )
            .map_err(|e| tls(e.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls(e.to_string()))?;
        let builder = match pin {
            None => builder.with_root_certificates(roots),
            Some(pin) => {
                let fleet = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|e| tls(e.to_string()))?;
                let sha256 = hex::decode(pin).map_err(|e| tls(format!("pin: {e}")))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(Pinned { fleet, sha256 }))
            }
        };
        let mut config = builder
            .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(|e| tls(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut connector = awc::Connector::new()
            .connector(tcp_nodelay())
            .rustls_0_23(Arc::new(config))
            .timeout(Duration::from_secs(10));
        if let Some((idle, lifetime)) = keep {
            connector = connector.conn_keep_alive(idle).conn_lifetime(lifetime);
        }
        let client = awc::Client::builder()
            .connector(connector)
            .timeout(Duration::from_secs(30))
            .finish();
        Ok(Self { client, addr })
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}/api/v1{path}", self.addr)
    }

    async fn answer<T: DeserializeOwned>(
        &self,
        res: Result<
            awc::ClientResponse<
                impl futures_util::Stream<
                        Item = Result<actix_web::web::Bytes, awc::error::PayloadError>,
                    > + Unpin,
            >,
            awc::error::SendRequestError,
        >,
    ) -> Result<T, AgentClientError> {
        let err = |message: String| AgentClientError::Request {
            addr: self.addr,
            message,
        };
        let mut res = res.map_err(|e| err(e.to_string()))?;
        let status = res.status().as_u16();
        let body = res
            .body()
            .limit(8 << 20)
            .await
            .map_err(|e| err(e.to_string()))?;
        if !(200..300).contains(&status) {
            let message = serde_json::from_slice::<shared::ErrorEnvelope>(&body)
                .map(|e| e.error.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(200).collect());
            return Err(AgentClientError::Refused {
                addr: self.addr,
                status,
                message,
            });
        }
        serde_json::from_slice(&body).map_err(|e| err(format!("unexpected answer: {e}")))
    }

    async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: awc::http::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, AgentClientError> {
        let req = self.client.request(method, self.url(path));
        let res = match body {
            Some(b) => req.send_json(b).await,
            None => req.send().await,
        };
        self.answer(res).await
    }

    /// `GET /metrics`: the agent's Prometheus text exposition.
    pub async fn metrics(&self) -> Result<String, AgentClientError> {
        let err = |message: String| AgentClientError::Request {
            addr: self.addr,
            message,
        };
        let mut res = self
            .client
            .get(format!("https://{}/metrics", self.addr))
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        let status = res.status().as_u16();
        let body = res
            .body()
            .limit(4 << 20)
            .await
            .map_err(|e| err(e.to_string()))?;
        let text = String::from_utf8_lossy(&body).into_owned();
        if status != 200 {
            return Err(AgentClientError::Refused {
                addr: self.addr,
                status,
                message: text.chars().take(200).collect(),
            });
        }
        Ok(text)
    }

    /// `GET /health`, answered within [`HEALTH_TIMEOUT`] (connection, handshake and body): a
    /// host that does not answer in time is treated as not answering, which bounds how long a
    /// down host takes to be shown.
    pub async fn health(&self) -> Result<AgentHealth, AgentClientError> {
        let poll = self.send::<(), _>(awc::http::Method::GET, "/health", None);
        match tokio::time::timeout(HEALTH_TIMEOUT, poll).await {
            Ok(answer) => answer,
            Err(_) => Err(AgentClientError::Request {
                addr: self.addr,
                message: format!("no answer within {} s", HEALTH_TIMEOUT.as_secs()),
            }),
        }
    }

    /// `POST /tls/csr`: the agent makes a new key and answers a CSR.
    pub async fn request_csr(&self) -> Result<String, AgentClientError> {
        let r: CsrResponse = self
            .send::<(), _>(awc::http::Method::POST, "/tls/csr", None)
            .await?;
        Ok(r.csr_pem)
    }

    /// `PUT /tls/certificate`.
    pub async fn install_certificate(
        &self,
        certificate_pem: &str,
    ) -> Result<CertificateInstalled, AgentClientError> {
        let body = CertificateInstall {
            certificate_pem: certificate_pem.to_owned(),
        };
        self.send(awc::http::Method::PUT, "/tls/certificate", Some(&body))
            .await
    }

    /// `GET /system/info`.
    pub async fn system_info(&self) -> Result<SystemInfo, AgentClientError> {
        self.send::<(), _>(awc::http::Method::GET, "/system/info", None)
            .await
    }

    /// `GET /packages`: every installed package.
    pub async fn packages(&self) -> Result<PackageList, AgentClientError> {
        self.send::<(), _>(awc::http::Method::GET, "/packages", None)
            .await
    }

    /// `GET /patches`: the available updates, security first.
    pub async fn patches(&self) -> Result<PatchList, AgentClientError> {
        self.send::<(), _>(awc::http::Method::GET, "/patches", None)
            .await
    }

    /// `POST /patches/apply` with an `Idempotency-Key`: sent again with the same key, the agent
    /// answers the job it accepted the first time instead of starting another.
    pub async fn apply_patches(
        &self,
        request: &ApplyRequest,
        key: &str,
    ) -> Result<JobAccepted, AgentClientError> {
        let res = self
            .client
            .post(self.url("/patches/apply"))
            .insert_header(("idempotency-key", key))
            .send_json(request)
            .await;
        self.answer(res).await
    }

    /// `POST /jobs/{id}/rollback` with an `Idempotency-Key`.
    pub async fn rollback(&self, job_id: &str, key: &str) -> Result<JobAccepted, AgentClientError> {
        let path = format!("/jobs/{}/rollback", job_segment(job_id)?);
        let res = self
            .client
            .post(self.url(&path))
            .insert_header(("idempotency-key", key))
            .send()
            .await;
        self.answer(res).await
    }

    /// `GET /jobs/{id}`.
    pub async fn job(&self, job_id: &str) -> Result<Job, AgentClientError> {
        let path = format!("/jobs/{}", job_segment(job_id)?);
        self.send::<(), _>(awc::http::Method::GET, &path, None)
            .await
    }

    /// `GET /ws/jobs`: the agent's live job events. Each item is an event, `None` for a notice
    /// that events were missed (or a message not understood), or the error that ended the
    /// stream.
    pub async fn job_events(
        &self,
    ) -> Result<
        impl futures_util::Stream<Item = Result<Option<JobEvent>, String>> + Unpin,
        AgentClientError,
    > {
        use futures_util::StreamExt;
        let (_, frames) = self
            .client
            .ws(format!("wss://{}/api/v1/ws/jobs", self.addr))
            .max_frame_size(256 * 1024)
            .connect()
            .await
            .map_err(|e| AgentClientError::Request {
                addr: self.addr,
                message: e.to_string(),
            })?;
        Ok(frames.filter_map(|frame| {
            std::future::ready(match frame {
                Ok(awc::ws::Frame::Text(text)) => {
                    Some(Ok(serde_json::from_slice::<JobEvent>(&text).ok()))
                }
                Ok(awc::ws::Frame::Close(_)) => Some(Err("the agent closed the stream".into())),
                Ok(_) => None,
                Err(e) => Some(Err(e.to_string())),
            })
        }))
    }

    /// `PUT /tls/crl`.
    pub async fn push_crl(&self, crl_pem: &str) -> Result<CrlInstalled, AgentClientError> {
        let body = CrlInstall {
            crl_pem: crl_pem.to_owned(),
        };
        self.send(awc::http::Method::PUT, "/tls/crl", Some(&body))
            .await
    }
}
