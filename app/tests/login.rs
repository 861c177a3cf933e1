//! Sign-in, refresh, sign-out and the identity check on a real manager, on both engines.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{call, cookie_value, setup_admin, test_config, TestDb, BACKENDS};
use serde_json::json;

#[actix_rt::test]
async fn browser_and_api_sessions() {
    for engine in BACKENDS {
        let db = TestDb::new(engine);
        let config = test_config(&db);
        let server = patch_manager::server::start(config.clone()).await.unwrap();
        let base = format!("http://{}", server.addr);
        setup_admin(&base, &config.data.dir).await;

        // No credentials: 401 with the envelope.
        let a = call("GET", &format!("{base}/api/v1/auth/me"), &[], None).await;
        assert_eq!(
            (a.status, a.body["error"]["code"].as_str()),
            (401, Some("unauthorized"))
        );

        // Browser sign-in: tokens only in hardened cookies.
        let a = call(
            "POST",
            &format!("{base}/api/v1/auth/login"),
            &[],
            Some(json!({ "username": "admin", "password": "tangerine-Orbit-42" })),
        )
        .await;
        assert_eq!(a.status, 200, "{engine:?} {}", a.body);
        assert!(
            a.body["access_token"].is_null(),
            "a browser never sees tokens in the body"
        );
        for name in ["lpm_access", "lpm_refresh"] {
            let c = a.cookies.iter().find(|c| c.starts_with(name)).unwrap();
            for flag in ["HttpOnly", "Secure", "SameSite=Strict"] {
                assert!(c.contains(flag), "{name} lacks {flag}: {c}");
            }
        }
        let csrf_cookie = a
            .cookies
            .iter()
            .find(|c| c.starts_with("lpm_csrf"))
            .unwrap();
        assert!(!csrf_cookie.contains("HttpOnly") && csrf_cookie.contains("SameSite=Strict"));
        let (access, refresh, csrf) = (
            cookie_value(&a.cookies, "lpm_access"),
            cookie_value(&a.cookies, "lpm_refresh"),
            cookie_value(&a.cookies, "lpm_csrf"),
        );
        let jar = format!("lpm_access={access}; lpm_csrf={csrf}");
        let a = call(
            "GET",
            &format!("{base}/api/v1/auth/me"),
            &[("cookie", jar.clone())],
            None,
        )
        .await;
        assert_eq!((a.status, a.body["role"].as_str()), (200, Some("admin")));
        // A cookie-authenticated mutation without the CSRF header is refused.
        let a = call(
            "POST",
            &format!("{base}/api/v1/auth/logout"),
            &[("cookie", jar.clone())],
            None,
        )
        .await;
        assert_eq!(
            (a.status, a.body["error"]["code"].as_str()),
            (403, Some("forbidden"))
        );

        // Refresh by cookie rotates; the old refresh token then revokes the session.
        let a = call(
            "POST",
            &format!("{base}/api/v1/auth/refresh"),
            &[("cookie", format!("lpm_refresh={refresh}"))],
            None,
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
        let refresh2 = cookie_value(&a.cookies, "lpm_refresh");
        assert_ne!(refresh2, refresh);
        let a = call(
            "POST",
            &format!("{base}/api/v1/auth/refresh"),
            &[("cookie", format!("lpm_refresh={refresh}"))],
            None,
        )
        .await;
        assert_eq!(a.status, 401, "reuse refused");
        let a = call(
            "GET",
            &format!("{base}/api/v1/auth/me"),
            &[("cookie", jar.clone())],
            None,
        )
        .await;
        assert_eq!(
            a.status, 401,
            "the access token of a revoked session is refused"
        );

        // API client: bearer tokens, sign-out ends the session.
        let a = call(
            "POST",
            &format!("{base}/api/v1/auth/login"),
            &[],
            Some(json!({ "username": "admin", "password": "tangerine-Orbit-42", "client": "api" })),
        )
        .await;
        assert_eq!(a.status, 200);
        assert!(a.cookies.is_empty(), "API clients get no cookies");
        let bearer = format!("Bearer {}", a.body["access_token"].as_str().unwrap());
        let a = call(
            "GET",
            &format!("{base}/api/v1/auth/me"),
            &[("authorization", bearer.clone())],
            None,
        )
        .await;
        assert_eq!(a.status, 200);
        let a = call(
            "POST",
            &format!("{base}/api/v1/auth/logout"),
            &[("authorization", bearer.clone())],
            None,
        )
        .await;
        assert_eq!(a.status, 204);
        let a = call(
            "GET",
            &format!("{base}/api/v1/auth/me"),
            &[("authorization", bearer)],
            None,
        )
        .await;
        assert_eq!(a.status, 401, "signed out");
        let a = call(
            "GET",
            &format!("{base}/api/v1/auth/me"),
            &[("authorization", "Bearer not-a-token".into())],
            None,
        )
        .await;
        assert_eq!(a.status, 401);
        server.stop().await;
    }
}

#[actix_rt::test]
async fn failed_sign_ins_lock_the_account_for_a_while_and_are_audited() {
    let db = TestDb::new(common::Engine::Sqlite);
    let config = test_config(&db);
    let server = patch_manager::server::start(config.clone()).await.unwrap();
    let base = format!("http://{}", server.addr);
    setup_admin(&base, &config.data.dir).await;
    let url = format!("{base}/api/v1/auth/login");
    let login = |pw: &'static str| {
        call(
            "POST",
            &url,
            &[],
            Some(json!({ "username": "admin", "password": pw })),
        )
    };
    for _ in 0..5 {
        assert_eq!(login("wrong-password-123").await.status, 401);
    }
    // The sixth failure locks the account; even the right password waits, with Retry-After.
    let sixth = login("wrong-password-123").await;
    assert_eq!(sixth.status, 401, "{}", sixth.body);
    let a = login("tangerine-Orbit-42").await;
    assert_eq!(
        (a.status, a.body["error"]["code"].as_str()),
        (429, Some("too_many_requests")),
        "{}",
        a.body
    );
    assert!(
        a.body["error"]["details"]["retry_after_secs"]
            .as_i64()
            .unwrap()
            > 0
    );
    // Unknown users are refused the same way as wrong passwords.
    let a = call(
        "POST",
        &format!("{base}/api/v1/auth/login"),
        &[],
        Some(json!({ "username": "nobody", "password": "x" })),
    )
    .await;
    assert_eq!(a.status, 401);

    use diesel::prelude::*;
    use patch_manager::db::schema::audit_log as a;
    let mut conn = server.state.db.conn().unwrap();
    let denied: i64 = a::table
        .filter(a::action.eq("auth.login"))
        .filter(a::outcome.eq("denied"))
        .count()
        .get_result(&mut *conn)
        .unwrap();
    assert_eq!(denied, 8, "every failed or refused sign-in is audited");
    server.stop().await;
}

