//! Patch deployment end to end with a real agent on the real apt backend (an isolated apt root over
//! the project's test packages): a job applies the security update of `lpm-test-secure`
//! (1.0-1 → 1.0-2) through manager → host actor → agent, its progress seen in order on an Admin's
//! event WebSocket, the job and its host row recorded and audited; rolled back, dpkg says 1.0-1
//! again. Bad jobs are refused field by field and create nothing; an Operator outside the host's
//! groups is answered 404 and sees neither the job nor its events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::https::{api, apt_fleet, open_stream, sign_in, Socket};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;

/// The next message of the stream about job `job`.
async fn next_job_event(socket: &mut impl Socket, job: i64) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(120), socket.next())
            .await
            .expect("no event within two minutes")
            .expect("stream closed")
            .unwrap();
        match frame {
            awc::ws::Frame::Text(t) => {
                let v: Value = serde_json::from_slice(&t).unwrap();
                if v["job_id"].as_i64() == Some(job) {
                    return v;
                }
            }
            awc::ws::Frame::Ping(p) => socket.send(awc::ws::Message::Pong(p)).await.unwrap(),
            _ => {}
        }
    }
}

/// Job events of `job` on a stream until the job's own state ends: (type, state, line) in
/// order.
async fn job_events(socket: &mut impl Socket, job: i64) -> Vec<(String, String, Option<String>)> {
    let mut seen = Vec::new();
    loop {
        let v = next_job_event(socket, job).await;
        let kind = v["type"].as_str().unwrap().to_owned();
        let state = v["state"].as_str().unwrap_or_default().to_owned();
        let line = v["line"].as_str().map(str::to_owned);
        let done = kind == "job_state" && state != "running" && state != "queued";
        seen.push((kind, state, line));
        if done {
            return seen;
        }
    }
}

