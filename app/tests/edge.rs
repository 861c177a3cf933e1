//! The HTTP edge on a real manager: every refusal — a 401 and a 403 from the access gate, a 403
//! from the address allow-list — is a response that went through the request context (request id
//! header and the same id in the envelope, security headers); over HTTP/2, refused requests with
//! bodies all get their answer; a stored setting that does not parse fails closed and is named.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bearer_for, call, get_from, setup_admin, test_config, Engine, TestDb};
use futures_util::future::join_all;
use serde_json::{json, Value};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

const PASSWORD: &str = "tangerine-Orbit-42";

/// Checks one refusal's headers and envelope: the `X-Request-Id` header, the CSP header, and the
/// same id in the body.
fn assert_edge(what: &str, status: u16, want: u16, headers: &[(String, String)], body: &Value) {
    assert_eq!(status, want, "{what}: {body}");
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{what}: no {name} header in {headers:?}"))
    };
    let rid = header("x-request-id");
    assert!(ulid::Ulid::from_string(&rid).is_ok(), "{what}: {rid}");
    assert!(
        header("content-security-policy").contains("default-src 'self'"),
        "{what}"
    );
    assert_eq!(header("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(
        body["error"]["request_id"].as_str(),
        Some(rid.as_str()),
        "{what}: {body}"
    );
    assert!(body["error"]["code"].is_string(), "{what}: {body}");
}

async fn get(url: &str, headers: &[(&str, String)]) -> (u16, Vec<(String, String)>, Value) {
    let c = awc::Client::default();
    let mut r = c.get(url);
    for (k, v) in headers {
        r = r.insert_header((*k, v.as_str()));
    }
    let mut res = r.send().await.unwrap();
    let hs = res
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = res.json::<Value>().await.unwrap_or(Value::Null);
    (res.status().as_u16(), hs, body)
}

