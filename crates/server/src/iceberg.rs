//! The Iceberg REST catalog (Apache Iceberg's REST OpenAPI spec) at `/iceberg/v1/...`, one
//! catalog per ref: the ref is the spec's `{prefix}`. A client configured with
//! `uri=http://HOST:PORT/iceberg` and `warehouse=REF` gets `{"overrides": {"prefix": REF}}`
//! from `/iceberg/v1/config`, and then works on that ref's tables:
//!
//! ```text
//! GET    /iceberg/v1/config?warehouse=REF
//! GET    /iceberg/v1/{ref}/namespaces                      POST (create)
//! GET    /iceberg/v1/{ref}/namespaces/{ns}                 HEAD, DELETE
//! GET    /iceberg/v1/{ref}/namespaces/{ns}/tables          POST (create)
//! POST   /iceberg/v1/{ref}/namespaces/{ns}/register
//! GET    /iceberg/v1/{ref}/namespaces/{ns}/tables/{t}      HEAD, DELETE, POST (commit)
//! POST   /iceberg/v1/{ref}/namespaces/{ns}/tables/{t}/metrics   (accepted, not kept)
//! POST   /iceberg/v1/{ref}/tables/rename
//! POST   /iceberg/v1/{ref}/transactions/commit              (several tables, one lakeplan commit)
//! ```
//!
//! Reads take any ref expression (branch, tag, `main@<hash>`, ...); writes need a branch in the
//! key's zone, and each is one lakeplan commit on it, made as every write is (compare-and-swap,
//! conflicts for the same table). Errors have the spec's shape, `{"error": {"message", "type",
//! "code"}}`, with its statuses: 404 for unknown namespaces, tables and refs, 409 for a table or
//! namespace that exists and for failed requirements (`CommitFailedException`), 406 for what
//! lakeplan does not do. Only metadata passes through here: clients read and write data files
//! in the warehouse themselves.

use std::collections::HashMap;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use iceberg::spec::{Schema, SortOrder, UnboundPartitionSpec};
use iceberg::{TableRequirement, TableUpdate};
use lakeplan_core::{Error, TableName, MAIN_BRANCH};
use lakeplan_lake::ops;
use lakeplan_lake::{IcebergChange, IcebergTable};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{principal_of, Caller};
use crate::error::ApiError;
use crate::state::AppState;

/// An error in the Iceberg REST spec's shape.
#[derive(Debug)]
pub struct IcebergError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl IcebergError {
    fn unsupported(message: impl Into<String>) -> Self {
        IcebergError {
            status: StatusCode::NOT_ACCEPTABLE,
            kind: "UnsupportedOperationException",
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        IcebergError {
            status: StatusCode::BAD_REQUEST,
            kind: "BadRequestException",
            message: message.into(),
        }
    }
}

impl From<ApiError> for IcebergError {
    fn from(e: ApiError) -> Self {
        let (status, kind, message, _) = e.parts();
        let kind = match (status.as_u16(), kind.as_str()) {
            (400, _) => "BadRequestException",
            (401, _) => "NotAuthorizedException",
            (403, _) => "ForbiddenException",
            (404, "NamespaceNotFound") => "NoSuchNamespaceException",
            (404, "TableNotFound") => "NoSuchTableException",
            (404, _) => "NotFoundException",
            (409, "TableExists" | "NamespaceExists" | "RefExists") => "AlreadyExistsException",
            (409, _) => "CommitFailedException",
            (408, _) => "RequestTimeoutException",
            (413, _) => "BadRequestException",
            (503, _) => "ServiceUnavailableException",
            _ => "InternalServerError",
        };
        IcebergError {
            status,
            kind,
            message,
        }
    }
}

impl From<Error> for IcebergError {
    fn from(e: Error) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for IcebergError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "message": self.message,
            "type": self.kind,
            "code": self.status.as_u16(),
        }});
        (self.status, Json(body)).into_response()
    }
}

type IceResult = Result<Response, IcebergError>;

/// A JSON body whose rejections use the spec's error shape.
struct IceBody<T>(T);

