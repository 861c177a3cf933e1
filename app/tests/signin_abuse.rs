//! Sign-in under attack: wrong passwords from one source lock that source only (the Admin at
//! their own address still signs in), `X-Forwarded-For` counts only from a trusted proxy, and a
//! burst of simultaneous sign-ins from many addresses is answered in full without the manager's
//! memory growing by 64 MiB per attempt (Argon2 runs a bounded number at once).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{request_from, setup_admin, test_config, Engine, TestDb};
use serde_json::{json, Value};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PASSWORD: &str = "tangerine-Orbit-42";

async fn login_from(
    source: Ipv4Addr,
    addr: SocketAddr,
    password: &str,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let body = json!({ "username": "admin", "password": password, "client": "api" });
    let (status, _, text) = request_from(
        source,
        addr,
        "POST",
        "/api/v1/auth/login",
        headers,
        Some(&body),
    )
    .await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[actix_rt::test]
async fn a_stranger_locks_only_their_own_source() {
    let db = TestDb::new(Engine::Sqlite);
    let mut config = test_config(&db);
    config.server.trusted_proxies = vec!["127.0.0.3".into()];
    let server = patch_manager::server::start(config.clone()).await.unwrap();
    let base = format!("http://{}", server.addr);
    setup_admin(&base, &config.data.dir).await;
    let (admin_desk, stranger, proxy) = (
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(127, 0, 0, 2),
        Ipv4Addr::new(127, 0, 0, 3),
    );

    // The stranger fails six times (claiming, in a header nobody trusts from them, to be the
    // Admin's address) and is locked out…
    for _ in 0..6 {
        let (s, b) = login_from(
            stranger,
            server.addr,
            "wrong-password-123",
            &[("X-Forwarded-For", "127.0.0.1")],
        )
        .await;
        assert_eq!(s, 401, "{b}");
    }
    let (s, b) = login_from(stranger, server.addr, PASSWORD, &[]).await;
    assert_eq!(s, 429, "the stranger's source is locked: {b}");
    assert!(b["error"]["details"]["retry_after_secs"].as_i64().unwrap() > 0);
    // …while the Admin at their own desk signs in at once.
    let (s, b) = login_from(admin_desk, server.addr, PASSWORD, &[]).await;
    assert_eq!(s, 200, "the Admin is not locked out by a stranger: {b}");

    // Behind the trusted proxy, the forwarded client is the source: failures of one client lock
    // that client, not everyone behind the proxy.
    for _ in 0..6 {
        let (s, _) = login_from(
            proxy,
            server.addr,
            "wrong-password-123",
            &[("X-Forwarded-For", "198.51.100.7")],
        )
        .await;
        assert_eq!(s, 401);
    }
    let (s, _) = login_from(
        proxy,
        server.addr,
        PASSWORD,
        &[("X-Forwarded-For", "198.51.100.7")],
    )
    .await;
    assert_eq!(s, 429, "the forwarded client is locked");
    let (s, b) = login_from(
        proxy,
        server.addr,
        PASSWORD,
        &[("X-Forwarded-For", "198.51.100.8")],
    )
    .await;
    assert_eq!(s, 200, "another client behind the same proxy is not: {b}");

    // A password typed into the name field is not kept: unknown names are audited as a keyed
    // digest.
    let typed = "Correct-Horse-Battery-99";
    let body = json!({ "username": typed, "password": "x", "client": "api" });
    let (s, _, _) = request_from(
        stranger,
        server.addr,
        "POST",
        "/api/v1/auth/login",
        &[],
        Some(&body),
    )
    .await;
    assert_eq!(s, 401);

    // The audit log names the forwarded client behind the proxy, and the socket peer otherwise.
    use diesel::prelude::*;
    use patch_manager::db::schema::audit_log as a;
    let mut c = server.state.db.conn().unwrap();
    let sources: Vec<Option<String>> = a::table
        .filter(a::action.eq("auth.login"))
        .filter(a::outcome.eq("denied"))
        .select(a::source_ip)
        .load(&mut *c)
        .unwrap();
    assert!(
        sources.contains(&Some("198.51.100.7".into())),
        "{sources:?}"
    );
    assert!(sources.contains(&Some("127.0.0.2".into())), "{sources:?}");
    assert!(!sources.contains(&Some("127.0.0.1".into())), "{sources:?}");
    let rows: Vec<(String, Option<String>, String)> = a::table
        .select((a::actor, a::target, a::details_json))
        .load(&mut *c)
        .unwrap();
    assert!(
        rows.iter().all(|(actor, target, details)| {
            !actor.contains(typed)
                && !target.as_deref().unwrap_or("").contains(typed)
                && !details.contains(typed)
        }),
        "the typed name is in the audit log"
    );
    assert!(rows
        .iter()
        .any(|(actor, _, _)| actor.starts_with("unknown:")));
    server.stop().await;
}

/// Kills the child when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Peak resident memory (VmHWM) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Of 60 simultaneous wrong sign-ins from 60 addresses, every one is answered, and the manager's
/// peak memory stays within a bound that 60 parallel Argon2 hashes (64 MiB each, 3.75 GiB) would
/// break many times over.
#[actix_rt::test]
async fn a_burst_of_sign_ins_is_answered_within_a_memory_bound() {
    const ATTEMPTS: u8 = 60;
    /// Peak memory allowed: the idle manager (about 200 MiB) plus the hashes that may run at
    /// once (4 × 64 MiB) plus slack; 60 unbounded hashes would need about 4 GiB.
    const BOUND_MIB: u64 = 768;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let manager = Proc(
        Command::new(env!("CARGO_BIN_EXE_patch-manager"))
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen", &addr.to_string()])
            .args([
                "--set",
                "server.tls=off",
                "--set",
                "log.level=warn",
                "--set",
                "metrics.listen=",
                "serve",
            ])
            .stdout(Stdio::from(
                std::fs::File::create(dir.path().join("log")).unwrap(),
            ))
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("err")).unwrap(),
            ))
            .spawn()
            .unwrap(),
    );
    let base = format!("http://{addr}");
    let mut up = false;
    for _ in 0..300 {
        if data.join("setup-token").exists()
            && awc::Client::default()
                .get(format!("{base}/status/health"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "patch-manager did not come up within 30 s");
    // The log says where the setup token is, never the token itself.
    let token = std::fs::read_to_string(data.join("setup-token")).unwrap();
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap()
        + &std::fs::read_to_string(dir.path().join("err")).unwrap();
    assert!(log.contains("setup-token"), "the log names the file: {log}");
    assert!(!log.contains(token.trim()), "the setup token is in the log");
    setup_admin(&base, &data).await;

    let attempts = (0..ATTEMPTS).map(|i| {
        login_from(
            Ipv4Addr::new(127, 0, 1, 10 + i),
            addr,
            "wrong-password-123",
            &[],
        )
    });
    let answers = futures_util::future::join_all(attempts).await;
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert!(
        statuses.iter().all(|s| *s == 401),
        "every attempt gets its answer: {statuses:?}"
    );
    let peak_mib = peak_rss_kib(manager.0.id()) / 1024;
    assert!(
        peak_mib < BOUND_MIB,
        "peak memory {peak_mib} MiB over {BOUND_MIB} MiB for {ATTEMPTS} parallel sign-ins"
    );
}