/// A lock does not tell names that exist from names that do not: after six failures both
/// answer the same 429.
#[actix_rt::test]
async fn unknown_names_lock_like_accounts() {
    let mut answers = Vec::new();
    for name in ["admin", "nobody-here"] {
        let db = TestDb::new(common::Engine::Sqlite);
        let config = test_config(&db);
        let server = patch_manager::server::start(config.clone()).await.unwrap();
        let base = format!("http://{}", server.addr);
        setup_admin(&base, &config.data.dir).await;
        let url = format!("{base}/api/v1/auth/login");
        for _ in 0..6 {
            let a = call(
                "POST",
                &url,
                &[],
                Some(json!({ "username": name, "password": "wrong-password-123" })),
            )
            .await;
            assert_eq!(a.status, 401);
        }
        let a = call(
            "POST",
            &url,
            &[],
            Some(json!({ "username": name, "password": "wrong-password-123" })),
        )
        .await;
        answers.push((
            a.status,
            a.body["error"]["code"].clone(),
            a.body["error"]["message"].clone(),
        ));
        server.stop().await;
    }
    assert_eq!(answers[0].0, 429);
    assert_eq!(
        answers[0], answers[1],
        "a locked name looks the same whether it exists or not"
    );
}

#[test]
fn lock_backoff_is_bounded() {
    use patch_manager::api::auth::lock_minutes;
    assert_eq!((0..=5).map(lock_minutes).sum::<i64>(), 0);
    assert_eq!([6, 7, 8, 9].map(lock_minutes), [1, 2, 4, 8]);
    assert_eq!(
        lock_minutes(1000),
        60,
        "never more than an hour: the admin cannot be locked out for good"
    );
}
