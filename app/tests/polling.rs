//! Poll intervals set in Settings: checked per field, stored, applied to the host actors' supervisor
//! at once, kept across a restart, audited.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bearer_for, call, setup_admin, test_config, Engine, TestDb};
use patch_manager::fleet::supervisor::CurrentIntervals;
use serde_json::json;
use std::time::Duration;

#[actix_rt::test]
async fn intervals_set_in_settings_apply_at_once_and_persist() {
    let db = TestDb::new(Engine::Sqlite);
    let config = test_config(&db);
    let server = patch_manager::server::start(config.clone()).await.unwrap();
    let base = format!("http://{}", server.addr);
    setup_admin(&base, &config.data.dir).await;
    let admin = bearer_for(&base, "admin", "tangerine-Orbit-42").await;
    let url = format!("{base}/api/v1/settings/polling");

    // Nothing saved: the configuration's intervals.
    let a = call("GET", &url, &admin, None).await;
    assert_eq!(
        a.body,
        json!({ "health_interval_secs": 86400, "inventory_interval_secs": 1800 })
    );
    // Out of range: refused, naming the field, nothing changed.
    let a = call(
        "PUT",
        &url,
        &admin,
        Some(json!({ "health_interval_secs": 5, "inventory_interval_secs": 600 })),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.body["error"]["details"]["field"], "health_interval_secs");
    let a = call(
        "PUT",
        &url,
        &admin,
        Some(json!({ "health_interval_secs": 60, "inventory_interval_secs": 10 })),
    )
    .await;
    assert_eq!(
        a.body["error"]["details"]["field"],
        "inventory_interval_secs"
    );
    // Saved: the supervisor (and through it every host actor) has the new intervals.
    let a = call(
        "PUT",
        &url,
        &admin,
        Some(json!({ "health_interval_secs": 60, "inventory_interval_secs": 600 })),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let now = server
        .state
        .fleet
        .supervisor
        .send(CurrentIntervals)
        .await
        .unwrap();
    assert_eq!(
        (now.health, now.inventory),
        (Duration::from_secs(60), Duration::from_secs(600))
    );
    server.stop().await;

    // A restart keeps them.
    let server = patch_manager::server::start(config).await.unwrap();
    let now = server
        .state
        .fleet
        .supervisor
        .send(CurrentIntervals)
        .await
        .unwrap();
    assert_eq!(now.health, Duration::from_secs(60));
    use diesel::prelude::*;
    use patch_manager::db::schema::audit_log as al;
    let changes: i64 = al::table
        .filter(al::action.eq("settings.polling_changed"))
        .count()
        .get_result(&mut *server.state.db.conn().unwrap())
        .unwrap();
    assert_eq!(changes, 1);
    server.stop().await;
}
