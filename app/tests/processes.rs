//! The fleet as an operator runs it: a `patch-manager` process and a `patch-agent` process, both
//! the built binaries, talking over loopback.
//!
//! An Admin makes an enrollment token through the API; `patch-agent enroll` joins with it
//! (generating its key on the "host", verifying the manager by the CA fingerprint in the token);
//! the agent process starts from the files enrollment wrote; the host appears; the manager reaches
//! it over mTLS to renew its certificate; the manager's client certificate is rotated and the old
//! one revoked, after which the agent still answers the manager (new certificate) and refuses the
//! old one; the host's public certificate bundle downloads. A replayed, a forged and a wrong-CA
//! token are refused by the real processes, with a non-zero exit and no host added.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{free_port, Proc};

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

fn agent_binary() -> PathBuf {
    // target/<profile>/deps/<this test> → target/<profile>/patch-agent
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("patch-agent");
    assert!(
        bin.exists(),
        "{} is missing: build the workspace binaries first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

fn client(ca_pem: &str) -> awc::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            pem::parse(ca_pem).unwrap().contents().to_vec(),
        ))
        .unwrap();
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(Arc::new(tls)))
        .timeout(Duration::from_secs(60))
        .finish()
}

async fn req(
    c: &awc::Client,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, String) {
    let mut r = c.request(method.parse().unwrap(), url);
    if let Some(t) = token {
        r = r.insert_header(("authorization", format!("Bearer {t}")));
    }
    let mut res = match body {
        Some(b) => r.send_json(&b).await.unwrap(),
        None => r.send().await.unwrap(),
    };
    let bytes = res.body().limit(1 << 20).await.unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (
        res.status().as_u16(),
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

fn write_agent_base(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[tls]\ncert = \"{d}/tls/agent.crt\"\nkey = \"{d}/tls/agent.key\"\nclient_ca = \"{d}/tls/ca.crt\"\n[jobs]\nstate_dir = \"{d}/state\"\n[audit]\npath = \"{d}/audit.jsonl\"\n",
            d = dir.display()
        ),
    )
    .unwrap();
    path
}

