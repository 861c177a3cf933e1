//! Finished jobs and their rollback records survive restarts; a crash (SIGKILL) while jobs stream
//! output leaves a job file that parses, with the running jobs reported as interrupted; a job file
//! that does not parse is kept aside and reported, never silently emptied. Real apt-get and dpkg
//! in an isolated root (docs/testing-apt.md); the crash test runs the real `patch-agent` binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{audit_events, start_agent, start_agent_with, AgentFiles, Api, AptRoot, Ca};
use shared::agent::{Job, JobStatus, PackageOutcome};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn install_body(specs: &[(&str, Option<&str>)]) -> String {
    let packages: Vec<_> = specs
        .iter()
        .map(|(n, v)| serde_json::json!({ "name": n, "version": v }))
        .collect();
    serde_json::json!({ "packages": packages }).to_string()
}

fn agent_files(ca: &Ca) -> AgentFiles {
    AgentFiles::new(
        ca,
        &ca.leaf("agent.test", 1, true, 90),
        None,
        &["127.0.0.1"],
    )
}

async fn job(api: &Api, id: &str) -> Job {
    serde_json::from_value(api.get(&format!("/jobs/{id}")).await).unwrap()
}

/// Polls (bounded) until `cond` holds.
async fn wait_for(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// 1. Apply updates, restart the agent on the same state dir: the job and its per-package
///    results are still there, and its rollback brings the old versions back.
#[actix_rt::test]
async fn finished_jobs_and_rollback_records_survive_a_restart() {
    let root = AptRoot::new();
    let ca = Ca::new("Fleet CA");
    let files = agent_files(&ca);
    let (agent, _audit, jobs) =
        start_agent_with(&files, root.backend(), 5, Duration::from_secs(300));
    let api = Api::new(&ca, agent.addr);
    let body = install_body(&[
        ("lpm-test-hello", Some("1.0-1")),
        ("lpm-test-secure", Some("1.0-1")),
    ]);
    let install = api.submit("POST", "/packages", Some(&body)).await;
    assert_eq!(api.wait(&install).await.status, JobStatus::Succeeded);
    let apply = api
        .submit("POST", "/patches/apply", Some(r#"{"selection":"all"}"#))
        .await;
    let applied = api.wait(&apply).await;
    assert_eq!(applied.status, JobStatus::Succeeded, "{applied:?}");
    assert_eq!(root.version("lpm-test-hello").as_deref(), Some("2.0-1"));
    assert_eq!(root.version("lpm-test-secure").as_deref(), Some("1.0-2"));

    // A clean restart: the server stops, the job manager writes what it holds and stops, and a
    // new agent starts over the same state dir.
    agent.stop().await;
    jobs.close().await;
    drop(jobs);
    let (agent, _audit, jobs) =
        start_agent_with(&files, root.backend(), 5, Duration::from_secs(300));
    let api = Api::new(&ca, agent.addr);

    let (status, after) = api.call("GET", &format!("/jobs/{apply}"), None).await;
    assert_eq!(status, 200, "the applied job was forgotten: {after}");
    let after: Job = serde_json::from_value(after).unwrap();
    assert_eq!(after, applied, "the job changed across the restart");
    let mut changed: Vec<_> = after
        .results
        .iter()
        .map(|r| {
            assert_eq!(r.outcome, PackageOutcome::Changed, "{r:?}");
            (
                r.name.as_str(),
                r.from_version.as_deref(),
                r.to_version.as_deref(),
            )
        })
        .collect();
    changed.sort();
    assert_eq!(
        changed,
        [
            ("lpm-test-hello", Some("1.0-1"), Some("2.0-1")),
            ("lpm-test-secure", Some("1.0-1"), Some("1.0-2")),
        ]
    );
    let listed = api.get("/jobs").await;
    assert_eq!(listed["total"], 2, "{listed}");
    assert_eq!(listed["jobs"][0]["id"], apply.as_str(), "newest first");

    let rb = api
        .submit("POST", &format!("/jobs/{apply}/rollback"), None)
        .await;
    let rolled = api.wait(&rb).await;
    assert_eq!(rolled.status, JobStatus::Succeeded, "{rolled:?}");
    assert_eq!(rolled.rollback_of.as_deref(), Some(apply.as_str()));
    assert_eq!(root.version("lpm-test-hello").as_deref(), Some("1.0-1"));
    assert_eq!(root.version("lpm-test-secure").as_deref(), Some("1.0-1"));
    agent.stop().await;
    jobs.close().await;
}

/// Files and process of a real `patch-agent serve`.
struct Binary {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl Binary {
    fn start(config: &Path) -> Self {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_patch-agent"))
            .arg("--config")
            .arg(config)
            .arg("serve")
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        // Read the log on a thread (to the end, so the pipe never fills) and learn the address.
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains("patch-agent listening") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the agent did not log its address within 30 s");
        let at = line.find("127.0.0.1:").expect("no address in the log line");
        let addr: String = line[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
            .collect();
        Self {
            child,
            addr: addr.parse().unwrap(),
        }
    }

    /// SIGKILL: the agent gets no chance to write anything more.
    fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Processes whose environment names this test's apt configuration: apt-get, dpkg and the
/// maintainer scripts the killed agent left behind.
fn orphans(apt_config: &Path) -> Vec<i32> {
    let needle = format!("APT_CONFIG={}", apt_config.display());
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
        })
        .collect()
}

/// 2. Two jobs with heavy output (10,000 lines each from their maintainer scripts), the real agent
///    binary killed with SIGKILL while one streams: the job file parses, the finished job is
///    intact, and both unfinished jobs are reported as interrupted after the restart.
#[actix_rt::test]
async fn sigkill_while_jobs_stream_output_leaves_a_readable_file_and_interrupted_jobs() {
    let root = AptRoot::new();
    let ca = Ca::new("Fleet CA");
    let mut files = agent_files(&ca);
    files.config.backend.kind = "apt".into();
    files.config.backend.apt_config = root.apt_config.clone();
    let config = files.dir.path().join("agent.toml");
    std::fs::write(&config, toml::to_string(&files.config).unwrap()).unwrap();
    let state_file = files.config.jobs.state_dir.join("jobs.json");

    let mut agent = Binary::start(&config);
    let api = Api::new(&ca, agent.addr);
    let done = api
        .submit(
            "POST",
            "/packages",
            Some(&install_body(&[("lpm-test-hello", Some("1.0-1"))])),
        )
        .await;
    let done_job = api.wait(&done).await;
    assert_eq!(done_job.status, JobStatus::Succeeded);

    let a = api
        .submit(
            "POST",
            "/packages",
            Some(&install_body(&[("lpm-test-chatty", None)])),
        )
        .await;
    let b = api
        .submit(
            "POST",
            "/packages",
            Some(&install_body(&[("lpm-test-chatty2", None)])),
        )
        .await;
    // Wait until one of them has streamed a few thousand lines of its maintainer script.
    let mut streaming = String::new();
    wait_for("a job streaming its postinst output", async || {
        for id in [&a, &b] {
            let j = job(&api, id).await;
            assert!(!j.status.is_finished(), "{id} finished too early: {j:?}");
            // Lines read "NAME: postinst line BURST.N", 25 per burst, 400 bursts.
            let burst = j.log_tail.iter().rev().find_map(|l| {
                let (_, rest) = l.split_once("postinst line ")?;
                rest.split('.').next()?.parse::<u32>().ok()
            });
            if burst.is_some_and(|b| b >= 80) {
                streaming = id.clone();
                return true;
            }
        }
        false
    })
    .await;
    agent.kill_9();

    // The killed agent's apt-get, dpkg and maintainer script are still running in the test root:
    // end them (they were started by this test) and wait until they are gone.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = orphans(&root.apt_config);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "orphans survive: {left:?}");
        for pid in left {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let bytes = std::fs::read(&state_file).unwrap();
    let parsed: serde_json::Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("the job file does not parse after SIGKILL: {e}"));
    assert!(parsed.is_object(), "{parsed}");

    let agent = Binary::start(&config);
    let api = Api::new(&ca, agent.addr);
    let (status, v) = api.call("GET", &format!("/jobs/{done}"), None).await;
    assert_eq!(status, 200, "the finished job was forgotten: {v}");
    let after: Job = serde_json::from_value(v).unwrap();
    assert_eq!(after, done_job);
    for id in [&a, &b] {
        let (status, v) = api.call("GET", &format!("/jobs/{id}"), None).await;
        assert_eq!(status, 200, "job {id} was forgotten: {v}");
        let j: Job = serde_json::from_value(v).unwrap();
        assert_eq!(j.status, JobStatus::Interrupted, "{j:?}");
        assert!(j.finished_at.is_some(), "{j:?}");
        assert!(
            j.error.as_deref().unwrap_or_default().contains("stopped"),
            "{j:?}"
        );
    }
    let streamed = job(&api, &streaming).await;
    assert!(
        streamed
            .log_tail
            .iter()
            .any(|l| l.contains("postinst line")),
        "the output written before the kill is kept: {streamed:?}"
    );
    let health = api.get("/health").await;
    let mut interrupted: Vec<String> =
        serde_json::from_value(health["interrupted_jobs"].clone()).unwrap();
    interrupted.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(interrupted, expected, "{health}");
    let listed = api.get("/jobs?status=interrupted").await;
    assert_eq!(listed["total"], 2, "{listed}");
    // The audit log is written by its own thread: wait for the two records.
    wait_for("two job.interrupted audit records", async || {
        audit_events(&files.audit_path())
            .iter()
            .filter(|e| e["event"] == "job.interrupted")
            .count()
            == 2
    })
    .await;
    drop(agent);
}

fn set_aside(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("jobs.json.unreadable-"))
        })
        .collect()
}

/// 3. A job file that does not parse: the agent starts, the file is kept aside under a new name
///    with its bytes intact, and the condition is in the log's audit trail and in `/health`.
#[actix_rt::test]
async fn a_job_file_that_does_not_parse_is_kept_aside_and_reported() {
    let ca = Ca::new("Fleet CA");
    let files = agent_files(&ca);
    let state_dir = files.config.jobs.state_dir.clone();
    std::fs::create_dir_all(&state_dir).unwrap();
    let garbage = b"{\"jobs\": [ {\"id\": \"01J\x00\xff garbage, not JSON";
    std::fs::write(state_dir.join("jobs.json"), garbage).unwrap();

    let (agent, audit) = start_agent(&files);
    let api = Api::new(&ca, agent.addr);
    let health = api.get("/health").await;
    let aside = set_aside(&state_dir);
    assert_eq!(aside.len(), 1, "the unreadable file was not kept aside");
    assert_eq!(std::fs::read(&aside[0]).unwrap(), garbage);
    let problem = health["job_file_problem"].as_str().unwrap_or_default();
    assert!(
        problem.contains(&aside[0].display().to_string()),
        "/health does not report it: {health}"
    );
    audit.flush();
    let records: Vec<_> = audit_events(&files.audit_path())
        .into_iter()
        .filter(|e| e["event"] == "jobs.file_unreadable")
        .collect();
    assert_eq!(records.len(), 1, "no audit record");
    assert_eq!(
        records[0]["set_aside_as"],
        aside[0].display().to_string(),
        "{records:?}"
    );
    assert_eq!(api.get("/jobs").await["total"], 0);
    agent.stop().await;

    // The next start finds a fresh file, keeps the set-aside one and reports nothing new.
    let (agent, _audit) = start_agent(&files);
    let api = Api::new(&ca, agent.addr);
    let health = api.get("/health").await;
    assert!(health["job_file_problem"].is_null(), "{health}");
    assert_eq!(set_aside(&state_dir), aside);
    agent.stop().await;
}
