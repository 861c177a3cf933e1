//! Transport security of a real agent with certificates from a test CA: who gets an HTTP answer
//! and who gets nothing at all, and that every refusal is audited.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{audit_events, start_agent, AgentFiles, Ca, Client, Outcome};
use patch_agent::audit::{verify_file, Verdict};
use time::{Duration, OffsetDateTime};

fn assert_no_answer(o: &Outcome, what: &str) {
    assert!(
        matches!(o, Outcome::NoAnswer(_)),
        "{what}: expected no HTTP answer, got {o:?}"
    );
}

#[actix_rt::test]
async fn only_valid_client_certificates_from_allowed_addresses_get_answers() {
    let ca = Ca::new("Fleet CA");
    let other_ca = Ca::new("Other CA");
    let server = ca.leaf("agent.test", 1, true, 90);
    let mut files = AgentFiles::new(&ca, &server, Some(&ca.crl(&[66])), &["127.0.0.1"]);
    // Refusals are audited at most once per interval per source, with a count: a short one here
    // so that the counts of the later refusals arrive within the test.
    files.config.audit.refusal_interval_secs = 1;
    let (agent, audit) = start_agent(&files);
    let addr = agent.addr;

    // Valid certificate: answers.
    let good = Client::new(&ca, Some(ca.leaf("patch-manager", 10, false, 30)));
    match good.get(addr, "/api/v1/health").await {
        Outcome::Http(200, body) => {
            let h: shared::agent::AgentHealth = serde_json::from_str(&body).unwrap();
            assert_eq!(h.backend, "apt");
            assert_eq!(h.status, "ok");
        }
        o => panic!("valid client refused: {o:?}"),
    }

    // No certificate, another CA, expired, revoked: the handshake ends without an HTTP answer.
    assert_no_answer(
        &Client::new(&ca, None).get(addr, "/api/v1/health").await,
        "no certificate",
    );
    assert_no_answer(
        &Client::new(&ca, Some(other_ca.leaf("intruder", 11, false, 30)))
            .get(addr, "/api/v1/health")
            .await,
        "certificate from another CA",
    );
    assert_no_answer(
        &Client::new(&ca, Some(ca.leaf("someone-else", 4242, false, 30)))
            .get(addr, "/api/v1/health")
            .await,
        "a client certificate of the fleet CA that is not the manager's",
    );
    let now = OffsetDateTime::now_utc();
    let expired = ca.issue(
        "old",
        12,
        false,
        now - Duration::days(60),
        now - Duration::days(1),
    );
    assert_no_answer(
        &Client::new(&ca, Some(expired))
            .get(addr, "/api/v1/health")
            .await,
        "expired certificate",
    );
    let revoked = ca.leaf("patch-manager", 66, false, 30);
    assert_no_answer(
        &Client::new(&ca, Some(revoked))
            .get(addr, "/api/v1/health")
            .await,
        "revoked certificate",
    );

    // TLS 1.2 only client: refused.
    let mut old_tls = Client::new(&ca, Some(ca.leaf("patch-manager", 13, false, 30)));
    old_tls.tls12_only = true;
    assert_no_answer(&old_tls.get(addr, "/api/v1/health").await, "TLS 1.2 client");

    // Valid certificate from an address not on the list: closed before any TLS byte.
    let mut elsewhere = Client::new(&ca, Some(ca.leaf("patch-manager", 14, false, 30)));
    elsewhere.source = "127.0.0.2";
    match elsewhere.get(addr, "/api/v1/health").await {
        Outcome::NoAnswer(how) => assert!(how.starts_with("handshake"), "{how}"),
        o => panic!("non-allowed address answered: {o:?}"),
    }
    raw_peer_gets_zero_bytes(addr).await;

    // Every refusal is counted in the audit records (refusals of one source within the interval
    // share a record).
    let refusals = |events: &[serde_json::Value], e: &str| -> u64 {
        events
            .iter()
            .filter(|v| v["event"] == e)
            .map(|v| v["refusals"].as_u64().unwrap())
            .sum()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        audit.flush();
        let events = audit_events(&files.audit_path());
        if refusals(&events, "connection.denied") >= 2 && refusals(&events, "tls.refused") >= 5 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "refusals not all counted: {events:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    agent.stop().await;
    audit.flush();
    let events = audit_events(&files.audit_path());
    let count = |e: &str| events.iter().filter(|v| v["event"] == e).count();
    assert_eq!(
        count("request"),
        1,
        "exactly the one valid request is audited as a request"
    );
    let req = events.iter().find(|v| v["event"] == "request").unwrap();
    assert_eq!(req["client_subject"], "patch-manager");
    assert_eq!(req["status"], 200);
    assert!(matches!(
        verify_file(&files.audit_path()).unwrap(),
        Verdict::Intact { .. }
    ));
}

/// A raw TCP peer from a refused address reads nothing: not even a TLS alert.
async fn raw_peer_gets_zero_bytes(addr: std::net::SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut tcp = socket.connect(addr).await.unwrap();
    // A TLS record header for a ClientHello; the server must not answer it.
    let _ = tcp
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 0, 0, 1, 0])
        .await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("the server must close the connection")
        .unwrap_or(0);
    assert_eq!(n, 0, "a refused peer received {n} bytes");
}

