//! `/openapi.json`: an OpenAPI 3.1 description built from the route table in `api.rs`, the same
//! table the router is built from.

use serde_json::{json, Map, Value};

/// One documented route.
pub struct RouteDoc {
    /// Lowercase HTTP method, as in `axum::routing::get`.
    pub method: &'static str,
    /// axum path syntax: `/api/v1/branches/{name}`.
    pub path: &'static str,
    /// The operation of the service it maps onto (`lakeplan_lake::ops::OPERATIONS`), if any.
    pub operation: Option<&'static str>,
    /// The key scope the route needs at least: read, write or admin.
    pub scope: &'static str,
    pub summary: &'static str,
    /// Query parameters in field notation (see [`field`]).
    pub query: &'static [&'static str],
    /// JSON body fields in field notation.
    pub body: &'static [&'static str],
}

/// Field notation: `name` (optional string), `name!` (required), `name:type` or `name!:type`
/// (boolean, integer, object, array). Returns (name, required, JSON schema type).
fn field(spec: &str) -> (&str, bool, &str) {
    let (name, ty) = spec.split_once(':').unwrap_or((spec, "string"));
    match name.strip_suffix('!') {
        Some(n) => (n, true, ty),
        None => (name, false, ty),
    }
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

/// The whole document.
pub fn document(routes: &[RouteDoc]) -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for r in routes {
        let mut params: Vec<Value> = Vec::new();
        for seg in r.path.split('/') {
            if let Some(p) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                params.push(json!({
                    "name": p, "in": "path", "required": true, "schema": {"type": "string"},
                    "description": if p == "ref" { "a ref expression: branch, tag, name@hash, @hash or name*RFC3339-time (percent-encoded)" } else { "" }
                }));
            }
        }
        for q in r.query {
            let (name, required, ty) = field(q);
            params.push(
                json!({"name": name, "in": "query", "required": required, "schema": {"type": ty}}),
            );
        }
        let mut op = json!({
            "summary": r.summary,
            "operationId": format!("{}{}", r.method, r.path.replace(['/', '{', '}', '-'], "_")),
            "x-lakeplan-scope": r.scope,
            "parameters": params,
            "security": [{"bearer": []}],
            "responses": {
                "200": {"description": "OK (201 for creations)", "content": {"application/json": {}}},
                "400": error_response("Bad request: invalid names, refs, SQL or input"),
                "401": error_response("Missing, unknown or revoked API key"),
                "403": error_response("The key may not do this (scope or zone)"),
                "404": error_response("No such ref, table, namespace or job in the caller's tenant"),
                "409": error_response("Exists already, or a conflict (the tables are in error.context)"),
                "413": error_response("Body too large"),
            }
        });
        if !r.body.is_empty() {
            let mut props = Map::new();
            let mut required = Vec::new();
            for b in r.body {
                let (name, req, ty) = field(b);
                props.insert(name.to_string(), json!({"type": ty}));
                if req {
                    required.push(name);
                }
            }
            op["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": {
                    "type": "object", "properties": props, "required": required
                }}}
            });
        }
        if let Some(name) = r.operation {
            // The operation of the service it is, and what that operation says of itself.
            op["x-lakeplan-operation"] = json!(name);
            if let Some(doc) = lakeplan_lake::ops::OPERATIONS
                .iter()
                .find(|o| o.name == name)
            {
                op["description"] = json!(doc.summary);
            }
        }
        let entry = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        entry[r.method] = op;
    }
    paths.insert(
        "/healthz".into(),
        json!({"get": {"summary": "Liveness (no key needed)", "security": [], "responses": {"200": {"description": "ok"}}}}),
    );
    paths.insert(
        "/metrics".into(),
        json!({"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text exposition format"}}}}),
    );
    paths.insert(
        "/openapi.json".into(),
        json!({"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "lakeplan",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Git for data over Apache Iceberg tables: branches, tags, commits, tables, SQL and pipeline jobs. Every request but /healthz needs 'Authorization: Bearer <key>'."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {
                "type": "object",
                "properties": {"error": {"type": "object", "properties": {
                    "type": {"type": "string", "description": "the error kind: RefNotFound, Conflict, MergeConflict, Forbidden, Unauthorized, ..."},
                    "message": {"type": "string"},
                    "context": {"type": "object"}
                }, "required": ["type", "message"]}},
                "required": ["error"]
            }}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_notation() {
        assert_eq!(field("name"), ("name", false, "string"));
        assert_eq!(field("name!"), ("name", true, "string"));
        assert_eq!(field("replace:boolean"), ("replace", false, "boolean"));
        assert_eq!(field("plan!:object"), ("plan", true, "object"));
    }
}
