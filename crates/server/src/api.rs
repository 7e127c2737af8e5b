//! The HTTP/JSON API: each route maps its path, query and body onto one operation of the
//! service (`lakeplan_lake::ops`, named in its row of the route table) and calls it through the
//! caller's [`Caller::service`], which checks the key's rights and hands file reading and code
//! running to the data-plane workers. No handler checks rights or fills defaults itself.
//!
//! The route table below is the single source of both the router and `/openapi.json`, so the
//! documentation cannot drift from what is served.
//!
//! Refs in paths are ref expressions (`main`, `v1`, `main@1a2b3c4d`, `main*2026-11-25T10:00:00Z`),
//! percent-encoded where they hold `/`. Reads take any ref; writes take a branch.

use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use lakeplan_catalog::LogFilter;
use lakeplan_core::{Error, RefKind, MAIN_BRANCH};
use lakeplan_lake::{ops, CommitExtras, CreatePlan, Lake};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

use crate::auth::Caller;
use crate::dispatch::Work;
use crate::error::{rejection, ApiError};
use crate::openapi::RouteDoc;
use crate::state::AppState;

type ApiResult = Result<Response, ApiError>;

/// The top-level fields of a JSON body that its type does not have: an error naming the first
/// (and the known field it most likely meant), so that a misspelt field is never silently
/// ignored (`{"into_branch": ...}` merging into `main`). The known fields are the body type's
/// JSON schema's properties, flattened fields included. Every route's body extractor (this
/// API's, Bauplan's catalog's, the Iceberg catalog's) checks with it.
pub(crate) fn unknown_fields<T: JsonSchema + 'static>(body: &Value) -> Result<(), String> {
    unknown_names::<T>(body, "field")
}

/// The names a type's JSON form takes (its schema's properties), or `None` when it takes any.
type KnownNames = Option<Arc<[String]>>;

/// [`KnownNames`] of `T` (a flattened map takes any). Made once per type: every request of a
/// route asks.
fn known_names<T: JsonSchema + 'static>() -> KnownNames {
    use std::any::TypeId;
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static KNOWN: OnceLock<Mutex<HashMap<TypeId, KnownNames>>> = OnceLock::new();
    let cache = KNOWN.get_or_init(Mutex::default);
    if let Some(known) = cache
        .lock()
        .ok()
        .and_then(|c| c.get(&TypeId::of::<T>()).cloned())
    {
        return known;
    }
    let schema = schemars::schema_for!(T);
    let any = schema
        .get("additionalProperties")
        .is_some_and(|a| a != &Value::Bool(false));
    let known: KnownNames = match schema.get("properties").and_then(Value::as_object) {
        Some(props) if !any => Some(props.keys().cloned().collect()),
        _ => None,
    };
    if let Ok(mut c) = cache.lock() {
        c.insert(TypeId::of::<T>(), known.clone());
    }
    known
}

/// [`unknown_fields`] of `body`'s names, called `what` (a body's fields, a query's parameters).
fn unknown_names<T: JsonSchema + 'static>(body: &Value, what: &str) -> Result<(), String> {
    let Value::Object(given) = body else {
        return Ok(());
    };
    // A type without properties, or one that takes any field (a flattened map), has none
    // unknown.
    let Some(known) = known_names::<T>() else {
        return Ok(());
    };
    let Some(field) = given.keys().find(|k| !known.iter().any(|n| n == *k)) else {
        return Ok(());
    };
    let names: Vec<&str> = known.iter().map(String::as_str).collect();
    let hint = match closest(field, &names) {
        Some(n) => format!(" (did you mean '{n}'?)"),
        None => String::new(),
    };
    Err(format!(
        "unknown {what} '{field}'{hint}; the known {what}s are: {}",
        names.join(", ")
    ))
}

/// The known name `given` most likely meant: one it starts or ends with (`into_branch` for
/// `into`), or one a few edits away.
fn closest<'a>(given: &str, known: &[&'a str]) -> Option<&'a str> {
    let g = given.to_ascii_lowercase();
    let affix = known
        .iter()
        .filter(|k| k.len() >= 2 && (g.starts_with(*k) || g.ends_with(*k) || k.starts_with(&g)))
        .max_by_key(|k| k.len());
    if let Some(k) = affix {
        return Some(k);
    }
    known
        .iter()
        .map(|k| (strsim::levenshtein(&g, k), *k))
        .filter(|(d, k)| *d <= (k.len().max(g.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// A JSON body whose rejections (malformed JSON, unknown or missing fields, too large) use the
/// API's error shape.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + JsonSchema + 'static> FromRequest<S> for Body<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let v = match Json::<Value>::from_request(req, state).await {
            Ok(Json(v)) => v,
            Err(r) => return Err(rejection(r.status(), r.body_text())),
        };
        typed(v).map(Body).map_err(|(s, m)| rejection(s, m))
    }
}

