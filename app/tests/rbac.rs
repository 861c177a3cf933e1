//! The access matrix: every API route × {anonymous, Operator in scope, Operator out of scope,
//! Admin} → the expected status. The table below must name every route of
//! `patch_manager::api::ROUTES`, so a new route without a decided rule fails here.
//!
//! Host routes target a host in group A; the in-scope Operator belongs to A, the out-of-scope one
//! to B. Ids in other paths do not exist (999999), so a caller who passes the gate gets the
//! handler's 404 and nothing is changed; bodies are `{}`, so a caller who passes the gate gets
//! the handler's 400 where fields are required. Each request uses a fresh session, so sign-out
//! routes do not disturb the next row.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{call, setup_admin, test_config, Engine, TestDb};
use diesel::prelude::*;
use patch_manager::api::ROUTES;
use patch_manager::auth::access::Access;
use patch_manager::db::schema::{host_group_members, host_groups, user_groups, users};
use patch_manager::pki::{CertKind, San};
use serde_json::json;
use shared::vocab::HostStatus;

const H: &str = "{host_id}";

/// (method, path, [anonymous, operator in scope, operator out of scope, admin]).
#[rustfmt::skip]
const MATRIX: &[(&str, &str, [u16; 4])] = &[
    ("GET", "/status/health", [200, 200, 200, 200]),
    ("GET", "/api/v1/ca/root.crt", [200, 200, 200, 200]),
    ("GET", "/api/v1/ca/fleet.crt", [200, 200, 200, 200]),
    ("GET", "/api/v1/ca/crl", [200, 200, 200, 200]),
    ("GET", "/metrics", [401, 403, 403, 200]),
    ("GET", "/api/v1/overview", [401, 200, 200, 200]),
    ("GET", "/api/v1/openapi.json", [200, 200, 200, 200]),
    ("POST", "/api/v1/enroll", [400, 400, 400, 400]),
    ("GET", "/api/v1/setup", [200, 200, 200, 200]),
    ("POST", "/api/v1/setup", [400, 400, 400, 400]),
    ("POST", "/api/v1/auth/login", [400, 400, 400, 400]),
    ("POST", "/api/v1/auth/login/mfa", [400, 400, 400, 400]),
    ("GET", "/api/v1/auth/login/pending", [404, 404, 404, 404]),
    ("POST", "/api/v1/auth/login/webauthn/start", [400, 400, 400, 400]),
    ("POST", "/api/v1/auth/login/webauthn/finish", [400, 400, 400, 400]),
    ("POST", "/api/v1/auth/refresh", [401, 401, 401, 401]),
    ("GET", "/api/v1/auth/oidc/status", [200, 200, 200, 200]),
    ("GET", "/api/v1/auth/oidc/start", [302, 302, 302, 302]),
    ("GET", "/api/v1/auth/oidc/callback", [302, 302, 302, 302]),
    ("POST", "/api/v1/auth/logout", [401, 204, 204, 204]),
    ("GET", "/api/v1/auth/me", [401, 200, 200, 200]),
    ("GET", "/api/v1/auth/mfa", [401, 200, 200, 200]),
    ("POST", "/api/v1/auth/mfa/totp", [401, 400, 400, 400]),
    ("POST", "/api/v1/auth/mfa/totp/{credential_id}/confirm", [401, 400, 400, 400]),
    ("POST", "/api/v1/auth/mfa/recovery-codes", [401, 409, 409, 409]),
    ("POST", "/api/v1/auth/mfa/webauthn/register/start", [401, 400, 400, 400]),
    ("POST", "/api/v1/auth/mfa/webauthn/register/finish", [401, 400, 400, 400]),
    ("DELETE", "/api/v1/auth/mfa/{credential_id}", [401, 404, 404, 404]),
    ("GET", "/api/v1/hosts", [401, 200, 200, 200]),
    ("GET", "/api/v1/hosts/{host_id}", [401, 200, 404, 200]),
    ("DELETE", "/api/v1/hosts/{host_id}", [401, 403, 403, 204]),
    ("GET", "/api/v1/hosts/{host_id}/certificate-bundle", [401, 200, 404, 200]),
    ("POST", "/api/v1/hosts/{host_id}/certificate/renew", [401, 403, 403, 502]),
    ("POST", "/api/v1/hosts/{host_id}/refresh", [401, 202, 404, 202]),
    ("GET", "/api/v1/hosts/{host_id}/packages", [401, 200, 404, 200]),
    ("GET", "/api/v1/hosts/{host_id}/patches", [401, 200, 404, 200]),
    ("POST", "/api/v1/events/ticket", [401, 201, 201, 201]),
    ("GET", "/api/v1/events/ws", [400, 400, 400, 400]),
    ("GET", "/api/v1/jobs", [401, 200, 200, 200]),
    ("POST", "/api/v1/jobs", [401, 400, 400, 400]),
    ("GET", "/api/v1/jobs/{job_id}", [401, 404, 404, 404]),
    ("POST", "/api/v1/jobs/{job_id}/cancel", [401, 404, 404, 404]),
    ("POST", "/api/v1/jobs/{job_id}/rollback", [401, 404, 404, 404]),
    ("GET", "/api/v1/windows", [401, 200, 200, 200]),
    ("POST", "/api/v1/windows", [401, 400, 400, 400]),
    ("DELETE", "/api/v1/windows/{window_id}", [401, 404, 404, 404]),
    ("GET", "/api/v1/groups", [401, 200, 200, 200]),
    ("POST", "/api/v1/groups", [401, 403, 403, 400]),
    ("PATCH", "/api/v1/groups/{group_id}", [401, 403, 403, 404]),
    ("DELETE", "/api/v1/groups/{group_id}", [401, 403, 403, 404]),
    ("PUT", "/api/v1/hosts/{host_id}/groups", [401, 403, 403, 400]),
    ("GET", "/api/v1/users", [401, 403, 403, 200]),
    ("GET", "/api/v1/audit", [401, 403, 403, 200]),
    ("POST", "/api/v1/users", [401, 403, 403, 400]),
    ("PATCH", "/api/v1/users/{user_id}", [401, 403, 403, 404]),
    ("DELETE", "/api/v1/users/{user_id}", [401, 403, 403, 404]),
    ("POST", "/api/v1/users/{user_id}/reset-mfa", [401, 403, 403, 404]),
    ("POST", "/api/v1/users/{user_id}/logout", [401, 403, 403, 404]),
    ("GET", "/api/v1/certificates", [401, 403, 403, 200]),
    ("POST", "/api/v1/certificates/manager-client/rotate", [401, 403, 403, 200]),
    ("POST", "/api/v1/certificates/{certificate_id}/revoke", [401, 403, 403, 400]),
    ("GET", "/api/v1/certificates/crl", [401, 403, 403, 200]),
    ("POST", "/api/v1/certificates/crl/retry", [401, 403, 403, 202]),
    ("GET", "/api/v1/settings/allow-list", [401, 403, 403, 200]),
    ("GET", "/api/v1/settings/polling", [401, 403, 403, 200]),
    ("PUT", "/api/v1/settings/polling", [401, 403, 403, 400]),
    ("PUT", "/api/v1/settings/allow-list", [401, 403, 403, 400]),
    ("GET", "/api/v1/settings/oidc", [401, 403, 403, 200]),
    ("PUT", "/api/v1/settings/oidc", [401, 403, 403, 200]),
    ("POST", "/api/v1/settings/oidc/test", [401, 403, 403, 400]),
    ("GET", "/api/v1/enrollment-tokens", [401, 403, 403, 200]),
    ("POST", "/api/v1/enrollment-tokens", [401, 403, 403, 201]),
    ("DELETE", "/api/v1/enrollment-tokens/{token_id}", [401, 403, 403, 404]),
    ("POST", "/api/v1/discovery", [401, 403, 403, 400]),
    ("GET", "/api/v1/discovery", [401, 403, 403, 200]),
    ("GET", "/api/v1/discovery/{run_id}", [401, 403, 403, 404]),
    ("POST", "/api/v1/discovery/{run_id}/cancel", [401, 403, 403, 404]),
    ("POST", "/api/v1/discovery/{run_id}/adopt", [401, 403, 403, 400]),
];

