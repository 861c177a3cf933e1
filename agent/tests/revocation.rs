//! Revocation bites within a bound: a client certificate revoked by a live CRL update while it
//! holds a kept-alive connection and a TLS resumption ticket loses the connection within
//! `server.max_connection_secs` and cannot resume the session it had.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{start_agent, AgentFiles, Ca, Client, Outcome};
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Stream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A connection made with `config`, so that it shares that configuration's session cache.
async fn connect(config: &Arc<rustls::ClientConfig>, addr: SocketAddr) -> Option<Stream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    tokio_rustls::TlsConnector::from(config.clone())
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .ok()
}

/// One keep-alive request; the status, or `None` when the connection failed or was closed.
async fn keepalive_get(s: &mut Stream, path: &str) -> Option<u16> {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.ok()?;
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).ok()?;
    let len: usize = head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("content-length:")
            .and_then(|v| v.trim().parse().ok())
    })?;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.ok()?;
    head.get(9..12)?.parse().ok()
}

async fn wait_for(mut cond: impl AsyncFnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cond().await {
        assert!(Instant::now() < deadline, "gave up waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_rt::test]
async fn a_revoked_certificate_loses_its_connection_and_cannot_resume() {
    const CAP_SECS: u64 = 2;
    let ca = Ca::new("Fleet CA");
    let mut files = AgentFiles::new(
        &ca,
        &ca.leaf("agent.test", 1, true, 90),
        Some(&ca.crl_numbered(1, &[])),
        &["127.0.0.1"],
    );
    files.config.server.max_connection_secs = CAP_SECS;
    let (agent, _audit) = start_agent(&files);
    let addr = agent.addr;

    // The manager's client keeps one configuration, hence one session cache, for all its
    // connections: what a real client that resumes sessions does.
    let manager = Client::new(&ca, Some(ca.leaf("patch-manager", 0x77, false, 30)));
    let config = Arc::new(manager.config());
    let opened = Instant::now();
    let mut kept = connect(&config, addr).await.expect("first handshake");
    // Reading the answer also takes in whatever tickets the agent sends after the handshake.
    assert_eq!(keepalive_get(&mut kept, "/api/v1/health").await, Some(200));

    // Revoke the manager's certificate through a live CRL update.
    std::fs::write(&files.config.tls.crl, ca.crl_numbered(2, &[0x77])).unwrap();

    // (b) The kept-alive connection, busy with a request every 100 ms, is closed by the agent
    // within the cap.
    let bound = Duration::from_secs(CAP_SECS + 5);
    loop {
        match keepalive_get(&mut kept, "/api/v1/health").await {
            Some(200) => {}
            None => break,
            Some(other) => panic!("unexpected status {other} on the kept-alive connection"),
        }
        assert!(
            opened.elapsed() < bound,
            "the kept-alive connection was still served {:?} after it opened (cap {CAP_SECS} s)",
            opened.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lived = opened.elapsed();
    assert!(
        lived >= Duration::from_millis(CAP_SECS * 1000 - 500),
        "the connection closed after {lived:?}, before the cap: something else closed it"
    );

    // The revocation is in force for full handshakes.
    wait_for(
        async || {
            matches!(
                manager.get(addr, "/api/v1/health").await,
                Outcome::NoAnswer(_)
            )
        },
        "a fresh handshake with the revoked certificate refused",
    )
    .await;

    // (a) Resuming the session the revoked certificate had before: refused as well.
    let answer = match connect(&config, addr).await {
        None => None,
        Some(mut s) => {
            let kind = s.get_ref().1.handshake_kind();
            keepalive_get(&mut s, "/api/v1/health")
                .await
                .map(|status| (status, kind))
        }
    };
    assert_eq!(
        answer, None,
        "a revoked certificate got an HTTP answer (status, handshake kind) on a new connection \
         with its old session cache"
    );
    agent.stop().await;
}

#[actix_rt::test]
async fn an_expired_crl_refuses_every_client_until_a_current_one_is_installed() {
    use time::{Duration as Span, OffsetDateTime};
    let ca = Ca::new("Fleet CA");
    let now = OffsetDateTime::now_utc();
    let files = AgentFiles::new(
        &ca,
        &ca.leaf("agent.test", 1, true, 90),
        Some(&ca.crl_until(1, &[], now - Span::minutes(1))),
        &["127.0.0.1"],
    );
    let (agent, _audit) = start_agent(&files);
    let api = common::Api::new(&ca, agent.addr);

    // The CRL ran out while nobody could deliver a newer one: even an unrevoked manager
    // certificate gets no HTTP byte.
    let refused = api.client.get(agent.addr, "/api/v1/health").await;
    assert!(matches!(refused, Outcome::NoAnswer(_)), "{refused:?}");

    // Installed by hand (what an operator does with the manager's /api/v1/ca/crl): back in.
    std::fs::write(
        &files.config.tls.crl,
        ca.crl_until(2, &[], now + Span::days(7)),
    )
    .unwrap();
    wait_for(
        async || {
            matches!(
                api.client.get(agent.addr, "/api/v1/health").await,
                Outcome::Http(200, _)
            )
        },
        "a current CRL restores access",
    )
    .await;

    // Over the API: an expired CRL is refused and changes nothing; the same current CRL again
    // is acknowledged (the manager retries until it hears back); an older number is refused.
    let put = |crl: String| {
        let body = serde_json::json!({ "crl_pem": crl }).to_string();
        let api = &api;
        async move { api.call("PUT", "/tls/crl", Some(&body)).await }
    };
    let before = std::fs::read_to_string(&files.config.tls.crl).unwrap();
    let (status, body) = put(ca.crl_until(3, &[], now - Span::minutes(1))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("expired"), "{body}");
    assert_eq!(
        std::fs::read_to_string(&files.config.tls.crl).unwrap(),
        before
    );
    let (status, body) = put(before.clone()).await;
    assert_eq!(status, 200, "the same CRL again: {body}");
    let (status, body) = put(ca.crl_until(1, &[], now + Span::days(7))).await;
    assert_eq!(status, 400, "an older CRL: {body}");
    assert_eq!(
        std::fs::read_to_string(&files.config.tls.crl).unwrap(),
        before
    );
    agent.stop().await;
}