/// A body's value as `T`: its fields checked, then deserialized (422 as axum's `Json` answers).
fn typed<T: DeserializeOwned + JsonSchema + 'static>(v: Value) -> Result<T, (StatusCode, String)> {
    unknown_fields::<T>(&v).map_err(|m| (StatusCode::BAD_REQUEST, m))?;
    serde_json::from_value(v).map_err(|e| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("Failed to deserialize the JSON body into the target type: {e}"),
        )
    })
}

/// An optional JSON body (the DELETE routes' commit extras): an empty body reads as
/// `T::default()`.
pub struct OptBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + JsonSchema + 'static + Default> FromRequest<S>
    for OptBody<T>
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| rejection(r.status(), r.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptBody(T::default()));
        }
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
            rejection(
                StatusCode::BAD_REQUEST,
                format!("Failed to parse the request body as JSON: {e}"),
            )
        })?;
        typed(v).map(OptBody).map_err(|(s, m)| rejection(s, m))
    }
}

/// Query-string parameters, with rejections in the API's error shape.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + JsonSchema + 'static> FromRequestParts<S> for Params<T> {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Response> {
        // A misspelt parameter is refused as a body's field is (see `unknown_fields`).
        if let Ok(axum::extract::Query(pairs)) =
            axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
        {
            let names: serde_json::Map<String, Value> =
                pairs.into_iter().map(|(k, _)| (k, Value::Null)).collect();
            unknown_names::<T>(&Value::Object(names), "query parameter")
                .map_err(|m| rejection(StatusCode::BAD_REQUEST, m))?;
        }
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Params(v)),
            Err(r) => Err(rejection(r.status(), r.body_text())),
        }
    }
}

fn ok<T: serde::Serialize>(v: T) -> ApiResult {
    Ok(Json(v).into_response())
}

