//! `patch-agent enroll` takes its token from a file, standard input or the environment, and
//! refuses one on the command line. A stand-in manager on loopback (TLS with a test CA, pinned by
//! the fingerprint inside the token) records the token each run sends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Ca;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Accepts one enrollment request, answers 403 and returns the token it carried.
async fn fake_manager(ca: &Ca) -> (std::net::SocketAddr, tokio::task::JoinHandle<String>) {
    let leaf = ca.leaf("manager.test", 7, true, 30);
    let chain = vec![
        CertificateDer::from_pem_slice(leaf.cert.as_bytes()).unwrap(),
        CertificateDer::from_pem_slice(ca.pem.cert.as_bytes()).unwrap(),
    ];
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        chain,
        PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = tokio_rustls::TlsAcceptor::from(Arc::new(config))
            .accept(tcp)
            .await
            .unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let body = loop {
            let n = tls.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the agent closed before sending its request");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap();
                if body.len() >= len {
                    break body.to_owned();
                }
            }
        };
        let answer = r#"{"error":{"code":"forbidden","message":"test manager"}}"#;
        let _ = tls
            .write_all(
                format!(
                    "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                )
                .as_bytes(),
            )
            .await;
        let _ = tls.shutdown().await;
        let request: serde_json::Value = serde_json::from_str(&body).unwrap();
        request["token"].as_str().unwrap().to_owned()
    });
    (addr, task)
}

fn token_for(ca: &Ca, id: u32) -> String {
    let der = CertificateDer::from_pem_slice(ca.pem.cert.as_bytes()).unwrap();
    let fingerprint = hex::encode(Sha256::digest(der.as_ref()));
    format!("lpm1.{id}.{}.{fingerprint}", "ab".repeat(32))
}

enum Source<'a> {
    File(&'a std::path::Path),
    Stdin(&'a str),
    Env(&'a str),
}

/// Runs `patch-agent enroll` against `addr`; answers (exit code, stderr).
async fn run_enroll(
    dir: &std::path::Path,
    addr: std::net::SocketAddr,
    source: Source<'_>,
    extra: &[&str],
) -> (Option<i32>, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_patch-agent"));
    cmd.arg("--config")
        .arg(dir.join("agent.toml"))
        .args([
            "enroll",
            "--manager",
            &format!("https://127.0.0.1:{}", addr.port()),
        ])
        .args(["--hostname", "token-test.local", "--address", "127.0.0.1"])
        .args(extra)
        .env_remove("PATCH_AGENT_ENROLL_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut stdin_text = None;
    match source {
        Source::File(p) => {
            cmd.arg("--token-file").arg(p);
        }
        Source::Stdin(t) => {
            cmd.args(["--token-file", "-"]);
            stdin_text = Some(t.to_owned());
        }
        Source::Env(t) => {
            cmd.env("PATCH_AGENT_ENROLL_TOKEN", t);
        }
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    if let Some(t) = stdin_text {
        stdin.write_all(format!("{t}\n").as_bytes()).await.unwrap();
    }
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("patch-agent enroll did not finish")
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_token_comes_from_a_file_stdin_or_the_environment() {
    let ca = Ca::new("Fleet CA");
    let dir = tempfile::tempdir().unwrap();

    let from_file = token_for(&ca, 1);
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{from_file}\n")).unwrap();
    let from_stdin = token_for(&ca, 2);
    let from_env = token_for(&ca, 3);
    for (source, token) in [
        (Source::File(&file), &from_file),
        (Source::Stdin(&from_stdin), &from_stdin),
        (Source::Env(&from_env), &from_env),
    ] {
        let (addr, manager) = fake_manager(&ca).await;
        let (code, stderr) = run_enroll(dir.path(), addr, source, &[]).await;
        let received = tokio::time::timeout(Duration::from_secs(30), manager)
            .await
            .expect("the manager got no request")
            .unwrap();
        assert_eq!(&received, token, "the manager received another token");
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains("refused the enrollment (403)"), "{stderr}");
    }
}

#[tokio::test]
async fn a_token_on_the_command_line_or_none_at_all_is_refused() {
    let ca = Ca::new("Fleet CA");
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens: a refused run must not even try to connect.
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = unused.local_addr().unwrap();
    drop(unused);

    let token = token_for(&ca, 4);
    let (code, stderr) =
        run_enroll(dir.path(), addr, Source::Env(&token), &["--token", &token]).await;
    assert_eq!(code, Some(2), "{stderr}");
    for hint in [
        "--token is refused",
        "--token-file",
        "PATCH_AGENT_ENROLL_TOKEN",
    ] {
        assert!(stderr.contains(hint), "{hint} not in: {stderr}");
    }

    // No token anywhere: said so, with the ways to give one.
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_patch-agent"));
    let out = cmd
        .arg("--config")
        .arg(dir.path().join("agent.toml"))
        .args([
            "enroll",
            "--manager",
            &format!("https://127.0.0.1:{}", addr.port()),
        ])
        .env_remove("PATCH_AGENT_ENROLL_TOKEN")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no enrollment token"), "{stderr}");

    // An empty file is not a token.
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let (code, stderr) = run_enroll(dir.path(), addr, Source::File(&empty), &[]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("empty"), "{stderr}");
    assert!(!dir.path().join("agent.toml").exists(), "nothing written");
}
