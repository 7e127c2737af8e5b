//! `/openapi.json`: an OpenAPI 3.1 description built from the route table in `api.rs`, the same
//! table the router is built from.

use serde_json::{json, Map, Value};

#[cfg(test)]
use lakeplan_lake::ops;

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

    /// The route of `ROUTES` a client's request for operation `name` reaches: same method, a
    /// path whose `{param}` segments take any value, and the row names that operation.
    fn route_of(name: &str, call: &ops::HttpCall) -> Option<&'static RouteDoc> {
        let method = match call.method {
            ops::Method::Get => "get",
            ops::Method::Post => "post",
            ops::Method::Delete => "delete",
        };
        crate::api::ROUTES.iter().find(|r| {
            let template: Vec<&str> = r.path.trim_start_matches("/api/v1/").split('/').collect();
            r.method == method
                && r.operation == Some(name)
                && template.len() == call.path.len()
                && template
                    .iter()
                    .zip(&call.path)
                    .all(|(t, seg)| t.starts_with('{') || t == seg)
        })
    }

    /// Each operation the remote client sends (`ops::OverHttp`) reaches the server's route for
    /// that same operation, and its query and body name only what that route documents: the
    /// client's mapping and the server's route table cannot drift apart.
    #[test]
    fn what_the_client_sends_is_the_route_of_the_same_operation() {
        use lakeplan_core::RefKind;
        use ops::OverHttp;

        fn check<O: OverHttp>(mut op: O, seen: &mut Vec<&'static str>) {
            op.bind_client("alice.dev");
            let call = op.http().expect("a request");
            let route = route_of(O::NAME, &call)
                .unwrap_or_else(|| panic!("{}: no route for {call:?}", O::NAME));
            let named = |fields: &[&str]| -> Vec<String> {
                fields.iter().map(|f| field(f).0.to_string()).collect()
            };
            let (query, body) = (named(route.query), named(route.body));
            for (k, _) in &call.query {
                assert!(
                    query.contains(&k.to_string()),
                    "{}: query '{k}' undocumented",
                    O::NAME
                );
            }
            if let Some(serde_json::Value::Object(b)) = &call.body {
                for k in b.keys() {
                    assert!(
                        body.contains(k),
                        "{}: body field '{k}' undocumented",
                        O::NAME
                    );
                }
            }
            seen.push(O::NAME);
        }
        let plan = ops::PlanTable {
            table: "t".into(),
            search_uri: "s3://b/x.csv".into(),
            partitioned_by: Some("a".into()),
            ..Default::default()
        };
        let created: lakeplan_lake::CreatePlan = serde_json::from_value(serde_json::json!({
            "table": "default.t", "search_uri": "s3://b/x.csv", "branch": "alice.dev",
            "schema": [], "files": []
        }))
        .expect("plan");
        let mut seen = Vec::new();
        let s = &mut seen;
        for kind in [RefKind::Branch, RefKind::Tag] {
            check(ops::ListRefs { kind }, s);
            check(
                ops::GetRef {
                    name: "v1".into(),
                    kind,
                },
                s,
            );
            check(
                ops::CreateRef {
                    name: "x".into(),
                    kind,
                    from: None,
                    if_not_exists: true,
                },
                s,
            );
            check(
                ops::DeleteRef {
                    name: "x".into(),
                    kind,
                    if_exists: true,
                },
                s,
            );
            check(
                ops::RenameRef {
                    name: "x".into(),
                    new_name: "y".into(),
                    kind,
                },
                s,
            );
        }
        check(
            ops::Merge {
                source: "a".into(),
                message: Some("m".into()),
                ..Default::default()
            },
            s,
        );
        check(
            ops::Diff {
                from: "main".into(),
                to: None,
            },
            s,
        );
        let filter = lakeplan_lake::LogFilter {
            message: lakeplan_lake::LogFilter::optional("message", Some("fix")).expect("re"),
            author: lakeplan_lake::LogFilter::optional("author", Some("al")).expect("re"),
            properties: vec![("k".into(), "v".into())],
        };
        check(
            ops::Commits {
                at: None,
                filter,
                limit: Some(3),
            },
            s,
        );
        check(ops::ListNamespaces { at: None }, s);
        check(
            ops::CreateNamespace {
                name: "n".into(),
                ..Default::default()
            },
            s,
        );
        check(
            ops::DropNamespace {
                name: "n".into(),
                ..Default::default()
            },
            s,
        );
        check(
            ops::ListTables {
                at: None,
                namespace: Some("n".into()),
            },
            s,
        );
        check(
            ops::GetTable {
                table: "t".into(),
                namespace: Some("n".into()),
                at: None,
            },
            s,
        );
        check(
            ops::DropTable {
                table: "t".into(),
                if_exists: true,
                ..Default::default()
            },
            s,
        );
        check(
            ops::RevertTable {
                table: "t".into(),
                source_ref: "main".into(),
                ..Default::default()
            },
            s,
        );
        check(ops::Settings, s);
        check(
            ops::SetSetting {
                name: "default_namespace".into(),
                value: None,
            },
            s,
        );
        check(ops::AuditLog { limit: Some(1) }, s);
        check(
            ops::SealSecret {
                project_id: None,
                name: "n".into(),
                value: "v".into(),
            },
            s,
        );
        check(plan.clone(), s);
        check(
            ops::CreateTable {
                plan,
                commit: Default::default(),
            },
            s,
        );
        check(
            ops::ApplyPlan {
                plan: created,
                commit: Default::default(),
            },
            s,
        );
        check(
            ops::Import {
                table: "t".into(),
                search_uri: "s3://b/x.csv".into(),
                ..Default::default()
            },
            s,
        );
        check(ops::ListJobs { limit: Some(2) }, s);
        check(
            ops::GetJob {
                id: "abc123".into(),
            },
            s,
        );
        check(ops::CancelJob::new("abc123"), s);
        check(
            ops::Rerun {
                job_id: "abc123".into(),
                at: Some("main".into()),
                dry_run: true,
                no_cache: true,
            },
            s,
        );
        assert!(seen.len() >= 28, "{seen:?}");
    }
}