impl<S: Send + Sync, T: DeserializeOwned + JsonSchema + 'static> axum::extract::FromRequest<S>
    for IceBody<T>
{
    type Rejection = IcebergError;

    async fn from_request(req: Request, state: &S) -> Result<Self, IcebergError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| IcebergError {
                status: r.status(),
                kind: "BadRequestException",
                message: r.body_text(),
            })?;
        let bad = |e: String| IcebergError::bad_request(format!("malformed request body: {e}"));
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        crate::api::unknown_fields::<T>(&v).map_err(IcebergError::bad_request)?;
        serde_json::from_value(v)
            .map(IceBody)
            .map_err(|e| bad(e.to_string()))
    }
}

/// Bearer key → principal, with the spec's 401.
async fn require_key(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    match principal_of(&state, req.headers()).await {
        Ok(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(e) => {
            let mut resp = IcebergError::from(e).into_response();
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
            resp
        }
    }
}

async fn unsupported_route() -> IcebergError {
    IcebergError::unsupported(
        "this Iceberg REST operation is not supported by lakeplan (views, namespace properties, \
         staged creates and plan/scan endpoints are not)",
    )
}

/// The routes under `/iceberg`, behind the key check.
pub fn router(state: AppState) -> Router<AppState> {
    let tables = "/iceberg/v1/{prefix}/namespaces/{namespace}/tables";
    Router::new()
        .route("/iceberg/v1/config", get(config))
        .route(
            "/iceberg/v1/{prefix}/namespaces",
            get(list_namespaces).post(create_namespace),
        )
        .route(
            "/iceberg/v1/{prefix}/namespaces/{namespace}",
            get(load_namespace)
                .head(namespace_exists)
                .delete(drop_namespace),
        )
        .route(tables, get(list_tables).post(create_table))
        .route(
            "/iceberg/v1/{prefix}/namespaces/{namespace}/register",
            post(register_table),
        )
        .route(
            &format!("{tables}/{{table}}"),
            get(load_table)
                .head(table_exists)
                .delete(drop_table)
                .post(commit_table),
        )
        .route(&format!("{tables}/{{table}}/metrics"), post(report_metrics))
        .route("/iceberg/v1/{prefix}/tables/rename", post(rename_table))
        .route(
            "/iceberg/v1/{prefix}/transactions/commit",
            post(commit_transaction),
        )
        .route("/iceberg/{*rest}", axum::routing::any(unsupported_route))
        .route_layer(from_fn_with_state(state, require_key))
}

#[derive(Deserialize)]
struct ConfigQ {
    warehouse: Option<String>,
}

/// The `warehouse` a client names is the ref its catalog works on (default `main`).
async fn config(c: Caller, Query(q): Query<ConfigQ>) -> IceResult {
    let r = q
        .warehouse
        .filter(|w| !w.trim().is_empty())
        .unwrap_or_else(|| MAIN_BRANCH.to_string());
    // The ref must resolve now, so that a typo fails at connect time.
    let op = ops::Commits {
        at: Some(r.clone()),
        filter: Default::default(),
        limit: Some(1),
    };
    c.service().call(op).await?;
    let prefix: String = url_segment(&r);
    Ok(Json(json!({"defaults": {}, "overrides": {"prefix": prefix}})).into_response())
}

fn url_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b'@'
            | b'*'
            | b':' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A namespace in a path: lakeplan's have one level (the spec's separator is U+001F).
fn namespace(ns: &str) -> Result<String, IcebergError> {
    if ns.contains('\u{1f}') {
        return Err(IcebergError::bad_request(format!(
            "namespace '{}': lakeplan namespaces have one level",
            ns.replace('\u{1f}', ".")
        )));
    }
    lakeplan_core::validate_identifier(ns)?;
    Ok(ns.to_string())
}

fn namespace_of_list(levels: &[String]) -> Result<String, IcebergError> {
    match levels {
        [one] => namespace(one),
        _ => Err(IcebergError::bad_request(format!(
            "namespace {levels:?}: lakeplan namespaces have exactly one level"
        ))),
    }
}

