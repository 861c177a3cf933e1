//! The backend contract: one table of cases run, through a real agent over mTLS, against every
//! package-manager family that runs here (apt/dpkg, dnf, zypper, pacman), each in an isolated
//! root of the real tool over the project's test repositories. A family cannot quietly behave
//! differently from apt: the same requests must leave the same versions on disk, with the same
//! job outcomes, per-package results and refusals. apk-tools is not in this Debian release; its
//! parsers and command lines are tested in `agent/src/backend/apk.rs` on recorded outputs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::family_root::{Family, FamilyRoot};
use common::{start_agent_with, AgentFiles, Api, Ca};
use shared::agent::{JobStatus, PackageOutcome, PatchList};
use std::time::Duration;

/// Which families a case applies to.
#[derive(Clone, Copy)]
enum Only {
    All,
    /// Families whose repositories flag security updates.
    WithSecurity,
    /// Families whose repositories do not.
    WithoutSecurity,
}

/// What a case expects.
enum Expect {
    /// A job that ends with this status.
    Job(JobStatus),
    /// A job that fails, with the result of `package` naming `cause` in its message.
    FailsNaming {
        package: &'static str,
        cause: &'static str,
    },
    /// Refused before anything runs, with this status and error code.
    Refused(u16, &'static str),
}

/// One request and what it must leave behind.
struct Case {
    what: &'static str,
    only: Only,
    method: &'static str,
    /// `{prev}` is replaced by the job id of the previous case.
    path: &'static str,
    body: Option<&'static str>,
    expect: Expect,
    /// Installed versions afterwards, as the family's own tool reports them.
    after: &'static [(&'static str, Option<&'static str>)],
}

const HELLO: &str = "lpm-test-hello";

const CASES: &[Case] = &[
    Case {
        what: "pinned install",
        only: Only::All,
        method: "POST",
        path: "/packages",
        body: Some(
            r#"{"packages":[{"name":"lpm-test-hello","version":"1.0-1"},{"name":"lpm-test-secure","version":"1.0-1"}]}"#,
        ),
        expect: Expect::Job(JobStatus::Succeeded),
        after: &[
            ("lpm-test-hello", Some("1.0-1")),
            ("lpm-test-secure", Some("1.0-1")),
        ],
    },
    Case {
        what: "update to the candidate",
        only: Only::All,
        method: "PUT",
        path: "/packages/lpm-test-hello",
        body: None,
        expect: Expect::Job(JobStatus::Succeeded),
        after: &[("lpm-test-hello", Some("2.0-1"))],
    },
    Case {
        what: "rollback of the update downgrades",
        only: Only::All,
        method: "POST",
        path: "/jobs/{prev}/rollback",
        body: None,
        expect: Expect::Job(JobStatus::Succeeded),
        after: &[("lpm-test-hello", Some("1.0-1"))],
    },
    Case {
        what: "pinned update",
        only: Only::All,
        method: "PUT",
        path: "/packages/lpm-test-hello",
        body: Some(r#"{"version":"1.1-1"}"#),
        expect: Expect::Job(JobStatus::Succeeded),
        after: &[("lpm-test-hello", Some("1.1-1"))],
    },
    Case {
        what: "install with a dependency",
        only: Only::All,
        method: "POST",
        path: "/packages",
        body: Some(r#"{"packages":[{"name":"lpm-test-app"}]}"#),
        expect: Expect::Job(JobStatus::Succeeded),
        after: &[
            ("lpm-test-app", Some("1.0-1")),
            ("lpm-test-lib", Some("1.0-1")),
        ],
    },
    Case {
        what: "rollback removes the package and its dependency",
        only: Only::All,
        method: "POST",
        path: "/jobs/{prev}/rollback",
        body: None,
        expect: Expect::Job(JobStatus::Succeeded),
        after: &[("lpm-test-app", None), ("lpm-test-lib", None)],
    },
    Case {
        what: "remove",
        only: Only::All,
        method: "DELETE",
        path: "/packages/lpm-test-hello",
        body: None,
        expect: Expect::Job(JobStatus::Succeeded),
        after: &[("lpm-test-hello", None)],
    },
    Case {
        what: "rollback of the removal reinstalls the same version",
        only: Only::All,
        method: "POST",
        path: "/jobs/{prev}/rollback",
        body: None,
        expect: Expect::Job(JobStatus::Succeeded),
        after: &[("lpm-test-hello", Some("1.1-1"))],
    },
    Case {
        what: "security-only apply takes the security update alone",
        only: Only::WithSecurity,
        method: "POST",
        path: "/patches/apply",
        body: Some(r#"{"selection":"security"}"#),
        expect: Expect::Job(JobStatus::Succeeded),
        after: &[
            ("lpm-test-secure", Some("1.0-2")),
            ("lpm-test-hello", Some("1.1-1")),
        ],
    },
    Case {
        what: "security-only apply changes nothing without security metadata",
        only: Only::WithoutSecurity,
        method: "POST",
        path: "/patches/apply",
        body: Some(r#"{"selection":"security"}"#),
        expect: Expect::Job(JobStatus::Succeeded),
        after: &[
            ("lpm-test-secure", Some("1.0-1")),
            ("lpm-test-hello", Some("1.1-1")),
        ],
    },
    Case {
        what: "listed apply",
        only: Only::All,
        method: "POST",
        path: "/patches/apply",
        body: Some(r#"{"selection":"list","packages":["lpm-test-hello"]}"#),
        expect: Expect::Job(JobStatus::Succeeded),
        after: &[("lpm-test-hello", Some("2.0-1"))],
    },
    Case {
        what: "a broken dependency is reported on its package",
        only: Only::All,
        method: "POST",
        path: "/packages",
        body: Some(r#"{"packages":[{"name":"lpm-test-missing"}]}"#),
        expect: Expect::FailsNaming {
            package: "lpm-test-missing",
            cause: "lpm-test-nowhere",
        },
        after: &[
            ("lpm-test-missing", None),
            ("lpm-test-hello", Some("2.0-1")),
        ],
    },
    Case {
        what: "an update of a package that is not installed fails clearly",
        only: Only::All,
        method: "PUT",
        path: "/packages/lpm-test-lib",
        body: None,
        expect: Expect::Job(JobStatus::Failed),
        after: &[("lpm-test-lib", None)],
    },
    Case {
        what: "a wildcard name is refused",
        only: Only::All,
        method: "POST",
        path: "/packages",
        body: Some(r#"{"packages":[{"name":"lpm-test-*"}]}"#),
        expect: Expect::Refused(400, "invalid_package_name"),
        after: &[],
    },
    Case {
        what: "an option as a name is refused",
        only: Only::All,
        method: "DELETE",
        path: "/packages/--all",
        body: None,
        expect: Expect::Refused(400, "invalid_package_name"),
        after: &[],
    },
    Case {
        what: "a version with shell text is refused",
        only: Only::All,
        method: "POST",
        path: "/packages",
        body: Some(r#"{"packages":[{"name":"lpm-test-hello","version":"1.0-1;id"}]}"#),
        expect: Expect::Refused(400, "invalid_version"),
        after: &[],
    },
    Case {
        what: "a version without its release is refused",
        only: Only::All,
        method: "PUT",
        path: "/packages/lpm-test-hello",
        body: Some(r#"{"version":"1.0 -1"}"#),
        expect: Expect::Refused(400, "invalid_version"),
        after: &[("lpm-test-hello", Some("2.0-1"))],
    },
];

async fn contract(family: Family) {
    let root = FamilyRoot::new(family);
    let ca = Ca::new("Fleet CA");
    let files = AgentFiles::new(
        &ca,
        &ca.leaf("agent.test", 1, true, 90),
        None,
        &["127.0.0.1"],
    );
    let (agent, _audit, _jobs) =
        start_agent_with(&files, root.backend(), 5, Duration::from_secs(300));
    let api = Api::new(&ca, agent.addr);
    let fam = family.name();

    let mut prev = String::new();
    for case in CASES {
        let applies = match case.only {
            Only::All => true,
            Only::WithSecurity => family.has_security_metadata(),
            Only::WithoutSecurity => !family.has_security_metadata(),
        };
        if !applies {
            continue;
        }
        let path = case.path.replace("{prev}", &prev);
        let (status, body) = api.call(case.method, &path, case.body).await;
        let what = format!("{fam}: {}", case.what);
        match case.expect {
            Expect::Refused(code, error) => {
                assert_eq!(status, code, "{what}: {body}");
                assert_eq!(body["error"]["code"], error, "{what}: {body}");
                let message = body["error"]["message"].as_str().unwrap();
                assert!(
                    message.contains(fam),
                    "{what}: the rule names the family: {message}"
                );
            }
            Expect::Job(want) => {
                assert_eq!(status, 202, "{what}: {body}");
                let id = body["job_id"].as_str().unwrap().to_owned();
                let job = api.wait(&id).await;
                assert_eq!(job.status, want, "{what}: {job:#?}");
                if want == JobStatus::Succeeded {
                    assert!(
                        job.results
                            .iter()
                            .all(|r| r.outcome != PackageOutcome::Failed),
                        "{what}: {job:#?}"
                    );
                }
                prev = id;
            }
            Expect::FailsNaming { package, cause } => {
                assert_eq!(status, 202, "{what}: {body}");
                let id = body["job_id"].as_str().unwrap().to_owned();
                let job = api.wait(&id).await;
                assert_eq!(job.status, JobStatus::Failed, "{what}: {job:#?}");
                let result = job
                    .results
                    .iter()
                    .find(|r| r.name == package)
                    .unwrap_or_else(|| panic!("{what}: no result for {package}: {job:#?}"));
                assert_eq!(result.outcome, PackageOutcome::Failed, "{what}");
                let message = result.message.as_deref().unwrap_or_default();
                assert!(message.contains(cause), "{what}: {message:?}");
                prev = id;
            }
        }
        for (name, version) in case.after {
            assert_eq!(
                root.version(name).as_deref(),
                *version,
                "{what}: version of {name}"
            );
            assert_eq!(
                root.has_file_of(name),
                version.is_some(),
                "{what}: files of {name} on disk"
            );
        }
    }
}

/// The read paths agree with the tool, and updates carry the family's security metadata.
async fn read_paths(family: Family) {
    let root = FamilyRoot::new(family);
    let ca = Ca::new("Fleet CA");
    let files = AgentFiles::new(
        &ca,
        &ca.leaf("agent.test", 1, true, 90),
        None,
        &["127.0.0.1"],
    );
    let (agent, _audit, _jobs) =
        start_agent_with(&files, root.backend(), 5, Duration::from_secs(300));
    let api = Api::new(&ca, agent.addr);
    let fam = family.name();
    let id = api
        .submit(
            "POST",
            "/packages",
            Some(r#"{"packages":[{"name":"lpm-test-hello","version":"1.0-1"},{"name":"lpm-test-secure","version":"1.0-1"}]}"#),
        )
        .await;
    assert_eq!(api.wait(&id).await.status, JobStatus::Succeeded, "{fam}");

    let one = api.get("/packages/lpm-test-hello").await;
    assert_eq!(one["packages"][0]["version"], "1.0-1", "{fam}: {one}");
    let all = api.get("/packages").await;
    let names: Vec<&str> = all["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&HELLO) && names.contains(&"lpm-test-secure"),
        "{fam}: {names:?}"
    );

    let patches: PatchList = serde_json::from_value(api.get("/patches").await).unwrap();
    let hello = patches.patches.iter().find(|p| p.name == HELLO).unwrap();
    assert_eq!(
        (
            hello.installed_version.as_str(),
            hello.candidate_version.as_str(),
            hello.security
        ),
        ("1.0-1", "2.0-1", false),
        "{fam}"
    );
    let secure = patches
        .patches
        .iter()
        .find(|p| p.name == "lpm-test-secure")
        .unwrap();
    assert_eq!(secure.candidate_version, "1.0-2", "{fam}");
    assert_eq!(secure.security, family.has_security_metadata(), "{fam}");
    if family.has_security_metadata() {
        assert_eq!(
            patches.patches[0].name, "lpm-test-secure",
            "{fam}: security first"
        );
        assert_eq!(secure.cves, ["CVE-2026-0001", "CVE-2026-0002"], "{fam}");
    }
    if matches!(family, Family::Dnf | Family::Zypper) {
        assert_eq!(secure.severity.as_deref(), Some("Important"), "{fam}");
    }
    let info = api.get("/system/info").await;
    assert_eq!(info["package_manager"], fam, "{info}");
}

#[actix_rt::test]
async fn apt_keeps_the_contract() {
    contract(Family::Apt).await;
}

#[actix_rt::test]
async fn dnf_keeps_the_contract() {
    contract(Family::Dnf).await;
}

#[actix_rt::test]
async fn zypper_keeps_the_contract() {
    contract(Family::Zypper).await;
}

#[actix_rt::test]
async fn pacman_keeps_the_contract() {
    contract(Family::Pacman).await;
}

#[actix_rt::test]
async fn read_paths_agree_with_each_tool() {
    for family in [Family::Apt, Family::Dnf, Family::Zypper, Family::Pacman] {
        read_paths(family).await;
    }
}
