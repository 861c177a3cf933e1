//! First-run setup on both engines: a one-time token in a 0600 file, no default password, the
//! first Admin created once with an Argon2id hash, the token dead afterwards, every attempt audited.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{test_config, TestDb, BACKENDS};
use diesel::prelude::*;
use patch_manager::db::schema::{audit_log, users};
use std::os::unix::fs::PermissionsExt;

fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .finish()
}

async fn post(base: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let mut res = client()
        .post(format!("{base}/api/v1/setup"))
        .send_json(&body)
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(serde_json::Value::Null))
}

#[actix_rt::test]
async fn first_admin_is_created_once_with_the_one_time_token() {
    for engine in BACKENDS {
        let db = TestDb::new(engine);
        let config = test_config(&db);
        let token_file = config.data.dir.join("setup-token");
        let server = patch_manager::server::start(config.clone()).await.unwrap();
        let base = format!("http://{}", server.addr);
        assert_eq!(
            std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let token = std::fs::read_to_string(&token_file)
            .unwrap()
            .trim()
            .to_owned();
        assert_eq!(token.len(), 48);
        let mut res = client()
            .get(format!("{base}/api/v1/setup"))
            .send()
            .await
            .unwrap();
        assert!(
            res.json::<shared::auth::SetupStatus>()
                .await
                .unwrap()
                .required
        );

        let body = |token: &str, password: &str| serde_json::json!({ "token": token, "username": "root-admin", "display_name": "Ops", "password": password });
        let (status, v) = post(&base, body(&"0".repeat(48), "tangerine-Orbit-42")).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{engine:?} {v}"
        );
        let (status, v) = post(&base, body(&token, "short")).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (400, Some("validation_failed")),
            "{v}"
        );
        let (status, v) = post(&base, serde_json::json!({ "token": token, "username": "Bad Name", "password": "tangerine-Orbit-42" })).await;
        assert_eq!(status, 400, "{v}");
        let (status, v) = post(
            &base,
            serde_json::json!({ "token": token, "username": "x", "password": 5 }),
        )
        .await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (400, Some("invalid_json")),
            "{v}"
        );

        // The failures above did not use the token up.
        let (status, v) = post(&base, body(&token, "tangerine-Orbit-42")).await;
        assert_eq!(status, 201, "{engine:?} {v}");
        assert!(!token_file.exists(), "the token file is removed once used");
        let (status, v) = post(&base, body(&token, "tangerine-Orbit-42")).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (410, Some("gone")),
            "the token is dead: {v}"
        );

        let mut conn = server.state.db.conn().unwrap();
        let (role, hash): (String, Option<String>) = users::table
            .select((users::role, users::password_hash))
            .first(&mut *conn)
            .unwrap();
        assert_eq!(role, "admin");
        let hash = hash.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=65536,t=3,p=1$"),
            "{hash}"
        );
        assert!(patch_manager::auth::password::verify(
            "tangerine-Orbit-42",
            &hash
        ));
        let outcomes: Vec<String> = audit_log::table
            .filter(audit_log::action.eq("setup.first_admin"))
            .order(audit_log::id.asc())
            .select(audit_log::outcome)
            .load(&mut *conn)
            .unwrap();
        assert_eq!(
            outcomes,
            ["denied", "failure", "failure", "success", "failure"],
            "{engine:?}"
        );
        server.stop().await;

        // A restart with an administrator present opens no setup.
        let server = patch_manager::server::start(config).await.unwrap();
        assert!(!server.state.setup.required());
        assert!(!token_file.exists());
        server.stop().await;
    }
}