fn created<T: serde::Serialize>(v: T) -> ApiResult {
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// The name of the operation a route row names (`[ListRefs]`), from its type: a row cannot name
/// what is not an operation of the service.
macro_rules! route_operation {
    () => {
        None
    };
    ($op:ident) => {
        Some(<ops::$op as ops::Operation>::NAME)
    };
}

/// Defines the routes once: the router and their documentation come from this list. Each row
/// names the operation of the service it maps onto (`[]` for the few that are not one: who the
/// key is, a query, a live log).
macro_rules! routes {
    ($( $method:ident $path:literal => $handler:ident [$($op:ident)?], $scope:literal,
        $summary:literal, query [$($q:literal),*], body [$($b:literal),*] ; )*) => {
        /// Every API route, documented (served as `/openapi.json`).
        pub const ROUTES: &[RouteDoc] = &[
            $( RouteDoc {
                method: stringify!($method),
                path: $path,
                operation: route_operation!($($op)?),
                scope: $scope,
                summary: $summary,
                query: &[$($q),*],
                body: &[$($b),*],
            } ),*
        ];

        /// The API routes (authentication and the other layers are added by [`crate::router`]).
        pub fn api_router() -> axum::Router<AppState> {
            axum::Router::new()
                $( .route($path, axum::routing::$method($handler)) )*
        }
    };
}

// Field notation in `query`/`body`: `name` optional string, `name!` required, `name:type`
// (boolean, integer, object, array) — see `openapi.rs`.
routes! {
    get "/api/v1/info" => info [], "read", "Who the key belongs to: tenant, user, scope; the server's version",
        query [], body [];
    get "/api/v1/branches" => list_branches [ListRefs], "read", "List branches, by name; with limit, the next page's token is in the x-lakeplan-next-page-token header",
        query ["name", "limit:integer", "page_token"], body [];
    post "/api/v1/branches" => create_branch [CreateRef], "write", "Create a branch (O(1): one row)",
        query [], body ["name!", "from_ref", "if_not_exists:boolean"];
    get "/api/v1/branches/{name}" => get_branch [GetRef], "read", "Get a branch and its head commit",
        query [], body [];
    delete "/api/v1/branches/{name}" => delete_branch [DeleteRef], "write", "Delete a branch",
        query ["if_exists:boolean"], body [];
    post "/api/v1/branches/{name}/rename" => rename_branch [RenameRef], "write", "Rename a branch",
        query [], body ["new_name!"];
    post "/api/v1/branches/{name}/merge" => merge_branch [Merge], "write", "Merge the branch into another (three-way at table level; 409 with the conflicting tables)",
        query [], body ["into", "commit_message", "commit_body", "commit_properties:object"];
    get "/api/v1/tags" => list_tags [ListRefs], "read", "List tags, by name (paged like branches)",
        query ["name", "limit:integer", "page_token"], body [];
    post "/api/v1/tags" => create_tag [CreateRef], "write", "Create a tag",
        query [], body ["name!", "from_ref", "if_not_exists:boolean"];
    get "/api/v1/tags/{name}" => get_tag [GetRef], "read", "Get a tag",
        query [], body [];
    delete "/api/v1/tags/{name}" => delete_tag [DeleteRef], "write", "Delete a tag",
        query ["if_exists:boolean"], body [];
    post "/api/v1/tags/{name}/rename" => rename_tag [RenameRef], "write", "Rename a tag",
        query [], body ["new_name!"];
    get "/api/v1/diff" => diff [Diff], "read", "Tables added, removed and changed between two refs",
        query ["from!", "to!"], body [];
    get "/api/v1/refs/{ref}/commits" => commits [Commits], "read", "The log of a ref: first parents, newest first",
        query ["limit:integer", "message", "author", "property"], body [];
    get "/api/v1/refs/{ref}/namespaces" => list_namespaces [ListNamespaces], "read", "List namespaces at a ref (paged like branches)",
        query ["limit:integer", "page_token"], body [];
    post "/api/v1/branches/{branch}/namespaces" => create_namespace [CreateNamespace], "write", "Create a namespace (a commit)",
        query [], body ["name!", "commit_body", "commit_properties:object"];
    delete "/api/v1/branches/{branch}/namespaces/{namespace}" => delete_namespace [DropNamespace], "write", "Delete an empty namespace (a commit)",
        query [], body ["commit_body", "commit_properties:object"];
    get "/api/v1/refs/{ref}/tables" => list_tables [ListTables], "read", "List tables at a ref, by namespace.name (paged like branches)",
        query ["namespace", "limit:integer", "page_token"], body [];
    get "/api/v1/refs/{ref}/tables/{table}" => get_table [GetTable], "read", "A table at a ref: schema with field ids, partition spec, snapshots, rows, size, metadata location",
        query ["namespace"], body [];
    delete "/api/v1/branches/{branch}/tables/{table}" => delete_table [DropTable], "write", "Remove a table (a commit; data files stay for other refs)",
        query ["namespace", "if_exists:boolean"], body ["commit_body", "commit_properties:object"];
    post "/api/v1/branches/{branch}/tables" => create_table [CreateTable], "write", "Create a table whose schema is inferred from files (by a worker)",
        query [], body ["table!", "search_uri!", "namespace", "partitioned_by", "replace:boolean", "commit_body", "commit_properties:object"];
    post "/api/v1/table-plans" => plan_table [PlanTable], "write", "Infer a table's schema from files without creating it (conflicts listed)",
        query [], body ["table!", "search_uri!", "branch!", "namespace", "partitioned_by", "replace:boolean"];
    post "/api/v1/table-plans/apply" => apply_plan [ApplyPlan], "write", "Create a table from a (possibly edited) plan",
        query [], body ["plan!:object", "commit_body", "commit_properties:object"];
    post "/api/v1/branches/{branch}/tables/{table}/import" => import [Import], "write", "Append files to a table: one commit, or nothing",
        query [], body ["search_uri!", "namespace", "continue_on_error:boolean", "import_duplicate_files:boolean", "commit_body", "commit_properties:object"];
    post "/api/v1/branches/{branch}/tables/{table}/revert" => revert_table [RevertTable], "write", "Restore a table as of another ref (no file copied)",
        query [], body ["source_ref!", "namespace", "commit_body", "commit_properties:object"];
    post "/api/v1/query" => query [], "read", "Run one read-only SQL statement at a ref on a data-plane worker: 303 to the rows on the worker (JSON, or an Arrow IPC stream with 'Accept: application/vnd.apache.arrow.stream'), or with 'Accept: application/vnd.lakeplan.flight+json' a short-lived ticket for Arrow Flight DoGet on the worker",
        query [], body ["sql!", "ref", "namespace", "max_rows:integer"];
    get "/api/v1/settings" => list_settings [Settings], "read", "The lake's settings (`lakeplan lake config`): each name, value (null when unset) and meaning",
        query [], body [];
    post "/api/v1/settings/{name}" => set_setting [SetSetting], "admin", "Set a lake setting, or unset it with value null (admin keys only: it changes every user's defaults)",
        query [], body ["value"];
    get "/api/v1/audit" => audit [AuditLog], "read", "The tenant's append-only operations log, newest first",
        query ["limit:integer"], body [];
    post "/api/v1/runs" => run [StartRun], "write", "Run a pipeline project (body: the project as a zip, Content-Type application/zip); 202 with the job id once it is recorded",
        query ["ref", "namespace", "param", "dry_run:boolean", "no_cache:boolean", "strict:boolean", "transaction:boolean", "strict_python:boolean", "preview", "arg", "priority:integer", "project_dir"], body [];
    post "/api/v1/secrets" => seal_secret [SealSecret], "write", "Seal a secret parameter's value with the tenant's key (`lakeplan parameter set NAME VALUE --type secret`): returns {name, project_id, ciphertext, key} for the project file; the value is not stored, logged or audited",
        query [], body ["name!", "value!", "project_id"];
    get "/api/v1/jobs" => list_jobs [ListJobs], "read", "Pipeline runs, newest first",
        query ["limit:integer"], body [];
    get "/api/v1/jobs/{id}" => get_job [GetJob], "read", "One pipeline run",
        query [], body [];
    get "/api/v1/jobs/{id}/logs" => job_logs [JobLog], "read", "A run's log (text)",
        query [], body [];
    post "/api/v1/jobs/{id}/rerun" => rerun [Rerun], "write", "Run a job again from its stored code, parameters and input commit; 202 with the new job id",
        query ["ref", "dry_run:boolean", "no_cache:boolean"], body [];
    get "/api/v1/jobs/{id}/logs/stream" => job_log_stream [], "read", "A run's log, live, as server-sent events: one 'data:' per line, then 'event: end' with the job's final status",
        query [], body [];
    post "/api/v1/jobs/{id}/cancel" => cancel_job [CancelJob], "write", "Stop a running pipeline (its target branch stays as it was)",
        query [], body [];
}

async fn info(State(state): State<AppState>, c: Caller) -> ApiResult {
    let _ = state;
    ok(json!({
        "tenant": c.principal.tenant.name,
        "user": c.principal.user.name,
        "scope": c.principal.scope,
        "key_id": c.principal.key_id,
        "can_merge_main": c.principal.user.can_merge_main,
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// Paging of list routes: `limit` items after `page_token` (the last key of the previous page),
/// in key order. When more remain, the response carries their token in the
/// `x-lakeplan-next-page-token` header; without `limit`, everything comes in one page.
#[derive(Deserialize, JsonSchema)]
struct Page {
    limit: Option<usize>,
    page_token: Option<String>,
}

const NEXT_PAGE: &str = "x-lakeplan-next-page-token";

fn paged<T: serde::Serialize>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> String,
    page: &Page,
) -> ApiResult {
    if page.limit == Some(0) {
        return Err(ApiError::BadRequest("limit must be at least 1".into()));
    }
    items.sort_by_key(|a| key(a));
    if let Some(after) = &page.page_token {
        items.retain(|i| key(i).as_str() > after.as_str());
    }
    let next = match page.limit {
        Some(n) if items.len() > n => {
            items.truncate(n);
            items.last().map(&key)
        }
        _ => None,
    };
    let mut resp = Json(items).into_response();
    if let Some(token) = next {
        let value = header::HeaderValue::from_str(&token)
            .map_err(|_| Error::Internal(format!("page token '{token}' is not a header value")))?;
        resp.headers_mut().insert(NEXT_PAGE, value);
    }
    Ok(resp)
}

// (No `#[serde(flatten)]` of `Page` here: query strings hold only strings, and flattening
// loses the number parsing of `limit`.)
#[derive(Deserialize, JsonSchema)]
struct ListRefs {
    name: Option<String>,
    limit: Option<usize>,
    page_token: Option<String>,
}

async fn list_refs(c: &Caller, kind: RefKind, q: ListRefs) -> ApiResult {
    let refs = c.service().call(ops::ListRefs { kind }).await?;
    let refs: Vec<_> = refs
        .into_iter()
        .filter(|r| q.name.as_deref().is_none_or(|f| r.name.contains(f)))
        .collect();
    let page = Page {
        limit: q.limit,
        page_token: q.page_token,
    };
    paged(refs, |r| r.name.clone(), &page)
}

async fn list_branches(c: Caller, Params(q): Params<ListRefs>) -> ApiResult {
    list_refs(&c, RefKind::Branch, q).await
}

async fn list_tags(c: Caller, Params(q): Params<ListRefs>) -> ApiResult {
    list_refs(&c, RefKind::Tag, q).await
}

#[derive(Deserialize, JsonSchema)]
struct CreateRef {
    name: String,
    from_ref: Option<String>,
    #[serde(default)]
    if_not_exists: bool,
}

async fn create_ref(c: &Caller, kind: RefKind, b: CreateRef) -> ApiResult {
    let op = ops::CreateRef {
        name: b.name,
        kind,
        from: Some(b.from_ref.unwrap_or_else(|| MAIN_BRANCH.to_string())),
        if_not_exists: b.if_not_exists,
    };
    created(c.service().call(op).await?)
}

async fn create_branch(c: Caller, Body(b): Body<CreateRef>) -> ApiResult {
    create_ref(&c, RefKind::Branch, b).await
}

async fn create_tag(c: Caller, Body(b): Body<CreateRef>) -> ApiResult {
    create_ref(&c, RefKind::Tag, b).await
}

async fn get_branch(c: Caller, Path(name): Path<String>) -> ApiResult {
    let kind = RefKind::Branch;
    ok(c.service().call(ops::GetRef { name, kind }).await?)
}

async fn get_tag(c: Caller, Path(name): Path<String>) -> ApiResult {
    let kind = RefKind::Tag;
    ok(c.service().call(ops::GetRef { name, kind }).await?)
}

#[derive(Deserialize, JsonSchema)]
struct IfExists {
    #[serde(default)]
    if_exists: bool,
}

async fn delete_ref(c: &Caller, kind: RefKind, name: String, if_exists: bool) -> ApiResult {
    let op = ops::DeleteRef {
        name: name.clone(),
        kind,
        if_exists,
    };
    // With the ref as it was (none when there was nothing to delete).
    let was = c.service().call(op).await?;
    ok(json!({"name": name, "deleted": was.is_some(), "ref": was}))
}

async fn delete_branch(
    c: Caller,
    Path(name): Path<String>,
    Params(q): Params<IfExists>,
) -> ApiResult {
    delete_ref(&c, RefKind::Branch, name, q.if_exists).await
}

async fn delete_tag(c: Caller, Path(name): Path<String>, Params(q): Params<IfExists>) -> ApiResult {
    delete_ref(&c, RefKind::Tag, name, q.if_exists).await
}

#[derive(Deserialize, JsonSchema)]
struct Rename {
    new_name: String,
}

async fn rename_ref(c: &Caller, kind: RefKind, name: String, new_name: String) -> ApiResult {
    let op = ops::RenameRef {
        name,
        new_name,
        kind,
    };
    ok(c.service().call(op).await?)
}

async fn rename_branch(c: Caller, Path(name): Path<String>, Body(b): Body<Rename>) -> ApiResult {
    rename_ref(&c, RefKind::Branch, name, b.new_name).await
}

async fn rename_tag(c: Caller, Path(name): Path<String>, Body(b): Body<Rename>) -> ApiResult {
    rename_ref(&c, RefKind::Tag, name, b.new_name).await
}

#[derive(Deserialize, JsonSchema)]
struct Merge {
    into: Option<String>,
    commit_message: Option<String>,
    #[serde(flatten)]
    commit: CommitExtras,
}

async fn merge_branch(c: Caller, Path(name): Path<String>, Body(b): Body<Merge>) -> ApiResult {
    let op = ops::Merge {
        source: name,
        into: Some(b.into.unwrap_or_else(|| MAIN_BRANCH.to_string())),
        message: b.commit_message,
        commit: b.commit,
    };
    ok(c.service().call(op).await?)
}

#[derive(Deserialize, JsonSchema)]
struct DiffQ {
    from: String,
    to: String,
}

async fn diff(c: Caller, Params(q): Params<DiffQ>) -> ApiResult {
    let op = ops::Diff {
        from: q.from,
        to: Some(q.to),
    };
    ok(c.service().call(op).await?)
}

async fn commits(
    c: Caller,
    Path(r): Path<String>,
    Params(q): Params<Vec<(String, String)>>,
) -> ApiResult {
    let mut filter = LogFilter::default();
    let mut limit = 50usize;
    for (k, v) in q {
        match k.as_str() {
            "limit" => {
                limit = v
                    .parse()
                    .map_err(|_| ApiError::BadRequest(format!("limit '{v}': not a number")))?
            }
            "message" => filter.message = Some(LogFilter::pattern("message", &v)?),
            "author" => filter.author = Some(LogFilter::pattern("author", &v)?),
            "property" => {
                let (pk, pv) = v
                    .split_once('=')
                    .ok_or_else(|| ApiError::BadRequest(format!("property '{v}': expected k=v")))?;
                filter.properties.push((pk.to_string(), pv.to_string()));
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter '{other}'"
                )))
            }
        }
    }
    let op = ops::Commits {
        at: Some(r),
        filter,
        limit: Some(limit),
    };
    ok(c.service().call(op).await?)
}

async fn list_namespaces(
    c: Caller,
    Path(r): Path<String>,
    Params(page): Params<Page>,
) -> ApiResult {
    let namespaces = c
        .service()
        .call(ops::ListNamespaces { at: Some(r) })
        .await?;
    paged(namespaces, String::clone, &page)
}

#[derive(Deserialize, JsonSchema)]
struct NewNamespace {
    name: String,
    #[serde(flatten)]
    commit: CommitExtras,
}

async fn create_namespace(
    c: Caller,
    Path(branch): Path<String>,
    Body(b): Body<NewNamespace>,
) -> ApiResult {
    let op = ops::CreateNamespace {
        name: b.name,
        branch: Some(branch),
        commit: b.commit,
    };
    created(c.service().call(op).await?)
}

async fn list_settings(c: Caller) -> ApiResult {
    ok(c.service().call(ops::Settings).await?)
}

#[derive(Deserialize, JsonSchema, Default)]
struct SettingBody {
    /// The new value; null (or absent) unsets the setting.
    value: Option<String>,
}

async fn set_setting(
    c: Caller,
    Path(name): Path<String>,
    OptBody(b): OptBody<SettingBody>,
) -> ApiResult {
    let op = ops::SetSetting {
        name,
        value: b.value,
    };
    ok(c.service().call(op).await?)
}

async fn delete_namespace(
    c: Caller,
    Path((branch, ns)): Path<(String, String)>,
    OptBody(extras): OptBody<CommitExtras>,
) -> ApiResult {
    let op = ops::DropNamespace {
        name: ns,
        branch: Some(branch),
        commit: extras,
    };
    ok(c.service().call(op).await?)
}

#[derive(Deserialize, JsonSchema)]
struct NsQ {
    namespace: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
struct ListTables {
    namespace: Option<String>,
    limit: Option<usize>,
    page_token: Option<String>,
}

async fn list_tables(c: Caller, Path(r): Path<String>, Params(q): Params<ListTables>) -> ApiResult {
    let op = ops::ListTables {
        at: Some(r),
        namespace: q.namespace,
    };
    let tables = c.service().call(op).await?;
    let page = Page {
        limit: q.limit,
        page_token: q.page_token,
    };
    paged(tables, |t| format!("{}.{}", t.namespace, t.name), &page)
}

async fn get_table(
    c: Caller,
    Path((r, table)): Path<(String, String)>,
    Params(q): Params<NsQ>,
) -> ApiResult {
    let op = ops::GetTable {
        table,
        namespace: q.namespace,
        at: Some(r),
    };
    ok(c.service().call(op).await?)
}

#[derive(Deserialize, JsonSchema)]
struct DropQ {
    namespace: Option<String>,
    #[serde(default)]
    if_exists: bool,
}

async fn delete_table(
    c: Caller,
    Path((branch, table)): Path<(String, String)>,
    Params(q): Params<DropQ>,
    OptBody(extras): OptBody<CommitExtras>,
) -> ApiResult {
    let op = ops::DropTable {
        table,
        namespace: q.namespace,
        branch: Some(branch),
        if_exists: q.if_exists,
        commit: extras,
    };
    ok(c.service().call(op).await?)
}

#[derive(Deserialize, JsonSchema)]
struct CreateTable {
    table: String,
    search_uri: String,
    namespace: Option<String>,
    partitioned_by: Option<String>,
    #[serde(default)]
    replace: bool,
    #[serde(flatten)]
    commit: CommitExtras,
}

async fn create_table(
    c: Caller,
    Path(branch): Path<String>,
    Body(b): Body<CreateTable>,
) -> ApiResult {
    let op = ops::CreateTable {
        plan: ops::PlanTable {
            table: b.table,
            namespace: b.namespace,
            search_uri: b.search_uri,
            branch: Some(branch),
            partitioned_by: b.partitioned_by,
            replace: b.replace,
        },
        commit: b.commit,
    };
    created(c.service().call(op).await?)
}

#[derive(Deserialize, JsonSchema)]
struct PlanTable {
    table: String,
    search_uri: String,
    branch: String,
    namespace: Option<String>,
    partitioned_by: Option<String>,
    #[serde(default)]
    replace: bool,
}

async fn plan_table(c: Caller, Body(b): Body<PlanTable>) -> ApiResult {
    let op = ops::PlanTable {
        table: b.table,
        namespace: b.namespace,
        search_uri: b.search_uri,
        branch: Some(b.branch),
        partitioned_by: b.partitioned_by,
        replace: b.replace,
    };
    ok(c.service().call(op).await?)
}

#[derive(Deserialize, JsonSchema)]
struct ApplyPlan {
    #[schemars(with = "Value")]
    plan: CreatePlan,
    #[serde(flatten)]
    commit: CommitExtras,
}

async fn apply_plan(c: Caller, Body(b): Body<ApplyPlan>) -> ApiResult {
    let op = ops::ApplyPlan {
        plan: b.plan,
        commit: b.commit,
    };
    created(c.service().call(op).await?)
}

#[derive(Deserialize, JsonSchema)]
struct Import {
    search_uri: String,
    namespace: Option<String>,
    #[serde(default)]
    continue_on_error: bool,
    #[serde(default)]
    import_duplicate_files: bool,
    #[serde(flatten)]
    commit: CommitExtras,
}

async fn import(
    c: Caller,
    Path((branch, table)): Path<(String, String)>,
    Body(b): Body<Import>,
) -> ApiResult {
    let op = ops::Import {
        table,
        namespace: b.namespace,
        search_uri: b.search_uri,
        branch: Some(branch),
        continue_on_error: b.continue_on_error,
        import_duplicate_files: b.import_duplicate_files,
        create_table: false,
        commit: b.commit,
    };
    ok(c.service().call(op).await?)
}

#[derive(Deserialize, JsonSchema)]
struct Revert {
    source_ref: String,
    namespace: Option<String>,
    #[serde(flatten)]
    commit: CommitExtras,
}

async fn revert_table(
    c: Caller,
    Path((branch, table)): Path<(String, String)>,
    Body(b): Body<Revert>,
) -> ApiResult {
    let op = ops::RevertTable {
        table,
        namespace: b.namespace,
        source_ref: b.source_ref,
        into: Some(branch),
        commit: b.commit,
        bauplan_rules: None,
    };
    ok(c.service().call(op).await?)
}

#[derive(Deserialize, JsonSchema)]
struct QueryBody {
    sql: String,
    #[serde(rename = "ref")]
    at: Option<String>,
    namespace: Option<String>,
    max_rows: Option<usize>,
}

/// A query runs on a data-plane worker, which keeps its rows under a short-lived ticket. With
/// `Accept: application/vnd.lakeplan.flight+json` the answer is that ticket (for Arrow Flight
/// `DoGet` on the worker's endpoint); otherwise it is a redirect (303) to the rows on the worker,
/// as JSON or as an Arrow IPC stream. The rows never pass through the control plane.
async fn query(c: Caller, headers: HeaderMap, Body(b): Body<QueryBody>) -> ApiResult {
    let work = Work::Query {
        sql: b.sql,
        at: b.at.unwrap_or_else(|| MAIN_BRANCH.to_string()),
        namespace: b.namespace,
        max_rows: b.max_rows,
        describe: false,
    };
    let v = c.workers().submit(work).await?;
    let wants_ticket = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(crate::results::FLIGHT_TICKET));
    if wants_ticket {
        return ok(v);
    }
    let location = format!(
        "{}/results/{}",
        v["endpoint"].as_str().unwrap_or_default(),
        v["ticket"].as_str().unwrap_or_default()
    );
    Ok((
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location)],
        Json(v),
    )
        .into_response())
}

