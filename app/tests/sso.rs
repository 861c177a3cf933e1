//! Single sign-on against a real OpenID Connect provider on loopback (panva/oidc-provider, started
//! from scripts/oidc-provider; `npm ci` there first — scripts/test.sh does), standing in for Azure
//! AD: the settings' "Test connection", a sign-in as Admin and as Operator by group, an unknown
//! group, a tampered state, a missing browser binding, a replayed callback, a wrong nonce, an
//! expired code, a code for another application, an ID token for another audience, and the local
//! Admin still signing in when the provider is down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{call, setup_admin, test_config, Engine, TestDb};
use openidconnect::url;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Lifetime of the provider's authorization codes. The expired-code case moves the provider's
/// clock past it rather than waiting, so it can be generous for the other cases.
const CODE_TTL_SECS: i64 = 60;

/// How long the provider may take to print where it listens (it takes well under a second here;
/// a run once hung for 80 minutes at this point without a word, so the wait is bounded).
const PROVIDER_START: Duration = Duration::from_secs(30);

struct Provider {
    child: Child,
    issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_provider(redirect: &str) -> Provider {
    let dir = common::workspace().join("scripts/oidc-provider");
    assert!(
        dir.join("node_modules/oidc-provider").is_dir(),
        "the test OpenID provider is not installed: run `npm ci` in {} (scripts/test.sh does)",
        dir.display()
    );
    // Two tries: a provider that has not said where it listens within the bound is stopped and
    // started once more (in one CI run of many a node process printed nothing for 60 s, the
    // cause not found; its progress lines on stderr now say how far it got). Both logs are shown
    // if neither comes up.
    let mut logs = Vec::new();
    for attempt in 1..=2 {
        match try_start_provider(&dir, redirect) {
            Ok(p) => {
                if attempt > 1 {
                    eprintln!(
                        "the OpenID provider came up on try {attempt}; the first try's stderr:\n{}",
                        logs.join("\n")
                    );
                }
                return p;
            }
            Err(log) => logs.push(format!("try {attempt}: {log}")),
        }
    }
    panic!(
        "the OpenID provider did not come up within {PROVIDER_START:?}, twice:\n{}",
        logs.join("\n")
    )
}

/// Starts the provider and reads where it listens; on failure answers what it printed.
fn try_start_provider(dir: &std::path::Path, redirect: &str) -> Result<Provider, String> {
    // The provider's diagnostics go to a file, shown if it does not come up.
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new("node")
        .arg("server.mjs")
        .current_dir(dir)
        .env("PORT", "0")
        .env("CLIENT_ID", "patch-manager")
        .env("CLIENT_SECRET", "s3cret-for-tests")
        .env("REDIRECT_URI", redirect)
        .env("CODE_TTL", CODE_TTL_SECS.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log.reopen().unwrap())
        .spawn()
        .expect("node (Node.js 20) is needed for the OpenID provider");
    // The first line says where it listens. It is read on a thread so that a provider that never
    // comes up fails within a bound instead of holding the whole run.
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let (first_tx, first_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        let _ = first_tx.send(line);
        // Keep reading what the provider prints, or its next write fails on a closed pipe.
        let mut sink = String::new();
        while out.read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
    });
    let line = first_rx.recv_timeout(PROVIDER_START).unwrap_or_default();
    match serde_json::from_str::<Value>(&line) {
        Ok(v) => Ok(Provider {
            child,
            issuer: v["issuer"].as_str().unwrap().to_owned(),
        }),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = std::fs::read_to_string(log.path()).unwrap_or_default();
            Err(format!("first line {line:?} ({e}); stderr:\n{stderr}"))
        }
    }
}

struct Http {
    c: awc::Client,
}

struct Res {
    status: u16,
    location: Option<String>,
    cookies: Vec<(String, String)>,
    body: String,
}

impl Http {
    fn new() -> Self {
        Self {
            c: awc::Client::builder()
                .disable_redirects()
                .timeout(Duration::from_secs(30))
                .finish(),
        }
    }