/// A GET from 127.0.0.2, which is loopback but not on the allow-lists these tests save.
async fn get_from_other(addr: SocketAddr, path: &str) -> (u16, Vec<(String, String)>, Value) {
    let (status, headers, body) = get_from(Ipv4Addr::new(127, 0, 0, 2), addr, path).await;
    (
        status,
        headers,
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

#[actix_rt::test]
async fn every_refusal_carries_request_id_and_headers() {
    let db = TestDb::new(Engine::Sqlite);
    let config = test_config(&db);
    let server = patch_manager::server::start(config.clone()).await.unwrap();
    let base = format!("http://{}", server.addr);
    setup_admin(&base, &config.data.dir).await;
    let admin = bearer_for(&base, "admin", PASSWORD).await;

    // 401 from the gate: no credentials.
    let (s, h, b) = get(&format!("{base}/api/v1/auth/me"), &[]).await;
    assert_edge("401 from the gate", s, 401, &h, &b);

    // 403 from the gate: an Operator on an Admin route.
    let a = call(
        "POST",
        &format!("{base}/api/v1/users"),
        &admin,
        Some(json!({ "username": "oper", "password": PASSWORD, "role": "operator" })),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let oper = bearer_for(&base, "oper", PASSWORD).await;
    let (s, h, b) = get(&format!("{base}/api/v1/users"), &oper).await;
    assert_edge("403 from the gate", s, 403, &h, &b);
    assert_eq!(b["error"]["code"], "forbidden");

    // 403 from the allow-list: only 127.0.0.1 may come in; 127.0.0.2 is refused.
    let a = call(
        "PUT",
        &format!("{base}/api/v1/settings/allow-list"),
        &admin,
        Some(json!({ "enabled": true, "entries": ["127.0.0.1/32"] })),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let (s, h, b) = get_from_other(server.addr, "/api/v1/auth/me").await;
    assert_edge("403 from the allow-list", s, 403, &h, &b);
    assert_eq!(b["error"]["code"], "address_not_allowed");
    server.stop().await;
}

#[actix_rt::test]
async fn pages_allow_only_their_own_nonced_scripts_and_api_answers_are_not_stored() {
    let db = TestDb::new(Engine::Sqlite);
    let server = patch_manager::server::start(test_config(&db))
        .await
        .unwrap();
    let base = format!("http://{}", server.addr);
    let c = awc::Client::default();

    // A page: its policy allows inline scripts only with this page's nonce, which the hydration
    // scripts carry; a second page gets another nonce.
    let mut nonces = Vec::new();
    for _ in 0..2 {
        let mut res = c.get(format!("{base}/login")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let csp = res
            .headers()
            .get("content-security-policy")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let scripts = csp
            .split(';')
            .find(|d| d.trim().starts_with("script-src"))
            .unwrap();
        assert!(!scripts.contains("unsafe-inline"), "{csp}");
        let nonce = scripts
            .split_whitespace()
            .find_map(|t| t.strip_prefix("'nonce-"))
            .and_then(|t| t.strip_suffix('\''))
            .unwrap_or_else(|| panic!("no nonce in {csp}"))
            .to_owned();
        let html = String::from_utf8(res.body().limit(1 << 22).await.unwrap().to_vec()).unwrap();
        let inline = html.matches("<script").count();
        assert!(inline > 0, "the page has its hydration scripts");
        assert_eq!(
            html.matches(&format!("nonce=\"{nonce}\"")).count(),
            inline,
            "every script carries the page's nonce: {html}"
        );
        nonces.push(nonce);
    }
    assert_ne!(nonces[0], nonces[1], "a nonce is used once");
    // No HSTS over plain HTTP (it would be ignored and mislead).
    let res = c.get(format!("{base}/status/health")).send().await.unwrap();
    assert!(res.headers().get("strict-transport-security").is_none());

    // API answers are never stored; sign-in answers above all.
    let res = c
        .post(format!("{base}/api/v1/auth/login"))
        .send_json(&json!({ "username": "nobody", "password": "x" }))
        .await
        .unwrap();
    assert_eq!(
        res.headers()
            .get("cache-control")
            .unwrap()
            .to_str()
            .unwrap(),
        "no-store"
    );
    server.stop().await;
}

#[actix_rt::test]
async fn http2_refusals_with_bodies_all_get_answers() {
    let db = TestDb::new(Engine::Sqlite);
    let mut config = test_config(&db);
    config.server.tls = patch_manager::config::TlsMode::Internal;
    let server = patch_manager::server::start(config).await.unwrap();
    let ca_pem = server.state.pki.web_ca.cert_pem();

    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            pem::parse(ca_pem.as_bytes()).unwrap().contents().to_vec(),
        ))
        .unwrap();
    let mut tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let client = awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(Arc::new(tls)))
        .timeout(std::time::Duration::from_secs(30))
        .finish();
    let url = format!("https://localhost:{}/api/v1/auth/login", server.addr.port());
    let url_me = format!("https://localhost:{}/api/v1/auth/me", server.addr.port());
    // A body big enough to be still in flight when the refusal is decided.
    let body = "x".repeat(48 * 1024);

    let requests = (0..100).map(|i| {
        let (client, body) = (client.clone(), body.clone());
        let url = if i % 2 == 0 {
            url.clone()
        } else {
            url_me.clone()
        };
        async move {
            let req = if i % 2 == 0 {
                client
                    .post(url)
                    .insert_header(("content-type", "text/plain"))
            } else {
                // A refusal from the gate, with a body the route would never read.
                client
                    .get(url)
                    .insert_header(("content-type", "application/json"))
            };
            match req.send_body(body).await {
                Ok(mut res) => {
                    let version = res.version();
                    let rid = res
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let env: Value = res.json().await.unwrap_or(Value::Null);
                    Ok((res.status().as_u16(), version, rid, env))
                }
                Err(e) => Err(format!("request {i}: {e}")),
            }
        }
    });
    let answers = join_all(requests).await;
    let failures: Vec<&String> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} of 100 got no answer: {failures:?}",
        failures.len()
    );
    // Served over HTTPS: browsers are told to keep to it.
    let res = client
        .get(format!(
            "https://localhost:{}/status/health",
            server.addr.port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()
            .get("strict-transport-security")
            .map(|v| v.to_str().unwrap().to_owned()),
        Some("max-age=31536000".to_owned())
    );
    for (i, a) in answers.iter().enumerate() {
        let (status, version, rid, env) = a.as_ref().unwrap();
        assert_eq!(*version, awc::http::Version::HTTP_2, "request {i}");
        let want = if i % 2 == 0 { 415 } else { 401 };
        assert_eq!(*status, want, "request {i}: {env}");
        assert!(rid.is_some(), "request {i} has no request id");
        assert_eq!(
            env["error"]["request_id"].as_str(),
            rid.as_deref(),
            "request {i}"
        );
    }
    server.stop().await;
}

#[actix_rt::test]
async fn unreadable_settings_fail_closed_and_are_named() {
    use diesel::prelude::*;
    use patch_manager::db::schema::settings;
    let db = TestDb::new(Engine::Sqlite);
    let config = test_config(&db);
    let server = patch_manager::server::start(config.clone()).await.unwrap();
    let base = format!("http://{}", server.addr);
    setup_admin(&base, &config.data.dir).await;
    let admin = bearer_for(&base, "admin", PASSWORD).await;
    server.stop().await;

    // Corrupt both stored settings behind the manager's back (a bad restore, a hand edit).
    {
        let dbh = db.open();
        let mut c = dbh.conn().unwrap();
        let t = chrono::Utc::now().naive_utc();
        for (key, value) in [
            ("security.allow_list", "{\"enabled\": tru"),
            ("auth.oidc", "[1, 2, 3]"),
        ] {
            diesel::insert_into(settings::table)
                .values((
                    settings::key.eq(key),
                    settings::value_json.eq(value),
                    settings::updated_at.eq(t),
                    settings::updated_by.eq("test"),
                ))
                .execute(&mut *c)
                .unwrap();
        }
    }

    let server = patch_manager::server::start(config.clone()).await.unwrap();
    let base = format!("http://{}", server.addr);
    // Start-up named both keys in the audit log.
    let dbh = db.open();
    let named: Vec<String> = {
        use patch_manager::db::schema::audit_log;
        let mut c = dbh.conn().unwrap();
        audit_log::table
            .filter(audit_log::action.eq("settings.unreadable"))
            .select(audit_log::target)
            .load::<Option<String>>(&mut *c)
            .unwrap()
            .into_iter()
            .flatten()
            .collect()
    };
    assert!(
        named.contains(&"security.allow_list".to_owned()),
        "{named:?}"
    );
    assert!(named.contains(&"auth.oidc".to_owned()), "{named:?}");

    // The unreadable allow-list keeps denying: even the Admin's own loopback address is refused
    // (an allow-list that turned off would have let it through).
    let (s, h, b) = get(&format!("{base}/api/v1/settings/allow-list"), &admin).await;
    assert_edge("unreadable allow-list", s, 403, &h, &b);
    assert_eq!(b["error"]["code"], "address_not_allowed");

    // The CLI is the way back: it replaces the unreadable value with an empty list that is off.
    server.stop().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_patch-manager"))
        .arg("--data-dir")
        .arg(&config.data.dir)
        .args([
            "--database-url",
            &config.database.url,
            "allow-list",
            "--disable",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("could not be read"), "{stdout}");
    let server = patch_manager::server::start(config.clone()).await.unwrap();
    let base = format!("http://{}", server.addr);
    let (s, _, b) = get(&format!("{base}/api/v1/settings/allow-list"), &admin).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b, json!({ "enabled": false, "entries": [] }));

    // Unreadable single sign-on settings are reported with their key, never reset to defaults.
    let (s, h, b) = get(&format!("{base}/api/v1/settings/oidc"), &admin).await;
    assert_edge("unreadable SSO settings", s, 500, &h, &b);
    assert_eq!(b["error"]["code"], "setting_unreadable");
    assert_eq!(b["error"]["details"]["key"], "auth.oidc");
    server.stop().await;
}

#[actix_rt::test]
async fn public_endpoints_that_write_audit_records_are_limited_per_source() {
    use diesel::prelude::*;
    use patch_manager::db::schema::audit_log as a;
    let db = TestDb::new(Engine::Sqlite);
    let server = patch_manager::server::start(test_config(&db))
        .await
        .unwrap();
    let per_minute = patch_manager::http::rate::PUBLIC_WRITES_PER_MINUTE;
    let mut statuses = Vec::new();
    for _ in 0..per_minute + 5 {
        let (s, _, _) = get_from(
            Ipv4Addr::new(127, 0, 0, 2),
            server.addr,
            "/api/v1/ca/root.crt",
        )
        .await;
        statuses.push(s);
    }
    assert!(
        statuses[..per_minute].iter().all(|s| *s == 200),
        "{statuses:?}"
    );
    assert!(
        statuses[per_minute..].iter().all(|s| *s == 429),
        "{statuses:?}"
    );
    // Refused enrollments from the same source are limited by the same budget.
    let body = json!({ "token": "not-a-token", "csr_pem": "x", "hostname": "h", "addresses": [], "port": 12443 });
    let (s, _, _) = common::request_from(
        Ipv4Addr::new(127, 0, 0, 2),
        server.addr,
        "POST",
        "/api/v1/enroll",
        &[],
        Some(&body),
    )
    .await;
    assert_eq!(s, 429);
    // Another source is not affected.
    let (s, _, _) = get_from(
        Ipv4Addr::new(127, 0, 0, 3),
        server.addr,
        "/api/v1/ca/root.crt",
    )
    .await;
    assert_eq!(s, 200);
    let mut c = server.state.db.conn().unwrap();
    let downloads: i64 = a::table
        .filter(a::action.eq("ca.downloaded"))
        .count()
        .get_result(&mut *c)
        .unwrap();
    assert_eq!(
        downloads,
        i64::try_from(per_minute).unwrap() + 1,
        "one record per allowed download"
    );
    server.stop().await;
}
