//! Second factors on a real manager, on both engines: TOTP enrolment and sign-in with the
//! manager's clock moved by the test, replayed and raced codes, recovery codes, the attempt
//! limit and expiry of the second step, the admin's MFA requirement and reset.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{call, setup_admin, test_config, TestDb, BACKENDS};
use patch_manager::auth::mfa;
use serde_json::{json, Value};
use totp_rs::Totp;

const PW: &str = "tangerine-Orbit-42";

/// The test's own authenticator: the seed from the enrolment answer, decoded from base32.
fn generator(secret_b32: &str) -> Totp {
    let seed = totp_rs::Secret::try_from_base32(secret_b32).unwrap();
    mfa::totp(seed.as_ref().to_vec(), "x").unwrap()
}

fn totp_code(t: &Totp, unix: u64) -> String {
    mfa::code_at(t, unix)
}

async fn login(base: &str, user: &str, pw: &str) -> Value {
    let a = call(
        "POST",
        &format!("{base}/api/v1/auth/login"),
        &[],
        Some(json!({ "username": user, "password": pw, "client": "api" })),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body
}

fn bearer(v: &Value) -> [(&'static str, String); 1] {
    [(
        "authorization",
        format!("Bearer {}", v["access_token"].as_str().unwrap()),
    )]
}

async fn second_step(base: &str, body: Value) -> common::Answer {
    call(
        "POST",
        &format!("{base}/api/v1/auth/login/mfa"),
        &[],
        Some(body),
    )
    .await
}

#[actix_rt::test]
async fn totp_recovery_codes_and_admin_controls() {
    for engine in BACKENDS {
        let db = TestDb::new(engine);
        let config = test_config(&db);
        let server = patch_manager::server::start(config.clone()).await.unwrap();
        let base = format!("http://{}", server.addr);
        let clock = server.state.clock.clone();
        setup_admin(&base, &config.data.dir).await;

        // Enrol an authenticator app.
        let s = login(&base, "admin", PW).await;
        assert_eq!(s["status"], "signed_in");
        let auth = bearer(&s);
        let a = call(
            "POST",
            &format!("{base}/api/v1/auth/mfa/totp"),
            &auth,
            Some(json!({ "name": "phone" })),
        )
        .await;
        assert_eq!(a.status, 201, "{}", a.body);
        assert!(a.body["qr_svg"].as_str().unwrap().contains("<svg"));
        assert!(a.body["otpauth_url"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/Linux%20Patch%20Manager:admin?"));
        let cred = a.body["credential_id"].as_i64().unwrap();
        let t = generator(a.body["secret_base32"].as_str().unwrap());
        // The seed is sealed in the database, not stored in the clear.
        let stored: String = {
            use diesel::prelude::*;
            use patch_manager::db::schema::user_credentials as uc;
            let mut c = server.state.db.conn().unwrap();
            uc::table
                .filter(uc::id.eq(cred))
                .select(uc::data)
                .first(&mut *c)
                .unwrap()
        };
        assert!(
            stored.starts_with("v1.")
                && !stored.contains(a.body["secret_base32"].as_str().unwrap())
        );

        let confirm = format!("{base}/api/v1/auth/mfa/totp/{cred}/confirm");
        let wrong = call("POST", &confirm, &auth, Some(json!({ "code": "000000" }))).await;
        assert_eq!(
            (wrong.status, wrong.body["error"]["code"].as_str()),
            (400, Some("wrong_code"))
        );
        let code = totp_code(&t, clock.unix());
        let a = call("POST", &confirm, &auth, Some(json!({ "code": code }))).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let recovery: Vec<String> =
            serde_json::from_value(a.body["recovery_codes"].clone()).unwrap();
        assert_eq!(recovery.len(), 10);
        let again = call("POST", &confirm, &auth, Some(json!({ "code": code }))).await;
        assert_eq!(again.status, 409, "confirming twice");

        // The password alone no longer signs in.
        let first = login(&base, "admin", PW).await;
        assert_eq!(first["status"], "mfa_required");
        assert!(first.get("access_token").is_none());
        assert_eq!(first["methods"], json!(["recovery", "totp"]));
        let token = first["mfa_token"].as_str().unwrap().to_owned();

        // The code used to confirm the app is spent: replay refused.
        let a = second_step(&base, json!({ "mfa_token": token, "code": code })).await;
        assert_eq!(a.status, 401, "replayed confirmation code: {}", a.body);

        // Next step: accepted once, and the session works.
        clock.advance(30);
        let code = totp_code(&t, clock.unix());
        let a = second_step(
            &base,
            json!({ "mfa_token": token, "code": code, "recovery_code": "x" }),
        )
        .await;
        assert_eq!(a.status, 400, "both factors at once");
        let a = second_step(&base, json!({ "mfa_token": token, "code": code })).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.body["status"], "signed_in");
        let me = call(
            "GET",
            &format!("{base}/api/v1/auth/me"),
            &bearer(&a.body),
            None,
        )
        .await;
        assert_eq!(me.status, 200);
        // The challenge is used up, and the same code on a new challenge is a replay.
        let a = second_step(&base, json!({ "mfa_token": token, "code": code })).await;
        assert_eq!(a.status, 401);
        let next = login(&base, "admin", PW).await;
        let a = second_step(
            &base,
            json!({ "mfa_token": next["mfa_token"], "code": code }),
        )
        .await;
        assert_eq!(a.status, 401, "replayed sign-in code");

        // Two sign-ins racing with the same fresh code: exactly one wins.
        clock.advance(30);
        let code = totp_code(&t, clock.unix());
        let c1 = login(&base, "admin", PW).await;
        let c2 = login(&base, "admin", PW).await;
        let (r1, r2) = futures_util::join!(
            second_step(&base, json!({ "mfa_token": c1["mfa_token"], "code": code })),
            second_step(&base, json!({ "mfa_token": c2["mfa_token"], "code": code })),
        );
        let mut statuses = [r1.status, r2.status];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 401]);

        // A recovery code works once.
        let c = login(&base, "admin", PW).await;
        let a = second_step(
            &base,
            json!({ "mfa_token": c["mfa_token"], "recovery_code": recovery[0].to_uppercase() }),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
        let c = login(&base, "admin", PW).await;
        let a = second_step(
            &base,
            json!({ "mfa_token": c["mfa_token"], "recovery_code": recovery[0] }),
        )
        .await;
        assert_eq!(a.status, 401, "spent recovery code");
        // A complete sign-in clears the failure count the replays above built up.
        let c = login(&base, "admin", PW).await;
        let a = second_step(
            &base,
            json!({ "mfa_token": c["mfa_token"], "recovery_code": recovery[1] }),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
        let st = call("GET", &format!("{base}/api/v1/auth/mfa"), &auth, None).await;
        assert_eq!(st.body["recovery_codes_left"], 8);
        assert_eq!(st.body["credentials"].as_array().unwrap().len(), 1);

        // Five wrong codes end the challenge; the right code then comes too late.
        clock.advance(30);
        let c = login(&base, "admin", PW).await;
        for _ in 0..5 {
            let a = second_step(
                &base,
                json!({ "mfa_token": c["mfa_token"], "code": "123456" }),
            )
            .await;
            assert_eq!(a.status, 401);
        }
        let a = second_step(
            &base,
            json!({ "mfa_token": c["mfa_token"], "code": totp_code(&t, clock.unix()) }),
        )
        .await;
        assert_eq!(
            a.status, 401,
            "challenge must be dead after five wrong codes"
        );

        // The second step expires after five minutes.
        clock.advance(30);
        let c = login(&base, "admin", PW).await;
        clock.advance(301);
        let a = second_step(
            &base,
            json!({ "mfa_token": c["mfa_token"], "code": totp_code(&t, clock.unix()) }),
        )
        .await;
        assert_eq!(a.status, 401, "expired challenge");

        // A forged challenge token.
        let a = second_step(
            &base,
            json!({ "mfa_token": "1.deadbeef", "code": "123456" }),
        )
        .await;
        assert_eq!(a.status, 401);

        // An Operator the admin requires MFA of may only enrol until they have a factor.
        let a = call(
            "POST",
            &format!("{base}/api/v1/users"),
            &auth,
            Some(json!({ "username": "olga", "password": "cobalt-Harbour-77", "role": "operator", "mfa_required": true })),
        )
        .await;
        assert_eq!(a.status, 201, "{}", a.body);
        let olga_id = a.body["id"].as_i64().unwrap();
        let o = login(&base, "olga", "cobalt-Harbour-77").await;
        assert_eq!(o["status"], "signed_in");
        let oauth = bearer(&o);
        let me = call("GET", &format!("{base}/api/v1/auth/me"), &oauth, None).await;
        assert_eq!(me.body["mfa_enrolment_pending"], true);
        let hosts = call("GET", &format!("{base}/api/v1/hosts"), &oauth, None).await;
        assert_eq!(hosts.status, 403, "no access before enrolment");
        let e = call(
            "POST",
            &format!("{base}/api/v1/auth/mfa/totp"),
            &oauth,
            Some(json!({ "name": "app" })),
        )
        .await;
        let ot = generator(e.body["secret_base32"].as_str().unwrap());
        let ocred = e.body["credential_id"].as_i64().unwrap();
        let a = call(
            "POST",
            &format!("{base}/api/v1/auth/mfa/totp/{ocred}/confirm"),
            &oauth,
            Some(json!({ "code": totp_code(&ot, clock.unix()) })),
        )
        .await;
        assert_eq!(a.status, 200);
        let hosts = call("GET", &format!("{base}/api/v1/hosts"), &oauth, None).await;
        assert_eq!(hosts.status, 200, "access after enrolment");
        let rm = call(
            "DELETE",
            &format!("{base}/api/v1/auth/mfa/{ocred}"),
            &oauth,
            None,
        )
        .await;
        assert_eq!(
            rm.status, 409,
            "last factor of an account that requires MFA"
        );

        // The admin resets Olga's MFA: her factors and sessions are gone.
        let r = call(
            "POST",
            &format!("{base}/api/v1/users/{olga_id}/reset-mfa"),
            &auth,
            None,
        )
        .await;
        assert_eq!(r.status, 204);
        let me = call("GET", &format!("{base}/api/v1/auth/me"), &oauth, None).await;
        assert_eq!(me.status, 401, "session ended by the reset");
        let o = login(&base, "olga", "cobalt-Harbour-77").await;
        assert_eq!(
            o["status"], "signed_in",
            "no factor left: back to enrolment"
        );

        // The admin removes their own factor (not required): the password signs in again.
        let rm = call(
            "DELETE",
            &format!("{base}/api/v1/auth/mfa/{cred}"),
            &auth,
            None,
        )
        .await;
        assert_eq!(rm.status, 204);
        assert_eq!(login(&base, "admin", PW).await["status"], "signed_in");

        // A session older than fifteen minutes cannot change second factors.
        {
            let now = clock.now();
            let old = now - chrono::Duration::minutes(20);
            let mut c = server.state.db.conn().unwrap();
            let uid: i64 = {
                use diesel::prelude::*;
                use patch_manager::db::schema::users;
                users::table
                    .filter(users::username.eq("admin"))
                    .select(users::id)
                    .first(&mut *c)
                    .unwrap()
            };
            let session = patch_manager::db::sessions::start(&mut c, uid, None, None, old).unwrap();
            let keys = server
                .state
                .tokens
                .get(&server.state.db, now)
                .await
                .unwrap();
            let token = keys.issue(uid, "admin", &session.family_id, now).unwrap();
            let stale = [("authorization", format!("Bearer {token}"))];
            let me = call("GET", &format!("{base}/api/v1/auth/me"), &stale, None).await;
            assert_eq!(me.status, 200, "the session itself is fine");
            let a = call(
                "POST",
                &format!("{base}/api/v1/auth/mfa/totp"),
                &stale,
                Some(json!({ "name": "thief" })),
            )
            .await;
            assert_eq!(a.status, 403, "{}", a.body);
            let a = call(
                "POST",
                &format!("{base}/api/v1/auth/mfa/webauthn/register/start"),
                &stale,
                Some(json!({ "name": "thief" })),
            )
            .await;
            assert_eq!(a.status, 403, "{}", a.body);
        }

        // All of it is in the audit log.
        let actions: Vec<String> = {
            use diesel::prelude::*;
            use patch_manager::db::schema::audit_log as l;
            let mut c = server.state.db.conn().unwrap();
            l::table.select(l::action).load(&mut *c).unwrap()
        };
        for a in [
            "mfa.totp_enrolled",
            "auth.mfa",
            "mfa.recovery_code_used",
            "mfa.reset",
            "mfa.removed",
            "user.created",
        ] {
            assert!(actions.iter().any(|x| x == a), "{a} not audited");
        }
        server.stop().await;
    }
}

/// Guesses sent in parallel each use up an attempt: a burst on one sign-in challenge gets five
/// answers checked at most, and parallel wrong passwords each count toward the account lock.
#[actix_rt::test]
async fn parallel_guesses_each_count() {
    let db = TestDb::new(common::Engine::Postgres);
    let config = test_config(&db);
    let server = patch_manager::server::start(config.clone()).await.unwrap();
    let base = format!("http://{}", server.addr);
    let clock = server.state.clock.clone();
    setup_admin(&base, &config.data.dir).await;
    let auth = bearer(&login(&base, "admin", PW).await);
    let e = call(
        "POST",
        &format!("{base}/api/v1/auth/mfa/totp"),
        &auth,
        Some(json!({ "name": "app" })),
    )
    .await;
    let t = generator(e.body["secret_base32"].as_str().unwrap());
    let cred = e.body["credential_id"].as_i64().unwrap();
    let a = call(
        "POST",
        &format!("{base}/api/v1/auth/mfa/totp/{cred}/confirm"),
        &auth,
        Some(json!({ "code": totp_code(&t, clock.unix()) })),
    )
    .await;
    assert_eq!(a.status, 200);

    clock.advance(30);
    let c = login(&base, "admin", PW).await;
    let guesses = (0..12).map(|i| {
        second_step(
            &base,
            json!({ "mfa_token": c["mfa_token"], "code": format!("{:06}", 100_000 + i) }),
        )
    });
    let answers = futures_util::future::join_all(guesses).await;
    assert!(answers.iter().all(|a| a.status == 401));
    let a = second_step(
        &base,
        json!({ "mfa_token": c["mfa_token"], "code": totp_code(&t, clock.unix()) }),
    )
    .await;
    assert_eq!(a.status, 401, "the burst used up the challenge");
    let (checked, denied, failed): (usize, usize, i64) = {
        use diesel::prelude::*;
        use patch_manager::db::schema::{audit_log as l, users};
        let mut conn = server.state.db.conn().unwrap();
        let details: Vec<String> = l::table
            .filter(l::action.eq("auth.mfa"))
            .select(l::details_json)
            .load(&mut *conn)
            .unwrap();
        let failed = users::table
            .filter(users::username.eq("admin"))
            .select(users::failed_logins)
            .first(&mut *conn)
            .unwrap();
        (
            details
                .iter()
                .filter(|d| d.contains("wrong or replayed"))
                .count(),
            details.len(),
            failed,
        )
    };
    assert_eq!(checked, 5, "exactly five answers were checked");
    // The rest were refused unchecked: no attempt left, or the challenge already gone.
    assert_eq!(denied, 13, "every refusal is audited");
    assert_eq!(failed, 5);

    // Four wrong passwords at once: each counts.
    let login_url = format!("{base}/api/v1/auth/login");
    let wrong = (0..4).map(|_| {
        call(
            "POST",
            &login_url,
            &[],
            Some(json!({ "username": "admin", "password": "not-the-password-1", "client": "api" })),
        )
    });
    let answers = futures_util::future::join_all(wrong).await;
    assert!(answers.iter().all(|a| a.status == 401));
    let failed: i64 = {
        use diesel::prelude::*;
        use patch_manager::db::schema::users;
        let mut conn = server.state.db.conn().unwrap();
        users::table
            .filter(users::username.eq("admin"))
            .select(users::failed_logins)
            .first(&mut *conn)
            .unwrap()
    };
    assert_eq!(failed, 9, "5 + 4: no failure lost to a race");
    server.stop().await;
}
