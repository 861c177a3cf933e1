//! `GET /api/v1/audit` on both engines: newest first, paged, filtered by actor (a user name or an
//! actor as recorded), action (exact or a family ending in a dot), host and time; bad filters
//! refused naming the field; the chain's state beside the records, broken when it is.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bearer_for, call, setup_admin, test_config, TestDb, BACKENDS};
use diesel::prelude::*;
use patch_manager::db::audit::{NewAuditEntry, Outcome};
use patch_manager::db::schema::audit_log;
use serde_json::Value;

fn ids(page: &Value) -> Vec<i64> {
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect()
}

#[actix_rt::test]
async fn the_audit_log_is_filtered_paged_and_says_whether_its_chain_holds() {
    for engine in BACKENDS {
        let db = TestDb::new(engine);
        let config = test_config(&db);
        let server = patch_manager::server::start(config.clone()).await.unwrap();
        let base = format!("http://{}", server.addr);
        setup_admin(&base, &config.data.dir).await;
        let admin = bearer_for(&base, "admin", "tangerine-Orbit-42").await;
        let state = server.state.clone();
        for (i, (action, host)) in [
            ("job.created", 7),
            ("job.finished", 7),
            ("job.created", 8),
            ("host.removed", 7),
        ]
        .into_iter()
        .enumerate()
        {
            let entry = NewAuditEntry::new("user:1", action, Outcome::Success)
                .target(format!("host:{host}"))
                .details(serde_json::json!({ "n": i }));
            state.audit.record(entry).await.unwrap();
        }
        let get = |q: &str| {
            let url = format!("{base}/api/v1/audit{q}");
            let admin = admin.clone();
            async move { call("GET", &url, &admin, None).await }
        };

        // Everything, newest first, with the chain verified up to the newest record.
        let all = get("").await;
        assert_eq!(all.status, 200, "{engine:?}: {}", all.body);
        let total = all.body["total"].as_i64().unwrap();
        assert_eq!(all.body["records"], total);
        let newest = ids(&all.body);
        assert!(newest.windows(2).all(|w| w[0] > w[1]), "{newest:?}");
        assert_eq!(all.body["chain"]["state"], "intact");
        assert!(all.body["chain"]["records"].as_i64().unwrap() >= newest[0]);
        // The user behind `user:1` is named.
        let first = &all.body["entries"][0];
        assert_eq!(first["action"], "host.removed");
        assert_eq!(first["actor_name"], "admin");

        // Pages of two: no record twice, none skipped.
        let mut seen = Vec::new();
        for page in 1..=((total + 1) / 2) {
            let p = get(&format!("?per_page=2&page={page}")).await;
            assert_eq!(p.body["per_page"], 2);
            seen.extend(ids(&p.body));
        }
        assert_eq!(seen, newest, "{engine:?}");

        // Filters, alone and together.
        let jobs = get("?action=job.").await;
        assert_eq!(jobs.body["total"], 3, "{}", jobs.body);
        let created = get("?action=job.created&host=7").await;
        assert_eq!(created.body["total"], 1, "{}", created.body);
        let by_name = get("?actor=admin&action=job.").await;
        assert_eq!(
            by_name.body["total"], 3,
            "a user name means their user:<id>"
        );
        let by_actor = get("?actor=user%3A1&host=7").await;
        assert_eq!(by_actor.body["total"], 3);
        // A LIKE wildcard in a family is literal.
        assert_eq!(get("?action=j%25.").await.body["total"], 0);
        let today = chrono::Utc::now().date_naive();
        let day = get(&format!("?since={today}&until={today}&action=host.removed")).await;
        assert_eq!(day.body["total"], 1, "{}", day.body);
        let later = get(&format!("?since={}", today.succ_opt().unwrap())).await;
        assert_eq!(later.body["total"], 0);

        // Bad filters are refused, naming the field.
        for (q, field) in [
            ("?per_page=0", "per_page"),
            ("?per_page=201", "per_page"),
            ("?page=0", "page"),
            ("?since=yesterday", "since"),
            ("?until=2026-13-40", "until"),
            ("?actor=%01x", "actor"),
        ] {
            let r = get(q).await;
            assert_eq!(r.status, 400, "{q}: {}", r.body);
            assert_eq!(r.body["error"]["details"]["field"], field, "{q}");
        }
        let r = get("?host=abc").await;
        assert_eq!(r.status, 400, "{}", r.body);

        // A record edited behind the manager's back: after the next full check the page says
        // where the chain breaks.
        {
            let mut conn = state.db.conn().unwrap();
            diesel::update(audit_log::table.filter(audit_log::id.eq(2)))
                .set(audit_log::actor.eq("mallory"))
                .execute(&mut *conn)
                .unwrap();
        }
        state.audit.verify().await.unwrap();
        let broken = get("?per_page=1").await;
        assert_eq!(broken.body["chain"]["state"], "broken", "{}", broken.body);
        assert_eq!(broken.body["chain"]["id"], 2);
        server.stop().await;
    }
}
