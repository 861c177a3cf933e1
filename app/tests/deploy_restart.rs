//! A `patch-manager` process killed (SIGKILL) in the middle of a job and started again: no job
//! lost, none run twice. A real agent on the real apt backend (an isolated apt root) is busy with
//! a long install started on it directly, so the manager's job waits in the agent's queue when
//! the manager dies; the restarted manager takes the job up where its row stood (the host actor
//! follows the agent job it had, or sends its order again with the same idempotency key, which
//! the agent answers with the same job), and the job ends succeeded with the agent having run it
//! exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::https::{api, client_trusting, first_admin, sign_in};
use common::{free_port, Proc};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Starts `patch-manager serve` on `data` and waits until it answers; its log goes to
/// `data/../manager-N.log`.
async fn manager(data: &Path, port: u16, n: u32) -> (Proc, awc::Client) {
    let log = std::fs::File::create(data.with_file_name(format!("manager-{n}.log"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_patch-manager"))
        .args(["--data-dir"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--set",
            "log.format=text",
            "--set",
            "log.level=info",
            "--set",
            "metrics.listen=",
            "serve",
        ])
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let proc = Proc(child);
    let base = format!("https://127.0.0.1:{port}");
    for _ in 0..600 {
        if let Ok(ca) = std::fs::read_to_string(data.join("web-ca/ca.crt")) {
            let c = client_trusting(&ca);
            if let Ok(mut r) = c.get(format!("{base}/status/health")).send().await {
                if r.status().is_success() {
                    let _ = r.body().await;
                    return (proc, c);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("patch-manager did not come up within 60 s");
}

#[actix_rt::test]
async fn a_manager_killed_mid_job_loses_nothing_and_runs_nothing_twice() {
    let apt = common::AptRoot::new();
    apt.install(&["lpm-test-secure=1.0-1"]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let base = format!("https://127.0.0.1:{port}");
    let (mut first, c) = manager(&data, port, 1).await;

    // Setup, an Admin, and an agent enrolled with a token from the CLI.
    let admin = first_admin(&c, &base, &data).await;
    let (status, t) = api(
        &c,
        "POST",
        &format!("{base}/api/v1/enrollment-tokens"),
        Some(&admin),
        Some(json!({ "minutes": 10 })),
    )
    .await;
    assert_eq!(status, 201, "{t}");
    let agent_dir = tempfile::tempdir().unwrap();
    let config_path = agent_dir.path().join("agent.toml");
    let mut base_cfg = patch_agent::config::AgentConfig::default();
    base_cfg.server.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    base_cfg.tls.cert = agent_dir.path().join("tls/agent.crt");
    base_cfg.tls.key = agent_dir.path().join("tls/agent.key");
    base_cfg.tls.client_ca = agent_dir.path().join("tls/ca.crt");
    base_cfg.audit.path = agent_dir.path().join("audit.jsonl");
    base_cfg.jobs.state_dir = agent_dir.path().join("state");
    std::fs::write(&config_path, toml::to_string(&base_cfg).unwrap()).unwrap();
    let done = patch_agent::enroll::enroll(&patch_agent::enroll::EnrollOptions {
        manager: base.clone(),
        token: t["token"].as_str().unwrap().to_owned(),
        hostname: "restart01.test".into(),
        addresses: vec!["127.0.0.1".parse().unwrap()],
        config_path,
        source: None,
    })
    .await
    .unwrap();
    let (_agent, agent_jobs) =
        common::run_agent_with_jobs(&done.config, Some(apt.apt_config.as_path()));
    let host = done.host_id;

    // The agent is busy for about 8 s with an install asked of it directly.
    let busy = agent_jobs
        .submit(
            patch_agent::jobs::Plan::Install(vec![shared::agent::PackageSpec {
                name: "lpm-test-chatty".into(),
                version: None,
            }]),
            json!({ "packages": [{ "name": "lpm-test-chatty" }] }),
            None,
        )
        .unwrap();

    // The job reaches the agent and waits behind it.
    let (status, created) = api(
        &c,
        "POST",
        &format!("{base}/api/v1/jobs"),
        Some(&admin),
        Some(json!({ "hosts": [host], "selection": "security" })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let job = created["job"]["id"].as_i64().unwrap();
    let url = format!("{base}/api/v1/jobs/{job}");
    let before: Value = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let (_, d) = api(&c, "GET", &url, Some(&admin), None).await;
            if d["targets"][0]["agent_job_id"].is_string() {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the job never reached the agent");
    let agent_job = before["targets"][0]["agent_job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        agent_jobs
            .get(&busy)
            .is_some_and(|j| !j.status.is_finished()),
        "the agent is still busy when the manager dies"
    );

    // SIGKILL: no shutdown, no flush.
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    drop(first);

    // Started again on the same data: the job is taken up and ends.
    let (_second, c) = manager(&data, port, 2).await;
    let admin = sign_in(&c, &base, "admin", "tangerine-Orbit-42").await;
    let after: Value = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let (_, d) = api(&c, "GET", &url, Some(&admin), None).await;
            if d["job"]["state"] != "running" {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the job did not end after the restart");
    assert_eq!(after["job"]["state"], "succeeded", "{after}");
    let row = &after["targets"][0];
    assert_eq!(row["state"], "succeeded");
    assert_eq!(row["attempt"], 1, "no second attempt was needed");
    assert_eq!(
        row["agent_job_id"],
        agent_job.as_str(),
        "the same agent job"
    );

    // The agent ran the job exactly once: its own install and one patch job, nothing else.
    let jobs = agent_jobs.list(None);
    assert_eq!(jobs.len(), 2, "{jobs:#?}");
    let applied: Vec<_> = jobs
        .iter()
        .filter(|j| j.kind == shared::agent::JobKind::ApplyPatches)
        .collect();
    assert_eq!(applied.len(), 1);
    assert_eq!(applied[0].id, agent_job);
    assert_eq!(
        applied[0].request_key.as_deref(),
        Some(format!("lpm-j{job}-h{host}-a1").as_str())
    );
    assert_eq!(apt.version("lpm-test-secure").as_deref(), Some("1.0-2"));
}