#[derive(Deserialize, JsonSchema)]
struct LimitQ {
    limit: Option<usize>,
}

async fn audit(c: Caller, Params(q): Params<LimitQ>) -> ApiResult {
    let op = ops::AuditLog {
        limit: Some(q.limit.unwrap_or(100)),
    };
    ok(c.service().call(op).await?)
}

/// Starts a pipeline run from an uploaded project and answers once its job is recorded (or with
/// the error that stopped it before: a planning error, say). The run goes on in the background;
/// its functions run in sandboxed worker processes, never in the server.
async fn run(
    c: Caller,
    Params(q): Params<Vec<(String, String)>>,
    body: axum::body::Bytes,
) -> ApiResult {
    let mut run = ops::RunTask::upload(&body, MAIN_BRANCH);
    // Bauplan's switches are 'on'/'off' too.
    let flag = |k: &str, v: &str| match v.to_ascii_lowercase().as_str() {
        "true" | "on" => Ok(true),
        "false" | "off" => Ok(false),
        _ => Err(ApiError::BadRequest(format!(
            "{k}='{v}': expected true, false, on or off"
        ))),
    };
    for (k, v) in q {
        match k.as_str() {
            "ref" => run.target = v,
            "namespace" => run.namespace = Some(v),
            "param" => {
                let (pk, pv) = v.split_once('=').ok_or_else(|| {
                    ApiError::BadRequest(format!("param '{v}': expected name=value"))
                })?;
                run.params.push((pk.trim().to_string(), pv.to_string()));
            }
            "dry_run" => run.dry_run = flag(&k, &v)?,
            "no_cache" => run.no_cache = flag(&k, &v)?,
            "strict" => run.strict = flag(&k, &v)?,
            "transaction" => run.transaction = flag(&k, &v)?,
            "strict_python" => run.strict_python = flag(&k, &v)?,
            "preview" => run.preview = lakeplan_lake::parse_preview(&v)?,
            "arg" => {
                let (k, v) = lakeplan_lake::parse_run_arg(&v)?;
                run.args.insert(k, v);
            }
            "priority" => {
                run.priority = Some(v.parse().map_err(|_| {
                    ApiError::BadRequest(format!(
                        "priority '{v}': expected 1 (lowest) to 10 (highest)"
                    ))
                })?)
            }
            // A label for messages only: never a path the server reads.
            "project_dir" => run.project_shown = Some(shown_project_dir(&v)?),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter '{other}'"
                )))
            }
        }
    }
    started(c.service().call(ops::StartRun { run }).await?)
}