    async fn send(
        &self,
        method: &str,
        url: &str,
        cookies: &BTreeMap<String, String>,
        headers: &[(&str, String)],
        body: Option<Value>,
    ) -> Res {
        let mut r = self.c.request(method.parse().unwrap(), url);
        if !cookies.is_empty() {
            let jar: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            r = r.insert_header(("cookie", jar.join("; ")));
        }
        for (k, v) in headers {
            r = r.insert_header((*k, v.as_str()));
        }
        let mut res = match body {
            Some(b) => r.send_json(&b).await.unwrap(),
            None => r.send().await.unwrap(),
        };
        let cookies = res
            .headers()
            .get_all("set-cookie")
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
            .collect();
        let location = res
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = String::from_utf8_lossy(&res.body().limit(1 << 20).await.unwrap()).into_owned();
        Res {
            status: res.status().as_u16(),
            location,
            cookies,
            body,
        }
    }
}

/// The browser's part: follows the provider's redirects (keeping its cookies) until it sends the
/// browser back to the manager; answers that callback URL.
async fn through_provider(http: &Http, provider: &str, mut url: String) -> String {
    let mut jar = BTreeMap::new();
    for _ in 0..20 {
        if url.contains("/api/v1/auth/oidc/callback") {
            return url;
        }
        let r = http.send("GET", &url, &jar, &[], None).await;
        jar.extend(r.cookies);
        let Some(next) = r.location else {
            panic!("provider stopped at {url}: {} {}", r.status, r.body);
        };
        url = if next.starts_with('/') {
            format!("{provider}{next}")
        } else {
            next
        };
    }
    panic!("too many redirects");
}

async fn next_login(http: &Http, provider: &str, sub: &str, groups: &[&str]) {
    let r = http
        .send(
            "POST",
            &format!("{provider}/test/next-login"),
            &BTreeMap::new(),
            &[],
            Some(json!({ "sub": sub, "name": format!("User {sub}"), "preferred_username": format!("{sub}@contoso.example"), "email": format!("{sub}@contoso.example"), "groups": groups })),
        )
        .await;
    assert_eq!(r.status, 204);
}

/// Moves the provider's clock by `secs` (its codes and sessions age with it).
async fn advance_provider_clock(http: &Http, provider: &str, secs: i64) {
    let r = http
        .send(
            "POST",
            &format!("{provider}/test/clock"),
            &BTreeMap::new(),
            &[],
            Some(json!({ "advance": secs })),
        )
        .await;
    assert_eq!(r.status, 200, "moving the provider's clock: {}", r.body);
}

/// Starts a sign-in at the manager; answers (authorization URL, binding cookie).
async fn start(http: &Http, base: &str) -> (String, BTreeMap<String, String>) {
    let r = http
        .send(
            "GET",
            &format!("{base}/api/v1/auth/oidc/start"),
            &BTreeMap::new(),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 302, "{}", r.body);
    (r.location.unwrap(), r.cookies.into_iter().collect())
}

/// A whole sign-in; answers the manager's final answer to the callback.
async fn sign_in(http: &Http, base: &str, provider: &str, sub: &str, groups: &[&str]) -> Res {
    next_login(http, provider, sub, groups).await;
    let (auth_url, binding) = start(http, base).await;
    let cb = through_provider(http, provider, auth_url).await;
    http.send("GET", &cb, &binding, &[], None).await
}

fn sso_error(r: &Res) -> String {
    r.location.clone().unwrap_or_default()
}

