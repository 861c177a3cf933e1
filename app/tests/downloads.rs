//! The agent package behind the one-line install of "Add a host": served as stored, named with
//! its SHA-256 in the command an Admin gets with a token; without a package, no such command and
//! a JSON 404. (The command itself is run for real in scripts/test-packages.sh.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bearer_for, call, setup_admin, test_config, Engine, TestDb};
use sha2::Digest;

async fn token_answer(package: Option<&[u8]>) -> (serde_json::Value, Option<Vec<u8>>) {
    let db = TestDb::new(Engine::Sqlite);
    let mut config = test_config(&db);
    let file = db.dir.path().join("patch-agent.deb");
    if let Some(bytes) = package {
        std::fs::write(&file, bytes).unwrap();
    }
    config.server.agent_package = file;
    let server = patch_manager::server::start(config.clone()).await.unwrap();
    let base = format!("http://{}", server.addr);
    setup_admin(&base, &config.data.dir).await;
    let admin = bearer_for(&base, "admin", "tangerine-Orbit-42").await;
    let a = call(
        "POST",
        &format!("{base}/api/v1/enrollment-tokens"),
        &admin,
        Some(serde_json::json!({})),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let c = awc::Client::default();
    let mut res = c
        .get(format!("{base}/downloads/patch-agent.deb"))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body = res.body().limit(1 << 20).await.unwrap().to_vec();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    server.stop().await;
    let served = (status == 200).then_some(body.clone());
    if status != 200 {
        assert_eq!(status, 404);
        assert!(ct.starts_with("application/json"), "{ct}");
        let envelope: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(envelope["error"]["code"], "not_found", "{envelope}");
    } else {
        assert_eq!(ct, "application/vnd.debian.binary-package");
    }
    (a.body, served)
}

#[actix_rt::test]
async fn the_install_command_names_the_served_package_by_its_digest() {
    let package = b"!<arch>\nnot really a package, but bytes to serve\n".to_vec();
    let (created, served) = token_answer(Some(&package)).await;
    assert_eq!(served.as_deref(), Some(package.as_slice()));
    let sha = hex::encode(sha2::Sha256::digest(&package));
    let install = created["install_command"].as_str().unwrap();
    let token = created["token"].as_str().unwrap();
    assert!(
        install.contains(&format!(
            "echo \"{sha}  $d/patch-agent.deb\" | sha256sum -c"
        )),
        "{install}"
    );
    // The manager as hosts reach it (server.public_url, else the first public name and the
    // configured port).
    assert!(
        install.starts_with(
            "d=$(mktemp -d) && curl -fsSk -o \"$d/patch-agent.deb\" https://localhost:"
        ) && install.contains("/downloads/patch-agent.deb && ")
            && !install.contains("/tmp/"),
        "{install}"
    );
    // The token goes on standard input, never as an argument of patch-agent.
    assert!(
        install.contains(&format!("echo {token} | patch-agent enroll")),
        "{install}"
    );
    assert!(!install.contains("--token "), "{install}");
    assert!(
        install.ends_with("systemctl enable --now patch-agent"),
        "{install}"
    );
}

#[actix_rt::test]
async fn without_a_package_there_is_only_the_enroll_command() {
    let (created, served) = token_answer(None).await;
    assert!(served.is_none());
    assert!(created["install_command"].is_null(), "{created}");
    assert!(created["command"]
        .as_str()
        .unwrap()
        .contains("patch-agent enroll"));
}