/// Enrolls with the token on standard input (never on the command line).
fn enroll(config: &Path, manager: &str, token: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(agent_binary())
        .args(["--config"])
        .arg(config)
        .args(["enroll", "--manager", manager, "--token-file", "-"])
        .args(["--hostname", "proc-agent.test", "--address", "127.0.0.1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{token}").unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

#[actix_rt::test]
async fn manager_and_agent_processes_enroll_rotate_and_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let base = format!("https://127.0.0.1:{port}");
    let _manager = Proc(
        Command::new(env!("CARGO_BIN_EXE_patch-manager"))
            .args(["--data-dir"])
            .arg(&data)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            // The agent here reads this machine's packages: its host actor must not poll it
            // during the test (its first poll falls hours into a day-long interval).
            .args(["--set", "fleet.health_interval_secs=86400"])
            .args([
                "--set",
                "metrics.listen=",
                "--set",
                "log.level=warn",
                "serve",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut ready = None;
    for _ in 0..300 {
        // The web listener's certificate comes from the web CA (the fleet CA signs agents').
        if let Ok(ca) = std::fs::read_to_string(data.join("web-ca/ca.crt")) {
            let c = client(&ca);
            if let Ok(mut r) = c.get(format!("{base}/status/health")).send().await {
                if r.status().is_success() {
                    let _ = r.body().await;
                    ready = Some((c, ca));
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (c, _ca) = ready.expect("patch-manager did not come up within 30 s");

    // First-run setup and an Admin session.
    let setup_token = std::fs::read_to_string(data.join("setup-token")).unwrap();
    let (st, body, _) = req(
        &c,
        "POST",
        &format!("{base}/api/v1/setup"),
        None,
        Some(json!({ "token": setup_token.trim(), "username": "admin", "password": "tangerine-Orbit-42" })),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    let (_, s, _) = req(
        &c,
        "POST",
        &format!("{base}/api/v1/auth/login"),
        None,
        Some(json!({ "username": "admin", "password": "tangerine-Orbit-42", "client": "api" })),
    )
    .await;
    let admin = s["access_token"].as_str().unwrap().to_owned();
    let a = Some(admin.as_str());

    // The Admin makes a token; the agent process enrolls with it.
    let (st, t, _) = req(
        &c,
        "POST",
        &format!("{base}/api/v1/enrollment-tokens"),
        a,
        Some(json!({ "minutes": 10 })),
    )
    .await;
    assert_eq!(st, 201, "{t}");
    let token = t["token"].as_str().unwrap().to_owned();
    assert!(t["command"].as_str().unwrap().contains(&token));
    let agent_dir = tempfile::tempdir().unwrap();
    let agent_port = free_port();
    let agent_config = write_agent_base(agent_dir.path(), agent_port);
    let out = enroll(&agent_config, &base, &token);
    assert!(
        out.status.success(),
        "enroll failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(agent_dir.path().join("tls/agent.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600, "agent key file mode");

    // Replayed: refused by the real process, nothing written over the enrolled files.
    let other = tempfile::tempdir().unwrap();
    let other_config = write_agent_base(other.path(), free_port());
    let out = enroll(&other_config, &base, &token);
    assert!(!out.status.success(), "a used token must be refused");
    assert!(
        !other.path().join("tls/agent.key").exists()
            || !other.path().join("tls/agent.crt").exists()
    );
    // Forged: our id and CA fingerprint, a made-up secret.
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged_secret = "0".repeat(parts[2].len());
    parts[2] = &forged_secret;
    let out = enroll(&other_config, &base, &parts.join("."));
    assert!(!out.status.success(), "a forged token must be refused");
    // A fresh token whose CA fingerprint is not this manager's: the agent refuses the manager.
    let (_, t2, _) = req(
        &c,
        "POST",
        &format!("{base}/api/v1/enrollment-tokens"),
        a,
        Some(json!({})),
    )
    .await;
    let good = t2["token"].as_str().unwrap();
    let mut parts: Vec<&str> = good.split('.').collect();
    let wrong_fp = "ab".repeat(32);
    parts[3] = &wrong_fp;
    let out = enroll(&other_config, &base, &parts.join("."));
    assert!(
        !out.status.success(),
        "a token for another CA must make the agent refuse the manager"
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        stderr.contains("fingerprint") || stderr.contains("certificate"),
        "{stderr}"
    );

    // The agent process serves from the files enrollment wrote.
    let _agent = Proc(
        Command::new(agent_binary())
            .arg("--config")
            .arg(&agent_config)
            .arg("serve")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Exactly one host, the enrolled one.
    let (st, hosts, _) = req(&c, "GET", &format!("{base}/api/v1/hosts"), a, None).await;
    assert_eq!(st, 200);
    assert_eq!(hosts["total"], 1, "{hosts}");
    let hosts = hosts["hosts"].as_array().unwrap().clone();
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    assert_eq!(hosts[0]["fqdn"], "proc-agent.test");
    let host_id = hosts[0]["id"].as_i64().unwrap();

    // The manager reaches the agent over mTLS: it renews the agent's certificate through it.
    let renew = format!("{base}/api/v1/hosts/{host_id}/certificate/renew");
    let mut renewed = None;
    for _ in 0..100 {
        let (st, body, _) = req(&c, "POST", &renew, a, None).await;
        if st == 200 {
            renewed = Some(body);
            break;
        }
        assert_eq!(st, 502, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let renewed = renewed.expect("the agent process never answered the manager over mTLS");
    assert_eq!(renewed["host_id"], host_id);
    assert_eq!(renewed["state"], "valid");

    // The bundle: the current agent certificate and the CA, no private key.
    let (st, _, pem_text) = req(
        &c,
        "GET",
        &format!("{base}/api/v1/hosts/{host_id}/certificate-bundle"),
        a,
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert!(!pem_text.contains("PRIVATE KEY"));
    let blocks = pem::parse_many(&pem_text).unwrap();
    assert_eq!(blocks.len(), 2);
    let (_, leaf) = x509_parser::parse_x509_certificate(blocks[0].contents()).unwrap();
    assert!(leaf.subject().to_string().contains("proc-agent.test"));
    assert_eq!(
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(blocks[0].contents())),
        renewed["fingerprint_sha256"].as_str().unwrap(),
        "the bundle carries the current certificate"
    );

    // Rotate the manager's client certificate: the old one is revoked with it.
    let (_, certs, _) = req(&c, "GET", &format!("{base}/api/v1/certificates"), a, None).await;
    let old_client = certs
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["kind"] == "manager_client" && x["state"] != "superseded")
        .unwrap()
        .clone();
    // Keep the pair the manager uses now, to try it against the agent after revocation.
    let keep = tempfile::tempdir().unwrap();
    for f in ["manager-client.crt", "manager-client.key"] {
        std::fs::copy(data.join("pki").join(f), keep.path().join(f)).unwrap();
    }
    let ca_pem = std::fs::read_to_string(data.join("ca/ca.crt")).unwrap();
    let agent_addr: std::net::SocketAddr = format!("127.0.0.1:{agent_port}").parse().unwrap();
    let old_pair = || {
        patch_manager::agent_client::AgentClient::new(
            &ca_pem,
            &keep.path().join("manager-client.crt"),
            &keep.path().join("manager-client.key"),
            agent_addr,
            None,
        )
        .unwrap()
    };
    assert!(
        old_pair().health().await.is_ok(),
        "the current pair works before revocation"
    );
    let (st, rotated, _) = req(
        &c,
        "POST",
        &format!("{base}/api/v1/certificates/manager-client/rotate"),
        a,
        None,
    )
    .await;
    assert_eq!(st, 200, "{rotated}");
    // Revoking it by hand is refused now: the rotation did it.
    let (st, again, _) = req(
        &c,
        "POST",
        &format!("{base}/api/v1/certificates/{}/revoke", old_client["id"]),
        a,
        Some(json!({ "reason": "rotated in the process test" })),
    )
    .await;
    assert_eq!(st, 409, "{again}");
    // The courier delivers the CRL in the background; the status says when every agent has it.
    let crl_url = format!("{base}/api/v1/certificates/crl");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (st, status, _) = req(&c, "GET", &crl_url, a, None).await;
        assert_eq!(st, 200, "{status}");
        if status["reason"] == "rotation" && status["delivered"] == status["agents"] {
            assert_eq!(status["agents"], 1, "{status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the CRL did not reach the agent: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The manager still reaches the agent, with its new certificate.
    let (st, body, _) = req(&c, "POST", &renew, a, None).await;
    assert_eq!(st, 200, "{body}");
    // And the agent refuses the revoked pair.
    let refused = old_pair().health().await;
    assert!(
        refused.is_err(),
        "the agent accepted a revoked client certificate: {refused:?}"
    );

    // The certificates list shows the history.
    let (_, certs, _) = req(&c, "GET", &format!("{base}/api/v1/certificates"), a, None).await;
    let states: Vec<(String, String)> = certs
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["kind"].as_str().unwrap().to_owned(),
                x["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        states.contains(&("manager_client".into(), "revoked".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&("agent".into(), "superseded".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&("agent".into(), "valid".into())),
        "{states:?}"
    );
}