#[actix_rt::test]
async fn bad_requests_get_envelopes_and_run_nothing() {
    let ca = Ca::new("Fleet CA");
    let files = AgentFiles::new(
        &ca,
        &ca.leaf("agent.test", 1, true, 90),
        None,
        &["127.0.0.1"],
    );
    let (agent, _audit) = start_agent(&files);
    let c = Client::new(&ca, Some(ca.leaf("patch-manager", 2, false, 30)));
    let cases = [
        (
            "/api/v1/packages/-oAPT::Get::Foo=1",
            400,
            "invalid_package_name",
        ),
        (
            "/api/v1/packages/bash%3Brm%20-rf%20%2F",
            400,
            "invalid_package_name",
        ),
        ("/api/v1/packages/%24(id)", 400, "invalid_package_name"),
        (
            "/api/v1/packages/lpm-test-not-installed-anywhere",
            404,
            "not_found",
        ),
        ("/api/v1/packages?unknown=1", 400, "invalid_query"),
        ("/api/v1/nothing-here", 404, "not_found"),
    ];
    for (path, status, code) in cases {
        match c.get(agent.addr, path).await {
            Outcome::Http(s, body) => {
                assert_eq!(s, status, "{path}: {body}");
                let env: shared::ErrorEnvelope = serde_json::from_str(&body).unwrap();
                assert_eq!(env.error.code, code, "{path}");
                assert!(env.error.request_id.is_some());
            }
            o => panic!("{path}: {o:?}"),
        }
    }
    let long = format!("/api/v1/packages/{}", "a".repeat(200));
    assert!(matches!(
        c.get(agent.addr, &long).await,
        Outcome::Http(400, _)
    ));
    match c
        .request(
            agent.addr,
            "DELETE /api/v1/health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .await
    {
        Outcome::Http(s, body) => {
            assert!(s == 404 || s == 405, "{s}");
            assert!(body.contains("\"error\""), "{body}");
        }
        o => panic!("{o:?}"),
    }
    agent.stop().await;
}

#[actix_rt::test]
async fn packages_match_dpkg_query() {
    let ca = Ca::new("Fleet CA");
    let files = AgentFiles::new(
        &ca,
        &ca.leaf("agent.test", 1, true, 90),
        None,
        &["127.0.0.1"],
    );
    let (agent, _audit) = start_agent(&files);
    let c = Client::new(&ca, Some(ca.leaf("patch-manager", 2, false, 30)));
    let Outcome::Http(200, body) = c.get(agent.addr, "/api/v1/packages").await else {
        panic!("no list")
    };
    let list: shared::agent::PackageList = serde_json::from_str(&body).unwrap();
    let out = std::process::Command::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${Version} ${Architecture}\\n"])
        .output()
        .unwrap();
    let mut expected: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let mut got: Vec<String> = list
        .packages
        .iter()
        .map(|p| format!("{} {} {}", p.name, p.version, p.arch))
        .collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "GET /packages disagrees with dpkg-query -W");
    assert_eq!(list.total, list.packages.len());

    let Outcome::Http(200, body) = c
        .get(agent.addr, "/api/v1/packages?name=libc&status=installed")
        .await
    else {
        panic!()
    };
    let filtered: shared::agent::PackageList = serde_json::from_str(&body).unwrap();
    assert!(
        filtered.total > 0
            && filtered
                .packages
                .iter()
                .all(|p| p.name.contains("libc") && p.status == "installed")
    );

    let Outcome::Http(200, body) = c.get(agent.addr, "/api/v1/packages/bash").await else {
        panic!()
    };
    let one: shared::agent::PackageList = serde_json::from_str(&body).unwrap();
    assert_eq!(one.packages[0].name, "bash");
    let Outcome::Http(200, body) = c.get(agent.addr, "/api/v1/system/info").await else {
        panic!()
    };
    let info: shared::agent::SystemInfo = serde_json::from_str(&body).unwrap();
    assert_eq!(info.package_manager, "apt");
    assert!(!info.kernel.is_empty());
    agent.stop().await;
}

