//! The manager's mTLS client to agents (awc over rustls): the manager's client certificate, the
//! fleet CA as the only trust root, agents addressed by IP (their certificates carry IP SANs).
//! The certificate files are read when a client is made, so a rotated manager certificate is
//! used by every connection opened after the rotation.

use serde::de::DeserializeOwned;
use serde::Serialize;
use shared::agent::{
    AgentHealth, CertificateInstall, CertificateInstalled, CrlInstall, CrlInstalled, CsrResponse,
};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Failure talking to an agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentClientError {
    /// Local TLS material unusable.
    #[error("client TLS: {0}")]
    Tls(String),
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
    /// A client presenting the certificate in `cert`/`key` and trusting only `ca_pem`.
    pub fn new(
        ca_pem: &str,
        cert: &Path,
        key: &Path,
        addr: SocketAddr,
    ) -> Result<Self, AgentClientError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let tls = |e: String| AgentClientError::Tls(e);
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(
                CertificateDer::from_pem_slice(ca_pem.as_bytes())
                    .map_err(|e| tls(e.to_string()))?,
            )
            .map_err(|e| tls(e.to_string()))?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| tls(format!("{}: {e}", cert.display())))?
            .collect::<Result<_, _>>()
            .map_err(|e| tls(format!("{}: {e}", cert.display())))?;
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| tls(format!("{}: {e}", key.display())))?;
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| tls(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let client = awc::Client::builder()
            .connector(
                awc::Connector::new()
                    .rustls_0_23(Arc::new(config))
                    .timeout(Duration::from_secs(10)),
            )
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

    /// `GET /health`.
    pub async fn health(&self) -> Result<AgentHealth, AgentClientError> {
        self.send::<(), _>(awc::http::Method::GET, "/health", None)
            .await
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

    /// `PUT /tls/crl`.
    pub async fn push_crl(&self, crl_pem: &str) -> Result<CrlInstalled, AgentClientError> {
        let body = CrlInstall {
            crl_pem: crl_pem.to_owned(),
        };
        self.send(awc::http::Method::PUT, "/tls/crl", Some(&body))
            .await
    }
}
