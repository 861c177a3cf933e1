//! A small OpenAPI 3.1 document builder whose schemas come from Rust types (`schemars`), so a
//! route table that names its request and response types documents itself.
//!
//! ```
//! use shared::openapi::{schema_of, Document};
//! use shared::agent::{AgentHealth, InstallRequest, JobAccepted};
//!
//! let mut doc = Document::new("patch-agent API", "1.0.0");
//! doc.route("GET", "/api/v1/health", "Service status", None, schema_of::<AgentHealth>, &[500]);
//! doc.route(
//!     "POST",
//!     "/api/v1/packages",
//!     "Install packages",
//!     Some(schema_of::<InstallRequest>),
//!     schema_of::<JobAccepted>,
//!     &[400, 503],
//! )
//! .status(202);
//! let json = doc.to_json();
//! assert!(json["components"]["schemas"]["AgentHealth"]["properties"].is_object());
//! ```
//!
//! How the document is made:
//! - Each route names its types as [`SchemaFn`]s (usually [`schema_of::<T>`](schema_of)); they run
//!   when the document is built. Named types become `#/components/schemas/<Name>` references, and
//!   everything they reference lands in `components/schemas` (schemars' definitions, generated
//!   straight under that path instead of `$defs`).
//! - Responses are described as the types **serialize** (every field present), request bodies as
//!   they **deserialize** (fields with defaults and `Option`s may be left out). When one type's two
//!   shapes differ, the request one is stored as `<Name>Input` and the `$ref`s on the request side
//!   are rewritten to it.
//! - `{param}` segments of a path become required string path parameters.
//! - Every status in a route's `errors` answers the shared [`ErrorEnvelope`].
//!
//! Compiled with the crate's `schema` feature only (native binaries; not needed in WebAssembly).

use crate::ErrorEnvelope;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The OpenAPI version the builder writes.
pub const OPENAPI_VERSION: &str = "3.1.0";

/// Where schemas live in the document; every generated `$ref` starts with this.
pub const SCHEMA_REF_PREFIX: &str = "#/components/schemas/";

/// Produces the schema of one type with the document's generator; see [`schema_of`].
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// The media type of JSON bodies.
pub const JSON: &str = "application/json";

/// The [`SchemaFn`] of `T`: a `$ref` into `components/schemas` for named types (structs, enums),
/// an inline schema for the others (`String`, `Vec<T>`, …).
pub fn schema_of<T: JsonSchema + ?Sized>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// An OpenAPI document being built: a title, a version and routes.
#[derive(Debug, Clone)]
pub struct Document {
    title: String,
    version: String,
    description: Option<String>,
    error_descriptions: BTreeMap<u16, String>,
    operations: Vec<Operation>,
}

/// One documented operation (a method on a path), as added by [`Document::route`]; its setters
/// adjust what the defaults do not fit.
#[derive(Debug, Clone)]
pub struct Operation {
    method: String,
    path: String,
    summary: String,
    request: Option<SchemaFn>,
    request_required: bool,
    response: SchemaFn,
    status: u16,
    media: Option<String>,
    errors: Vec<u16>,
    query: Vec<(String, String)>,
}

