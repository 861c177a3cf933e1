//! The OpenAPI 3.1 document of the agent's API, generated from [`crate::api::ROUTES`] (the same
//! table the router is built from).

use crate::api::ROUTES;
use serde_json::{json, Map, Value};

/// Builds the document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let mut params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|p| json!({ "name": p, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        params.extend(r.query.iter().map(|(name, description)| {
            json!({ "name": name, "in": "query", "required": false, "description": description, "schema": { "type": "string" } })
        }));
        let mut op = json!({
            "summary": r.summary,
            "operationId": format!("{} {}", r.method, r.path),
            "parameters": params,
            "responses": {
                r.ok.to_string(): {
                    "description": "success",
                    "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{}", r.response) } } }
                },
                "400": error_response("invalid input (name, version, JSON, query)"),
                "404": error_response("no such resource"),
                "503": error_response("exclusive mode: a rollback is running"),
            }
        });
        if let Some(body) = r.body {
            op["requestBody"] = json!({
                "required": r.method != "PUT",
                "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{body}") } } }
            });
        }
        let entry = paths
            .entry(format!("/api/v1{}", r.path))
            .or_insert_with(|| json!({}));
        entry[r.method.to_ascii_lowercase()] = op;
    }
    let mut schemas = Map::new();
    for r in ROUTES {
        for name in r.body.iter().chain(std::iter::once(&r.response)) {
            schemas.insert((*name).to_owned(), json!({ "type": "object", "description": format!("shared::agent::{name} (see the shared crate)") }));
        }
    }
    schemas.insert(
        "ErrorEnvelope".into(),
        json!({
            "type": "object",
            "required": ["error"],
            "properties": { "error": { "type": "object", "required": ["code", "message", "request_id", "details"],
                "properties": { "code": { "type": "string" }, "message": { "type": "string" },
                                "request_id": { "type": ["string", "null"] }, "details": {} } } }
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": { "title": "patch-agent API", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Served on port 12443 over TLS 1.3; a client certificate from the fleet CA is required." },
        "paths": paths,
        "components": { "schemas": schemas },
    })
}

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorEnvelope" } } } })
}
