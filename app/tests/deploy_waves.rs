//! Patch jobs in waves over the fleet simulator: 1,000 hosts, each a real agent stack (its own
//! address, certificate and job manager) over a simulated package manager whose jobs fail at a
//! set rate. A job whose canary fails past its threshold halts: the later waves never start and
//! their hosts are never asked anything. With a threshold the failures stay under, every wave
//! runs to the end, failed hosts retried (the retry waits are shortened by configuration). Waves
//! by group follow the order the groups are given.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::https::{api, client, first_admin};
use common::{test_config, Engine, TestDb};
use patch_agent::sim::{self, Behaviour, SimFleet};
use serde_json::{json, Value};
use std::net::Ipv4Addr;
use std::time::Duration;

const HOSTS: usize = 1000;

/// Polls a job until it has ended and no host of it is still active.
async fn settled(c: &awc::Client, url: &str, bearer: &str) -> Value {
    tokio::time::timeout(Duration::from_secs(600), async {
        loop {
            let (status, d) = api(c, "GET", url, Some(bearer), None).await;
            assert_eq!(status, 200, "{d}");
            let active = d["targets"].as_array().unwrap().iter().any(|t| {
                matches!(
                    t["state"].as_str().unwrap(),
                    "dispatching" | "queued" | "running" | "retry_wait" | "rolling_back"
                )
            });
            if d["job"]["state"] != "running" && !active {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await
    .expect("the job did not settle within 10 minutes")
}

fn count(d: &Value, wave: u64, state: &str) -> usize {
    d["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["wave"] == wave && t["state"] == state)
        .count()
}

#[actix_rt::test]
async fn a_failing_canary_halts_the_job_and_a_tolerant_one_runs_every_wave() {
    let db = TestDb::new(Engine::Sqlite);
    let mut config = test_config(&db);
    config.server.tls = patch_manager::config::TlsMode::Internal;
    config.server.public_names = vec!["localhost".into(), "127.0.0.1".into()];
    config.fleet.job_retry_after_secs = [1, 1, 1];
    let server = patch_manager::server::start(config.clone()).await.unwrap();
    let base = format!("https://127.0.0.1:{}", server.addr.port());
    let c = client(&server);
    let admin = first_admin(&c, &base, &config.data.dir).await;

    // 1,000 simulated hosts at 127.40.0.1 …, 40 % of their jobs failing.
    let first = Ipv4Addr::new(127, 40, 0, 1);
    let port = std::net::TcpListener::bind((first, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tokens = common::enrollment_tokens(&server, HOSTS);
    let dir = tempfile::tempdir().unwrap();
    let addresses = sim::enroll(dir.path(), &base, &tokens, first, port, 8)
        .await
        .unwrap();
    assert_eq!(addresses.len(), HOSTS);
    let fleet = SimFleet::start(
        dir.path(),
        &Behaviour {
            max_updates: 20,
            job_failure_ppm: 400_000,
            ..Behaviour::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(fleet.len(), HOSTS);
    let hosts: Vec<i64> = {
        use diesel::prelude::*;
        use patch_manager::db::schema::hosts;
        hosts::table
            .select(hosts::id)
            .order(hosts::id.asc())
            .load(&mut server.state.db.conn().unwrap())
            .unwrap()
    };
    assert_eq!(hosts.len(), HOSTS);
    let jobs = format!("{base}/api/v1/jobs");
    // A job on every host: all updates, a 5 % canary, then up to 30 %, then the rest, 100 hosts
    // at once at most, halting above `threshold` % failed in a wave.
    let create = |threshold: u8| {
        let (c, jobs, admin, hosts) = (&c, &jobs, &admin, &hosts);
        async move {
            let (status, created) = api(
                c,
                "POST",
                jobs,
                Some(admin),
                Some(json!({ "hosts": hosts, "selection": "all",
                             "waves": { "percents": [5, 30, 100], "max_concurrency": 100,
                                        "failure_threshold_pct": threshold } })),
            )
            .await;
            assert_eq!(status, 201, "{created}");
            created
        }
    };

    // Halting above 10 % failed: the canary fails 40 % of its jobs.
    let created = create(10).await;
    assert_eq!(count(&created, 0, "waiting"), 50);
    assert_eq!(count(&created, 1, "waiting"), 250);
    assert_eq!(count(&created, 2, "waiting"), 700);
    let job = created["job"]["id"].as_i64().unwrap();
    let d = settled(&c, &format!("{jobs}/{job}"), &admin).await;
    assert_eq!(d["job"]["state"], "halted", "{}", d["job"]);
    let reason = d["job"]["halt_reason"].as_str().unwrap();
    assert!(reason.starts_with("Wave 1 of 3:"), "{reason}");
    // The later waves never started: not one of their hosts was asked anything.
    for wave in [1, 2] {
        let rows: Vec<&Value> = d["targets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["wave"] == wave)
            .collect();
        assert!(
            rows.iter().all(|t| t["state"] == "cancelled"
                && t["agent_job_id"].is_null()
                && t["attempt"] == 0),
            "wave {wave} started"
        );
    }
    let canary_failed =
        count(&d, 0, "failed") + count(&d, 0, "partial") + count(&d, 0, "cancelled");
    assert!(canary_failed > 5, "{}", d["job"]);

    // The same fleet, a threshold the failures never pass: every wave runs, failed hosts are
    // retried (three times), and the job ends with every host's outcome.
    let created = create(100).await;
    let job = created["job"]["id"].as_i64().unwrap();
    let d = settled(&c, &format!("{jobs}/{job}"), &admin).await;
    let state = d["job"]["state"].as_str().unwrap();
    assert!(matches!(state, "succeeded" | "partial"), "{}", d["job"]);
    let rows = d["targets"].as_array().unwrap();
    assert_eq!(rows.len(), HOSTS);
    assert!(
        rows.iter().all(|t| matches!(
            t["state"].as_str().unwrap(),
            "succeeded" | "failed" | "partial"
        )),
        "every host ran"
    );
    let succeeded = rows.iter().filter(|t| t["state"] == "succeeded").count();
    // 40 % of attempts fail; after three retries about 2.6 % of the hosts still fail.
    assert!(succeeded > 900, "{succeeded} of {HOSTS} succeeded");
    assert!(
        rows.iter().any(|t| t["attempt"].as_u64().unwrap() > 1),
        "failed hosts were retried"
    );
    assert!(rows
        .iter()
        .filter(|t| t["state"] != "succeeded")
        .all(|t| t["attempt"] == 4));

    // Waves by group, in the order the groups are given: the 990-host group named first here
    // is the first wave, the 10-host group the second. Checked at creation, then cancelled.
    let (big, small) = {
        use patch_manager::db::hosts as store;
        let mut conn = server.state.db.conn().unwrap();
        let now = server.state.clock.now();
        let mut group = |name: &str, members: &[i64]| {
            let id = store::insert_group(
                &mut conn,
                &store::NewHostGroup {
                    name,
                    description: "",
                    created_at: now,
                    updated_at: now,
                },
            )
            .unwrap();
            for h in members {
                store::add_member(
                    &mut conn,
                    &store::NewMembership {
                        host_id: *h,
                        group_id: id,
                        created_at: now,
                    },
                )
                .unwrap();
            }
            id
        };
        (
            group("rest", &hosts[10..]),
            group("first-ten", &hosts[..10]),
        )
    };
    let (status, created) = api(
        &c,
        "POST",
        &jobs,
        Some(&admin),
        Some(json!({ "groups": [big, small], "selection": "security",
                     "waves": { "by_group": true, "max_concurrency": 10 } })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["job"]["wave_count"], 2);
    let first = created["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["wave"] == 0)
        .count();
    assert_eq!(first, 990);
    let second: Vec<i64> = created["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["wave"] == 1)
        .map(|t| t["host_id"].as_i64().unwrap())
        .collect();
    assert_eq!(second.len(), 10);
    assert!(second.iter().all(|h| hosts[..10].contains(h)));
    let job = created["job"]["id"].as_i64().unwrap();
    let (status, body) = api(
        &c,
        "POST",
        &format!("{jobs}/{job}/cancel"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let d = settled(&c, &format!("{jobs}/{job}"), &admin).await;
    assert_eq!(d["job"]["state"], "cancelled");
    assert_eq!(
        count(&d, 1, "cancelled"),
        10,
        "the second wave never started"
    );
    // Waves by group need groups.
    let (status, refused) = api(
        &c,
        "POST",
        &jobs,
        Some(&admin),
        Some(json!({ "hosts": [hosts[0]], "selection": "all", "waves": { "by_group": true } })),
    )
    .await;
    assert_eq!(
        (status, refused["error"]["details"]["field"].as_str()),
        (400, Some("waves"))
    );
    drop(fleet);
}
