//! Live reload: a new certificate or allow-list applies to new connections without dropping
//! established ones; an invalid change is refused, audited, and the old material stays.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{audit_events, start_agent, AgentFiles, Ca, Client, Outcome};
use patch_agent::tls::ClientIdentity;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Stream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn open(client: &Client, addr: std::net::SocketAddr) -> Stream {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(client)));
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

fn client_config(c: &Client) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(c.ca_cert.as_bytes()).unwrap())
        .unwrap();
    let id = c.identity.as_ref().unwrap();
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(id.cert.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(id.key.as_bytes()).unwrap(),
        )
        .unwrap()
}

/// One keep-alive request on an open stream; returns the status.
async fn keepalive_get(s: &mut Stream, path: &str) -> u16 {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap();
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    head[9..12].parse().unwrap()
}

fn server_serial(s: &Stream) -> String {
    let der = s.get_ref().1.peer_certificates().unwrap()[0].clone();
    ClientIdentity::from_der(der.as_ref()).unwrap().serial
}

async fn wait_for(mut cond: impl AsyncFnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cond().await {
        assert!(Instant::now() < deadline, "gave up waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_rt::test]
async fn certificates_and_allow_list_reload_live() {
    let ca = Ca::new("Fleet CA");
    let files = AgentFiles::new(
        &ca,
        &ca.leaf("agent.test", 0x51, true, 90),
        None,
        &["127.0.0.1"],
    );
    let (agent, audit) = start_agent(&files);
    let addr = agent.addr;
    let client = Client::new(&ca, Some(ca.leaf("patch-manager", 2, false, 30)));

    let mut established = open(&client, addr).await;
    assert_eq!(server_serial(&established), "51");
    assert_eq!(keepalive_get(&mut established, "/api/v1/health").await, 200);

    // Rotate the agent certificate: new connections get it, the open one keeps working.
    let rotated = ca.leaf("agent.test", 0x52, true, 90);
    std::fs::write(&files.config.tls.key, &rotated.key).unwrap();
    std::fs::write(&files.config.tls.cert, &rotated.cert).unwrap();
    wait_for(
        async || server_serial(&open(&client, addr).await) == "52",
        "rotated certificate",
    )
    .await;
    assert_eq!(
        keepalive_get(&mut established, "/api/v1/health").await,
        200,
        "established connection dropped"
    );

    // An invalid certificate (two years) is refused; the rotated one stays in force.
    let too_long = ca.issue(
        "agent.test",
        0x53,
        true,
        time::OffsetDateTime::now_utc() - time::Duration::days(1),
        time::OffsetDateTime::now_utc() + time::Duration::days(730),
    );
    std::fs::write(&files.config.tls.cert, &too_long.cert).unwrap();
    std::fs::write(&files.config.tls.key, &too_long.key).unwrap();
    let path = files.audit_path();
    wait_for(
        async || {
            audit.flush();
            audit_events(&path)
                .iter()
                .any(|e| e["event"] == "config.reload_refused")
        },
        "refusal audited",
    )
    .await;
    assert_eq!(
        server_serial(&open(&client, addr).await),
        "52",
        "a refused certificate was applied"
    );

    // Restore a valid certificate, then take 127.0.0.1 off the allow-list through the config file.
    std::fs::write(&files.config.tls.cert, &rotated.cert).unwrap();
    std::fs::write(&files.config.tls.key, &rotated.key).unwrap();
    let mut cfg = files.config.clone();
    cfg.server.allow = vec!["127.0.0.9".into()];
    std::fs::write(
        files.dir.path().join("agent.toml"),
        toml::to_string(&cfg).unwrap(),
    )
    .unwrap();
    wait_for(
        async || {
            matches!(
                client.get(addr, "/api/v1/health").await,
                Outcome::NoAnswer(_)
            )
        },
        "allow-list change",
    )
    .await;
    assert_eq!(
        keepalive_get(&mut established, "/api/v1/health").await,
        200,
        "established connection dropped"
    );

    // A config file with an unknown key is refused; the last good settings stay.
    std::fs::write(
        files.dir.path().join("agent.toml"),
        "[server]\nallow = [\"127.0.0.1\"]\nbogus = 1\n",
    )
    .unwrap();
    wait_for(
        async || {
            audit.flush();
            audit_events(&path).iter().any(|e| {
                e["event"] == "config.reload_refused"
                    && e["reason"].as_str().unwrap().contains("bogus")
            })
        },
        "bad config refused",
    )
    .await;
    assert!(matches!(
        client.get(addr, "/api/v1/health").await,
        Outcome::NoAnswer(_)
    ));
    agent.stop().await;
}
