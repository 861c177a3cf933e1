//! Package jobs through the real agent, over mTLS, driving real apt-get and dpkg inside an
//! isolated root with the project's test repository; idempotency keys naming one job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{audit_events, start_agent_with, AgentFiles, Api, AptRoot, Ca};
use shared::agent::{JobStatus, PackageOutcome};
use std::time::Duration;

struct Env {
    root: AptRoot,
    files: AgentFiles,
    api: Api,
    agent: patch_agent::server::RunningAgent,
    audit: patch_agent::audit::AuditLog,
}

fn env(max_concurrent: usize, timeout: Duration) -> Env {
    let root = AptRoot::new();
    let ca = Ca::new("Fleet CA");
    let files = AgentFiles::new(
        &ca,
        &ca.leaf("agent.test", 1, true, 90),
        None,
        &["127.0.0.1"],
    );
    let (agent, audit, _jobs) = start_agent_with(&files, root.backend(), max_concurrent, timeout);
    let api = Api::new(&ca, agent.addr);
    Env {
        root,
        files,
        api,
        agent,
        audit,
    }
}

fn install_body(specs: &[(&str, Option<&str>)]) -> String {
    let packages: Vec<_> = specs
        .iter()
        .map(|(n, v)| serde_json::json!({ "name": n, "version": v }))
        .collect();
    serde_json::json!({ "packages": packages }).to_string()
}

