//! Groups and membership (Admins): rename, delete, and a host's groups replaced at once; an
//! Operator's view follows the membership.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bearer_for, call, setup_admin, test_config, Engine, TestDb};
use serde_json::json;

#[actix_rt::test]
async fn groups_and_membership_decide_what_an_operator_sees() {
    let db = TestDb::new(Engine::Sqlite);
    let config = test_config(&db);
    let server = patch_manager::server::start(config.clone()).await.unwrap();
    let base = format!("http://{}", server.addr);
    setup_admin(&base, &config.data.dir).await;
    let admin = bearer_for(&base, "admin", "tangerine-Orbit-42").await;
    let group = |name: &str| {
        let (base, admin, name) = (base.clone(), admin.clone(), name.to_owned());
        async move {
            let a = call(
                "POST",
                &format!("{base}/api/v1/groups"),
                &admin,
                Some(json!({ "name": name })),
            )
            .await;
            assert_eq!(a.status, 201, "{}", a.body);
            a.body["id"].as_i64().unwrap()
        }
    };
    let (web, db_group) = (group("web").await, group("db").await);
    let host = common::insert_host(
        &mut server.state.db.conn().unwrap(),
        "www1",
        9,
        server.state.clock.now(),
    );
    let a = call(
        "POST",
        &format!("{base}/api/v1/users"),
        &admin,
        Some(json!({ "username": "webop", "display_name": "Web operator",
                     "password": "Correct-Horse-77-battery", "role": "operator",
                     "group_ids": [web] })),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let op_id = a.body["id"].as_i64().unwrap();
    let op = bearer_for(&base, "webop", "Correct-Horse-77-battery").await;
    let host_url = format!("{base}/api/v1/hosts/{host}");
    let groups_url = format!("{host_url}/groups");
    assert_eq!(call("GET", &host_url, &op, None).await.status, 404);

    // The host joins both groups: the web Operator sees it.
    let a = call(
        "PUT",
        &groups_url,
        &admin,
        Some(json!({ "group_ids": [web, db_group, web] })),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["group_ids"], json!([web, db_group]));
    let seen = call("GET", &host_url, &op, None).await;
    assert_eq!(seen.status, 200);
    assert_eq!(
        seen.body["groups"],
        json!(["web"]),
        "an Operator sees only their groups' names"
    );

    // An unknown group: refused, naming the field, membership unchanged.
    let a = call(
        "PUT",
        &groups_url,
        &admin,
        Some(json!({ "group_ids": [db_group, 999] })),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.body["error"]["details"]["field"], "group_ids");
    let all = call("GET", &host_url, &admin, None).await;
    assert_eq!(all.body["groups"], json!(["db", "web"]));

    // Renaming: a taken name is refused; a free one is kept.
    let web_url = format!("{base}/api/v1/groups/{web}");
    let a = call("PATCH", &web_url, &admin, Some(json!({ "name": "db" }))).await;
    assert_eq!(a.status, 409, "{}", a.body);
    let a = call(
        "PATCH",
        &web_url,
        &admin,
        Some(json!({ "name": "frontends", "description": "Public web servers" })),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        (a.body["name"].as_str(), a.body["hosts"].as_i64()),
        (Some("frontends"), Some(1))
    );

    // Deleting the group: the host stays (in db), the Operator no longer sees it.
    assert_eq!(call("DELETE", &web_url, &admin, None).await.status, 204);
    assert_eq!(call("DELETE", &web_url, &admin, None).await.status, 404);
    assert_eq!(call("GET", &host_url, &op, None).await.status, 404);
    let all = call("GET", &host_url, &admin, None).await;
    assert_eq!(all.body["groups"], json!(["db"]));

    // An open event stream closes as soon as its user is disabled (not at its next periodic
    // check).
    let ticket = call("POST", &format!("{base}/api/v1/events/ticket"), &op, None).await;
    assert_eq!(ticket.status, 201, "{}", ticket.body);
    let (_, mut socket) = awc::Client::new()
        .ws(format!(
            "ws://{}/api/v1/events/ws?ticket={}",
            server.addr,
            ticket.body["ticket"].as_str().unwrap()
        ))
        .connect()
        .await
        .unwrap();
    common::https::first_frame_is_resync(&mut socket).await;
    let a = call(
        "PATCH",
        &format!("{base}/api/v1/users/{op_id}"),
        &admin,
        Some(json!({ "disabled": true })),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    use futures_util::StreamExt;
    let end = tokio::time::timeout(std::time::Duration::from_secs(10), socket.next())
        .await
        .expect("the disabled user's stream stayed open");
    assert!(
        matches!(end, None | Some(Ok(awc::ws::Frame::Close(_)))),
        "{end:?}"
    );
    server.stop().await;
}
