//! User administration on a real manager: create, validation, role and group changes, disable,
//! force sign-out, password reset, delete, and the guards that keep one Admin able to sign in.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{call, setup_admin, test_config, Engine, TestDb};
use serde_json::{json, Value};

async fn api_login(base: &str, user: &str, pw: &str) -> (u16, Value) {
    let a = call(
        "POST",
        &format!("{base}/api/v1/auth/login"),
        &[],
        Some(json!({ "username": user, "password": pw, "client": "api" })),
    )
    .await;
    (a.status, a.body)
}

fn bearer(v: &Value) -> Vec<(&'static str, String)> {
    vec![(
        "authorization",
        format!("Bearer {}", v["access_token"].as_str().unwrap()),
    )]
}

#[actix_rt::test]
async fn admins_manage_users_and_cannot_lock_themselves_out() {
    let db = TestDb::new(Engine::Postgres);
    let config = test_config(&db);
    let server = patch_manager::server::start(config.clone()).await.unwrap();
    let base = format!("http://{}", server.addr);
    setup_admin(&base, &config.data.dir).await;
    let (_, s) = api_login(&base, "admin", "tangerine-Orbit-42").await;
    let admin = bearer(&s);
    let users = format!("{base}/api/v1/users");

    let g = call(
        "POST",
        &format!("{base}/api/v1/groups"),
        &admin,
        Some(json!({ "name": "web", "description": "web servers" })),
    )
    .await;
    assert_eq!(g.status, 201, "{}", g.body);
    let group = g.body["id"].as_i64().unwrap();
    let dup = call(
        "POST",
        &format!("{base}/api/v1/groups"),
        &admin,
        Some(json!({ "name": "web" })),
    )
    .await;
    assert_eq!(dup.status, 409);

    // Hostile and malformed input: each refused with the field named, nothing created.
    for (body, field) in [
        (
            json!({ "username": "Robert'); DROP TABLE users;--", "password": "cobalt-Harbour-77", "role": "operator" }),
            "username",
        ),
        (
            json!({ "username": "bob", "password": "short", "role": "operator" }),
            "password",
        ),
        (
            json!({ "username": "bob", "password": "cobalt-Harbour-77", "role": "root" }),
            "role",
        ),
        (
            json!({ "username": "bob", "password": "cobalt-Harbour-77", "role": "operator", "email": "not-mail" }),
            "email",
        ),
        (
            json!({ "username": "bob", "password": "cobalt-Harbour-77", "role": "operator", "group_ids": [424242] }),
            "group_ids",
        ),
        (
            json!({ "username": "bob", "password": "cobalt-Harbour-77", "role": "operator", "display_name": "a\u{0}b" }),
            "display_name",
        ),
    ] {
        let a = call("POST", &users, &admin, Some(body)).await;
        assert_eq!(a.status, 400, "{}", a.body);
        assert_eq!(a.body["error"]["details"]["field"], field, "{}", a.body);
    }
    let wrong_type = call(
        "POST",
        &users,
        &admin,
        Some(json!({ "username": 5, "password": [], "role": "operator" })),
    )
    .await;
    assert_eq!(wrong_type.status, 400);
    let unknown = call("POST", &users, &admin, Some(json!({ "username": "bob", "password": "cobalt-Harbour-77", "role": "operator", "is_admin": true }))).await;
    assert_eq!(unknown.status, 400, "unknown fields are refused");
    let list = call("GET", &users, &admin, None).await;
    assert_eq!(
        list.body.as_array().unwrap().len(),
        1,
        "nothing was created"
    );

    // Create an Operator in the group; they sign in and see their scope.
    let a = call(
        "POST",
        &users,
        &admin,
        Some(
            json!({ "username": "bob", "display_name": "Bob", "email": "bob@example.test",
                     "password": "cobalt-Harbour-77", "role": "operator", "group_ids": [group] }),
        ),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["group_ids"], json!([group]));
    let bob_id = a.body["id"].as_i64().unwrap();
    let again = call(
        "POST",
        &users,
        &admin,
        Some(json!({ "username": "bob", "password": "cobalt-Harbour-77", "role": "operator" })),
    )
    .await;
    assert_eq!(again.status, 409);
    let (st, bs) = api_login(&base, "bob", "cobalt-Harbour-77").await;
    assert_eq!(st, 200);
    let bob = bearer(&bs);
    assert_eq!(call("GET", &users, &bob, None).await.status, 403);
    let groups = call("GET", &format!("{base}/api/v1/groups"), &bob, None).await;
    assert_eq!(groups.body.as_array().unwrap().len(), 1);

    // Promotion applies at once (the role is read per request), demotion ends sessions.
    let bob_url = format!("{users}/{bob_id}");
    let p = call("PATCH", &bob_url, &admin, Some(json!({ "role": "admin" }))).await;
    assert_eq!((p.status, p.body["role"].as_str()), (200, Some("admin")));
    assert_eq!(call("GET", &users, &bob, None).await.status, 200);
    let p = call(
        "PATCH",
        &bob_url,
        &admin,
        Some(json!({ "role": "operator" })),
    )
    .await;
    assert_eq!(p.status, 200);
    assert_eq!(
        call("GET", &format!("{base}/api/v1/auth/me"), &bob, None)
            .await
            .status,
        401
    );

    // Force sign-out ends every session of the user.
    let (_, bs) = api_login(&base, "bob", "cobalt-Harbour-77").await;
    let bob = bearer(&bs);
    let f = call("POST", &format!("{bob_url}/logout"), &admin, None).await;
    assert_eq!(f.status, 204);
    assert_eq!(
        call("GET", &format!("{base}/api/v1/auth/me"), &bob, None)
            .await
            .status,
        401
    );
    let refresh = call(
        "POST",
        &format!("{base}/api/v1/auth/refresh"),
        &[],
        Some(json!({ "refresh_token": bs["refresh_token"] })),
    )
    .await;
    assert_eq!(refresh.status, 401, "refresh of a force-ended session");

    // A new password ends sessions and works; the old one does not.
    let (_, bs) = api_login(&base, "bob", "cobalt-Harbour-77").await;
    let p = call(
        "PATCH",
        &bob_url,
        &admin,
        Some(json!({ "password": "violet-Canyon-31" })),
    )
    .await;
    assert_eq!(p.status, 200);
    assert_eq!(
        call("GET", &format!("{base}/api/v1/auth/me"), &bearer(&bs), None)
            .await
            .status,
        401
    );
    assert_eq!(api_login(&base, "bob", "cobalt-Harbour-77").await.0, 401);
    assert_eq!(api_login(&base, "bob", "violet-Canyon-31").await.0, 200);

    // Disabled: cannot sign in; enabled again: can.
    let p = call("PATCH", &bob_url, &admin, Some(json!({ "disabled": true }))).await;
    assert_eq!((p.status, p.body["disabled"].as_bool()), (200, Some(true)));
    assert_eq!(api_login(&base, "bob", "violet-Canyon-31").await.0, 401);
    call(
        "PATCH",
        &bob_url,
        &admin,
        Some(json!({ "disabled": false })),
    )
    .await;
    assert_eq!(api_login(&base, "bob", "violet-Canyon-31").await.0, 200);

    // The last enabled Admin can be neither demoted, disabled nor deleted.
    let me_id = s["user_id"].as_i64().unwrap();
    let me_url = format!("{users}/{me_id}");
    for body in [json!({ "role": "operator" }), json!({ "disabled": true })] {
        let a = call("PATCH", &me_url, &admin, Some(body)).await;
        assert_eq!(a.status, 409, "{}", a.body);
    }
    assert_eq!(call("DELETE", &me_url, &admin, None).await.status, 409);
    assert_eq!(
        call("PATCH", &format!("{users}/999999"), &admin, Some(json!({})))
            .await
            .status,
        404
    );

    // Delete Bob: gone, sessions and all.
    let d = call("DELETE", &bob_url, &admin, None).await;
    assert_eq!(d.status, 204);
    assert_eq!(call("DELETE", &bob_url, &admin, None).await.status, 404);
    assert_eq!(api_login(&base, "bob", "violet-Canyon-31").await.0, 401);

    // Every change is in the audit log with the admin as the actor.
    let rows: Vec<(String, String)> = {
        use diesel::prelude::*;
        use patch_manager::db::schema::audit_log as l;
        let mut c = server.state.db.conn().unwrap();
        l::table
            .select((l::actor, l::action))
            .load(&mut *c)
            .unwrap()
    };
    for action in [
        "group.created",
        "user.created",
        "user.updated",
        "session.force_logout",
        "user.deleted",
    ] {
        assert!(
            rows.iter()
                .any(|(actor, a)| a == action && *actor == format!("user:{me_id}")),
            "{action} not audited as the admin"
        );
    }
    server.stop().await;
}
