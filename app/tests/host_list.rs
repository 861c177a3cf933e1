//! The hosts list is filtered, sorted and paged in the database, within the caller's scope, and
//! refuses a bad query with a precise answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bearer_for, call, setup_admin, test_config, Engine, TestDb};
use diesel::prelude::*;
use patch_manager::db::schema::{host_group_members, hosts};
use serde_json::{json, Value};

#[actix_rt::test]
async fn hosts_are_filtered_sorted_and_paged_within_scope() {
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let db = TestDb::new(engine);
        let config = test_config(&db);
        let server = patch_manager::server::start(config.clone()).await.unwrap();
        let base = format!("http://{}", server.addr);
        setup_admin(&base, &config.data.dir).await;
        let admin = bearer_for(&base, "admin", "tangerine-Orbit-42").await;
        let group = call(
            "POST",
            &format!("{base}/api/v1/groups"),
            &admin,
            Some(json!({ "name": "web" })),
        )
        .await
        .body["id"]
            .as_i64()
            .unwrap();

        // 250 hosts: every 5th unreachable, every 7th with security updates (as many as its
        // number), every 10th on rocky, the first 30 in the web group.
        let now = server.state.clock.now();
        let mut conn = server.state.db.conn().unwrap();
        for i in 1..=250_i64 {
            let port = 20_000 + i32::try_from(i).unwrap();
            let id = common::insert_host(&mut conn, &format!("h{i:03}"), port, now);
            diesel::update(hosts::table.filter(hosts::id.eq(id)))
                .set((
                    hosts::status.eq(if i % 5 == 0 { "unreachable" } else { "healthy" }),
                    hosts::pending_security_patches.eq(if i % 7 == 0 { i } else { 0 }),
                    hosts::os_id.eq(if i % 10 == 0 { "rocky" } else { "debian" }),
                ))
                .execute(&mut *conn)
                .unwrap();
            if i <= 30 {
                diesel::insert_into(host_group_members::table)
                    .values((
                        host_group_members::host_id.eq(id),
                        host_group_members::group_id.eq(group),
                        host_group_members::created_at.eq(now),
                    ))
                    .execute(&mut *conn)
                    .unwrap();
            }
        }
        drop(conn);
        let list = |query: &str, who: [(&'static str, String); 1]| {
            let url = format!("{base}/api/v1/hosts{query}");
            async move { call("GET", &url, &who, None).await }
        };
        let names = |page: &Value| -> Vec<String> {
            page["hosts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["display_name"].as_str().unwrap().to_owned())
                .collect()
        };

        // Default: by name, 100 a page.
        let a = list("", admin.clone()).await;
        assert_eq!(
            (a.body["total"].as_i64(), a.body["per_page"].as_i64()),
            (Some(250), Some(100))
        );
        assert_eq!(names(&a.body)[0], "h001");
        let a = list("?per_page=50&page=3", admin.clone()).await;
        assert_eq!(names(&a.body).first().map(String::as_str), Some("h101"));
        assert_eq!(names(&a.body).len(), 50);
        let a = list("?per_page=100&page=3", admin.clone()).await;
        assert_eq!(names(&a.body).len(), 50, "the last page holds the rest");

        // Filters, alone and together.
        assert_eq!(
            list("?status=unreachable", admin.clone()).await.body["total"],
            50
        );
        assert_eq!(
            list("?security=true", admin.clone()).await.body["total"],
            35
        );
        assert_eq!(
            list("?security=false", admin.clone()).await.body["total"],
            215
        );
        assert_eq!(list("?os=rocky", admin.clone()).await.body["total"], 25);
        assert_eq!(
            list(&format!("?group={group}"), admin.clone()).await.body["total"],
            30
        );
        assert_eq!(
            list("?status=unreachable&os=rocky&security=true", admin.clone())
                .await
                .body["total"],
            3,
            "70, 140, 210"
        );
        assert_eq!(
            list("?q=h12", admin.clone()).await.body["total"],
            10,
            "h120 .. h129"
        );
        assert_eq!(
            list("?q=H12", admin.clone()).await.body["total"],
            10,
            "any case"
        );
        // Text is matched literally: wildcards and quotes are not SQL.
        assert_eq!(list("?q=%25", admin.clone()).await.body["total"], 0);
        assert_eq!(list("?q=h_0", admin.clone()).await.body["total"], 0);
        assert_eq!(
            list("?q=%27%20OR%201%3D1%20--", admin.clone()).await.body["total"],
            0
        );

        // Sorting: most security updates first.
        let a = list("?sort=updates&desc=true&per_page=3", admin.clone()).await;
        assert_eq!(names(&a.body), ["h245", "h238", "h231"]);

        // Bad queries: precise answers.
        let a = list("?per_page=0", admin.clone()).await;
        assert_eq!(
            (a.status, a.body["error"]["details"]["field"].as_str()),
            (400, Some("per_page"))
        );
        let a = list("?per_page=501", admin.clone()).await;
        assert_eq!(a.status, 400);
        let a = list("?page=0", admin.clone()).await;
        assert_eq!(a.body["error"]["details"]["field"], "page");
        let a = list("?status=exploded", admin.clone()).await;
        assert_eq!(a.status, 400, "{}", a.body);
        assert_eq!(a.body["error"]["code"], "invalid_query", "{}", a.body);
        assert!(a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exploded"));
        let a = list("?colour=blue", admin.clone()).await;
        assert_eq!(a.status, 400, "unknown parameters are refused");
        let a = list(&format!("?q={}", "x".repeat(201)), admin.clone()).await;
        assert_eq!(a.body["error"]["details"]["field"], "q");

        // An Operator of the web group: 30 hosts, whatever the filters ask for.
        let a = call(
            "POST",
            &format!("{base}/api/v1/users"),
            &admin,
            Some(
                json!({ "username": "webop", "display_name": "Web", "role": "operator",
                         "password": "Correct-Horse-77-battery", "group_ids": [group] }),
            ),
        )
        .await;
        assert_eq!(a.status, 201, "{}", a.body);
        let op = bearer_for(&base, "webop", "Correct-Horse-77-battery").await;
        assert_eq!(list("", op.clone()).await.body["total"], 30);
        assert_eq!(
            list("?status=unreachable", op.clone()).await.body["total"],
            6
        );
        assert_eq!(
            list("?q=02", op.clone()).await.body["total"],
            11,
            "h002, h020 .. h029"
        );
        server.stop().await;
    }
}
