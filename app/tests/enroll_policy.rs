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
    let token = || {
        let mut conn = database.conn().unwrap();
        let now = server.state.clock.now();
        enrollment::create(
            &mut conn,
            &fp,
            None,
            None,
            now + chrono::Duration::minutes(30),
            now,
        )
        .unwrap()
        .encode()
    };
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

    use diesel::prelude::*;
    use patch_manager::db::schema::audit_log as a;
    let mut c = database.conn().unwrap();
    let denied: i64 = a::table
        .filter(a::action.eq("agent.enroll"))
        .filter(a::outcome.eq("denied"))
        .count()
        .get_result(&mut *c)
        .unwrap();
    assert_eq!(denied, 3, "the policy refusals are audited");
    server.stop().await;
}