/// The project folder as the client named it, shown in its plan errors: one line of at most
/// 1,024 characters.
fn shown_project_dir(v: &str) -> Result<String, ApiError> {
    if v.len() > 1024 || v.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "project_dir: a folder name of at most 1024 characters, on one line".into(),
        ));
    }
    Ok(v.to_string())
}

#[derive(Deserialize, JsonSchema)]
struct SealBody {
    name: String,
    value: String,
    project_id: Option<String>,
}

/// Only the tenant's lake opens what it seals, at run time, for the functions that declare the
/// parameter; a read-only key seals nothing (a secret is only for runs, which it cannot start).
async fn seal_secret(c: Caller, Body(b): Body<SealBody>) -> ApiResult {
    let op = ops::SealSecret {
        project_id: b.project_id,
        name: b.name,
        value: b.value,
    };
    ok(c.service().call(op).await?)
}

/// A run's answer: 202 with its job id, once the job is recorded. The run goes on on its
/// worker; if that worker is lost, the job is recorded failed.
fn started(job_id: String) -> ApiResult {
    Ok((StatusCode::ACCEPTED, Json(json!({ "job_id": job_id }))).into_response())
}

#[derive(Deserialize, JsonSchema)]
struct RerunQ {
    #[serde(rename = "ref")]
    at: Option<String>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    no_cache: bool,
}