impl Document {
    /// An empty document for the API `title` at `version` (the API's version, not OpenAPI's).
    pub fn new(title: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            version: version.into(),
            description: None,
            error_descriptions: BTreeMap::new(),
            operations: Vec::new(),
        }
    }

    /// Sets `info.description`.
    #[must_use]
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = Some(text.into());
        self
    }

    /// Describes what an error status means in this API (every route listing it); without one the
    /// standard reason phrase is used.
    #[must_use]
    pub fn error_description(mut self, status: u16, text: impl Into<String>) -> Self {
        self.error_descriptions.insert(status, text.into());
        self
    }

    /// Adds `method path` (method in any case; path with `{param}` segments). `request` is the body
    /// schema (required unless [`Operation::optional_body`]), `response` the schema answered with
    /// status 200 (see [`Operation::status`]), `errors` the statuses answered with the
    /// [`ErrorEnvelope`]. A second route with the same method and path replaces the first.
    pub fn route(
        &mut self,
        method: &str,
        path: &str,
        summary: &str,
        request: Option<SchemaFn>,
        response: SchemaFn,
        errors: &[u16],
    ) -> &mut Operation {
        let method = method.to_ascii_lowercase();
        self.operations
            .retain(|o| !(o.method == method && o.path == path));
        self.operations.push(Operation {
            method,
            path: path.to_owned(),
            summary: summary.to_owned(),
            request,
            request_required: true,
            response,
            status: 200,
            media: Some(JSON.to_owned()),
            errors: errors.to_vec(),
            query: Vec::new(),
        });
        let last = self.operations.len() - 1;
        &mut self.operations[last]
    }

    /// Builds the document: runs every route's schema functions and collects the components.
    pub fn build(&self) -> OpenApi {
        let settings = |s: SchemaSettings| {
            s.with(|s| s.definitions_path = "/components/schemas".into())
                .into_generator()
        };
        let mut responses = settings(SchemaSettings::draft2020_12().for_serialize());
        let mut requests = settings(SchemaSettings::draft2020_12().for_deserialize());
        let error = responses.subschema_for::<ErrorEnvelope>().to_value();

        let mut ops: Vec<(&Operation, Value, Option<Value>)> = self
            .operations
            .iter()
            .map(|o| {
                let response = (o.response)(&mut responses).to_value();
                let request = o.request.map(|f| f(&mut requests).to_value());
                (o, response, request)
            })
            .collect();

        let mut schemas = responses.take_definitions(true);
        let renames = merge_request_definitions(&mut schemas, requests.take_definitions(true));
        for (_, _, request) in &mut ops {
            if let Some(r) = request {
                rewrite_refs(r, &renames);
            }
        }

        let mut paths: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
        for (o, response, request) in ops {
            let op = self.operation_json(o, response, request, &error);
            paths
                .entry(o.path.clone())
                .or_default()
                .insert(o.method.clone(), op);
        }
        OpenApi {
            openapi: OPENAPI_VERSION.to_owned(),
            info: Info {
                title: self.title.clone(),
                version: self.version.clone(),
                description: self.description.clone(),
            },
            paths,
            components: Components {
                schemas: schemas.into_iter().collect(),
            },
        }
    }

    /// The built document as JSON.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.build()).unwrap_or(Value::Null)
    }

    fn operation_json(
        &self,
        o: &Operation,
        response: Value,
        request: Option<Value>,
        error: &Value,
    ) -> Value {
        let mut parameters: Vec<Value> = path_params(&o.path)
            .map(|p| json!({ "name": p, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        parameters.extend(o.query.iter().map(|(name, description)| {
            json!({ "name": name, "in": "query", "required": false,
                    "description": description, "schema": { "type": "string" } })
        }));
        let mut responses = Map::new();
        let success = match o.media.as_deref() {
            Some(JSON) => json_response(reason(o.status), response),
            Some(other) => json!({
                "description": reason(o.status),
                "content": { other: { "schema": { "type": "string" } } },
            }),
            None => json!({ "description": reason(o.status) }),
        };
        responses.insert(o.status.to_string(), success);
        for &status in &o.errors {
            let description = self
                .error_descriptions
                .get(&status)
                .map_or_else(|| reason(status), String::as_str);
            responses.insert(
                status.to_string(),
                json_response(description, error.clone()),
            );
        }
        let mut op = json!({
            "summary": o.summary,
            "operationId": operation_id(&o.method, &o.path),
            "parameters": parameters,
            "responses": responses,
        });
        if let Some(schema) = request {
            op["requestBody"] = json!({
                "required": o.request_required,
                "content": { "application/json": { "schema": schema } },
            });
        }
        op
    }
}

impl Operation {
    /// The success status (default 200; e.g. 202 for accepted jobs, 101 for a WebSocket, whose
    /// response schema then describes its messages).
    pub fn status(&mut self, status: u16) -> &mut Self {
        self.status = status;
        self
    }

    /// The success answer's media type: `None` for no body (204, a redirect), another type than
    /// JSON for a file (its schema is then a string). Default: JSON of the response schema.
    pub fn media(&mut self, media_type: Option<&str>) -> &mut Self {
        self.media = media_type.map(str::to_owned);
        self
    }

    /// Adds an optional string query parameter.
    pub fn query(&mut self, name: &str, description: &str) -> &mut Self {
        self.query.push((name.to_owned(), description.to_owned()));
        self
    }

    /// Marks the request body as optional.
    pub fn optional_body(&mut self) -> &mut Self {
        self.request_required = false;
        self
    }
}

/// The names of the `{param}` segments of `path`, in order.
pub fn path_params(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
}

/// A built OpenAPI document (what [`Document::to_json`] serializes); its own schema documents the
/// route that serves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OpenApi {
    /// OpenAPI version (`3.1.0`).
    pub openapi: String,
    /// Title and version of the API.
    pub info: Info,
    /// Operations by path, then by lower-case method.
    pub paths: BTreeMap<String, BTreeMap<String, Value>>,
    /// Reusable parts.
    pub components: Components,
}

/// `info` of an [`OpenApi`] document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "OpenApiInfo")]
pub struct Info {
    /// API title.
    pub title: String,
    /// API version.
    pub version: String,
    /// What the API is, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `components` of an [`OpenApi`] document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "OpenApiComponents")]
pub struct Components {
    /// JSON Schemas (2020-12) by type name, referenced as `#/components/schemas/<name>`.
    pub schemas: BTreeMap<String, Value>,
}

/// Adds the request-side definitions to `schemas`. A name whose request shape differs from its
/// response shape (directly, or through a type it references) is stored as `<Name>Input`;
/// answers the renames, already applied to the added definitions.
fn merge_request_definitions(
    schemas: &mut Map<String, Value>,
    requests: Map<String, Value>,
) -> BTreeMap<String, String> {
    let mut renames = BTreeMap::new();
    loop {
        let mut changed = false;
        for (name, schema) in &requests {
            if renames.contains_key(name) {
                continue;
            }
            let Some(existing) = schemas.get(name) else {
                continue;
            };
            let mut rewritten = schema.clone();
            rewrite_refs(&mut rewritten, &renames);
            if &rewritten != existing {
                let mut new = format!("{name}Input");
                let mut n = 2;
                while schemas.contains_key(&new) || requests.contains_key(&new) {
                    new = format!("{name}Input{n}");
                    n += 1;
                }
                renames.insert(name.clone(), new);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    for (name, mut schema) in requests {
        rewrite_refs(&mut schema, &renames);
        match renames.get(&name) {
            Some(new) => {
                schemas.insert(new.clone(), schema);
            }
            None => {
                schemas.entry(name).or_insert(schema);
            }
        }
    }
    renames
}

/// Points every `$ref` to a renamed component at its new name.
fn rewrite_refs(value: &mut Value, renames: &BTreeMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "$ref" {
                    if let Some(new) = v
                        .as_str()
                        .and_then(|r| r.strip_prefix(SCHEMA_REF_PREFIX))
                        .and_then(|name| renames.get(name))
                    {
                        *v = Value::String(format!("{SCHEMA_REF_PREFIX}{new}"));
                    }
                } else {
                    rewrite_refs(v, renames);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_refs(v, renames)),
        _ => {}
    }
}

fn json_response(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

/// `get /api/v1/jobs/{id}` → `get_api_v1_jobs_id`.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_owned();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        id.push('_');
        id.extend(seg.chars().filter_map(|c| match c {
            '{' | '}' => None,
            c if c.is_ascii_alphanumeric() => Some(c),
            _ => Some('_'),
        }));
    }
    id
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Response",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serializes every field; deserializes with `note` optional: two different shapes.
    #[derive(Serialize, Deserialize, JsonSchema)]
    struct Item {
        name: String,
        #[serde(default)]
        note: String,
    }

    #[derive(Serialize, Deserialize, JsonSchema)]
    struct Wrapper {
        items: Vec<Item>,
    }

    #[test]
    fn routes_become_operations_with_components_and_error_envelope() {
        let mut doc = Document::new("t", "1").error_description(404, "no such item");
        doc.route(
            "PUT",
            "/items/{group}/{name}",
            "put",
            Some(schema_of::<Item>),
            schema_of::<Wrapper>,
            &[404],
        )
        .status(202)
        .query("dry_run", "only check")
        .optional_body();
        let v = doc.to_json();
        let op = &v["paths"]["/items/{group}/{name}"]["put"];
        assert_eq!(op["operationId"], "put_items_group_name");
        let names: Vec<_> = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                format!(
                    "{}:{}",
                    p["in"].as_str().unwrap(),
                    p["name"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(names, ["path:group", "path:name", "query:dry_run"]);
        assert_eq!(op["requestBody"]["required"], false);
        let ok = &op["responses"]["202"]["content"]["application/json"]["schema"];
        assert_eq!(ok["$ref"], "#/components/schemas/Wrapper");
        assert_eq!(op["responses"]["404"]["description"], "no such item");
        assert_eq!(
            op["responses"]["404"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorEnvelope"
        );
        let schemas = &v["components"]["schemas"];
        for name in ["Wrapper", "Item", "ErrorEnvelope", "ErrorBody"] {
            assert!(schemas[name]["properties"].is_object(), "{name}: {schemas}");
        }
        assert!(!v.to_string().contains("$defs"), "{v}");
    }

    #[test]
    fn differing_request_shapes_are_renamed_and_refs_rewritten() {
        let mut doc = Document::new("t", "1");
        doc.route("GET", "/w", "get", None, schema_of::<Wrapper>, &[]);
        doc.route(
            "POST",
            "/w",
            "post",
            Some(schema_of::<Wrapper>),
            schema_of::<Wrapper>,
            &[],
        );
        let v = doc.to_json();
        let schemas = &v["components"]["schemas"];
        // Serialized: both fields always present.
        assert_eq!(schemas["Item"]["required"], json!(["name", "note"]));
        // Deserialized: `note` may be left out; `Wrapper` differs only through `Item`.
        assert_eq!(schemas["ItemInput"]["required"], json!(["name"]));
        assert_eq!(
            schemas["WrapperInput"]["properties"]["items"]["items"]["$ref"],
            "#/components/schemas/ItemInput"
        );
        let body = &v["paths"]["/w"]["post"]["requestBody"]["content"]["application/json"];
        assert_eq!(body["schema"]["$ref"], "#/components/schemas/WrapperInput");
        assert_eq!(
            v["paths"]["/w"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
                ["$ref"],
            "#/components/schemas/Wrapper"
        );
    }

    #[test]
    fn identical_shapes_are_stored_once() {
        let mut doc = Document::new("t", "1");
        doc.route(
            "POST",
            "/e",
            "post",
            Some(schema_of::<crate::agent::JobStatus>),
            schema_of::<crate::agent::JobStatus>,
            &[],
        );
        let v = doc.to_json();
        let names: Vec<_> = v["components"]["schemas"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(names, ["ErrorBody", "ErrorEnvelope", "JobStatus"]);
    }

    #[test]
    fn the_document_type_describes_the_document() {
        let doc = Document::new("t", "1").description("d");
        let v = doc.to_json();
        let back: OpenApi = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(back).unwrap(), v);
        assert_eq!(v["openapi"], "3.1.0");
        assert_eq!(
            v["info"],
            json!({"title": "t", "version": "1", "description": "d"})
        );
    }
}

/// Reading a built document, for the programs' own tests: find an operation's schemas, follow
/// `$ref`s, and tell whether a schema really describes an object.
pub mod inspect {
    use serde_json::Value;

    /// The operation documented for `method path` (the full path, as in the document).
    pub fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> Option<&'a Value> {
        let op = &doc["paths"][path][method.to_ascii_lowercase()];
        op.is_object().then_some(op)
    }

    /// The JSON schema of the `status` answer of `method path`.
    pub fn response_schema<'a>(
        doc: &'a Value,
        method: &str,
        path: &str,
        status: u16,
    ) -> Option<&'a Value> {
        let s = &operation(doc, method, path)?["responses"][status.to_string()]["content"]
            [super::JSON]["schema"];
        s.is_object().then_some(s)
    }

    /// The JSON schema of the request body of `method path`, if it takes one.
    pub fn request_schema<'a>(doc: &'a Value, method: &str, path: &str) -> Option<&'a Value> {
        let s = &operation(doc, method, path)?["requestBody"]["content"][super::JSON]["schema"];
        s.is_object().then_some(s)
    }

    /// Follows `$ref`s into `components/schemas` (a dangling one resolves to `null`).
    pub fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
        match schema["$ref"]
            .as_str()
            .and_then(|r| r.strip_prefix(super::SCHEMA_REF_PREFIX))
        {
            Some(name) => resolve(doc, &doc["components"]["schemas"][name]),
            None => schema,
        }
    }

    /// Why `schema` does not describe objects with properties (or arrays of them; every
    /// alternative of a `oneOf`/`anyOf`), if it does not.
    pub fn lacks_properties(doc: &Value, schema: &Value) -> Option<String> {
        let s = resolve(doc, schema);
        for key in ["oneOf", "anyOf"] {
            if let Some(alternatives) = s[key].as_array() {
                return alternatives
                    .iter()
                    .find_map(|a| lacks_properties(doc, a))
                    .map(|why| format!("{key} alternative: {why}"));
            }
        }
        if s["type"] == "array" {
            return lacks_properties(doc, &s["items"]).map(|why| format!("items: {why}"));
        }
        match s["properties"].as_object() {
            Some(p) if !p.is_empty() => None,
            _ => Some(format!("no properties: {s}")),
        }
    }
}
