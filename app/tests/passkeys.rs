//! Security keys as the second factor, with webauthn-authenticator-rs' software authenticator
//! (a real CTAP2 implementation that signs with its own keys) against a real manager, on both
//! engines: registration of several named keys, sign-in, a replayed assertion, a wrong origin,
//! a finish without a start, removal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{call, setup_admin, test_config, TestDb, BACKENDS};
use serde_json::{json, Value};
use webauthn_authenticator_rs::softtoken::SoftToken;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};

const PW: &str = "tangerine-Orbit-42";

async fn login(base: &str) -> Value {
    let a = call(
        "POST",
        &format!("{base}/api/v1/auth/login"),
        &[],
        Some(json!({ "username": "admin", "password": PW, "client": "api" })),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body
}

async fn register(
    base: &str,
    auth: &[(&str, String)],
    key: &mut SoftToken,
    origin: &Url,
    name: &str,
) -> common::Answer {
    let s = call(
        "POST",
        &format!("{base}/api/v1/auth/mfa/webauthn/register/start"),
        auth,
        Some(json!({ "name": name })),
    )
    .await;
    assert_eq!(s.status, 200, "{}", s.body);
    let ccr: CreationChallengeResponse = serde_json::from_value(s.body["options"].clone()).unwrap();
    let cred = key.do_registration(origin.clone(), ccr).unwrap();
    call(
        "POST",
        &format!("{base}/api/v1/auth/mfa/webauthn/register/finish"),
        auth,
        Some(json!({ "challenge_id": s.body["challenge_id"], "credential": cred })),
    )
    .await
}

/// Starts the security-key step of a fresh sign-in; answers (mfa token, options).
async fn key_step(base: &str) -> (String, RequestChallengeResponse) {
    let first = login(base).await;
    assert_eq!(first["status"], "mfa_required");
    let token = first["mfa_token"].as_str().unwrap().to_owned();
    let s = call(
        "POST",
        &format!("{base}/api/v1/auth/login/webauthn/start"),
        &[],
        Some(json!({ "mfa_token": token })),
    )
    .await;
    assert_eq!(s.status, 200, "{}", s.body);
    (
        token,
        serde_json::from_value(s.body["options"].clone()).unwrap(),
    )
}

async fn finish(base: &str, token: &str, credential: Value) -> common::Answer {
    call(
        "POST",
        &format!("{base}/api/v1/auth/login/webauthn/finish"),
        &[],
        Some(json!({ "mfa_token": token, "credential": credential })),
    )
    .await
}

#[actix_rt::test]
async fn security_keys_register_and_sign_in() {
    for engine in BACKENDS {
        let db = TestDb::new(engine);
        let config = test_config(&db);
        let server = patch_manager::server::start(config.clone()).await.unwrap();
        // The browser would be at http://localhost:<port>; the relying party is "localhost".
        let origin = Url::parse(&format!("http://localhost:{}", server.addr.port())).unwrap();
        let base = format!("http://{}", server.addr);
        setup_admin(&base, &config.data.dir).await;
        let s = login(&base).await;
        let auth = vec![(
            "authorization",
            format!("Bearer {}", s["access_token"].as_str().unwrap()),
        )];

        let (mut key1, _) = SoftToken::new(true).unwrap();
        let (mut key2, _) = SoftToken::new(true).unwrap();
        let r = register(&base, &auth, &mut key1, &origin, "desk key").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.body["recovery_codes"].as_array().unwrap().len(),
            10,
            "first factor brings recovery codes"
        );
        let r = register(&base, &auth, &mut key2, &origin, "spare key").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body["recovery_codes"].as_array().unwrap().is_empty());
        // A new registration asks authenticators to refuse if they hold one of the registered
        // credentials.
        let s2 = call(
            "POST",
            &format!("{base}/api/v1/auth/mfa/webauthn/register/start"),
            &auth,
            Some(json!({ "name": "third" })),
        )
        .await;
        assert_eq!(
            s2.body["options"]["publicKey"]["excludeCredentials"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let st = call("GET", &format!("{base}/api/v1/auth/mfa"), &auth, None).await;
        let names: Vec<&str> = st.body["credentials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["desk key", "spare key"]);

        // Sign in with the first key.
        let (token, rcr) = key_step(&base).await;
        let assertion = key1.do_authentication(origin.clone(), rcr).unwrap();
        let assertion = serde_json::to_value(assertion).unwrap();
        let a = finish(&base, &token, assertion.clone()).await;
        assert_eq!(
            (a.status, a.body["status"].as_str()),
            (200, Some("signed_in")),
            "{}",
            a.body
        );

        // The same assertion again, on a new ceremony: its challenge does not match.
        let (token, _) = key_step(&base).await;
        let a = finish(&base, &token, assertion).await;
        assert_eq!(a.status, 401, "replayed assertion: {}", a.body);

        // Signed for another origin (another port of the same host): refused.
        let (token, rcr) = key_step(&base).await;
        let elsewhere = Url::parse("http://localhost:1").unwrap();
        let a = finish(
            &base,
            &token,
            serde_json::to_value(key2.do_authentication(elsewhere, rcr).unwrap()).unwrap(),
        )
        .await;
        assert_eq!(a.status, 401, "wrong origin: {}", a.body);

        // A finish with no ceremony started on the challenge.
        let first = login(&base).await;
        let (_, rcr) = key_step(&base).await;
        let stray =
            serde_json::to_value(key2.do_authentication(origin.clone(), rcr).unwrap()).unwrap();
        let a = finish(&base, first["mfa_token"].as_str().unwrap(), stray).await;
        assert_eq!(a.status, 401);

        // Remove the first key: it no longer signs in; the second does.
        let id = st.body["credentials"][0]["id"].as_i64().unwrap();
        let rm = call(
            "DELETE",
            &format!("{base}/api/v1/auth/mfa/{id}"),
            &auth,
            None,
        )
        .await;
        assert_eq!(rm.status, 204);
        let (token, rcr) = key_step(&base).await;
        match key1.do_authentication(origin.clone(), rcr) {
            // The key holds none of the credentials offered any more.
            Err(_) => {}
            Ok(cred) => {
                let a = finish(&base, &token, serde_json::to_value(cred).unwrap()).await;
                assert_eq!(a.status, 401, "a removed key signed in");
            }
        }
        let (token, rcr) = key_step(&base).await;
        let a = finish(
            &base,
            &token,
            serde_json::to_value(key2.do_authentication(origin.clone(), rcr).unwrap()).unwrap(),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);

        let actions: Vec<(String, String)> = {
            use diesel::prelude::*;
            use patch_manager::db::schema::audit_log as l;
            let mut c = server.state.db.conn().unwrap();
            l::table
                .select((l::action, l::details_json))
                .load(&mut *c)
                .unwrap()
        };
        assert_eq!(
            actions
                .iter()
                .filter(|(a, _)| a == "mfa.webauthn_enrolled")
                .count(),
            2
        );
        assert!(actions
            .iter()
            .any(|(a, d)| a == "auth.login" && d.contains("\"webauthn\"")));
        assert!(actions
            .iter()
            .any(|(a, d)| a == "auth.mfa" && d.contains("webauthn")));
        server.stop().await;
    }
}
