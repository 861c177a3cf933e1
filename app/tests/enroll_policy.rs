//! Enrollment names are limited by policy: a token cannot buy a certificate for the manager's own
//! names, for a name another live certificate carries, outside the fleet domain, or for an
//! address the request does not come from. Every refusal consumes nothing and is audited.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{request_from, test_config, Engine, TestDb};
use patch_manager::pki::enrollment;
use serde_json::{json, Value};
use std::net::Ipv4Addr;

#[actix_rt::test]
async fn enrollment_names_follow_the_policy() {
    let db = TestDb::new(Engine::Sqlite);
    let mut config = test_config(&db);
    config.server.public_names = vec!["manager.fleet.test".into(), "127.0.0.1".into()];
    config.pki.fleet_domain = "fleet.test".into();
    let server = patch_manager::server::start(config.clone()).await.unwrap();
    let fp = server.state.pki.ca.fingerprint().to_owned();
    let database = db.open();
    let vouching = |addresses: &[&str]| {
        let mut conn = database.conn().unwrap();
        let now = server.state.clock.now();
        let request = enrollment::TokenRequest {
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
            ..Default::default()
        };
        enrollment::create(
            &mut conn,
            &fp,
            &request,
            now + chrono::Duration::minutes(30),
            now,
        )
        .unwrap()
        .encode()
    };
    let token = || vouching(&[]);
    let attempt = |from: Ipv4Addr, hostname: &str, address: &str, token: String| {
        let (_, csr) =
            patch_agent::csr::new_key_and_csr(hostname, &[hostname.to_owned()], &[]).unwrap();
        let body = json!({ "token": token, "csr_pem": csr, "hostname": hostname,
                           "addresses": [address], "port": 12443 });
        let addr = server.addr;
        async move {
            let (s, _, text) =
                request_from(from, addr, "POST", "/api/v1/enroll", &[], Some(&body)).await;
            (
                s,
                serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
            )
        }
    };
    let here = Ipv4Addr::new(127, 0, 0, 5);

    // The manager's own name: refused, whatever the token.
    let t = token();
    let (s, b) = attempt(here, "manager.fleet.test", "127.0.0.5", t.clone()).await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the manager itself"),
        "{b}"
    );
    // Outside the fleet domain.
    let (s, b) = attempt(here, "www.example.com", "127.0.0.5", t.clone()).await;
    assert_eq!(s, 400, "{b}");
    // An address the request does not come from (someone else's).
    let (s, b) = attempt(here, "web1.fleet.test", "127.0.0.9", t.clone()).await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("127.0.0.5"),
        "{b}"
    );
    // The same token still works for a request that follows the policy: refusals consumed nothing.
    let (s, b) = attempt(here, "web1.fleet.test", "127.0.0.5", t.clone()).await;
    assert_eq!(s, 201, "{b}");
    // A name a live certificate already carries: refused, even from another address with a
    // fresh token.
    let other = Ipv4Addr::new(127, 0, 0, 6);
    let (s, b) = attempt(other, "web1.fleet.test", "127.0.0.6", token()).await;
    assert_eq!(s, 409, "{b}");

    // A host behind NAT: its requests arrive from the gateway (127.0.0.7), not from the address it
    // is reached at. A token that vouches for its address lets it enroll from anywhere ...
    let gateway = Ipv4Addr::new(127, 0, 0, 7);
    let nat = vouching(&["10.20.0.5"]);
    // ... for the vouched addresses only (one more policy refusal, nothing consumed) ...
    let (s, b) = attempt(gateway, "nat1.fleet.test", "10.20.0.6", nat.clone()).await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not among the addresses this token was made for"),
        "{b}"
    );
    let (s, b) = attempt(gateway, "nat1.fleet.test", "10.20.0.5", nat).await;
    assert_eq!(s, 201, "{b}");
    // ... and a token without vouched addresses still refuses the gateway, saying what to do.
    let (s, b) = attempt(gateway, "nat2.fleet.test", "10.20.0.9", token()).await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("NAT"),
        "{b}"
    );
    // The API validates vouched addresses at the edge.
    let base = format!("http://{}", server.addr);
    common::setup_admin(&base, &config.data.dir).await;
    let admin = common::bearer_for(&base, "admin", "tangerine-Orbit-42").await;
    let url = format!("{base}/api/v1/enrollment-tokens");
    let a = common::call(
        "POST",
        &url,
        &admin,
        Some(json!({ "addresses": ["10.20.0.5", "not-an-ip"] })),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(
        a.body["error"]["details"]["field"], "addresses",
        "{}",
        a.body
    );
    let a = common::call(
        "POST",
        &url,
        &admin,
        Some(json!({ "addresses": ["10.20.0.5"] })),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let listed = common::call("GET", &url, &admin, None).await;
    assert_eq!(
        listed.body[0]["addresses"],
        json!(["10.20.0.5"]),
        "{}",
        listed.body
    );

    use diesel::prelude::*;
    use patch_manager::db::schema::audit_log as a;
    let mut c = database.conn().unwrap();
    let denied: i64 = a::table
        .filter(a::action.eq("agent.enroll"))
        .filter(a::outcome.eq("denied"))
        .count()
        .get_result(&mut *c)
        .unwrap();
    assert_eq!(denied, 5, "the policy refusals are audited");
    server.stop().await;
}

/// "Add a host" by name: the name is resolved when the token is made (its addresses shown and
/// vouched for) and the host must enroll under that name; by address: that address is vouched for.
#[actix_rt::test]
async fn a_host_added_by_name_is_resolved_and_must_enroll_under_it() {
    let db = TestDb::new(Engine::Sqlite);
    let mut config = test_config(&db);
    // The manager's names leave `localhost` free for a host (it resolves from /etc/hosts, no DNS).
    config.server.public_names = vec!["127.0.0.1".into()];
    let server = patch_manager::server::start(config.clone()).await.unwrap();
    let base = format!("http://{}", server.addr);
    common::setup_admin(&base, &config.data.dir).await;
    let admin = common::bearer_for(&base, "admin", "tangerine-Orbit-42").await;
    let tokens = format!("{base}/api/v1/enrollment-tokens");
    let make = |host: &str| {
        let (tokens, admin, host) = (tokens.clone(), admin.clone(), host.to_owned());
        async move { common::call("POST", &tokens, &admin, Some(json!({ "host": host }))).await }
    };

    let made = make("LOCALHOST.").await;
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(made.body["hostname"], "localhost");
    assert!(
        made.body["addresses"]
            .as_array()
            .unwrap()
            .contains(&json!("127.0.0.1")),
        "{}",
        made.body
    );
    let listed = common::call("GET", &tokens, &admin, None).await;
    assert_eq!(listed.body[0]["hostname"], "localhost", "{}", listed.body);

    // Another name with that token: refused, and the token stays unused.
    let attempt = |hostname: &str, token: &str| {
        let (_, csr) =
            patch_agent::csr::new_key_and_csr(hostname, &[hostname.to_owned()], &[]).unwrap();
        let body = json!({ "token": token, "csr_pem": csr, "hostname": hostname,
                           "addresses": ["127.0.0.1"], "port": 12443 });
        let addr = server.addr;
        async move {
            let (s, _, text) = request_from(
                Ipv4Addr::new(127, 0, 0, 9),
                addr,
                "POST",
                "/api/v1/enroll",
                &[],
                Some(&body),
            )
            .await;
            (
                s,
                serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
            )
        }
    };
    let token = made.body["token"].as_str().unwrap().to_owned();
    let (s, b) = attempt("web1.test", &token).await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("made for localhost, not web1.test"),
        "{b}"
    );
    // Under its name it enrolls, from another source too (the resolved address was vouched for).
    let (s, b) = attempt("localhost", &token).await;
    assert_eq!(s, 201, "{b}");
    let host = common::call(
        "GET",
        &format!("{base}/api/v1/hosts/{}", b["host_id"]),
        &admin,
        None,
    )
    .await;
    assert_eq!(
        (host.body["fqdn"].as_str(), host.body["ip_address"].as_str()),
        (Some("localhost"), Some("127.0.0.1")),
        "{}",
        host.body
    );

    // An address: vouched for as given, no name bound.
    let made = make("127.0.0.42").await;
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(made.body["addresses"], json!(["127.0.0.42"]));
    assert_eq!(made.body["hostname"], Value::Null);
    // Neither a name nor an address, or the manager's own name: refused, naming the field.
    // Neither a name nor an address: refused, naming the field.
    for bad in ["bad name!", "-x.test", "a..b", "x; rm -rf /"] {
        let r = make(bad).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert_eq!(r.body["error"]["details"]["field"], "host", "{}", r.body);
    }
    server.stop().await;
}
