//! The OpenAPI document has real schemas: every route's request and response types are documented
//! with their properties, and answers recorded from a real agent (real apt and dpkg in an isolated
//! root) validate against them with a JSON Schema 2020-12 validator. A deliberately wrong document
//! fails the same checks, so they can fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{start_agent_with, AgentFiles, Api, AptRoot, Ca};
use patch_agent::api::ROUTES;
use patch_agent::openapi::PREFIX;
use serde_json::{json, Value};
use shared::openapi::inspect::lacks_properties;
use std::time::Duration;

/// The operation documented for `method path` (path as in the route table).
fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    let op = &doc["paths"][format!("{PREFIX}{path}")][method.to_ascii_lowercase()];
    assert!(op.is_object(), "{method} {path} is not documented");
    op
}

/// The schema of the `status` answer of `method path`.
fn response_schema<'a>(doc: &'a Value, method: &str, path: &str, status: u16) -> &'a Value {
    let s = &operation(doc, method, path)["responses"][status.to_string()]["content"]
        ["application/json"]["schema"];
    assert!(s.is_object(), "{method} {path}: no schema for {status}");
    s
}

/// The schema of the request body of `method path`, if it takes one.
fn request_schema<'a>(doc: &'a Value, method: &str, path: &str) -> Option<&'a Value> {
    let s = &operation(doc, method, path)["requestBody"]["content"]["application/json"]["schema"];
    s.is_object().then_some(s)
}

/// A validator for `schema`, whose `$ref`s resolve in `doc`'s components.
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "allOf": [schema],
        "components": doc["components"],
    });
    jsonschema::draft202012::new(&root).unwrap_or_else(|e| panic!("bad schema {schema}: {e}"))
}

/// The validation errors of `answer` against `schema`, as text (empty when it validates).
fn errors(doc: &Value, schema: &Value, answer: &Value) -> Vec<String> {
    validator(doc, schema)
        .iter_errors(answer)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// Answers recorded from the agent: (method, route path, status, body).
type Recorded = Vec<(&'static str, &'static str, u16, Value)>;

/// Checks every recorded answer against `doc`; answers the failures.
fn failures(doc: &Value, recorded: &Recorded) -> Vec<String> {
    recorded
        .iter()
        .flat_map(|(method, path, status, body)| {
            errors(doc, response_schema(doc, method, path, *status), body)
                .into_iter()
                .map(move |e| format!("{method} {path} {status}: {e}"))
        })
        .collect()
}

#[test]
fn every_route_has_request_and_response_schemas_with_properties() {
    let doc = patch_agent::openapi::document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(
        !doc.to_string().contains("see the shared crate"),
        "placeholder schemas are back"
    );
    for r in ROUTES {
        let what = format!("{} {}", r.method, r.path);
        let response = response_schema(&doc, r.method, r.path, r.ok);
        if let Some(why) = lacks_properties(&doc, response) {
            panic!("{what}: response {why}");
        }
        match (r.request.is_some(), request_schema(&doc, r.method, r.path)) {
            (true, Some(body)) => {
                if let Some(why) = lacks_properties(&doc, body) {
                    panic!("{what}: request {why}");
                }
            }
            (false, None) => {}
            (takes, documented) => {
                panic!("{what}: takes a body {takes}, documented {documented:?}")
            }
        }
        for status in ["400", "404", "500", "503"] {
            let e = &operation(&doc, r.method, r.path)["responses"][status]["content"]
                ["application/json"]["schema"]["$ref"];
            assert_eq!(e, "#/components/schemas/ErrorEnvelope", "{what} {status}");
        }
        for p in shared::openapi::path_params(r.path) {
            let params = operation(&doc, r.method, r.path)["parameters"]
                .as_array()
                .unwrap();
            assert!(
                params.iter().any(|x| x["name"] == p && x["in"] == "path"),
                "{what}: path parameter {p} undocumented"
            );
        }
    }
    // Every named object schema has properties (or is a map), and every schema compiles.
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        if schema["type"] == "object" {
            assert!(
                schema["properties"]
                    .as_object()
                    .is_some_and(|p| !p.is_empty())
                    || schema.get("additionalProperties").is_some(),
                "{name} is a placeholder: {schema}"
            );
        }
        validator(
            &doc,
            &json!({ "$ref": format!("#/components/schemas/{name}") }),
        );
    }
    // Request bodies are described as they deserialize: a pinned version may be left out.
    let spec = &doc["components"]["schemas"]["PackageSpec"];
    assert_eq!(spec["required"], json!(["name"]), "{spec}");
    assert_eq!(spec["additionalProperties"], false, "{spec}");

    // The check can fail: the old placeholder components are refused.
    let mut placeholder = doc.clone();
    placeholder["components"]["schemas"]["AgentHealth"] = json!({ "type": "object", "description": "shared::agent::AgentHealth (see the shared crate)" });
    let health = response_schema(&placeholder, "GET", "/health", 200);
    assert!(lacks_properties(&placeholder, health).is_some());
    placeholder["components"]["schemas"]["JobEvent"] = json!({ "oneOf": [
        { "type": "object", "properties": { "type": { "const": "queued" } } },
        { "type": "object" },
    ] });
    let events = response_schema(&placeholder, "GET", "/ws/jobs", 101);
    assert!(lacks_properties(&placeholder, events).is_some());
}

