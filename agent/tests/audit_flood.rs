//! A loop of connects from an address off the allow-list neither floods the audit log nor starves
//! the manager: refusals are recorded at most once per interval per source, every one of them is
//! counted, and a real mTLS client is served afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{audit_events, start_agent, AgentFiles, Ca, Client, Outcome};
use patch_agent::audit::{verify_file, Verdict};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

const CONNECTS: u64 = 10_000;
const INTERVAL_SECS: u64 = 5;

#[actix_rt::test]
async fn ten_thousand_refused_connections_leave_a_bounded_number_of_records() {
    let ca = Ca::new("Fleet CA");
    let mut files = AgentFiles::new(
        &ca,
        &ca.leaf("agent.test", 1, true, 90),
        None,
        &["127.0.0.1"],
    );
    files.config.audit.refusal_interval_secs = INTERVAL_SECS;
    let (agent, audit) = start_agent(&files);
    let addr = agent.addr;

    let started = Instant::now();
    for i in 0..CONNECTS {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut tcp = socket.connect(addr).await.unwrap();
        // The agent closes a refused connection without a byte: wait for that close.
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("connection {i} was not closed"))
            .unwrap_or(0);
        assert_eq!(n, 0, "a refused peer received a byte");
    }
    let flood = started.elapsed();

    // The manager is still served.
    let manager = Client::new(&ca, Some(ca.leaf("patch-manager", 2, false, 30)));
    match manager.get(addr, "/api/v1/health").await {
        Outcome::Http(200, _) => {}
        o => panic!("the manager was not served after the flood: {o:?}"),
    }

    // Every refusal is accounted for: the counts in the records add up to the connects (the
    // last ones arrive with the sweep after the interval).
    let path = files.audit_path();
    let denied = |events: &[serde_json::Value]| -> Vec<serde_json::Value> {
        events
            .iter()
            .filter(|e| e["event"] == "connection.denied")
            .cloned()
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(INTERVAL_SECS * 4 + 15);
    loop {
        audit.flush();
        let counted: u64 = denied(&audit_events(&path))
            .iter()
            .map(|e| e["refusals"].as_u64().unwrap())
            .sum();
        if counted == CONNECTS {
            break;
        }
        assert!(
            counted < CONNECTS,
            "{counted} refusals counted for {CONNECTS}"
        );
        assert!(
            Instant::now() < deadline,
            "only {counted} of {CONNECTS} refusals counted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let total = started.elapsed();
    agent.stop().await;
    audit.flush();

    let events = audit_events(&path);
    let records = denied(&events);
    // At most one record per interval (plus the first) for the one source.
    let bound = total.as_secs() / INTERVAL_SECS + 2;
    assert!(
        records.len() as u64 <= bound,
        "{} connection.denied records in {total:?} (flood took {flood:?}); at most {bound} allowed",
        records.len()
    );
    assert!(records.iter().all(|r| r["source"] == "127.0.0.2"));
    assert!(
        events.len() < 40,
        "{} audit records in all for {CONNECTS} refused connections",
        events.len()
    );
    assert!(!events.iter().any(|e| e["event"] == "audit.dropped"));
    assert!(matches!(
        verify_file(&path).unwrap(),
        Verdict::Intact { .. }
    ));
}
