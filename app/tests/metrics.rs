//! Prometheus metrics, read as a scraper reads them: the manager's `/metrics` (Admins on the main
//! listener, anyone on the loopback metrics listener) and a real agent's `/metrics` behind its
//! mTLS wall, each parsed with a Prometheus text-format parser.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::https;
use prometheus_parse::{Sample, Scrape, Value};

fn parse(text: &str) -> Scrape {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    Scrape::parse(lines).unwrap_or_else(|e| panic!("not the text format: {e}\n{text}"))
}

/// The one sample of `metric` whose labels include all of `labels`.
fn sample<'a>(scrape: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> &'a Sample {
    let found: Vec<&Sample> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{metric}{labels:?}: {} samples in {:#?}",
        found.len(),
        scrape
            .samples
            .iter()
            .map(|s| &s.metric)
            .collect::<std::collections::BTreeSet<_>>()
    );
    found[0]
}

fn number(s: &Sample) -> f64 {
    match &s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("{}: not a number: {other:?}", s.metric),
    }
}

async fn get_text(c: &awc::Client, url: &str, bearer: Option<&str>) -> (u16, String, String) {
    let mut req = c.get(url);
    if let Some(b) = bearer {
        req = req.insert_header(("authorization", format!("Bearer {b}")));
    }
    let mut res = req.send().await.unwrap();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = res.body().limit(8 << 20).await.unwrap();
    (
        res.status().as_u16(),
        ct,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[actix_rt::test]
async fn manager_and_agent_metrics_parse_and_count_what_happened() {
    let fleet = common::fleet_of_one().await;
    let state = &fleet.server.state;
    let c = https::client(&fleet.server);
    let base = format!("https://127.0.0.1:{}", fleet.server.addr.port());
    let admin = https::first_admin(&c, &base, &state.config.data.dir).await;

    // Who may read it on the main listener.
    let (status, _, body) = get_text(&c, &format!("{base}/metrics"), None).await;
    assert_eq!(status, 401, "{body}");
    let (status, _, _) = get_text(&c, &format!("{base}/metrics"), Some("not-a-token")).await;
    assert_eq!(status, 401);

    // Something to count: a wrong password, an overview read, an unknown path.
    let (status, _) = https::api(
        &c,
        "POST",
        &format!("{base}/api/v1/auth/login"),
        None,
        Some(serde_json::json!({ "username": "admin", "password": "wrong-wrong-wrong", "client": "api" })),
    )
    .await;
    assert_eq!(status, 401);
    for _ in 0..3 {
        let (status, _) = https::api(
            &c,
            "GET",
            &format!("{base}/api/v1/overview"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(status, 200);
    }
    let (status, _, _) = get_text(&c, &format!("{base}/no/such/{}", "x".repeat(40)), None).await;
    assert_eq!(status, 404);
    // The chain verdict the page reports is the latest verification's.
    state.audit.verify().await.unwrap();
    // A health poll now: counted before the host's state is written, and the change from
    // `unknown` is announced. Subscribed before the state is read, so it cannot be missed.
    let mut events = state.fleet.events.subscribe();
    let host_id = fleet.host_id;
    let status: String = state
        .db
        .run(move |c| {
            use diesel::prelude::*;
            use patch_manager::db::schema::hosts;
            Ok(hosts::table.find(host_id).select(hosts::status).first(c)?)
        })
        .await
        .unwrap();
    if status == "unknown" {
        common::refresh_and_await(state, host_id, &mut events).await;
    }

    let (status, content_type, text) = get_text(&c, &format!("{base}/metrics"), Some(&admin)).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let scrape = parse(&text);
    let n = |metric: &str, labels: &[(&str, &str)]| number(sample(&scrape, metric, labels));

    assert_eq!(
        n(
            "lpm_http_requests_total",
            &[
                ("method", "GET"),
                ("route", "/api/v1/overview"),
                ("status", "200")
            ]
        ),
        3.0
    );
    assert_eq!(
        n(
            "lpm_http_requests_total",
            &[("method", "GET"), ("route", "/metrics"), ("status", "401")]
        ),
        2.0
    );
    // Raw paths never become labels.
    assert!(!text.contains("xxxxxxxx"), "{text}");
    assert!(
        n(
            "lpm_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ) >= 1.0
    );
    let latency = sample(
        &scrape,
        "lpm_http_request_duration_seconds",
        &[("method", "GET"), ("route", "/api/v1/overview")],
    );
    match &latency.value {
        Value::Histogram(buckets) => {
            assert_eq!(buckets.last().unwrap().count, 3.0, "{buckets:?}");
            assert!(buckets.last().unwrap().less_than.is_infinite());
        }
        other => panic!("not a histogram: {other:?}"),
    }
    assert_eq!(
        n(
            "lpm_sign_ins_total",
            &[("step", "login"), ("outcome", "denied")]
        ),
        1.0
    );
    assert!(
        n(
            "lpm_sign_ins_total",
            &[("step", "login"), ("outcome", "success")]
        ) >= 1.0
    );
    assert_eq!(n("lpm_audit_chain_intact", &[]), 1.0);
    assert!(n("lpm_audit_chain_verified_records", &[]) > 0.0);
    let now = chrono::Utc::now().timestamp() as f64;
    for cert in ["fleet_ca", "web_ca", "manager_client"] {
        let expiry = n(
            "lpm_certificate_expiry_timestamp_seconds",
            &[("certificate", cert)],
        );
        assert!(expiry > now + 86_400.0, "{cert} expires at {expiry}");
    }
    assert!(
        n(
            "lpm_host_certificate_earliest_expiry_timestamp_seconds",
            &[]
        ) > now
    );
    assert_eq!(n("lpm_host_certificates_expiring", &[]), 0.0);
    let hosts: f64 = shared::vocab::HostStatus::ALL
        .iter()
        .map(|s| n("lpm_hosts", &[("state", s.as_str())]))
        .sum();
    assert_eq!(hosts, 1.0);
    for s in shared::jobs::JobState::ALL {
        assert_eq!(n("lpm_patch_jobs", &[("state", s.as_str())]), 0.0);
    }
    assert_eq!(
        n("lpm_build_info", &[("database", "sqlite")]),
        1.0,
        "{text}"
    );

    // The loopback listener: the same page without sign-in, nothing else.
    let plain = awc::Client::default();
    let metrics_at = fleet.server.metrics_addr.unwrap();
    assert!(metrics_at.ip().is_loopback());
    let (status, _, other) = get_text(
        &plain,
        &format!("http://{metrics_at}/api/v1/overview"),
        None,
    )
    .await;
    assert_eq!(status, 404, "{other}");
    let (status, _, text) = get_text(&plain, &format!("http://{metrics_at}/metrics"), None).await;
    assert_eq!(status, 200);
    let loopback = parse(&text);
    let poll = sample(
        &loopback,
        "lpm_health_poll_duration_seconds",
        &[("outcome", "answered")],
    );
    assert!(matches!(&poll.value, Value::Histogram(b) if b.last().unwrap().count >= 1.0));

    // The agent: its page over mTLS with the manager's client certificate.
    let agent = patch_manager::agent_client::AgentClient::new(
        state.pki.ca.cert_pem(),
        &state.pki.client_cert,
        &state.pki.client_key,
        fleet.agent.addr,
        None,
    )
    .unwrap();
    agent.health().await.unwrap();
    let text = agent.metrics().await.unwrap();
    let scrape = parse(&text);
    let n = |metric: &str, labels: &[(&str, &str)]| number(sample(&scrape, metric, labels));
    assert!(
        n(
            "patch_agent_http_requests_total",
            &[
                ("method", "GET"),
                ("route", "/api/v1/health"),
                ("status", "200")
            ]
        ) >= 1.0
    );
    assert_eq!(n("patch_agent_audit_chain_intact", &[]), 1.0);
    assert!(n("patch_agent_audit_records", &[]) >= 1.0);
    assert_eq!(n("patch_agent_exclusive_mode", &[]), 0.0);
    assert!(n("patch_agent_certificate_expiry_timestamp_seconds", &[]) > now);
    assert_eq!(n("patch_agent_jobs", &[("state", "running")]), 0.0);
    assert_eq!(n("patch_agent_build_info", &[("backend", "apt")]), 1.0);

    // Without a client certificate there is no page: the handshake itself is refused.
    let anonymous = https::client_trusting(state.pki.ca.cert_pem());
    let refused = anonymous
        .get(format!("https://{}/metrics", fleet.agent.addr))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "an agent answered without a client certificate"
    );
}