#[actix_rt::test]
async fn recorded_answers_validate_against_the_document() {
    use futures_util::StreamExt;
    let root = AptRoot::new();
    let ca = Ca::new("Fleet CA");
    let files = AgentFiles::new(
        &ca,
        &ca.leaf("agent.test", 1, true, 90),
        None,
        &["127.0.0.1"],
    );
    let (agent, _audit, _jobs) =
        start_agent_with(&files, root.backend(), 5, Duration::from_secs(300));
    let api = Api::new(&ca, agent.addr);

    // The served document is the built one, and `patch-agent openapi` prints the same.
    let doc = api.get("/openapi.json").await;
    assert_eq!(doc, patch_agent::openapi::document());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_patch-agent"))
        .arg("openapi")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, doc);

    let mut recorded: Recorded = vec![("GET", "/openapi.json", 200, doc.clone())];
    let mut record = |method, path, status, body: Value| {
        recorded.push((method, path, status, body));
    };

    // Live job events, recorded from before the first job.
    let mut cfg = api.client.config();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let client = awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(std::sync::Arc::new(cfg)))
        .finish();
    let (_resp, mut ws) = client
        .ws(format!(
            "wss://127.0.0.1:{}{PREFIX}/ws/jobs",
            agent.addr.port()
        ))
        .connect()
        .await
        .expect("websocket over mTLS");

    for path in ["/health", "/system/info", "/packages", "/patches", "/jobs"] {
        record("GET", path, 200, api.get(path).await);
    }
    let (status, v) = api.call("GET", "/packages/lpm-test-hello", None).await;
    assert_eq!(status, 404, "{v}");
    record("GET", "/packages/{name}", 404, v);
    let (status, v) = api.call("GET", "/jobs/not-a-ulid", None).await;
    assert_eq!(status, 400, "{v}");
    record("GET", "/jobs/{id}", 400, v);

    // A job: the request body we send validates too.
    let body = json!({ "packages": [{ "name": "lpm-test-hello", "version": "1.0-1" }, { "name": "lpm-test-app" }] });
    let schema = request_schema(&doc, "POST", "/packages").unwrap();
    assert_eq!(errors(&doc, schema, &body), Vec::<String>::new());
    let (status, accepted) = api.call("POST", "/packages", Some(&body.to_string())).await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["job_id"].as_str().unwrap().to_owned();
    record("POST", "/packages", 202, accepted);
    let job = api.wait(&id).await;
    assert_eq!(job.status, shared::agent::JobStatus::Succeeded, "{job:?}");
    let job = api.get(&format!("/jobs/{id}")).await;
    assert!(!job["results"].as_array().unwrap().is_empty(), "{job}");
    record("GET", "/jobs/{id}", 200, job);

    // A second job with the optional body left out: moves hello to its candidate.
    let (status, accepted) = api.call("PUT", "/packages/lpm-test-hello", None).await;
    assert_eq!(status, 202, "{accepted}");
    let update = accepted["job_id"].as_str().unwrap().to_owned();
    record("PUT", "/packages/{name}", 202, accepted);
    api.wait(&update).await;

    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Ok(Some(frame)) = tokio::time::timeout_at(deadline, ws.next()).await {
        let awc::ws::Frame::Text(text) = frame.unwrap() else {
            continue;
        };
        let event: Value = serde_json::from_slice(&text).unwrap();
        let last = event["type"] == "finished" && event["job_id"] == update.as_str();
        events.push(event);
        if last {
            break;
        }
    }
    for kind in ["queued", "started", "output", "package", "finished"] {
        assert!(
            events.iter().any(|e| e["type"] == kind),
            "no {kind} event: {events:?}"
        );
    }
    for e in events {
        record("GET", "/ws/jobs", 101, e);
    }

    // With something installed every list has items to check.
    for path in ["/packages", "/jobs", "/health"] {
        record("GET", path, 200, api.get(path).await);
    }
    let one = api.get("/packages/lpm-test-hello").await;
    assert_eq!(one["packages"][0]["version"], "2.0-1", "{one}");
    record("GET", "/packages/{name}", 200, one);
    let (status, accepted) = api
        .call(
            "POST",
            "/packages",
            Some(r#"{"packages":[{"name":"lpm-test-secure","version":"1.0-1"}]}"#),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    api.wait(accepted["job_id"].as_str().unwrap()).await;
    let patches = api.get("/patches").await;
    assert!(patches["total"].as_u64().unwrap() > 0, "{patches}");
    record("GET", "/patches", 200, patches);

    // Every GET route and the job routes were recorded.
    for r in ROUTES.iter().filter(|r| r.method == "GET") {
        assert!(
            recorded
                .iter()
                .any(|(m, p, s, _)| *m == "GET" && *p == r.path && *s == r.ok),
            "GET {} not recorded",
            r.path
        );
    }
    assert_eq!(failures(&doc, &recorded), Vec::<String>::new());

    // A deliberately wrong document fails: a type changed, a field that is never sent required,
    // an enum that lost a value, an extra field refused.
    let mut wrong = doc.clone();
    let schemas = &mut wrong["components"]["schemas"];
    schemas["AgentHealth"]["properties"]["jobs_running"] = json!({ "type": "string" });
    schemas["Job"]["required"]
        .as_array_mut()
        .unwrap()
        .push(json!("owner"));
    schemas["InstalledPackage"]["properties"]["arch"] = json!({ "enum": ["riscv"] });
    schemas["SystemInfo"]["additionalProperties"] = json!(false);
    schemas["SystemInfo"]["properties"]
        .as_object_mut()
        .unwrap()
        .remove("kernel");
    schemas["ErrorBody"]["properties"]["code"] = json!({ "type": "integer" });
    let failed = failures(&wrong, &recorded);
    for expect in [
        "GET /health 200",
        "GET /jobs/{id} 200",
        "GET /packages 200",
        "GET /packages/{name} 200",
        "GET /jobs 200",
        "GET /system/info 200",
        "GET /packages/{name} 404",
    ] {
        assert!(
            failed.iter().any(|f| f.starts_with(expect)),
            "the wrong document passed {expect}: {failed:#?}"
        );
    }
    agent.stop().await;
}