/// `lakeplan rerun` over the API: the job's stored code, parameters and input commit.
async fn rerun(c: Caller, Path(id): Path<String>, Params(q): Params<RerunQ>) -> ApiResult {
    let op = ops::Rerun {
        job_id: id,
        at: q.at,
        dry_run: q.dry_run,
        no_cache: q.no_cache,
    };
    started(c.service().call(op).await?)
}

/// The server's own folders stay private: job records and logs name paths under the tenant's
/// local folder (the uploaded project, the log file), which answers show as `<lake>`.
fn redact(lake: &Lake, text: &str) -> String {
    text.replace(&lake.root().display().to_string(), "<lake>")
}

/// A record as JSON, with [`redact`] applied to its strings.
fn redacted<T: serde::Serialize>(lake: &Lake, v: &T) -> ApiResult {
    let text =
        serde_json::to_string(v).map_err(|e| Error::Internal(format!("a job record: {e}")))?;
    let v: Value = serde_json::from_str(&redact(lake, &text))
        .map_err(|e| Error::Internal(format!("a job record: {e}")))?;
    ok(v)
}

async fn list_jobs(c: Caller, Params(q): Params<LimitQ>) -> ApiResult {
    let op = ops::ListJobs { limit: q.limit };
    redacted(&c.lake, &c.service().call(op).await?)
}