#[test]
fn unacceptable_agent_certificates_are_refused_at_load() {
    let ca = Ca::new("Fleet CA");
    let now = OffsetDateTime::now_utc();
    let two_years = ca.issue(
        "agent",
        1,
        true,
        now - Duration::days(1),
        now + Duration::days(730),
    );
    let files = AgentFiles::new(&ca, &two_years, None, &["127.0.0.1"]);
    let err = patch_agent::tls::ReloadableTls::load(&files.config.tls).unwrap_err();
    assert!(err.to_string().contains("at most 366"), "{err}");

    let expired = ca.issue(
        "agent",
        2,
        true,
        now - Duration::days(30),
        now - Duration::days(1),
    );
    let files = AgentFiles::new(&ca, &expired, None, &["127.0.0.1"]);
    let err = patch_agent::tls::ReloadableTls::load(&files.config.tls).unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");

    // A key that does not belong to the certificate.
    let good = ca.leaf("agent", 3, true, 90);
    let other = ca.leaf("agent", 4, true, 90);
    let mismatched = common::Pem {
        cert: good.cert,
        key: other.key,
    };
    let files = AgentFiles::new(&ca, &mismatched, None, &["127.0.0.1"]);
    assert!(patch_agent::tls::ReloadableTls::load(&files.config.tls).is_err());
}

#[actix_rt::test]
async fn certificate_installs_are_checked_before_anything_is_replaced() {
    let ca = Ca::new("Fleet CA");
    let files = AgentFiles::new(
        &ca,
        &ca.leaf("agent.test", 1, true, 90),
        Some(&ca.crl(&[])),
        &["127.0.0.1"],
    );
    let (agent, audit) = start_agent(&files);
    let api = common::Api::new(&ca, agent.addr);
    let original = std::fs::read_to_string(&files.config.tls.cert).unwrap();
    let body = |pem: &str| serde_json::json!({ "certificate_pem": pem }).to_string();

    // No CSR asked for yet.
    let (status, v) = api
        .call(
            "PUT",
            "/tls/certificate",
            Some(&body(&ca.leaf("agent.test", 2, true, 90).cert)),
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("no_pending_key")),
        "{v}"
    );

    let (status, v) = api.call("POST", "/tls/csr", None).await;
    assert_eq!(status, 200, "{v}");
    assert!(v["csr_pem"]
        .as_str()
        .unwrap()
        .contains("CERTIFICATE REQUEST"));
    // A certificate for another key, and one from another CA: refused.
    let (status, v) = api
        .call(
            "PUT",
            "/tls/certificate",
            Some(&body(&ca.leaf("agent.test", 3, true, 90).cert)),
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("invalid_certificate")),
        "{v}"
    );
    let other = Ca::new("Other CA");
    let (status, _) = api
        .call(
            "PUT",
            "/tls/certificate",
            Some(&body(&other.leaf("agent.test", 4, true, 90).cert)),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = api
        .call("PUT", "/tls/certificate", Some(&body("not a certificate")))
        .await;
    assert_eq!(status, 400);
    // A CRL from another CA: refused.
    let (status, v) = api
        .call(
            "PUT",
            "/tls/crl",
            Some(&serde_json::json!({ "crl_pem": other.crl(&[2]) }).to_string()),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not signed by the fleet CA"),
        "{v}"
    );
    let crl = |n: u64, serials: &[u64]| {
        Some(serde_json::json!({ "crl_pem": ca.crl_numbered(n, serials) }).to_string())
    };
    let (status, v) = api.call("PUT", "/tls/crl", crl(5, &[9]).as_deref()).await;
    assert_eq!((status, v["revoked"].as_u64()), (200, Some(1)), "{v}");
    // Replaying an older (or the same) CRL would un-revoke certificates: refused.
    let (status, v) = api.call("PUT", "/tls/crl", crl(4, &[]).as_deref()).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not newer"),
        "{v}"
    );
    let (status, _) = api.call("PUT", "/tls/crl", crl(5, &[]).as_deref()).await;
    assert_eq!(status, 400);
    let (status, v) = api
        .call("PUT", "/tls/crl", crl(6, &[9, 10]).as_deref())
        .await;
    assert_eq!((status, v["revoked"].as_u64()), (200, Some(2)), "{v}");

    assert_eq!(
        std::fs::read_to_string(&files.config.tls.cert).unwrap(),
        original,
        "nothing was replaced"
    );
    audit.flush();
    let refused = audit_events(&files.audit_path())
        .iter()
        .filter(|e| e["event"] == "tls.certificate_refused")
        .count();
    assert_eq!(refused, 4);
    agent.stop().await;
}
