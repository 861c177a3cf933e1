//! One-command enrollment end to end: a real manager (HTTPS with its internal CA) and the
//! agent's enrollment code; then a real agent from the written files answers the manager's client
//! certificate. Forged, replayed and mismatched tokens are refused and audited.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{test_config, Engine, TestDb};
use diesel::prelude::*;
use patch_agent::enroll::{enroll, EnrollError, EnrollOptions};
use patch_manager::config::TlsMode;
use patch_manager::db::schema;
use patch_manager::pki::enrollment;
use std::sync::Arc;
use std::time::Duration;

fn audit_actions(conn: &mut patch_manager::db::DbConnection) -> Vec<(String, String)> {
    use schema::audit_log as a;
    a::table
        .order(a::id.asc())
        .select((a::action, a::outcome))
        .load(conn)
        .unwrap()
}

#[actix_rt::test]
async fn enroll_then_manager_reaches_the_agent_and_bad_tokens_fail() {
    let db = TestDb::new(Engine::Sqlite);
    let mut config = test_config(&db);
    config.server.tls = TlsMode::Internal;
    config.server.public_names = vec!["localhost".into(), "127.0.0.1".into()];
    let server = patch_manager::server::start(config.clone()).await.unwrap();
    let manager = format!("https://127.0.0.1:{}", server.addr.port());
    let fp = server.state.pki.ca.fingerprint().to_owned();
    let database = db.open();
    let new_token = |minutes: i64| {
        let mut conn = database.conn().unwrap();
        let now = chrono::Utc::now().naive_utc();
        enrollment::create(
            &mut conn,
            &fp,
            &patch_manager::pki::enrollment::TokenRequest {
                group_id: None,
                ..Default::default()
            },
            now + chrono::Duration::minutes(minutes),
            now,
        )
        .unwrap()
    };

    let host_dir = tempfile::tempdir().unwrap();
    let config_path = host_dir.path().join("agent.toml");
    let mut base = patch_agent::config::AgentConfig::default();
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    base.server.listen = free;
    base.tls.cert = host_dir.path().join("tls/agent.crt");
    base.tls.key = host_dir.path().join("tls/agent.key");
    base.tls.client_ca = host_dir.path().join("tls/ca.crt");
    base.audit.path = host_dir.path().join("audit.jsonl");
    base.jobs.state_dir = host_dir.path().join("state");
    std::fs::write(&config_path, toml::to_string(&base).unwrap()).unwrap();
    let opts = |token: String| EnrollOptions {
        manager: manager.clone(),
        token,
        hostname: "agent01.test".into(),
        addresses: vec!["127.0.0.1".parse().unwrap()],
        config_path: config_path.clone(),
        source: None,
    };

    // A token naming another CA: the agent refuses the manager before sending anything.
    let mut wrong_ca = new_token(60);
    wrong_ca.ca_fingerprint = "00".repeat(32);
    match enroll(&opts(wrong_ca.encode())).await {
        Err(EnrollError::Connect(m)) => assert!(m.contains("fingerprint"), "{m}"),
        other => panic!("a manager not matching the token was trusted: {other:?}"),
    }
    // A forged secret: refused by the manager.
    let mut forged = new_token(60);
    forged.secret = "11".repeat(32);
    let r = enroll(&opts(forged.encode())).await;
    assert!(
        matches!(r, Err(EnrollError::Refused { status: 401, .. })),
        "{r:?}"
    );

    // The real thing.
    let token = new_token(60);
    let done = enroll(&opts(token.encode())).await.unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&base.tls.key)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        done.config.server.allow,
        ["127.0.0.1"],
        "the manager's address is allowed"
    );
    let mut conn = database.conn().unwrap();
    let (fqdn, ip): (Option<String>, String) = schema::hosts::table
        .filter(schema::hosts::id.eq(done.host_id))
        .select((schema::hosts::fqdn, schema::hosts::ip_address))
        .first(&mut *conn)
        .unwrap();
    assert_eq!(
        (fqdn.as_deref(), ip.as_str()),
        (Some("agent01.test"), "127.0.0.1")
    );
    let kinds: Vec<(String, Option<i64>)> = schema::certificates::table
        .select((schema::certificates::kind, schema::certificates::host_id))
        .load(&mut *conn)
        .unwrap();
    assert!(
        kinds.contains(&("agent".into(), Some(done.host_id))),
        "{kinds:?}"
    );

    // Replay: refused.
    assert!(matches!(
        enroll(&opts(token.encode())).await,
        Err(EnrollError::Refused { status: 401, .. })
    ));
    // Expired: refused.
    let expired = {
        let mut conn = database.conn().unwrap();
        let past = chrono::Utc::now().naive_utc() - chrono::Duration::hours(2);
        enrollment::create(
            &mut conn,
            &fp,
            &patch_manager::pki::enrollment::TokenRequest {
                group_id: None,
                ..Default::default()
            },
            past + chrono::Duration::minutes(5),
            past,
        )
        .unwrap()
    };
    assert!(matches!(
        enroll(&opts(expired.encode())).await,
        Err(EnrollError::Refused { status: 401, .. })
    ));

    // The manager (its own client certificate) reaches the agent started from the written files.
    let agent_config = patch_agent::config::load(Some(&config_path), &[]).unwrap();
    let audit = patch_agent::audit::AuditLog::open(&agent_config.audit.path).unwrap();
    let backend = Arc::new(patch_agent::backend::apt::AptBackend::new(None).unwrap());
    let jobs = patch_agent::jobs::Jobs::new(
        backend.clone(),
        audit.clone(),
        agent_config.jobs.state_dir.clone(),
        5,
        Duration::from_secs(60),
    )
    .unwrap();
    let agent = patch_agent::server::start(&agent_config, backend, jobs, audit, None).unwrap();
    let health = patch_manager::pki::rotation::client(&server.state, agent.addr, None)
        .unwrap()
        .health()
        .await;
    assert!(
        health.is_ok(),
        "the manager cannot reach the enrolled agent: {health:?}"
    );
    agent.stop().await;

    let actions = audit_actions(&mut conn);
    let count = |a: &str, o: &str| actions.iter().filter(|(x, y)| x == a && y == o).count();
    assert_eq!(count("agent.enrolled", "success"), 1, "{actions:?}");
    assert_eq!(
        count("agent.enroll", "denied"),
        3,
        "forged, replayed and expired are audited: {actions:?}"
    );
    assert_eq!(count("ca.created", "success"), 1);
    server.stop().await;
}
