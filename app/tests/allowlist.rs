//! The manager's source-address allow-list on a real server: off by default, enforced for every
//! address once enabled (127.0.0.2 stands in for a foreign host: it is loopback but not on the
//! list), audited once a minute per address, validated, an Admin cannot lock themselves out, and
//! the CLI turns it off for a running manager.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{call, get_from, setup_admin, test_config, Engine, TestDb};
use serde_json::json;
use std::net::{Ipv4Addr, SocketAddr};

/// A GET from 127.0.0.2; answers (status, raw head and body).
async fn get_from_other(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, headers, body) = get_from(Ipv4Addr::new(127, 0, 0, 2), addr, path).await;
    let head: Vec<String> = headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    (status, format!("{}\r\n\r\n{body}", head.join("\r\n")))
}

#[actix_rt::test]
async fn allow_list_refuses_unlisted_addresses() {
    let db = TestDb::new(Engine::Sqlite);
    let config = test_config(&db);
    let server = patch_manager::server::start(config.clone()).await.unwrap();
    let base = format!("http://{}", server.addr);
    assert_eq!(
        get_from_other(server.addr, "/status/health").await.0,
        200,
        "off by default"
    );

    setup_admin(&base, &config.data.dir).await;
    let s = call(
        "POST",
        &format!("{base}/api/v1/auth/login"),
        &[],
        Some(json!({ "username": "admin", "password": "tangerine-Orbit-42", "client": "api" })),
    )
    .await;
    let auth = [(
        "authorization",
        format!("Bearer {}", s.body["access_token"].as_str().unwrap()),
    )];
    let url = format!("{base}/api/v1/settings/allow-list");

    // Validation: every entry an address or range, nothing else.
    for bad in [
        "10.0.0.0/33",
        "example.com",
        "1.2.3.4; rm -rf /",
        "::1/129",
        "",
    ] {
        let body = if bad.is_empty() {
            json!({ "enabled": true, "entries": "10.0.0.1" })
        } else {
            json!({ "enabled": true, "entries": [bad] })
        };
        let a = call("PUT", &url, &auth, Some(body)).await;
        assert_eq!(a.status, 400, "{bad}: {}", a.body);
    }
    // A list without the Admin's own address is refused: no accidental lock-out.
    let a = call(
        "PUT",
        &url,
        &auth,
        Some(json!({ "enabled": true, "entries": ["10.0.0.0/8"] })),
    )
    .await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert!(!call("GET", &url, &auth, None).await.body["enabled"]
        .as_bool()
        .unwrap());

    let a = call(
        "PUT",
        &url,
        &auth,
        Some(json!({ "enabled": true, "entries": ["127.0.0.1", "10.0.0.0/8"] })),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);

    // 127.0.0.2 is refused before routing, for every path, with the envelope.
    for path in ["/status/health", "/api/v1/auth/login", "/", "/no/such/page"] {
        let (status, text) = get_from_other(server.addr, path).await;
        assert_eq!(status, 403, "{path}: {text}");
        assert!(text.contains("address_not_allowed"), "{text}");
    }
    // The listed address goes on working.
    assert_eq!(
        call("GET", &format!("{base}/status/health"), &[], None)
            .await
            .status,
        200
    );

    // Audited, once per address per minute.
    let denials = || {
        use diesel::prelude::*;
        use patch_manager::db::schema::audit_log as l;
        let mut c = server.state.db.conn().unwrap();
        l::table
            .filter(l::action.eq("network.denied"))
            .select(l::source_ip)
            .load::<Option<String>>(&mut *c)
            .unwrap()
    };
    assert_eq!(denials(), vec![Some("127.0.0.2".to_owned())]);

    // The CLI turns the list off; the running manager follows within seconds.
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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("allow-list disabled"));
    let mut open_again = false;
    for _ in 0..40 {
        if get_from_other(server.addr, "/status/health").await.0 == 200 {
            open_again = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(open_again, "the manager did not pick up the CLI's change");
    server.stop().await;
}
