//! The HTTP surface of a real manager on 127.0.0.1:0, on both engines: health, the server-rendered
//! page, request ids, security headers, and the JSON envelope for every kind of failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use actix_web::{test, web, App, HttpResponse};
use common::{test_config, Engine, TestDb, BACKENDS};
use patch_manager::http::middleware::request_context;
use serde::Deserialize;
use shared::status::{DatabaseBackend, HealthReport, ServiceState};
use shared::ErrorEnvelope;

fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .finish()
}

fn is_ulid(s: &str) -> bool {
    s.len() == 26 && ulid::Ulid::from_string(s).is_ok()
}

#[actix_rt::test]
async fn health_page_and_errors_on_a_running_server() {
    for engine in BACKENDS {
        let db = TestDb::new(engine);
        let server = patch_manager::server::start(test_config(&db))
            .await
            .unwrap();
        let base = format!("http://{}", server.addr);
        let c = client();

        // Health.
        let mut res = c.get(format!("{base}/status/health")).send().await.unwrap();
        assert_eq!(res.status(), 200, "{engine:?}");
        let rid = res
            .headers()
            .get("x-request-id")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(is_ulid(&rid), "request id {rid} is not a ULID");
        let report: HealthReport = res.json().await.unwrap();
        assert_eq!(report.status, ServiceState::Ok);
        assert!(report.database_ok);
        let expected = match engine {
            Engine::Sqlite => DatabaseBackend::Sqlite,
            Engine::Postgres => DatabaseBackend::Postgres,
        };
        assert_eq!(report.database, expected);

        // Every request gets its own id.
        let res2 = c.get(format!("{base}/status/health")).send().await.unwrap();
        assert_ne!(
            res2.headers()
                .get("x-request-id")
                .unwrap()
                .to_str()
                .unwrap(),
            rid
        );

        // An unknown API path: 404 with the envelope, request id in body and header agree.
        let mut res = c
            .get(format!("{base}/api/v1/no/such/thing"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404);
        let hdr = res
            .headers()
            .get("x-request-id")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let env: ErrorEnvelope = res.json().await.unwrap();
        assert_eq!(env.error.code, "not_found");
        assert_eq!(env.error.request_id.as_deref(), Some(hdr.as_str()));

        // 405 on a known path with the wrong method, still the envelope.
        let mut res = c
            .post(format!("{base}/status/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 405, "{engine:?}");
        let env: ErrorEnvelope = res.json().await.unwrap();
        assert_eq!(env.error.code, "method_not_allowed");
        assert!(env.error.request_id.is_some());

        // Any other unknown path is the UI's "Page not found", a 404 with the request id too.
        let mut res = c.get(format!("{base}/no/such/thing")).send().await.unwrap();
        assert_eq!(res.status(), 404);
        assert!(res.headers().contains_key("x-request-id"));
        let page = res.body().await.unwrap();
        assert!(String::from_utf8_lossy(&page).contains("Page not found"));

        // A page for signed-in users, asked for without a session: a redirect, nothing else.
        let no_redirects = awc::Client::builder().disable_redirects().finish();
        // (No `Accept: text/html`: a script or a probe gets the redirect too.)
        let res = no_redirects.get(format!("{base}/")).send().await.unwrap();
        assert_eq!(res.status(), 302);
        assert_eq!(res.headers().get("location").unwrap(), "/login");

        // A public server-rendered page: complete HTML shell with the security headers, no data
        // an anonymous visitor may not see, not yet hydrated, loader present.
        let mut res = c.get(format!("{base}/setup")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        for h in [
            "content-security-policy",
            "x-frame-options",
            "x-content-type-options",
        ] {
            assert!(res.headers().contains_key(h), "missing security header {h}");
        }
        let body = String::from_utf8(res.body().limit(4 << 20).await.unwrap().to_vec()).unwrap();
        assert!(body.contains("First-run setup"), "{body}");
        assert!(
            !body.contains(expected.label()),
            "the server-rendered page must not carry data to anonymous visitors"
        );
        // The overview's data: only signed in.
        let res = c
            .get(format!("{base}/api/v1/overview"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        common::setup_admin(&base, &server.state.config.data.dir).await;
        let login = common::call(
            "POST",
            &format!("{base}/api/v1/auth/login"),
            &[],
            Some(serde_json::json!({ "username": "admin", "password": "tangerine-Orbit-42", "client": "api" })),
        )
        .await;
        let token = login.body["access_token"].as_str().unwrap().to_owned();
        let mut res = c
            .get(format!("{base}/api/v1/overview"))
            .insert_header(("authorization", format!("Bearer {token}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let o: shared::status::SystemOverview = res.json().await.unwrap();
        assert_eq!(
            o.health.database, expected,
            "the overview names the database engine"
        );
        assert_eq!(o.users, 1);
        assert!(
            body.contains("id=\"setup-submit\" type=\"submit\" disabled"),
            "SSR must render the unhydrated state (submit disabled until the bundle runs)"
        );
        assert!(
            body.contains(
                &common::bundle()
                    .map(|(js, _)| js)
                    .unwrap_or_else(|| format!("/pkg/{}.js", frontend_leptos::OUTPUT_NAME))
            ),
            "hydration loader missing from the page"
        );
        // With a split bundle, the page names its route's WebAssembly modules for preloading:
        // the route ids the server records must be the ones the browser build's split manifest
        // uses, and every module named must be a file of the bundle.
        if let Some((js, _)) = common::bundle() {
            let dir = js.rsplit_once('/').unwrap().0.to_owned();
            let main_wasm = js.replace(".js", "_bg.wasm");
            let preloads: Vec<&str> = body
                .split("<link ")
                .skip(1)
                .map(|tag| tag.split('>').next().unwrap())
                .filter(|tag| tag.contains(r#"rel="preload""#) && tag.contains(".wasm"))
                .filter_map(|tag| tag.split(r#"href=""#).nth(1)?.split('"').next())
                .filter(|href| *href != main_wasm)
                .collect();
            assert!(!preloads.is_empty(), "no route module preloaded: {body}");
            for href in preloads {
                let file = href
                    .strip_prefix(&format!("{dir}/"))
                    .unwrap_or_else(|| panic!("{href} is not in {dir}"));
                assert!(
                    common::site_root().join(&dir[1..]).join(file).is_file(),
                    "{href} is not a file of the bundle"
                );
            }
        }

        // The root CA download: PEM, fingerprint header matching the CA, audited.
        let mut res = c
            .get(format!("{base}/api/v1/ca/root.crt"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.headers()
                .get("x-certificate-sha256")
                .unwrap()
                .to_str()
                .unwrap(),
            server.state.pki.web_ca.fingerprint()
        );
        let pem = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
        assert_eq!(
            pem,
            server.state.pki.web_ca.cert_pem(),
            "root.crt is the web CA: the root browsers trust signs nothing else"
        );
        assert!(!pem.contains("PRIVATE KEY"));

        // Start-up was audited and the chain verifies.
        let verdict = server.state.audit.verify().await.unwrap();
        assert!(
            matches!(verdict, shared::status::AuditChainState::Intact { records } if records >= 1),
            "{verdict:?}"
        );
        server.stop().await;
    }
}

#[actix_rt::test]
async fn restart_keeps_data_and_chain() {
    let db = TestDb::new(Engine::Sqlite);
    let s = patch_manager::server::start(test_config(&db))
        .await
        .unwrap();
    let first = s.state.audit.verify().await.unwrap();
    let fingerprint = s.state.pki.ca.fingerprint().to_owned();
    s.stop().await;
    let s = patch_manager::server::start(test_config(&db))
        .await
        .unwrap();
    let shared::status::AuditChainState::Intact { records: before } = first else {
        panic!("{first:?}")
    };
    // The restart adds only its start record: the CA and the current certificates are reused.
    assert_eq!(
        s.state.audit.verify().await.unwrap(),
        shared::status::AuditChainState::Intact {
            records: before + 1
        }
    );
    assert_eq!(
        s.state.pki.ca.fingerprint(),
        fingerprint,
        "the CA survives a restart"
    );
    s.stop().await;
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Probe {
    name: String,
    count: u16,
}

async fn echo(body: web::Json<Probe>) -> HttpResponse {
    HttpResponse::Ok().body(body.name.clone())
}

/// The extractor configuration the API uses turns bad bodies into precise envelopes.
#[actix_rt::test]
async fn bad_bodies_get_precise_envelopes() {
    const LIMIT: usize = 2048;
    let app = test::init_service(
        App::new()
            .wrap(actix_web::middleware::from_fn(request_context))
            .configure(|cfg| patch_manager::api::configure(cfg, LIMIT))
            .route("/probe", web::post().to(echo)),
    )
    .await;

    let cases: Vec<(Vec<u8>, &str, u16, &str)> = vec![
        (
            b"{\"name\":\"a\",\"count\":1}".to_vec(),
            "application/json",
            200,
            "",
        ),
        (
            b"{\"name\":".to_vec(),
            "application/json",
            400,
            "invalid_json",
        ),
        (
            b"{\"name\":\"a\",\"count\":\"many\"}".to_vec(),
            "application/json",
            400,
            "invalid_json",
        ),
        (
            b"{\"name\":\"a\",\"count\":70000}".to_vec(),
            "application/json",
            400,
            "invalid_json",
        ),
        (b"[1,2]".to_vec(), "application/json", 400, "invalid_json"),
        (
            b"{\"name\":\"a\",\"count\":1}".to_vec(),
            "text/plain",
            415,
            "unsupported_media_type",
        ),
        (
            format!("{{\"name\":\"{}\",\"count\":1}}", "x".repeat(LIMIT * 4)).into_bytes(),
            "application/json",
            413,
            "payload_too_large",
        ),
    ];
    for (body, ctype, status, code) in cases {
        let req = test::TestRequest::post()
            .uri("/probe")
            .insert_header(("content-type", ctype))
            .set_payload(body.clone())
            .to_request();
        let res = test::call_service(&app, req).await;
        assert_eq!(
            res.status().as_u16(),
            status,
            "body {:?}",
            String::from_utf8_lossy(&body[..body.len().min(60)])
        );
        let rid = res
            .headers()
            .get("x-request-id")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        if status != 200 {
            let env: ErrorEnvelope = test::read_body_json(res).await;
            assert_eq!(env.error.code, code);
            assert_eq!(env.error.request_id.as_deref(), Some(rid.as_str()));
            assert!(!env.error.message.is_empty());
        }
    }
}