fn table_name(ns: &str, table: &str) -> Result<TableName, IcebergError> {
    Ok(TableName::new(&namespace(ns)?, table)?)
}

fn no_content() -> IceResult {
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn load_result(t: &IcebergTable) -> IceResult {
    Ok(Json(json!({
        "metadata-location": t.metadata_location,
        "metadata": &*t.metadata,
        "config": {},
    }))
    .into_response())
}

#[derive(Deserialize)]
struct ListQ {
    parent: Option<String>,
}

async fn list_namespaces(
    c: Caller,
    Path(prefix): Path<String>,
    Query(q): Query<ListQ>,
) -> IceResult {
    if q.parent.is_some_and(|p| !p.is_empty()) {
        // One level: no namespace has children.
        return Ok(Json(json!({"namespaces": []})).into_response());
    }
    let names = c
        .service()
        .call(ops::ListNamespaces { at: Some(prefix) })
        .await?;
    let list: Vec<Value> = names.into_iter().map(|n| json!([n])).collect();
    Ok(Json(json!({"namespaces": list})).into_response())
}

#[derive(Deserialize, JsonSchema)]
struct CreateNamespace {
    namespace: Vec<String>,
    #[serde(default)]
    properties: HashMap<String, String>,
}

async fn create_namespace(
    c: Caller,
    Path(prefix): Path<String>,
    IceBody(b): IceBody<CreateNamespace>,
) -> IceResult {
    let ns = namespace_of_list(&b.namespace)?;
    if !b.properties.is_empty() {
        return Err(IcebergError::unsupported(
            "namespace properties are not stored by lakeplan: create the namespace without them",
        ));
    }
    let op = ops::CreateNamespace {
        name: ns.clone(),
        branch: Some(prefix),
        ..Default::default()
    };
    c.service().call(op).await?;
    Ok(Json(json!({"namespace": [ns], "properties": {}})).into_response())
}

async fn require_namespace(c: &Caller, prefix: &str, ns: &str) -> Result<(), IcebergError> {
    let op = ops::GetNamespace {
        name: ns.to_string(),
        at: Some(prefix.to_string()),
    };
    c.service().call(op).await?;
    Ok(())
}

async fn load_namespace(c: Caller, Path((prefix, ns)): Path<(String, String)>) -> IceResult {
    let ns = namespace(&ns)?;
    require_namespace(&c, &prefix, &ns).await?;
    Ok(Json(json!({"namespace": [ns], "properties": {}})).into_response())
}

async fn namespace_exists(c: Caller, Path((prefix, ns)): Path<(String, String)>) -> IceResult {
    require_namespace(&c, &prefix, &namespace(&ns)?).await?;
    no_content()
}

async fn drop_namespace(c: Caller, Path((prefix, ns)): Path<(String, String)>) -> IceResult {
    let op = ops::DropNamespace {
        name: namespace(&ns)?,
        branch: Some(prefix),
        ..Default::default()
    };
    c.service().call(op).await?;
    no_content()
}

async fn list_tables(c: Caller, Path((prefix, ns)): Path<(String, String)>) -> IceResult {
    let ns = namespace(&ns)?;
    require_namespace(&c, &prefix, &ns).await?;
    let op = ops::ListTables {
        at: Some(prefix),
        namespace: Some(ns),
    };
    let ids: Vec<Value> = c
        .service()
        .call(op)
        .await?
        .into_iter()
        .map(|t| json!({"namespace": [t.namespace], "name": t.name}))
        .collect();
    Ok(Json(json!({"identifiers": ids})).into_response())
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
struct CreateTable {
    name: String,
    location: Option<String>,
    #[schemars(with = "Value")]
    schema: Schema,
    #[schemars(with = "Option<Value>")]
    partition_spec: Option<UnboundPartitionSpec>,
    #[schemars(with = "Option<Value>")]
    write_order: Option<SortOrder>,
    #[serde(default)]
    stage_create: bool,
    #[serde(default)]
    properties: HashMap<String, String>,
}

async fn create_table(
    c: Caller,
    Path((prefix, ns)): Path<(String, String)>,
    IceBody(b): IceBody<CreateTable>,
) -> IceResult {
    let name = table_name(&ns, &b.name)?;
    if b.stage_create {
        return Err(IcebergError::unsupported(
            "staged table creation (stage-create) is not supported: create the table, then commit to it",
        ));
    }
    if b.location.is_some() {
        return Err(IcebergError::bad_request(
            "a table's location is chosen by lakeplan (inside the tenant's warehouse): leave 'location' out",
        ));
    }
    if b.write_order.as_ref().is_some_and(|o| !o.fields.is_empty()) {
        return Err(IcebergError::unsupported(
            "sort orders are not supported yet: create the table without 'write-order'",
        ));
    }
    let op = ops::IcebergCreateTable {
        branch: prefix,
        table: name,
        schema: b.schema,
        partition_spec: b.partition_spec,
        properties: b.properties,
    };
    load_result(&c.service().call(op).await?)
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
struct Register {
    name: String,
    metadata_location: String,
    #[serde(default)]
    overwrite: bool,
}

async fn register_table(
    c: Caller,
    Path((prefix, ns)): Path<(String, String)>,
    IceBody(b): IceBody<Register>,
) -> IceResult {
    if b.overwrite {
        return Err(IcebergError::unsupported(
            "register with overwrite is not supported: drop the table first",
        ));
    }
    let op = ops::IcebergRegisterTable {
        branch: prefix,
        table: table_name(&ns, &b.name)?,
        metadata_location: b.metadata_location,
    };
    load_result(&c.service().call(op).await?)
}

async fn load_table(
    c: Caller,
    Path((prefix, ns, table)): Path<(String, String, String)>,
) -> IceResult {
    let name = table_name(&ns, &table)?;
    let op = ops::IcebergLoadTable {
        at: prefix,
        table: name,
    };
    load_result(&c.service().call(op).await?)
}

async fn table_exists(
    c: Caller,
    Path((prefix, ns, table)): Path<(String, String, String)>,
) -> IceResult {
    let name = table_name(&ns, &table)?;
    let op = ops::IcebergTableExists {
        at: prefix.clone(),
        table: name.clone(),
    };
    if c.service().call(op).await? {
        no_content()
    } else {
        Err(Error::TableNotFound {
            table: name.to_string(),
            at: prefix,
        }
        .into())
    }
}

async fn drop_table(
    c: Caller,
    Path((prefix, ns, table)): Path<(String, String, String)>,
) -> IceResult {
    let op = ops::DropTable {
        table,
        namespace: Some(namespace(&ns)?),
        branch: Some(prefix),
        ..Default::default()
    };
    c.service().call(op).await?;
    no_content()
}

#[derive(Deserialize, JsonSchema)]
struct Ident {
    namespace: Vec<String>,
    name: String,
}

impl Ident {
    fn table(&self) -> Result<TableName, IcebergError> {
        Ok(TableName::new(
            &namespace_of_list(&self.namespace)?,
            &self.name,
        )?)
    }
}

#[derive(Deserialize, JsonSchema)]
struct CommitTable {
    identifier: Option<Ident>,
    #[serde(default)]
    #[schemars(with = "Vec<Value>")]
    requirements: Vec<TableRequirement>,
    #[serde(default)]
    #[schemars(with = "Vec<Value>")]
    updates: Vec<TableUpdate>,
}

fn check_change(table: &TableName, reqs: &[TableRequirement]) -> Result<(), IcebergError> {
    if reqs.iter().any(|r| matches!(r, TableRequirement::NotExist)) {
        return Err(IcebergError::unsupported(format!(
            "{table}: 'assert-create' (a create transaction) is not supported: create the table first"
        )));
    }
    Ok(())
}

async fn commit_table(
    c: Caller,
    Path((prefix, ns, table)): Path<(String, String, String)>,
    IceBody(b): IceBody<CommitTable>,
) -> IceResult {
    let name = table_name(&ns, &table)?;
    if let Some(id) = &b.identifier {
        if id.table()? != name {
            return Err(IcebergError::bad_request(format!(
                "the body's identifier {} is not the table of the path, {name}",
                id.table()?
            )));
        }
    }
    check_change(&name, &b.requirements)?;
    let change = IcebergChange {
        table: name,
        requirements: b.requirements,
        updates: b.updates,
    };
    let op = ops::IcebergCommit {
        branch: prefix,
        changes: vec![change],
    };
    let mut tables = c.service().call(op).await?;
    let t = tables
        .pop()
        .ok_or_else(|| Error::Internal("a commit answered no table".into()))?;
    Ok(
        Json(json!({"metadata-location": t.metadata_location, "metadata": &*t.metadata}))
            .into_response(),
    )
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
struct Transaction {
    table_changes: Vec<CommitTable>,
}

/// Several tables' commits as one lakeplan commit: all of them, or (on any failed requirement)
/// none.
async fn commit_transaction(
    c: Caller,
    Path(prefix): Path<String>,
    IceBody(b): IceBody<Transaction>,
) -> IceResult {
    let mut changes = Vec::with_capacity(b.table_changes.len());
    for t in b.table_changes {
        let table = t
            .identifier
            .as_ref()
            .ok_or_else(|| IcebergError::bad_request("each table change needs its 'identifier'"))?
            .table()?;
        check_change(&table, &t.requirements)?;
        changes.push(IcebergChange {
            table,
            requirements: t.requirements,
            updates: t.updates,
        });
    }
    if changes.is_empty() {
        return Err(IcebergError::bad_request(
            "a transaction needs at least one table change",
        ));
    }
    let op = ops::IcebergCommit {
        branch: prefix,
        changes,
    };
    c.service().call(op).await?;
    no_content()
}

#[derive(Deserialize, JsonSchema)]
struct Rename {
    source: Ident,
    destination: Ident,
}

async fn rename_table(
    c: Caller,
    Path(prefix): Path<String>,
    IceBody(b): IceBody<Rename>,
) -> IceResult {
    let op = ops::IcebergRenameTable {
        branch: prefix,
        from: b.source.table()?,
        to: b.destination.table()?,
    };
    c.service().call(op).await?;
    no_content()
}

/// Clients report scan and commit metrics; lakeplan does not keep them (the spec's 204).
async fn report_metrics(
    c: Caller,
    Path((prefix, ns, table)): Path<(String, String, String)>,
) -> IceResult {
    let name = table_name(&ns, &table)?;
    let op = ops::IcebergLoadTable {
        at: prefix,
        table: name,
    };
    c.service().call(op).await?;
    no_content()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_percent_encoded_ref_expressions() {
        assert_eq!(url_segment("alice.dev"), "alice.dev");
        assert_eq!(url_segment("main@1a2b3c4d"), "main@1a2b3c4d");
        assert_eq!(url_segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn errors_take_the_specs_types() {
        let t = |e: Error| IcebergError::from(e).kind;
        assert_eq!(
            t(Error::NamespaceNotFound("x".into())),
            "NoSuchNamespaceException"
        );
        assert_eq!(
            t(Error::TableNotFound {
                table: "a.b".into(),
                at: "main".into()
            }),
            "NoSuchTableException"
        );
        assert_eq!(
            t(Error::TableExists("a.b".into())),
            "AlreadyExistsException"
        );
        assert_eq!(
            t(Error::RequirementFailed {
                table: "a.b".into(),
                reason: "stale".into()
            }),
            "CommitFailedException"
        );
        assert_eq!(
            t(Error::NotAWriteBranch("v1".into())),
            "BadRequestException"
        );
        assert_eq!(t(Error::RefNotFound("x".into())), "NotFoundException");
        assert_eq!(
            IcebergError::from(ApiError::Unauthorized).kind,
            "NotAuthorizedException"
        );
        assert_eq!(
            namespace("a\u{1f}b").map_err(|e| e.status),
            Err(StatusCode::BAD_REQUEST)
        );
    }
}