#[actix_rt::test]
async fn azure_ad_style_sign_in_against_a_real_provider() {
    let db = TestDb::new(Engine::Sqlite);
    let config = test_config(&db);
    let server = patch_manager::server::start(config.clone()).await.unwrap();
    let base = format!("http://{}", server.addr);
    let redirect = format!(
        "http://localhost:{}/api/v1/auth/oidc/callback",
        server.addr.port()
    );
    let mut provider = start_provider(&redirect);
    let idp = provider.issuer.clone();
    let http = Http::new();

    setup_admin(&base, &config.data.dir).await;
    let s = call(
        "POST",
        &format!("{base}/api/v1/auth/login"),
        &[],
        Some(json!({ "username": "admin", "password": "tangerine-Orbit-42", "client": "api" })),
    )
    .await;
    let admin = vec![(
        "authorization",
        format!("Bearer {}", s.body["access_token"].as_str().unwrap()),
    )];
    let g = call(
        "POST",
        &format!("{base}/api/v1/groups"),
        &admin,
        Some(json!({ "name": "web" })),
    )
    .await;
    let web = g.body["id"].as_i64().unwrap();

    let mut settings = json!({
        "enabled": true, "authority": idp, "client_id": "patch-manager",
        "client_secret": "s3cret-for-tests", "redirect_url": redirect, "claim": "groups",
        "mappings": [
            { "value": "azure-admins", "role": "admin" },
            { "value": "azure-web", "role": "operator", "group_ids": [web] }
        ]
    });

    // Test connection: the discovery document and keys, nothing saved.
    let t = call(
        "POST",
        &format!("{base}/api/v1/settings/oidc/test"),
        &admin,
        Some(settings.clone()),
    )
    .await;
    assert_eq!(t.status, 200, "{}", t.body);
    assert_eq!(t.body["issuer"], idp.as_str());
    assert!(t.body["keys"].as_u64().unwrap() >= 1);
    let closed = format!(
        "http://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    let t = call(
        "POST",
        &format!("{base}/api/v1/settings/oidc/test"),
        &admin,
        Some(json!({ "authority": closed })),
    )
    .await;
    assert_eq!(
        (t.status, t.body["error"]["code"].as_str()),
        (502, Some("identity_provider_error"))
    );
    assert_eq!(
        call("GET", &format!("{base}/api/v1/auth/oidc/status"), &[], None)
            .await
            .body["enabled"],
        false
    );

    // Save; the secret is never shown again.
    let p = call(
        "PUT",
        &format!("{base}/api/v1/settings/oidc"),
        &admin,
        Some(settings.clone()),
    )
    .await;
    assert_eq!(p.status, 200, "{}", p.body);
    let got = call("GET", &format!("{base}/api/v1/settings/oidc"), &admin, None).await;
    assert_eq!(got.body["secret_set"], true);
    assert!(got.body.get("client_secret").is_none() && !got.body.to_string().contains("s3cret"));
    assert_eq!(
        call("GET", &format!("{base}/api/v1/auth/oidc/status"), &[], None)
            .await
            .body["enabled"],
        true
    );

    // An Admin by group.
    let r = sign_in(
        &http,
        &base,
        &idp,
        "alice",
        &["azure-admins", "something-else"],
    )
    .await;
    assert_eq!(
        (r.status, r.location.as_deref()),
        (302, Some("/")),
        "{}",
        r.body
    );
    let cookies: BTreeMap<String, String> = r
        .cookies
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    assert!(cookies.contains_key("lpm_access") && cookies.contains_key("lpm_refresh"));
    let me = http
        .send(
            "GET",
            &format!("{base}/api/v1/auth/me"),
            &cookies,
            &[],
            None,
        )
        .await;
    let me: Value = serde_json::from_str(&me.body).unwrap();
    assert_eq!(
        (me["username"].as_str(), me["role"].as_str()),
        (Some("alice-contoso.example"), Some("admin"))
    );

    // An Operator by group, with the mapped host group; sees what Operators see.
    let r = sign_in(&http, &base, &idp, "bob", &["azure-web"]).await;
    assert_eq!(r.location.as_deref(), Some("/"), "{}", sso_error(&r));
    let users = call("GET", &format!("{base}/api/v1/users"), &admin, None).await;
    let bob = users
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "bob-contoso.example")
        .unwrap()
        .clone();
    assert_eq!(
        (bob["role"].as_str(), bob["sso"].as_bool()),
        (Some("operator"), Some(true))
    );
    assert_eq!(bob["group_ids"], json!([web]));
    // The directory is the source of truth: a later sign-in with the admin group promotes.
    let r = sign_in(&http, &base, &idp, "bob", &["azure-admins"]).await;
    assert_eq!(r.location.as_deref(), Some("/"));
    let users = call("GET", &format!("{base}/api/v1/users"), &admin, None).await;
    assert_eq!(
        users
            .body
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["sso"] == true)
            .count(),
        2,
        "no duplicate account"
    );

    // An SSO account with its own second factor must give it after the directory's sign-in.
    {
        let r = sign_in(&http, &base, &idp, "carol", &["azure-web"]).await;
        let jar: BTreeMap<String, String> = r
            .cookies
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect();
        let csrf = vec![("x-csrf-token", jar["lpm_csrf"].clone())];
        let e = http
            .send(
                "POST",
                &format!("{base}/api/v1/auth/mfa/totp"),
                &jar,
                &csrf,
                Some(json!({ "name": "phone" })),
            )
            .await;
        assert_eq!(e.status, 201, "{}", e.body);
        let e: Value = serde_json::from_str(&e.body).unwrap();
        let seed = totp_rs::Secret::try_from_base32(e["secret_base32"].as_str().unwrap()).unwrap();
        let app = patch_manager::auth::mfa::totp(seed.as_ref().to_vec(), "carol").unwrap();
        let clock = server.state.clock.clone();
        let confirm = http
            .send(
                "POST",
                &format!("{base}/api/v1/auth/mfa/totp/{}/confirm", e["credential_id"]),
                &jar,
                &csrf,
                Some(json!({ "code": patch_manager::auth::mfa::code_at(&app, clock.unix()) })),
            )
            .await;
        assert_eq!(confirm.status, 200, "{}", confirm.body);

        let r = sign_in(&http, &base, &idp, "carol", &["azure-web"]).await;
        assert_eq!(r.location.as_deref(), Some("/login?sso_mfa=1"));
        let pending: BTreeMap<String, String> = r
            .cookies
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect();
        assert!(
            !pending.contains_key("lpm_access"),
            "no session before the second factor"
        );
        let none = http
            .send(
                "GET",
                &format!("{base}/api/v1/auth/login/pending"),
                &BTreeMap::new(),
                &[],
                None,
            )
            .await;
        assert_eq!(none.status, 404);
        let p = http
            .send(
                "GET",
                &format!("{base}/api/v1/auth/login/pending"),
                &pending,
                &[],
                None,
            )
            .await;
        assert_eq!(p.status, 200, "{}", p.body);
        let p: Value = serde_json::from_str(&p.body).unwrap();
        assert!(p["methods"].as_array().unwrap().iter().any(|m| m == "totp"));
        clock.advance(30);
        let done = http
            .send(
                "POST",
                &format!("{base}/api/v1/auth/login/mfa"),
                &BTreeMap::new(),
                &[],
                Some(json!({ "mfa_token": p["mfa_token"], "code": patch_manager::auth::mfa::code_at(&app, clock.unix()) })),
            )
            .await;
        assert_eq!(done.status, 200, "{}", done.body);
        assert!(done
            .cookies
            .iter()
            .any(|(k, v)| k == "lpm_access" && !v.is_empty()));
    }

    // No mapped group: no access, no account.
    let r = sign_in(&http, &base, &idp, "mallory", &["azure-guests"]).await;
    assert_eq!(sso_error(&r), "/login?sso_error=no_access");
    let users = call("GET", &format!("{base}/api/v1/users"), &admin, None).await;
    assert!(!users.body.to_string().contains("mallory"));

    // Tampered state; missing binding cookie; replayed callback.
    next_login(&http, &idp, "alice", &["azure-admins"]).await;
    let (auth_url, binding) = start(&http, &base).await;
    let cb = through_provider(&http, &idp, auth_url).await;
    let tampered = {
        let mut u = url::Url::parse(&cb).unwrap();
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "state" {
                    format!("{}ff", &v[..v.len() - 2])
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
        u.to_string()
    };
    assert_eq!(
        sso_error(&http.send("GET", &tampered, &binding, &[], None).await),
        "/login?sso_error=bad_state"
    );
    let stolen = http.send("GET", &cb, &BTreeMap::new(), &[], None).await;
    assert_eq!(
        sso_error(&stolen),
        "/login?sso_error=bad_state",
        "a callback in another browser"
    );
    assert_eq!(
        sso_error(&http.send("GET", &cb, &binding, &[], None).await),
        "/login?sso_error=bad_state",
        "state is single-use"
    );

    // Wrong nonce: the provider signs the nonce it was given, not the one the manager stored.
    next_login(&http, &idp, "alice", &["azure-admins"]).await;
    let (auth_url, binding) = start(&http, &base).await;
    let mut u = url::Url::parse(&auth_url).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            (
                k.clone().into_owned(),
                if k == "nonce" {
                    "forged-nonce".to_owned()
                } else {
                    v.into_owned()
                },
            )
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    let cb = through_provider(&http, &idp, u.to_string()).await;
    assert_eq!(
        sso_error(&http.send("GET", &cb, &binding, &[], None).await),
        "/login?sso_error=token_refused"
    );

    // A code for another application of the tenant.
    next_login(&http, &idp, "alice", &["azure-admins"]).await;
    let (auth_url, binding) = start(&http, &base).await;
    let other = auth_url.replace("client_id=patch-manager", "client_id=other-app");
    assert_ne!(other, auth_url);
    let cb = through_provider(&http, &idp, other).await;
    assert_eq!(
        sso_error(&http.send("GET", &cb, &binding, &[], None).await),
        "/login?sso_error=token_refused"
    );

    // An expired code.
    next_login(&http, &idp, "alice", &["azure-admins"]).await;
    let (auth_url, binding) = start(&http, &base).await;
    let cb = through_provider(&http, &idp, auth_url).await;
    advance_provider_clock(&http, &idp, CODE_TTL_SECS + 2).await;
    assert_eq!(
        sso_error(&http.send("GET", &cb, &binding, &[], None).await),
        "/login?sso_error=token_refused"
    );
    advance_provider_clock(&http, &idp, -(CODE_TTL_SECS + 2)).await;

    // An ID token the provider issued to another application is refused by the manager's
    // verifier on its audience.
    {
        use openidconnect::PkceCodeChallenge;
        next_login(&http, &idp, "alice", &["azure-admins"]).await;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut u = url::Url::parse(&format!("{idp}/auth")).unwrap();
        u.query_pairs_mut()
            .append_pair("client_id", "other-app")
            .append_pair("response_type", "code")
            .append_pair("scope", "openid profile")
            .append_pair("redirect_uri", &redirect)
            .append_pair("state", "x")
            .append_pair("nonce", "n-other")
            .append_pair("code_challenge", challenge.as_str())
            .append_pair("code_challenge_method", "S256");
        let cb = through_provider(&http, &idp, u.to_string()).await;
        let code = url::Url::parse(&cb)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "code")
            .unwrap()
            .1
            .into_owned();
        let token: Value = {
            let mut res = awc::Client::default()
                .post(format!("{idp}/token"))
                .basic_auth("other-app", "other-secret")
                .send_form(&[
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", redirect.as_str()),
                    ("code_verifier", verifier.secret().as_str()),
                ])
                .await
                .unwrap();
            res.json().await.unwrap()
        };
        let id_token: patch_manager::auth::sso::SsoIdToken =
            serde_json::from_value(token["id_token"].clone()).unwrap();
        let s: shared::auth::OidcSettings = serde_json::from_value(settings.clone()).unwrap();
        let h = patch_manager::auth::sso::http_client().unwrap();
        let meta = patch_manager::auth::sso::discover(&s, &h).await.unwrap();
        let ours = patch_manager::auth::sso::client(meta.clone(), &s, None).unwrap();
        let err = patch_manager::auth::sso::verify(&ours, &id_token, "n-other").unwrap_err();
        assert!(err.to_lowercase().contains("audience"), "{err}");
        // The same token is fine for the application it was issued to: the check is the audience.
        let mut theirs = s.clone();
        theirs.client_id = "other-app".into();
        let theirs = patch_manager::auth::sso::client(meta, &theirs, None).unwrap();
        assert!(patch_manager::auth::sso::verify(&theirs, &id_token, "n-other").is_ok());
    }

    // Every refusal is audited with its reason.
    let reasons: Vec<String> = {
        use diesel::prelude::*;
        use patch_manager::db::schema::audit_log as l;
        let mut c = server.state.db.conn().unwrap();
        l::table
            .filter(l::action.eq("auth.sso"))
            .select(l::details_json)
            .load(&mut *c)
            .unwrap()
    };
    for needle in [
        "no mapped group",
        "state does not match",
        "another browser",
        "unknown or used state",
        "nonce",
        "the code was not accepted",
    ] {
        assert!(
            reasons
                .iter()
                .any(|r| r.to_lowercase().contains(&needle.to_lowercase())),
            "no audit record mentioning {needle}: {reasons:?}"
        );
    }

    // The provider goes down: single sign-on says so, the local Admin still signs in.
    drop(provider.child.kill());
    let _ = provider.child.wait();
    let r = http
        .send(
            "GET",
            &format!("{base}/api/v1/auth/oidc/start"),
            &BTreeMap::new(),
            &[],
            None,
        )
        .await;
    assert_eq!(
        r.location.as_deref(),
        Some("/login?sso_error=provider_unreachable")
    );
    let local = call(
        "POST",
        &format!("{base}/api/v1/auth/login"),
        &[],
        Some(json!({ "username": "admin", "password": "tangerine-Orbit-42", "client": "api" })),
    )
    .await;
    assert_eq!(local.status, 200, "break-glass Admin");

    // Turning it off hides the button.
    settings["enabled"] = json!(false);
    call(
        "PUT",
        &format!("{base}/api/v1/settings/oidc"),
        &admin,
        Some(settings),
    )
    .await;
    assert_eq!(
        call("GET", &format!("{base}/api/v1/auth/oidc/status"), &[], None)
            .await
            .body["enabled"],
        false
    );
    server.stop().await;
}