#[actix_rt::test]
async fn every_route_by_every_kind_of_caller() {
    // The table covers the routes exactly, and agrees with the declared rules.
    for r in ROUTES {
        let row = MATRIX
            .iter()
            .find(|(m, p, _)| *m == r.method.as_str() && *p == r.path)
            .unwrap_or_else(|| panic!("{} {} has no row in the RBAC matrix", r.method, r.path));
        let [anon, op_in, op_out, admin] = row.2;
        match r.access {
            // The same for everyone: whatever a public route refuses, it refuses on its own
            // grounds (a missing refresh token), not the caller's.
            Access::Public => assert!(row.2.iter().all(|s| *s == anon), "{} {}", r.method, r.path),
            Access::Admin => assert!(
                anon == 401 && op_in == 403 && op_out == 403 && admin != 403,
                "{} {}",
                r.method,
                r.path
            ),
            Access::Host => assert!(anon == 401 && op_out == 404, "{} {}", r.method, r.path),
            Access::Session | Access::Operator => {
                assert!(
                    anon == 401 && op_in != 403 && op_out != 403,
                    "{} {}",
                    r.method,
                    r.path
                )
            }
        }
    }
    for (m, p, _) in MATRIX {
        assert!(
            ROUTES
                .iter()
                .any(|r| r.method.as_str() == *m && r.path == *p),
            "matrix row {m} {p} names no route"
        );
    }

    let db = TestDb::new(Engine::Sqlite);
    let config = test_config(&db);
    let server = patch_manager::server::start(config.clone()).await.unwrap();
    let base = format!("http://{}", server.addr);
    setup_admin(&base, &config.data.dir).await;
    let state = server.state.clone();

    // Groups A and B, one host in each, an Operator in each.
    let mut conn = state.db.conn().unwrap();
    let t = state.clock.now();
    let mut ids = Vec::new();
    for (group, host, port) in [("group-a", "host-a", 9), ("group-b", "host-b", 10)] {
        let g: i64 = diesel::insert_into(host_groups::table)
            .values((
                host_groups::name.eq(group),
                host_groups::description.eq(""),
                host_groups::created_at.eq(t),
                host_groups::updated_at.eq(t),
            ))
            .returning(host_groups::id)
            .get_result(&mut *conn)
            .unwrap();
        // Nothing listens on ports 9 and 10: a renewal reaches the agent step and fails there.
        let h = common::insert_host(&mut conn, host, port, t);
        diesel::insert_into(host_group_members::table)
            .values((
                host_group_members::host_id.eq(h),
                host_group_members::group_id.eq(g),
                host_group_members::created_at.eq(t),
            ))
            .execute(&mut *conn)
            .unwrap();
        let (issued, _key) = state
            .pki
            .ca
            .issue_with_new_key(
                CertKind::Agent,
                &format!("{host}.test"),
                &[San::Dns(format!("{host}.test"))],
                30,
            )
            .unwrap();
        patch_manager::db::certificates::insert(&mut conn, &issued, CertKind::Agent, Some(h), t)
            .unwrap();
        let u: i64 = diesel::insert_into(users::table)
            .values((
                users::username.eq(format!("op-{group}")),
                users::display_name.eq(group),
                users::role.eq("operator"),
                users::is_disabled.eq(false),
                users::mfa_required.eq(false),
                users::failed_logins.eq(0_i64),
                users::created_at.eq(t),
                users::updated_at.eq(t),
            ))
            .returning(users::id)
            .get_result(&mut *conn)
            .unwrap();
        diesel::insert_into(user_groups::table)
            .values((
                user_groups::user_id.eq(u),
                user_groups::group_id.eq(g),
                user_groups::created_at.eq(t),
            ))
            .execute(&mut *conn)
            .unwrap();
        ids.push((h, u));
    }
    // A third host, in no group, that the Admin's DELETE removes (the others stay for the rows
    // after it).
    let host_c = common::insert_host(&mut conn, "host-c", 11, t);
    let admin_id: i64 = users::table
        .filter(users::username.eq("admin"))
        .select(users::id)
        .first(&mut *conn)
        .unwrap();
    let host_a = ids[0].0;
    let callers: [Option<(i64, &str)>; 4] = [
        None,
        Some((ids[0].1, "operator")),
        Some((ids[1].1, "operator")),
        Some((admin_id, "admin")),
    ];

    let mut failures = Vec::new();
    for (method, path, expected) in MATRIX {
        for (who, want) in callers.iter().zip(expected) {
            let target = if (*method, *path) == ("DELETE", "/api/v1/hosts/{host_id}") {
                host_c
            } else {
                host_a
            };
            let url = format!(
                "{base}{}",
                path.replace(H, &target.to_string())
                    .replace("{user_id}", "999999")
                    .replace("{credential_id}", "999999")
                    .replace("{certificate_id}", "999999")
                    .replace("{token_id}", "999999")
                    .replace("{group_id}", "999999")
                    .replace("{run_id}", "999999")
                    .replace("{job_id}", "999999")
                    .replace("{window_id}", "999999")
            );
            let mut headers = Vec::new();
            if let Some((uid, role)) = who {
                let s = patch_manager::db::sessions::start(
                    &mut conn,
                    *uid,
                    None,
                    None,
                    state.clock.now(),
                )
                .unwrap();
                let keys = state
                    .tokens
                    .get(&state.db, state.clock.now())
                    .await
                    .unwrap();
                let token = keys
                    .issue(*uid, role, &s.family_id, state.clock.now())
                    .unwrap();
                headers.push(("authorization", format!("Bearer {token}")));
            }
            let body = matches!(*method, "POST" | "PATCH" | "PUT").then(|| json!({}));
            let a = call(method, &url, &headers, body).await;
            if a.status != *want {
                failures.push(format!(
                    "{method} {path} as {}: got {} want {want} ({})",
                    who.map_or("anonymous", |w| if w.0 == admin_id {
                        "admin"
                    } else if w.0 == ids[0].1 {
                        "operator in scope"
                    } else {
                        "operator out of scope"
                    }),
                    a.status,
                    a.body
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Scope also filters lists: each Operator sees only their own group's host.
    for (i, (host, user)) in ids.iter().enumerate() {
        let s = patch_manager::db::sessions::start(&mut conn, *user, None, None, state.clock.now())
            .unwrap();
        let keys = state
            .tokens
            .get(&state.db, state.clock.now())
            .await
            .unwrap();
        let token = keys
            .issue(*user, "operator", &s.family_id, state.clock.now())
            .unwrap();
        let auth = [("authorization", format!("Bearer {token}"))];
        let a = call("GET", &format!("{base}/api/v1/hosts"), &auth, None).await;
        let seen: Vec<i64> = a.body["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_i64().unwrap())
            .collect();
        assert_eq!(seen, vec![*host], "operator {i} sees only their host");
        let a = call("GET", &format!("{base}/api/v1/groups"), &auth, None).await;
        assert_eq!(
            a.body.as_array().unwrap().len(),
            1,
            "operator {i} sees only their group"
        );
        // And the live event stream: of two host events, only their own host's arrives.
        let ticket = call("POST", &format!("{base}/api/v1/events/ticket"), &auth, None).await;
        assert_eq!(ticket.status, 201, "{}", ticket.body);
        let ticket = ticket.body["ticket"].as_str().unwrap().to_owned();
        let (_, mut socket) = awc::Client::new()
            .ws(format!(
                "ws://{}/api/v1/events/ws?ticket={ticket}",
                server.addr
            ))
            .connect()
            .await
            .unwrap();
        common::https::first_frame_is_resync(&mut socket).await;
        // The ticket opened one socket: used again, it is refused before any upgrade.
        let again = call(
            "GET",
            &format!("{base}/api/v1/events/ws?ticket={ticket}"),
            &[],
            None,
        )
        .await;
        assert_eq!(again.status, 401, "{}", again.body);
        let other = ids[1 - i].0;
        for (host_id, status) in [
            (other, HostStatus::Unreachable),
            (*host, HostStatus::Degraded),
        ] {
            state
                .fleet
                .events
                .send(shared::fleet::HostStateEvent {
                    host_id: host_id.into(),
                    status,
                    reason: None,
                    at: "2026-11-30T00:00:00+00:00".into(),
                })
                .unwrap();
        }
        use futures_util::StreamExt;
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), socket.next())
            .await
            .expect("no event")
            .unwrap()
            .unwrap();
        let awc::ws::Frame::Text(text) = frame else {
            panic!("{frame:?}")
        };
        let event: shared::fleet::LiveEvent = serde_json::from_slice(&text).unwrap();
        assert_eq!(
            event,
            shared::fleet::LiveEvent::HostState(shared::fleet::HostStateEvent {
                host_id: (*host).into(),
                status: HostStatus::Degraded,
                reason: None,
                at: "2026-11-30T00:00:00+00:00".into(),
            }),
            "operator {i} got another group's host event first"
        );
        use futures_util::SinkExt;
        socket.send(awc::ws::Message::Close(None)).await.unwrap();
    }
    drop(conn);
    server.stop().await;
}
