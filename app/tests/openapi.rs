//! The manager's OpenAPI document has real schemas: every endpoint declared in `shared::api` is
//! documented with request and response schemas that have properties, and answers recorded from
//! a real manager validate against them (status included) with a JSON Schema 2020-12 validator.
//! A deliberately wrong document fails the same check, so it can fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bearer_for, call, setup_admin, test_config, Engine, TestDb};
use serde_json::{json, Value};
use shared::openapi::inspect::{lacks_properties, request_schema, response_schema};

const PASSWORD: &str = "tangerine-Orbit-42";

/// The validation errors of `answer` against `schema` (empty when it validates).
fn errors(doc: &Value, schema: &Value, answer: &Value) -> Vec<String> {
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "allOf": [schema],
        "components": doc["components"],
    });
    let validator =
        jsonschema::draft202012::new(&root).unwrap_or_else(|e| panic!("bad schema {schema}: {e}"));
    validator
        .iter_errors(answer)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

/// Endpoints whose answer is not an object with properties, and why.
const FREE_FORM: &[(&str, &str)] = &[(
    "/api/v1/openapi.json",
    "the document itself, any JSON object",
)];

#[test]
fn every_endpoint_has_request_and_response_schemas_with_properties() {
    let doc = patch_manager::api::openapi::document();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = 0;
    for r in patch_manager::api::ROUTES {
        let (method, path) = (r.method.as_str(), r.path);
        let what = format!("{method} {path}");
        let op = shared::openapi::inspect::operation(doc, method, path)
            .unwrap_or_else(|| panic!("{what} is not documented"));
        documented += 1;
        let success = op["responses"]
            .as_object()
            .unwrap()
            .keys()
            .find(|s| s.starts_with('2') || s.starts_with('3') || *s == "101")
            .unwrap_or_else(|| panic!("{what}: no success answer"))
            .parse::<u16>()
            .unwrap();
        match response_schema(doc, method, path, success) {
            Some(schema) if !FREE_FORM.iter().any(|(p, _)| *p == path) => {
                if let Some(why) = lacks_properties(doc, schema) {
                    panic!("{what}: response {why}");
                }
            }
            Some(_) => {}
            None => {
                // No JSON answer: a 204, an accepted request, a redirect, a WebSocket or a
                // file, said so explicitly.
                let content = &op["responses"][success.to_string()]["content"];
                assert!(
                    [101, 202, 204, 302].contains(&success) || content.is_object(),
                    "{what}: {success} without a schema"
                );
            }
        }
        if let Some(body) = request_schema(doc, method, path) {
            if let Some(why) = lacks_properties(doc, body) {
                panic!("{what}: request {why}");
            }
        }
        for status in ["400", "401", "500"] {
            let e = &op["responses"][status]["content"]["application/json"]["schema"]["$ref"];
            assert_eq!(e, "#/components/schemas/ErrorEnvelope", "{what} {status}");
        }
    }
    assert_eq!(documented, shared::api::ALL.len());
    // Bodies are documented where the endpoint takes one.
    assert!(request_schema(doc, "POST", "/api/v1/users").is_some());
    assert!(request_schema(doc, "GET", "/api/v1/users").is_none());
}

#[actix_rt::test]
async fn recorded_answers_validate_against_the_document() {
    let db = TestDb::new(Engine::Sqlite);
    let config = test_config(&db);
    let server = patch_manager::server::start(config.clone()).await.unwrap();
    let base = format!("http://{}", server.addr);
    let mut recorded: Vec<(&str, &str, u16, Value)> = Vec::new();

    let setup = call("GET", &format!("{base}/api/v1/setup"), &[], None).await;
    recorded.push(("GET", "/api/v1/setup", setup.status, setup.body));
    setup_admin(&base, &config.data.dir).await;
    let login = call(
        "POST",
        &format!("{base}/api/v1/auth/login"),
        &[],
        Some(json!({ "username": "admin", "password": PASSWORD, "client": "api" })),
    )
    .await;
    recorded.push(("POST", "/api/v1/auth/login", login.status, login.body));
    let admin = bearer_for(&base, "admin", PASSWORD).await;

    let group = call(
        "POST",
        &format!("{base}/api/v1/groups"),
        &admin,
        Some(json!({ "name": "web", "description": "front ends" })),
    )
    .await;
    let group_id = group.body["id"].clone();
    recorded.push(("POST", "/api/v1/groups", group.status, group.body));
    let user = call(
        "POST",
        &format!("{base}/api/v1/users"),
        &admin,
        Some(
            json!({ "username": "oper", "password": PASSWORD, "role": "operator",
                     "group_ids": [group_id] }),
        ),
    )
    .await;
    recorded.push(("POST", "/api/v1/users", user.status, user.body));
    let token = call(
        "POST",
        &format!("{base}/api/v1/enrollment-tokens"),
        &admin,
        Some(json!({ "minutes": 30 })),
    )
    .await;
    recorded.push((
        "POST",
        "/api/v1/enrollment-tokens",
        token.status,
        token.body,
    ));
    let totp = call(
        "POST",
        &format!("{base}/api/v1/auth/mfa/totp"),
        &admin,
        Some(json!({ "name": "phone" })),
    )
    .await;
    recorded.push(("POST", "/api/v1/auth/mfa/totp", totp.status, totp.body));

    for path in [
        "/status/health",
        "/api/v1/overview",
        "/api/v1/auth/me",
        "/api/v1/auth/mfa",
        "/api/v1/auth/oidc/status",
        "/api/v1/hosts",
        "/api/v1/groups",
        "/api/v1/jobs",
        "/api/v1/windows",
        "/api/v1/users",
        "/api/v1/certificates",
        "/api/v1/certificates/crl",
        "/api/v1/enrollment-tokens",
        "/api/v1/settings/allow-list",
        "/api/v1/settings/oidc",
    ] {
        let a = call("GET", &format!("{base}{path}"), &admin, None).await;
        recorded.push(("GET", path, a.status, a.body));
    }
    // Error answers are documented too.
    let refused = call("GET", &format!("{base}/api/v1/users"), &[], None).await;
    recorded.push(("GET", "/api/v1/users", refused.status, refused.body));

    let doc = patch_manager::api::openapi::document();
    let mut failures = Vec::new();
    for (method, path, status, body) in &recorded {
        match response_schema(doc, method, path, *status) {
            Some(schema) => failures.extend(
                errors(doc, schema, body)
                    .into_iter()
                    .map(|e| format!("{method} {path} {status}: {e}")),
            ),
            None => failures.push(format!(
                "{method} {path}: status {status} is not documented"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The check can fail: a document whose user schema expects a different role does not accept
    // the recorded user.
    let mut wrong = doc.clone();
    wrong["components"]["schemas"]["Role"] = json!({ "enum": ["superuser"] });
    let (_, _, status, body) = recorded
        .iter()
        .find(|(m, p, _, _)| *m == "POST" && *p == "/api/v1/users")
        .unwrap();
    let schema = response_schema(&wrong, "POST", "/api/v1/users", *status).unwrap();
    assert!(
        !errors(&wrong, schema, body).is_empty(),
        "a wrong document accepted {body}"
    );
    server.stop().await;
}

#[test]
fn the_cli_prints_the_served_document() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_patch-manager"))
        .arg("openapi")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(&printed, patch_manager::api::openapi::document());
}