#[actix_rt::test]
async fn install_upgrade_remove_and_roll_each_back() {
    let e = env(5, Duration::from_secs(300));
    let hello = "lpm-test-hello";

    // Pinned install.
    let id = e
        .api
        .submit(
            "POST",
            "/packages",
            Some(&install_body(&[(hello, Some("1.0-1"))])),
        )
        .await;
    let job = e.api.wait(&id).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    assert_eq!(e.root.version(hello).as_deref(), Some("1.0-1"));
    assert_eq!(job.results[0].outcome, PackageOutcome::Changed);

    // Update to the candidate, then roll it back.
    let up = e
        .api
        .submit("PUT", &format!("/packages/{hello}"), None)
        .await;
    let job = e.api.wait(&up).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    assert_eq!(e.root.version(hello).as_deref(), Some("2.0-1"));
    let rb = e
        .api
        .submit("POST", &format!("/jobs/{up}/rollback"), None)
        .await;
    let job = e.api.wait(&rb).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    assert_eq!(job.rollback_of.as_deref(), Some(up.as_str()));
    assert_eq!(
        e.root.version(hello).as_deref(),
        Some("1.0-1"),
        "rollback must downgrade"
    );

    // A pinned update (to 1.1-1).
    let pin = e
        .api
        .submit(
            "PUT",
            &format!("/packages/{hello}"),
            Some(r#"{"version":"1.1-1"}"#),
        )
        .await;
    assert_eq!(e.api.wait(&pin).await.status, JobStatus::Succeeded);
    assert_eq!(e.root.version(hello).as_deref(), Some("1.1-1"));

    // Install with a dependency; roll back removes both.
    let app = e
        .api
        .submit(
            "POST",
            "/packages",
            Some(&install_body(&[("lpm-test-app", None)])),
        )
        .await;
    let job = e.api.wait(&app).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    assert!(
        job.results
            .iter()
            .any(|r| r.name == "lpm-test-lib" && r.outcome == PackageOutcome::Changed),
        "{job:?}"
    );
    assert!(e.root.version("lpm-test-lib").is_some());
    let rb = e
        .api
        .submit("POST", &format!("/jobs/{app}/rollback"), None)
        .await;
    assert_eq!(e.api.wait(&rb).await.status, JobStatus::Succeeded);
    assert_eq!(
        e.root.version("lpm-test-app"),
        None,
        "newly installed package must be removed"
    );
    assert_eq!(
        e.root.version("lpm-test-lib"),
        None,
        "its new dependency too"
    );

    // Remove, then roll back: reinstalled at the recorded version.
    let rm = e
        .api
        .submit("DELETE", &format!("/packages/{hello}"), None)
        .await;
    assert_eq!(e.api.wait(&rm).await.status, JobStatus::Succeeded);
    assert_eq!(e.root.version(hello), None);
    let rb = e
        .api
        .submit("POST", &format!("/jobs/{rm}/rollback"), None)
        .await;
    assert_eq!(e.api.wait(&rb).await.status, JobStatus::Succeeded);
    assert_eq!(
        e.root.version(hello).as_deref(),
        Some("1.1-1"),
        "removed package must come back at its version"
    );

    // Idempotent repeats: no package-manager process, reported as no-ops.
    let same = e
        .api
        .submit(
            "POST",
            "/packages",
            Some(&install_body(&[(hello, Some("1.1-1"))])),
        )
        .await;
    let job = e.api.wait(&same).await;
    assert!(job.noop && job.status == JobStatus::Succeeded, "{job:?}");
    assert_eq!(job.results[0].outcome, PackageOutcome::Unchanged);
    let absent = e
        .api
        .submit("DELETE", "/packages/lpm-test-reboot", None)
        .await;
    let job = e.api.wait(&absent).await;
    assert!(job.noop && job.status == JobStatus::Succeeded, "{job:?}");
    e.audit.flush();
    let spawned: Vec<_> = audit_events(&e.files.audit_path())
        .into_iter()
        .filter(|v| v["event"] == "process.spawned")
        .map(|v| v["job_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        !spawned.contains(&same) && !spawned.contains(&absent),
        "a no-op spawned a process"
    );
    assert!(
        spawned.contains(&id),
        "the real install must be audited as a spawned process"
    );
    let changes = audit_events(&e.files.audit_path())
        .into_iter()
        .filter(|v| v["event"] == "package.changed")
        .count();
    assert!(changes >= 8, "package changes audited: {changes}");
    e.agent.stop().await;
}

#[actix_rt::test]
async fn patches_security_only_apply_and_rollback() {
    let e = env(5, Duration::from_secs(300));
    let body = install_body(&[
        ("lpm-test-hello", Some("1.0-1")),
        ("lpm-test-secure", Some("1.0-1")),
    ]);
    let id = e.api.submit("POST", "/packages", Some(&body)).await;
    assert_eq!(e.api.wait(&id).await.status, JobStatus::Succeeded);

    let patches: shared::agent::PatchList =
        serde_json::from_value(e.api.get("/patches").await).unwrap();
    assert_eq!(patches.total, 2, "{patches:?}");
    assert_eq!(patches.security, 1);
    let first = &patches.patches[0];
    assert_eq!(
        (first.name.as_str(), first.security),
        ("lpm-test-secure", true),
        "security first"
    );
    assert_eq!(first.candidate_version, "1.0-2");
    assert!(first.origin.contains("security"));
    assert_eq!(
        first.cves,
        ["CVE-2026-0001", "CVE-2026-0002"],
        "CVE ids from the candidate's changelog"
    );
    assert!(patches.patches[1].cves.is_empty());
    assert_eq!(patches.patches[1].candidate_version, "2.0-1");

    let sec = e
        .api
        .submit(
            "POST",
            "/patches/apply",
            Some(r#"{"selection":"security"}"#),
        )
        .await;
    let job = e.api.wait(&sec).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    assert_eq!(e.root.version("lpm-test-secure").as_deref(), Some("1.0-2"));
    assert_eq!(
        e.root.version("lpm-test-hello").as_deref(),
        Some("1.0-1"),
        "security-only touched a normal update"
    );
    let after: shared::agent::PatchList =
        serde_json::from_value(e.api.get("/patches").await).unwrap();
    assert_eq!(
        after.total, 1,
        "the patch cache must follow the package database: {after:?}"
    );

    let rb = e
        .api
        .submit("POST", &format!("/jobs/{sec}/rollback"), None)
        .await;
    assert_eq!(e.api.wait(&rb).await.status, JobStatus::Succeeded);
    assert_eq!(e.root.version("lpm-test-secure").as_deref(), Some("1.0-1"));

    let listed = e
        .api
        .submit(
            "POST",
            "/patches/apply",
            Some(r#"{"selection":"list","packages":["lpm-test-hello"]}"#),
        )
        .await;
    assert_eq!(e.api.wait(&listed).await.status, JobStatus::Succeeded);
    assert_eq!(e.root.version("lpm-test-hello").as_deref(), Some("2.0-1"));
    let all = e
        .api
        .submit("POST", "/patches/apply", Some(r#"{"selection":"all"}"#))
        .await;
    assert_eq!(e.api.wait(&all).await.status, JobStatus::Succeeded);
    assert_eq!(e.root.version("lpm-test-secure").as_deref(), Some("1.0-2"));
    let none = e
        .api
        .submit("POST", "/patches/apply", Some(r#"{"selection":"all"}"#))
        .await;
    assert!(
        e.api.wait(&none).await.noop,
        "nothing left to apply is a no-op"
    );
    e.agent.stop().await;
}

#[actix_rt::test]
async fn failing_postinst_is_reported_per_package() {
    let e = env(5, Duration::from_secs(300));
    let body = install_body(&[("lpm-test-broken", None), ("lpm-test-hello", Some("1.1-1"))]);
    let id = e.api.submit("POST", "/packages", Some(&body)).await;
    let job = e.api.wait(&id).await;
    assert_eq!(job.status, JobStatus::Partial, "{job:?}");
    let broken = job
        .results
        .iter()
        .find(|r| r.name == "lpm-test-broken")
        .unwrap();
    assert_eq!(broken.outcome, PackageOutcome::Failed);
    assert!(
        broken
            .message
            .as_deref()
            .unwrap()
            .contains("half-configured"),
        "{broken:?}"
    );
    let hello = job
        .results
        .iter()
        .find(|r| r.name == "lpm-test-hello")
        .unwrap();
    assert_eq!(hello.outcome, PackageOutcome::Changed);
    assert_eq!(e.root.version("lpm-test-hello").as_deref(), Some("1.1-1"));
    assert!(
        job.log_tail.iter().any(|l| l.contains("postinst")),
        "{:?}",
        job.log_tail
    );
    let health = e.api.get("/health").await;
    assert_eq!(health["package_db_interrupted"], true);
    e.agent.stop().await;
}

#[actix_rt::test]
async fn queue_limit_and_exclusive_rollback() {
    let e = env(2, Duration::from_secs(300));
    // Three jobs, limit two: two run (one holds the package lock, one waits for it), one queued.
    let a = e
        .api
        .submit(
            "POST",
            "/packages",
            Some(&install_body(&[("lpm-test-slow", None)])),
        )
        .await;
    let b = e
        .api
        .submit(
            "POST",
            "/packages",
            Some(&install_body(&[("lpm-test-hello", Some("1.0-1"))])),
        )
        .await;
    let c = e
        .api
        .submit(
            "POST",
            "/packages",
            Some(&install_body(&[("lpm-test-lib", None)])),
        )
        .await;
    let health = e.api.get("/health").await;
    assert_eq!(
        (
            health["jobs_running"].as_u64(),
            health["jobs_queued"].as_u64()
        ),
        (Some(2), Some(1)),
        "{health}"
    );
    for id in [&a, &b, &c] {
        assert_eq!(e.api.wait(id).await.status, JobStatus::Succeeded);
    }

    // Remove the slow package, then roll that back: the reinstall runs its slow postinst while
    // the agent is exclusive.
    let rm = e
        .api
        .submit("DELETE", "/packages/lpm-test-slow", None)
        .await;
    assert_eq!(e.api.wait(&rm).await.status, JobStatus::Succeeded);
    let rb = e
        .api
        .submit("POST", &format!("/jobs/{rm}/rollback"), None)
        .await;
    let (status, body) = e
        .api
        .call(
            "POST",
            "/packages",
            Some(&install_body(&[("lpm-test-reboot", None)])),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "exclusive_mode");
    assert!(body["error"]["message"].as_str().unwrap().contains(&rb));
    let (status, _) = e.api.call("DELETE", "/packages/lpm-test-hello", None).await;
    assert_eq!(status, 503);
    assert_eq!(e.api.get("/health").await["exclusive_mode"], true);
    e.api.get("/packages").await; // reads keep working
    assert_eq!(e.api.wait(&rb).await.status, JobStatus::Succeeded);
    assert!(e.root.version("lpm-test-slow").is_some());
    assert_eq!(e.api.get("/health").await["exclusive_mode"], false);
    let after = e
        .api
        .submit(
            "POST",
            "/packages",
            Some(&install_body(&[("lpm-test-reboot", None)])),
        )
        .await;
    assert_eq!(e.api.wait(&after).await.status, JobStatus::Succeeded);
    e.agent.stop().await;
}

/// A process: its pid and its start time (field 22 of /proc/PID/stat), which tells it apart from
/// a later process that reuses the pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcessId {
    pid: i32,
    start: u64,
}

/// State letter, parent pid and start time of a process, from /proc/PID/stat.
fn proc_stat(pid: i32) -> Option<(char, i32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields after its closing parenthesis are fixed.
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some((
        rest.first()?.chars().next()?,
        rest.get(1)?.parse().ok()?,
        rest.get(19)?.parse().ok()?,
    ))
}

/// Whether `p` still runs (a zombie has ended: it only waits to be reaped).
fn running(p: ProcessId) -> bool {
    proc_stat(p.pid).is_some_and(|(state, _, start)| start == p.start && state != 'Z')
}

/// The running `sleep 600` processes among this test process's own descendants: the hanging
/// maintainer script of lpm-test-hang that this test's agent started, never another test's or
/// anything else on the machine.
fn own_hung_scripts() -> Vec<ProcessId> {
    let mut children: std::collections::BTreeMap<i32, Vec<i32>> = Default::default();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if let Some((_, ppid, _)) = proc_stat(pid) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut descendants = vec![i32::try_from(std::process::id()).unwrap()];
    let mut i = 0;
    while i < descendants.len() {
        descendants.extend(children.get(&descendants[i]).cloned().unwrap_or_default());
        i += 1;
    }
    descendants
        .into_iter()
        .skip(1)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == b"sleep\x00600\x00")
        })
        .filter_map(|pid| {
            let (state, _, start) = proc_stat(pid)?;
            (state != 'Z').then_some(ProcessId { pid, start })
        })
        .collect()
}

#[actix_rt::test]
async fn timeout_kills_the_process_group_and_restart_reports_interrupted() {
    let e = env(5, Duration::from_secs(4));
    let id = e
        .api
        .submit(
            "POST",
            "/packages",
            Some(&install_body(&[("lpm-test-hang", None)])),
        )
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while e.api.get(&format!("/jobs/{id}")).await["status"] != "running" {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The maintainer script hangs: find the process it started, before the timeout ends it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let hung = loop {
        let found = own_hung_scripts();
        if !found.is_empty() {
            break found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no hanging maintainer script (sleep 600) within 30 s"
        );
        assert_eq!(
            e.api.get(&format!("/jobs/{id}")).await["status"],
            "running",
            "the job ended before its hanging maintainer script (sleep 600) was seen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // A second job manager over the same state dir (an agent restarting while the package manager
    // runs) sees the job as interrupted: its running state was on disk before dpkg started.
    let restarted = patch_agent::jobs::Jobs::new(
        e.root.backend(),
        e.audit.clone(),
        e.files.config.jobs.state_dir.clone(),
        5,
        Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(restarted.interrupted(), std::slice::from_ref(&id));

    let job = e.api.wait(&id).await;
    assert_eq!(job.status, JobStatus::TimedOut, "{job:?}");
    let error = job.error.unwrap();
    assert!(
        error.contains("timed out") && error.contains("interrupted"),
        "{error}"
    );
    // The kill was sent before the job was reported; wait (bounded) for the script to end.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while hung.iter().any(|p| running(*p)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the hanging maintainer script survived the kill: {hung:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(e.api.get("/health").await["package_db_interrupted"], true);
    e.agent.stop().await;
}

#[actix_rt::test]
async fn bad_input_is_refused_before_anything_runs() {
    let e = env(5, Duration::from_secs(300));
    // (method, path, body or "" for none, status, error code)
    const CASES: &[(&str, &str, &str, u16, &str)] = &[
        (
            "POST",
            "/packages",
            r#"{"packages":[{"name":"bash;rm -rf /"}]}"#,
            400,
            "invalid_package_name",
        ),
        (
            "POST",
            "/packages",
            r#"{"packages":[{"name":"-oAPT::Get::Foo=1"}]}"#,
            400,
            "invalid_package_name",
        ),
        (
            "POST",
            "/packages",
            r#"{"packages":[{"name":"$(touch /tmp/pwned)"}]}"#,
            400,
            "invalid_package_name",
        ),
        (
            "POST",
            "/packages",
            r#"{"packages":[{"name":"lpm-test-hello","version":"1.0;id"}]}"#,
            400,
            "invalid_version",
        ),
        (
            "POST",
            "/packages",
            r#"{"packages":[{"name":"lpm-test-hello","version":"--force"}]}"#,
            400,
            "invalid_version",
        ),
        (
            "POST",
            "/packages",
            r#"{"packages":[]}"#,
            400,
            "validation_failed",
        ),
        (
            "POST",
            "/packages",
            r#"{"packages":[{"name":"lpm-test-hello"},{"name":"lpm-test-hello"}]}"#,
            400,
            "validation_failed",
        ),
        (
            "POST",
            "/packages",
            r#"{"packages": ["#,
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/packages",
            r#"{"packages": "lpm-test-hello"}"#,
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/packages",
            r#"{"packages": [], "extra": 1}"#,
            400,
            "invalid_json",
        ),
        (
            "PUT",
            "/packages/lpm-test-hello",
            r#"{"version": 5}"#,
            400,
            "invalid_json",
        ),
        (
            "PUT",
            "/packages/lpm-test-hello",
            r#"{"version": "1.0 && id"}"#,
            400,
            "invalid_version",
        ),
        (
            "DELETE",
            "/packages/..%2Fetc",
            "",
            400,
            "invalid_package_name",
        ),
        (
            "DELETE",
            "/packages/lpm-test-hello?purge=maybe",
            "",
            400,
            "invalid_query",
        ),
        (
            "POST",
            "/patches/apply",
            r#"{"selection":"everything"}"#,
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/patches/apply",
            r#"{"selection":"list","packages":[]}"#,
            400,
            "validation_failed",
        ),
        (
            "POST",
            "/patches/apply",
            r#"{"selection":"all","packages":["x1"]}"#,
            400,
            "validation_failed",
        ),
        ("GET", "/jobs/not-a-job", "", 400, "invalid_job_id"),
        (
            "GET",
            "/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "",
            404,
            "not_found",
        ),
        (
            "POST",
            "/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV/rollback",
            "",
            404,
            "not_found",
        ),
        ("GET", "/jobs?status=exploded", "", 400, "invalid_query"),
    ];
    let long_name = install_body(&[("a".repeat(300).as_str(), None)]);
    let huge = format!(r#"{{"packages":[{{"name":"{}"}}]}}"#, "a".repeat(70 * 1024));
    let dynamic = [
        (
            "POST",
            "/packages",
            long_name.as_str(),
            400,
            "invalid_package_name",
        ),
        ("POST", "/packages", huge.as_str(), 413, "payload_too_large"),
    ];
    for &(method, path, body, status, code) in CASES.iter().chain(dynamic.iter()) {
        let (got, v) = e
            .api
            .call(method, path, (!body.is_empty()).then_some(body))
            .await;
        assert_eq!(got, status, "{method} {path}: {v}");
        assert_eq!(v["error"]["code"], code, "{method} {path}: {v}");
    }
    let jobs = e.api.get("/jobs").await;
    assert_eq!(jobs["total"], 0, "a refused request created a job: {jobs}");
    e.audit.flush();
    assert!(
        !audit_events(&e.files.audit_path())
            .iter()
            .any(|v| v["event"] == "process.spawned"),
        "a refused request spawned a process"
    );
    assert!(!std::path::Path::new("/tmp/pwned").exists());
    e.agent.stop().await;
}

#[actix_rt::test]
async fn openapi_document_matches_the_routes() {
    let e = env(5, Duration::from_secs(300));
    let doc = e.api.get("/openapi.json").await;
    let mut documented: Vec<String> = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    documented.sort();
    let mut routed: Vec<String> = patch_agent::api::ROUTES
        .iter()
        .map(|r| format!("{} /api/v1{}", r.method, r.path))
        .collect();
    routed.sort();
    assert_eq!(documented, routed);
    // Every documented operation is really served: none answers "no such endpoint".
    for r in patch_agent::api::ROUTES {
        let path = r
            .path
            .replace("{name}", "lpm-test-none")
            .replace("{id}", "01ARZ3NDEKTSV4RRFFQ69G5FAV");
        let body = (r.method == "POST" || r.method == "PUT").then_some("{");
        let (status, v) = e.api.call(r.method, &path, body).await;
        assert!(
            !(status == 404 && v["error"]["message"] == "no such endpoint") && status != 405,
            "{} {path} is documented but not routed: {status} {v}",
            r.method
        );
    }
    e.agent.stop().await;
}

#[actix_rt::test]
async fn job_events_stream_over_websocket_in_order() {
    use futures_util::StreamExt;
    let e = env(5, Duration::from_secs(300));
    let mut cfg = e.api.client.config();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let client = awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(std::sync::Arc::new(cfg)))
        .finish();
    let (_resp, mut ws) = client
        .ws(format!(
            "wss://127.0.0.1:{}/api/v1/ws/jobs",
            e.agent.addr.port()
        ))
        .connect()
        .await
        .expect("websocket over mTLS");
    let id = e
        .api
        .submit(
            "POST",
            "/packages",
            Some(&install_body(&[("lpm-test-app", None)])),
        )
        .await;
    let mut kinds = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Ok(Some(frame)) = tokio::time::timeout_at(deadline, ws.next()).await {
        let awc::ws::Frame::Text(text) = frame.unwrap() else {
            continue;
        };
        let event: shared::agent::JobEvent = serde_json::from_slice(&text).unwrap();
        let (job, kind) = match &event {
            shared::agent::JobEvent::Queued { job_id, .. } => (job_id, "queued"),
            shared::agent::JobEvent::Started { job_id } => (job_id, "started"),
            shared::agent::JobEvent::Output { job_id, .. } => (job_id, "output"),
            shared::agent::JobEvent::Package { job_id, .. } => (job_id, "package"),
            shared::agent::JobEvent::Finished { job_id, status } => {
                assert_eq!(*status, JobStatus::Succeeded);
                (job_id, "finished")
            }
        };
        assert_eq!(job, &id);
        if kinds.last() != Some(&kind) {
            kinds.push(kind);
        }
        if kind == "finished" {
            break;
        }
    }
    assert_eq!(
        kinds,
        ["queued", "started", "output", "package", "finished"]
    );
    e.agent.stop().await;
}

#[test]
fn verify_audit_subcommand_names_the_first_broken_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = patch_agent::audit::AuditLog::open(&path).unwrap();
    for i in 0..3 {
        log.record("request", serde_json::json!({ "n": i }));
    }
    log.flush();
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_patch-agent"))
            .args(["--config", "/nonexistent", "--set"])
            .arg(format!("audit.path={}", path.display()))
            .arg("verify-audit")
            .output()
            .unwrap()
    };
    let ok = run();
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains("3 records"));
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replacen("\"n\":1", "\"n\":7", 1);
    std::fs::write(&path, text).unwrap();
    let bad = run();
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stdout).contains("line 2"),
        "{bad:?}"
    );
}

#[actix_rt::test]
async fn a_held_dpkg_lock_is_waited_for_then_fails_clearly() {
    let root = AptRoot::new();
    let ca = Ca::new("Fleet CA");
    let files = AgentFiles::new(
        &ca,
        &ca.leaf("agent.test", 1, true, 90),
        None,
        &["127.0.0.1"],
    );
    let (agent, _audit, _jobs) = start_agent_with(
        &files,
        root.backend_with_lock_timeout(2),
        5,
        Duration::from_secs(300),
    );
    let api = Api::new(&ca, agent.addr);
    // Another package manager holds dpkg's frontend lock (fcntl, as apt and dpkg take it).
    let lock = root.root.join("var/lib/dpkg/lock-frontend");
    let mut holder = std::process::Command::new("python3")
        .arg("-c")
        .arg("import fcntl,sys,time; f=open(sys.argv[1],'a'); fcntl.lockf(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)")
        .arg(&lock)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");

    let id = api
        .submit(
            "POST",
            "/packages",
            Some(&install_body(&[("lpm-test-hello", Some("1.0-1"))])),
        )
        .await;
    let job = api.wait(&id).await;
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    let error = job.error.unwrap_or_default();
    assert!(
        error.to_lowercase().contains("lock"),
        "the failure must name the lock: {error}"
    );
    assert_eq!(root.version("lpm-test-hello"), None);

    // Once the lock is free the same request goes through.
    let id = api
        .submit(
            "POST",
            "/packages",
            Some(&install_body(&[("lpm-test-hello", Some("1.0-1"))])),
        )
        .await;
    assert_eq!(api.wait(&id).await.status, JobStatus::Succeeded);
    agent.stop().await;
}

#[actix_rt::test]
async fn an_idempotency_key_names_one_job() {
    let e = env(5, Duration::from_secs(300));
    let body = install_body(&[("lpm-test-hello", Some("1.0-1"))]);
    let key = ["Idempotency-Key: lpm-j1-h1-a1"];
    let (status, first) = e
        .api
        .call_with("POST", "/packages", &key, Some(&body))
        .await;
    assert_eq!(status, 202, "{first}");
    let id = first["job_id"].as_str().unwrap().to_owned();
    // Sent again (a lost answer, a restarted manager): the same job, nothing new started.
    let (status, again) = e
        .api
        .call_with("POST", "/packages", &key, Some(&body))
        .await;
    assert_eq!((status, again["job_id"].as_str()), (202, Some(id.as_str())));
    let job = e.api.wait(&id).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    assert_eq!(job.request_key.as_deref(), Some("lpm-j1-h1-a1"));
    let (status, again) = e
        .api
        .call_with("POST", "/packages", &key, Some(&body))
        .await;
    assert_eq!((status, again["job_id"].as_str()), (202, Some(id.as_str())));
    assert_eq!(e.api.get("/jobs").await["total"], 1);
    assert_eq!(e.root.version("lpm-test-hello").as_deref(), Some("1.0-1"));

    // The same key for another request is refused; nothing starts.
    let other = install_body(&[("lpm-test-hello", Some("1.1-1"))]);
    let (status, refused) = e
        .api
        .call_with("POST", "/packages", &key, Some(&other))
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["code"], "idempotency_key_reused");
    // Malformed keys are refused before any job exists.
    let long = format!("Idempotency-Key: {}", "k".repeat(65));
    for bad in [
        "Idempotency-Key: two words",
        "Idempotency-Key: a/b",
        long.as_str(),
    ] {
        let (status, refused) = e
            .api
            .call_with("POST", "/packages", &[bad], Some(&other))
            .await;
        assert_eq!(status, 400, "{bad}: {refused}");
        assert_eq!(refused["error"]["code"], "invalid_idempotency_key");
    }
    assert_eq!(e.api.get("/jobs").await["total"], 1);

    // A rollback sent twice with its key is one rollback.
    let rb = ["Idempotency-Key: lpm-j1-h1-rb"];
    let path = format!("/jobs/{id}/rollback");
    let (status, first) = e.api.call_with("POST", &path, &rb, None).await;
    assert_eq!(status, 202, "{first}");
    let (status, again) = e.api.call_with("POST", &path, &rb, None).await;
    assert_eq!(
        (status, &again["job_id"]),
        (202, &first["job_id"]),
        "{again}"
    );
    let undone = e.api.wait(first["job_id"].as_str().unwrap()).await;
    assert_eq!(undone.status, JobStatus::Succeeded, "{undone:?}");
    assert_eq!(e.root.version("lpm-test-hello"), None);
    assert_eq!(e.api.get("/jobs").await["total"], 2);
}