async fn get_job(c: Caller, Path(id): Path<String>) -> ApiResult {
    redacted(&c.lake, &c.service().call(ops::GetJob { id }).await?)
}

async fn job_logs(c: Caller, Path(id): Path<String>) -> ApiResult {
    let log = c.service().call(ops::JobLog { id }).await?;
    let text = redact(&c.lake, &log.text);
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// Where a log stream is: the parts of the job's log sent already (see
/// [`lakeplan_lake::JobStore::log_parts`]) and whether anything was.
struct LogTail {
    jobs: lakeplan_lake::JobStore,
    /// The tenant's local folder, shown as `<lake>` (see [`redact`]).
    root: String,
    id: String,
    seen: std::collections::HashSet<String>,
    partial: String,
}

impl LogTail {
    /// New lines since the last read: the parts written since, whichever process of the job
    /// wrote them (its coordinator, its nodes' workers) and whichever machine it is on. A job
    /// that ended without parts (from an older lakeplan) is read whole, from its file or the
    /// metastore's copy.
    fn read_lines(&mut self, finished: bool) -> Result<Vec<String>, Error> {
        let parts = self.jobs.log_parts(&self.id)?;
        let mut text = std::mem::take(&mut self.partial);
        if parts.is_empty() && self.seen.is_empty() {
            if finished {
                self.seen.insert(String::new());
                text.push_str(&self.jobs.log_text(&self.id)?);
            }
        } else {
            for (key, part) in parts {
                if self.seen.insert(key) {
                    text.push_str(&part);
                }
            }
        }
        let mut lines: Vec<String> = text
            .split('\n')
            .map(|l| l.replace(&self.root, "<lake>"))
            .collect();
        self.partial = lines.pop().unwrap_or_default();
        Ok(lines)
    }

    /// The job's status and the new lines since the last read. The stream is polled on the
    /// runtime's threads (after the handler returned), so the metastore reads run on the
    /// blocking pool ([`crate::blocking`]).
    async fn read(mut self) -> Result<(LogTail, lakeplan_lake::JobStatus, Vec<String>), Error> {
        crate::blocking(move || {
            // Read the status before the log: a job that ended has written its last line.
            let status = self.jobs.get(&self.id)?.status;
            let lines = self.read_lines(status.is_finished())?;
            Ok((self, status, lines))
        })
        .await
    }

    /// The next events of a stream that has not ended (`None` once it has): new lines, or
    /// (once the job has ended and its log is read) the end, or an error that ends it.
    async fn next(
        tail: Option<LogTail>,
    ) -> Option<(Vec<axum::response::sse::Event>, Option<LogTail>)> {
        use axum::response::sse::Event;
        let mut tail = tail?;
        loop {
            let (mut t, status, lines) = match tail.read().await {
                Ok(read) => read,
                Err(e) => {
                    return Some((
                        vec![Event::default().event("error").data(e.to_string())],
                        None,
                    ))
                }
            };
            let mut events: Vec<Event> = lines.iter().map(|l| Event::default().data(l)).collect();
            if status.is_finished() {
                if !t.partial.is_empty() {
                    events.push(Event::default().data(std::mem::take(&mut t.partial)));
                }
                events.push(Event::default().event("end").data(status.as_str()));
                return Some((events, None));
            }
            if !events.is_empty() {
                return Some((events, Some(t)));
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            tail = t;
        }
    }
}

async fn job_log_stream(c: Caller, Path(id): Path<String>) -> ApiResult {
    use axum::response::sse::{KeepAlive, Sse};
    use futures::StreamExt;
    let job = c.service().call(ops::GetJob { id }).await?;
    let jobs = c.lake.jobs()?;
    let tail = LogTail {
        root: c.lake.root().display().to_string(),
        id: job.id,
        jobs,
        seen: Default::default(),
        partial: String::new(),
    };
    let events = futures::stream::unfold(Some(tail), LogTail::next).flat_map(|batch| {
        futures::stream::iter(batch.into_iter().map(Ok::<_, std::convert::Infallible>))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

async fn cancel_job(c: Caller, Path(id): Path<String>) -> ApiResult {
    redacted(&c.lake, &c.service().call(ops::CancelJob::new(id)).await?)
}
