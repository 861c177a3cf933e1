//! The manager's CA and a real patch-agent: the agent's certificate comes from its own CSR, the
//! manager's client certificate is accepted, and once revoked through the CA's CRL it is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use patch_manager::pki::{Ca, CertKind, San};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get_health(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    cert: &str,
    key: &str,
) -> Option<u16> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(
        vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
        PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
    )
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("agent01.test").unwrap(), tcp)
        .await
        .ok()?;
    tls.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut buf = Vec::new();
    let _ = tls.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

#[actix_rt::test]
async fn agent_trusts_the_manager_until_its_certificate_is_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _) = Ca::load_or_create(&dir.path().join("ca"), "Fleet CA").unwrap();

    // Agent side: key and CSR made on the host; the manager signs the CSR.
    let (agent_key, csr) = patch_agent::csr::new_key_and_csr(
        "agent01.test",
        &["agent01.test".into()],
        &["127.0.0.1".parse().unwrap()],
    )
    .unwrap();
    let sans = [
        San::Dns("agent01.test".into()),
        San::Ip("127.0.0.1".parse().unwrap()),
    ];
    let agent_cert = ca
        .sign_csr(&csr, CertKind::Agent, "agent01.test", &sans, 365)
        .unwrap();
    let (client, client_key) = ca
        .issue_with_new_key(CertKind::ManagerClient, "patch-manager", &[], 90)
        .unwrap();

    let w = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let mut config = patch_agent::config::AgentConfig::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.allow = vec!["127.0.0.1".into()];
    config.tls.cert = w("agent.crt", &agent_cert.cert_pem);
    config.tls.key = w("agent.key", &agent_key);
    config.tls.client_ca = w("ca.crt", ca.cert_pem());
    config.tls.crl = w(
        "ca.crl",
        &ca.crl(1, &[], chrono::Duration::days(7)).unwrap().pem,
    );
    config.audit.path = dir.path().join("audit.jsonl");
    config.jobs.state_dir = dir.path().join("state");
    let config_file = w("agent.toml", &toml::to_string(&config).unwrap());

    let audit = patch_agent::audit::AuditLog::open(&config.audit.path).unwrap();
    let backend = Arc::new(patch_agent::backend::apt::AptBackend::new(None).unwrap());
    let jobs = patch_agent::jobs::Jobs::new(
        backend.clone(),
        audit.clone(),
        config.jobs.state_dir.clone(),
        5,
        Duration::from_secs(60),
    )
    .unwrap();
    let loader_file = config_file.clone();
    let loader: patch_agent::reload::ConfigLoader = Arc::new(move || {
        patch_agent::config::load(Some(&loader_file), &[]).map_err(|e| e.to_string())
    });
    let agent = patch_agent::server::start(
        &config,
        backend,
        jobs,
        audit,
        Some(patch_agent::server::ReloadSource {
            config_file: Some(config_file),
            loader,
        }),
    )
    .unwrap();

    assert_eq!(
        get_health(agent.addr, ca.cert_pem(), &client.cert_pem, &client_key).await,
        Some(200)
    );

    // Revoke the manager's client certificate: a new CRL reaches the agent, which refuses it.
    std::fs::write(
        &config.tls.crl,
        ca.crl(
            2,
            &[(client.serial.clone(), chrono::Utc::now().naive_utc())],
            chrono::Duration::days(7),
        )
        .unwrap()
        .pem,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while get_health(agent.addr, ca.cert_pem(), &client.cert_pem, &client_key)
        .await
        .is_some()
    {
        assert!(
            Instant::now() < deadline,
            "the revoked client certificate is still accepted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A fresh client certificate from the same CA still works.
    let (fresh, fresh_key) = ca
        .issue_with_new_key(CertKind::ManagerClient, "patch-manager", &[], 90)
        .unwrap();
    assert_eq!(
        get_health(agent.addr, ca.cert_pem(), &fresh.cert_pem, &fresh_key).await,
        Some(200)
    );
    agent.stop().await;
}