/// Polls the job until it is no longer running.
async fn ended(c: &awc::Client, url: &str, bearer: &str) -> Value {
    tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let (status, job) = api(c, "GET", url, Some(bearer), None).await;
            assert_eq!(status, 200, "{job}");
            let all_final = job["targets"].as_array().unwrap().iter().all(|t| {
                !matches!(
                    t["state"].as_str().unwrap(),
                    "waiting"
                        | "dispatching"
                        | "queued"
                        | "running"
                        | "retry_wait"
                        | "rolling_back"
                )
            });
            if job["job"]["state"] != "running" && all_final {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the job did not end within two minutes")
}

#[actix_rt::test]
async fn a_job_patches_a_real_host_then_rolls_it_back() {
    let (apt, fleet, c, base, admin) =
        apt_fleet(&["lpm-test-secure=1.0-1", "lpm-test-hello=1.0-1"]).await;
    let state = fleet.server.state.clone();
    let host = fleet.host_id;
    let jobs = format!("{base}/api/v1/jobs");

    // Bad jobs: a clear answer naming the field, and nothing created.
    for (bad, field) in [
        (json!({ "hosts": [], "selection": "all" }), "hosts"),
        (
            json!({ "hosts": [host], "selection": "list", "packages": [] }),
            "packages",
        ),
        (
            json!({ "hosts": [host], "selection": "list", "packages": ["x; reboot"] }),
            "packages",
        ),
        (
            json!({ "hosts": [host], "selection": "all", "packages": ["lpm-test-hello"] }),
            "packages",
        ),
        (
            json!({ "hosts": [host], "selection": "all", "waves": { "percents": [50, 20] } }),
            "waves",
        ),
    ] {
        let (status, body) = api(&c, "POST", &jobs, Some(&admin), Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad} → {body}");
        assert_eq!(body["error"]["details"]["field"], field, "{bad} → {body}");
    }
    let (status, body) = api(
        &c,
        "POST",
        &jobs,
        Some(&admin),
        Some(json!({ "hosts": [host], "selection": "everything" })),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = api(
        &c,
        "POST",
        &jobs,
        Some(&admin),
        Some(json!({ "hosts": [987654], "selection": "all" })),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (_, list) = api(&c, "GET", &jobs, Some(&admin), None).await;
    assert_eq!(list, json!([]), "no job was created by a refused request");

    // An Operator whose group does not hold the host.
    let (status, group) = api(
        &c,
        "POST",
        &format!("{base}/api/v1/groups"),
        Some(&admin),
        Some(json!({ "name": "elsewhere" })),
    )
    .await;
    assert_eq!(status, 201, "{group}");
    let (status, body) = api(
        &c,
        "POST",
        &format!("{base}/api/v1/users"),
        Some(&admin),
        Some(
            json!({ "username": "olga", "password": "Quartz-Meadow-77", "role": "operator",
                     "group_ids": [group["id"]] }),
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let olga = sign_in(&c, &base, "olga", "Quartz-Meadow-77").await;
    let (status, body) = api(
        &c,
        "POST",
        &jobs,
        Some(&olga),
        Some(json!({ "hosts": [host], "selection": "security" })),
    )
    .await;
    assert_eq!(
        status, 404,
        "an Operator cannot patch a host outside their groups: {body}"
    );

    // Apply now: only security patches, on the one host. Progress arrives live, in order.
    let mut admin_ws = open_stream(&c, &base, &admin).await;
    let mut olga_ws = open_stream(&c, &base, &olga).await;
    let (status, created) = api(
        &c,
        "POST",
        &jobs,
        Some(&admin),
        Some(json!({ "name": "Security now", "hosts": [host], "selection": "security" })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let job = created["job"]["id"].as_i64().unwrap();
    assert_eq!(created["job"]["state"], "running");
    assert_eq!(created["targets"][0]["host_id"], host);
    let events = job_events(&mut admin_ws, job).await;
    let states: Vec<&str> = events
        .iter()
        .filter(|(k, _, _)| k == "job_target")
        .map(|(_, s, _)| s.as_str())
        .collect::<Vec<_>>()
        .into_iter()
        .fold(Vec::new(), |mut acc, s| {
            if acc.last() != Some(&s) {
                acc.push(s);
            }
            acc
        });
    assert_eq!(
        states,
        ["dispatching", "queued", "running", "succeeded"],
        "{events:?}"
    );
    assert!(
        events.iter().any(|(_, _, line)| line.is_some()),
        "the package manager's output is relayed live: {events:?}"
    );
    assert_eq!(events.last().unwrap().1, "succeeded");
    assert_eq!(apt.version("lpm-test-secure").as_deref(), Some("1.0-2"));
    assert_eq!(
        apt.version("lpm-test-hello").as_deref(),
        Some("1.0-1"),
        "only security patches"
    );

    // Recorded: the row with the agent's job, its per-package result and its log.
    let detail = ended(&c, &format!("{jobs}/{job}"), &admin).await;
    assert_eq!(detail["job"]["state"], "succeeded", "{detail}");
    let row = &detail["targets"][0];
    assert_eq!(row["state"], "succeeded");
    assert_eq!(row["attempt"], 1);
    let agent_job = row["agent_job_id"].as_str().unwrap().to_owned();
    let result = row["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "lpm-test-secure")
        .unwrap_or_else(|| panic!("{row}"));
    assert_eq!(
        (
            result["from_version"].as_str(),
            result["to_version"].as_str()
        ),
        (Some("1.0-1"), Some("1.0-2"))
    );
    assert!(!row["log_tail"].as_array().unwrap().is_empty());
    // The agent ran exactly one job for it, under the manager's idempotency key.
    let agent_jobs = fleet.agent_jobs.list(None);
    assert_eq!(agent_jobs.len(), 1, "{agent_jobs:?}");
    assert_eq!(agent_jobs[0].id, agent_job);
    assert_eq!(
        agent_jobs[0].request_key.as_deref(),
        Some(format!("lpm-j{job}-h{host}-a1").as_str())
    );

    // The Operator saw nothing of it.
    let (_, theirs) = api(&c, "GET", &jobs, Some(&olga), None).await;
    assert_eq!(theirs, json!([]));
    let (status, _) = api(&c, "GET", &format!("{jobs}/{job}"), Some(&olga), None).await;
    assert_eq!(status, 404);

    // A finished job cannot be cancelled; it can be rolled back.
    let (status, body) = api(
        &c,
        "POST",
        &format!("{jobs}/{job}/cancel"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = api(
        &c,
        "POST",
        &format!("{jobs}/{job}/rollback"),
        Some(&admin),
        Some(json!({ "hosts": [987654] })),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = api(
        &c,
        "POST",
        &format!("{jobs}/{job}/rollback"),
        Some(&admin),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let events = job_rollback_events(&mut admin_ws, job).await;
    assert_eq!(events, ["rolling_back", "rolled_back"]);
    assert_eq!(
        apt.version("lpm-test-secure").as_deref(),
        Some("1.0-1"),
        "rolled back exactly"
    );
    let detail = ended(&c, &format!("{jobs}/{job}"), &admin).await;
    let row = &detail["targets"][0];
    assert_eq!(row["state"], "rolled_back", "{row}");
    assert!(row["rollback_agent_job_id"].is_string());

    // Audited: creation, the host's start and end, the rollback.
    let mut conn = state.db.conn().unwrap();
    let actions: Vec<String> = {
        use diesel::prelude::*;
        use patch_manager::db::schema::audit_log::dsl as a;
        a::audit_log
            .filter(a::target.eq(format!("job:{job}")))
            .select(a::action)
            .order(a::id.asc())
            .load(&mut *conn)
            .unwrap()
    };
    for expected in [
        "job.created",
        "job.host_started",
        "job.host_finished",
        "job.finished",
        "job.rollback_requested",
        "job.rollback_started",
        "job.rollback_finished",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} not in {actions:?}"
        );
    }
    drop(conn);

    // Nothing of this reached the Operator's stream: a host of their own group changes state,
    // and that is the first message their stream carries (a job event would have come before).
    let theirs = {
        let mut conn = state.db.conn().unwrap();
        let id = common::insert_host(&mut conn, "olga-web", 12443, state.clock.now());
        patch_manager::db::hosts::add_member(
            &mut conn,
            &patch_manager::db::hosts::NewMembership {
                host_id: id,
                group_id: group["id"].as_i64().unwrap(),
                created_at: state.clock.now(),
            },
        )
        .unwrap();
        id
    };
    state.fleet.access_changed();
    // The stream reads its scope again on the access change; publish until the sentinel shows.
    let first = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let _ = state.fleet.events.send(shared::fleet::HostStateEvent {
                host_id: theirs.into(),
                status: shared::vocab::HostStatus::Unreachable,
                reason: Some("sentinel".into()),
                at: "2026-11-30T00:00:00Z".into(),
            });
            if let Ok(Some(Ok(awc::ws::Frame::Text(t)))) =
                tokio::time::timeout(Duration::from_millis(500), olga_ws.next()).await
            {
                return serde_json::from_slice::<Value>(&t).unwrap();
            }
        }
    })
    .await
    .expect("the Operator's stream carried nothing");
    assert_eq!(first["type"], "host_state", "{first}");
    assert_eq!(first["host_id"], theirs);
}

/// The states of the job's host row during a rollback, each once, until it ends.
async fn job_rollback_events(socket: &mut impl Socket, job: i64) -> Vec<String> {
    let mut states: Vec<String> = Vec::new();
    loop {
        let v = next_job_event(socket, job).await;
        if v["type"] != "job_target" {
            continue;
        }
        let s = v["state"].as_str().unwrap().to_owned();
        if states.last() != Some(&s) {
            states.push(s.clone());
        }
        if s == "rolled_back" || s == "rollback_failed" {
            return states;
        }
    }
}
