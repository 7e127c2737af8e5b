//! Bauplan's catalog API (`/catalog/v0/...`), so that the public `bauplan` Python client
//! (`BAUPLAN_API_ENDPOINT` at this server, `BAUPLAN_API_KEY` a lakeplan key) works unchanged on
//! branches, tags, namespaces, tables, commits and merges. Each route is a thin call into the
//! same service layer as `/api/v1`, with the same rights (the zone rule); only the shapes are
//! Bauplan's:
//!
//! - answers `{"data": T, "ref": {"type": "BRANCH"|"TAG"|"DETACHED", "name", "hash"}?,
//!   "metadata": {"pagination_token": ...}}`; lists page with `max_records` and
//!   `pagination_token`;
//! - errors `{"error": {"type": "BRANCH_NOT_FOUND", "message", "context": {...}}}`, with
//!   Bauplan's upper-case kinds and the context fields its client reads (`branch_name`,
//!   `input_ref`, `namespace_name`, ...).

use std::collections::BTreeMap;

use axum::extract::{Path, Query, Request};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lakeplan_core::{Error, RefKind, MAIN_BRANCH};
use lakeplan_lake::ops::{self, Operation};
use lakeplan_lake::{CommitExtras, CommitInfo, LogFilter, RefInfo, TableInfo};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// What a route was about, for the error kinds that name it (`BRANCH_NOT_FOUND` rather than
/// `REF_NOT_FOUND`, `CREATE_BRANCH_FORBIDDEN` rather than `FORBIDDEN`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum About {
    Branch,
    Tag,
    Other,
}

/// An error in Bauplan's shape.
#[derive(Debug)]
pub struct BauplanError {
    status: StatusCode,
    kind: String,
    message: String,
    context: Value,
}

impl BauplanError {
    fn new(e: ApiError, about: About, forbidden: &'static str) -> Self {
        let (status, _, message, _) = e.parts();
        let (kind, context) = match &e {
            ApiError::Forbidden(_) | ApiError::Service(Error::Forbidden(_)) => {
                (forbidden.to_string(), json!({}))
            }
            ApiError::Service(err) => kind_of(err, about),
            ApiError::Unauthorized => ("UNAUTHORIZED".into(), json!({})),
            ApiError::NotFound(_) => ("NOT_FOUND".into(), json!({})),
            ApiError::BadRequest(_) => ("BAD_REQUEST".into(), json!({})),
            _ => (String::new(), json!({})),
        };
        BauplanError {
            status,
            kind,
            message,
            context,
        }
    }
}

fn catalog_ref(kind: &str, name: &str) -> Value {
    json!({"type": kind, "name": name, "hash": ""})
}

/// Bauplan's error kind and context for a service-layer error.
fn kind_of(e: &Error, about: About) -> (String, Value) {
    let (kind, context) = match e {
        Error::RefNotFound(r) => match about {
            About::Branch => ("BRANCH_NOT_FOUND", json!({"branch_name": r})),
            About::Tag => ("TAG_NOT_FOUND", json!({"tag_name": r})),
            About::Other => ("REF_NOT_FOUND", json!({"input_ref": r})),
        },
        Error::CommitNotFound(r) => ("REF_NOT_FOUND", json!({"input_ref": r})),
        Error::RefExists { kind, name } if *kind == "tag" => (
            "TAG_EXISTS",
            json!({"tag_name": name, "catalog_ref": catalog_ref("TAG", name)}),
        ),
        Error::RefExists { name, .. } => (
            "BRANCH_EXISTS",
            json!({"branch_name": name, "catalog_ref": catalog_ref("BRANCH", name)}),
        ),
        Error::InvalidRefName { name, .. } => ("INVALID_REF", json!({"input_ref": name})),
        Error::InvalidRef { expr, .. } => ("INVALID_REF", json!({"input_ref": expr})),
        Error::AmbiguousCommit(r) => ("INVALID_REF", json!({"input_ref": r})),
        Error::NotAWriteBranch(r) => ("NOT_A_WRITE_BRANCH_REF", json!({"input_ref": r})),
        Error::NamespaceNotFound(ns) => (
            "NAMESPACE_NOT_FOUND",
            json!({"namespace_name": ns, "input_ref": "", "catalog_ref": catalog_ref("BRANCH", "")}),
        ),
        Error::NamespaceExists(ns) => (
            "NAMESPACE_EXISTS",
            json!({"namespace_name": ns, "catalog_ref": catalog_ref("BRANCH", "")}),
        ),
        Error::NamespaceNotEmpty { namespace, .. } => (
            "NAMESPACE_IS_NOT_EMPTY",
            json!({"namespace_name": namespace, "branch_name": ""}),
        ),
        Error::TableNotFound { table, at } => (
            "TABLE_NOT_FOUND",
            json!({"table_name": table, "input_ref": at, "catalog_ref": catalog_ref("BRANCH", at)}),
        ),
        Error::TableExists(t) => (
            "TABLE_EXISTS",
            json!({"table_name": t, "catalog_ref": catalog_ref("BRANCH", "")}),
        ),
        Error::MergeConflict {
            source_ref, into, ..
        } => (
            "MERGE_CONFLICT",
            json!({"source_ref": source_ref, "destination_ref": into}),
        ),
        Error::Conflict { branch, .. } => (
            "BRANCH_HEAD_CHANGED",
            json!({"input_ref": branch, "head_ref": catalog_ref("BRANCH", branch)}),
        ),
        e if crate::error::status_of(e) == StatusCode::BAD_REQUEST => ("BAD_REQUEST", json!({})),
        _ => ("", json!({})),
    };
    (kind.to_string(), context)
}

impl IntoResponse for BauplanError {
    fn into_response(self) -> Response {
        let body =
            json!({"error": {"type": self.kind, "message": self.message, "context": self.context}});
        (self.status, Json(body)).into_response()
    }
}

type BpResult = Result<Response, BauplanError>;

/// Maps errors for a route about `about`, whose refusals are `forbidden`.
fn on(about: About, forbidden: &'static str) -> impl Fn(ApiError) -> BauplanError {
    move |e| BauplanError::new(e, about, forbidden)
}

fn svc(e: Error) -> ApiError {
    ApiError::Service(e)
}

/// `op` through the caller's service (its rights checked there), errors in Bauplan's shape.
async fn call<O: Operation>(
    c: &Caller,
    op: O,
    err: impl Fn(ApiError) -> BauplanError,
) -> Result<O::Output, BauplanError> {
    c.service().call(op).await.map_err(svc).map_err(err)
}

/// `{"data": ..., "ref": ..., "metadata": {...}}`.
fn answer(data: Value, at: Option<Value>, token: Option<String>) -> BpResult {
    let mut body = json!({"data": data, "metadata": {"pagination_token": token}});
    if let Some(r) = at {
        body["ref"] = r;
    }
    Ok(Json(body).into_response())
}

fn ref_json(r: &RefInfo) -> Value {
    json!({"type": r.kind.to_uppercase(), "name": r.name, "hash": r.hash})
}

/// The ref an expression resolves to, as Bauplan shows it: a branch or tag by name, else a
/// detached commit.
async fn resolved(c: &Caller, expr: &str) -> Result<Value, ApiError> {
    let svc = c.service();
    for kind in [RefKind::Branch, RefKind::Tag] {
        let op = ops::GetRef {
            name: expr.to_string(),
            kind,
        };
        if let Ok(r) = svc.call(op).await {
            return Ok(ref_json(&r));
        }
    }
    let op = ops::Commits {
        at: Some(expr.to_string()),
        limit: Some(1),
        ..Default::default()
    };
    let head = svc.call(op).await?;
    let hash = head.first().map(|h| h.hash.clone()).unwrap_or_default();
    let (name, kind) = match expr.split_once('@') {
        Some((b, _)) if !b.is_empty() => (b.to_string(), "BRANCH"),
        _ => (String::new(), "DETACHED"),
    };
    Ok(json!({"type": kind, "name": name, "hash": hash}))
}

/// Query-string parameters, with Bauplan-shaped rejections.
struct BpQuery<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for BpQuery<T> {
    type Rejection = BauplanError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, BauplanError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(BpQuery(v)),
            Err(r) => Err(BauplanError {
                status: StatusCode::BAD_REQUEST,
                kind: "BAD_REQUEST".into(),
                message: r.body_text(),
                context: json!({}),
            }),
        }
    }
}

/// A JSON body (absent: the default), with Bauplan-shaped rejections.
struct BpBody<T>(T);

impl<S: Send + Sync, T: DeserializeOwned + JsonSchema + 'static + Default>
    axum::extract::FromRequest<S> for BpBody<T>
{
    type Rejection = BauplanError;

    async fn from_request(req: Request, state: &S) -> Result<Self, BauplanError> {
        let bad = |m: String| BauplanError {
            status: StatusCode::BAD_REQUEST,
            kind: "BAD_REQUEST".into(),
            message: m,
            context: json!({}),
        };
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| bad(r.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(BpBody(T::default()));
        }
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| bad(format!("malformed request body: {e}")))?;
        crate::api::unknown_fields::<T>(&v).map_err(bad)?;
        serde_json::from_value(v)
            .map(BpBody)
            .map_err(|e| bad(format!("malformed request body: {e}")))
    }
}

/// Paging over a list: `max_records` items from the offset in `pagination_token`.
/// (Strings: query strings flattened into a struct reach serde as text.)
#[derive(Default, Deserialize)]
struct Paging {
    max_records: Option<String>,
    pagination_token: Option<String>,
}

impl Paging {
    fn max_records(&self) -> Result<Option<usize>, ApiError> {
        self.max_records
            .as_deref()
            .map(|m| {
                m.parse::<usize>().map_err(|_| {
                    ApiError::BadRequest(format!("max_records '{m}': expected a number"))
                })
            })
            .transpose()
    }

    fn offset(&self) -> Result<usize, ApiError> {
        match self.pagination_token.as_deref().filter(|t| !t.is_empty()) {
            Some(t) => t.parse::<usize>().map_err(|_| {
                ApiError::BadRequest(format!("pagination_token '{t}' is not one of this API's"))
            }),
            None => Ok(0),
        }
    }
}

fn page(items: Vec<Value>, p: &Paging) -> Result<(Vec<Value>, Option<String>), ApiError> {
    let start = p.offset()?;
    let n = p.max_records()?.unwrap_or(usize::MAX).max(1);
    let end = start.saturating_add(n).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    Ok((
        items
            .into_iter()
            .skip(start)
            .take(end.saturating_sub(start))
            .collect(),
        next,
    ))
}

/// The routes, behind the key check.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/catalog/v0/branches",
            get(list_branches).post(create_branch),
        )
        .route(
            "/catalog/v0/branches/{name}",
            get(get_branch).delete(delete_branch).patch(rename_branch),
        )
        .route("/catalog/v0/tags", get(list_tags).post(create_tag))
        .route(
            "/catalog/v0/tags/{name}",
            get(get_tag).delete(delete_tag).patch(rename_tag),
        )
        .route("/catalog/v0/refs/{source}/merge/{into}", post(merge))
        .route("/catalog/v0/refs/{at}/commits", get(commits))
        .route("/catalog/v0/refs/{at}/namespaces", get(list_namespaces))
        .route("/catalog/v0/refs/{at}/namespaces/{ns}", get(get_namespace))
        .route(
            "/catalog/v0/branches/{branch}/namespaces",
            post(create_namespace),
        )
        .route(
            "/catalog/v0/branches/{branch}/namespaces/{ns}",
            axum::routing::delete(delete_namespace),
        )
        .route("/catalog/v0/refs/{at}/tables", get(list_tables))
        .route("/catalog/v0/refs/{at}/tables/{table}", get(get_table))
        .route(
            "/catalog/v0/branches/{branch}/tables/{table}",
            axum::routing::delete(delete_table),
        )
        .route(
            "/catalog/v0/refs/{source}/tables/{table}/revert/{into}",
            post(revert_table),
        )
        .route("/catalog/v0/{*rest}", axum::routing::any(not_found))
        .route_layer(from_fn_with_state(state, crate::auth::require_key))
}

// ------------------------------------------------------------------------------------ refs

#[derive(Default, Deserialize)]
struct ListRefsQ {
    filter_by_name: Option<String>,
    filter_by_user: Option<String>,
    #[serde(flatten)]
    paging: Paging,
}

async fn list_refs(
    c: &Caller,
    kind: RefKind,
    q: &ListRefsQ,
) -> Result<(Vec<Value>, Option<String>), ApiError> {
    let user = q.filter_by_user.as_deref().map(|u| match u {
        "~" => c.principal.user.name.clone(),
        u => u.to_string(),
    });
    let refs: Vec<Value> = c
        .service()
        .call(ops::ListRefs { kind })
        .await?
        .iter()
        .filter(|r| {
            q.filter_by_name
                .as_deref()
                .is_none_or(|n| r.name.contains(n))
        })
        .filter(|r| {
            user.as_deref()
                .is_none_or(|u| r.name.starts_with(&format!("{u}.")))
        })
        .map(ref_json)
        .collect();
    page(refs, &q.paging)
}

async fn list_branches(c: Caller, BpQuery(q): BpQuery<ListRefsQ>) -> BpResult {
    let (items, next) = list_refs(&c, RefKind::Branch, &q)
        .await
        .map_err(on(About::Branch, "FORBIDDEN"))?;
    answer(Value::Array(items), None, next)
}

async fn list_tags(c: Caller, BpQuery(q): BpQuery<ListRefsQ>) -> BpResult {
    let (items, next) = list_refs(&c, RefKind::Tag, &q)
        .await
        .map_err(on(About::Tag, "FORBIDDEN"))?;
    answer(Value::Array(items), None, next)
}

async fn get_ref(c: &Caller, name: &str, kind: RefKind, about: About) -> BpResult {
    let op = ops::GetRef {
        name: name.to_string(),
        kind,
    };
    let r = call(c, op, on(about, "FORBIDDEN")).await?;
    let j = ref_json(&r);
    answer(j.clone(), Some(j), None)
}

async fn get_branch(c: Caller, Path(name): Path<String>) -> BpResult {
    get_ref(&c, &name, RefKind::Branch, About::Branch).await
}

async fn get_tag(c: Caller, Path(name): Path<String>) -> BpResult {
    get_ref(&c, &name, RefKind::Tag, About::Tag).await
}

#[derive(Default, Deserialize, JsonSchema)]
struct NewBranch {
    branch_name: String,
    from_ref: Option<String>,
}

#[derive(Default, Deserialize, JsonSchema)]
struct NewTag {
    tag_name: String,
    from_ref: Option<String>,
}

async fn create_ref(
    c: &Caller,
    name: &str,
    kind: RefKind,
    from: Option<&str>,
    about: About,
    forbidden: &'static str,
) -> BpResult {
    let op = ops::CreateRef {
        name: name.to_string(),
        kind,
        from: Some(from.unwrap_or(MAIN_BRANCH).to_string()),
        if_not_exists: false,
    };
    let r = call(c, op, on(about, forbidden)).await?;
    let j = ref_json(&r);
    answer(j.clone(), Some(j), None)
}

async fn create_branch(c: Caller, BpBody(b): BpBody<NewBranch>) -> BpResult {
    create_ref(
        &c,
        &b.branch_name,
        RefKind::Branch,
        b.from_ref.as_deref(),
        About::Branch,
        "CREATE_BRANCH_FORBIDDEN",
    )
    .await
}

async fn create_tag(c: Caller, BpBody(b): BpBody<NewTag>) -> BpResult {
    create_ref(
        &c,
        &b.tag_name,
        RefKind::Tag,
        b.from_ref.as_deref(),
        About::Tag,
        "CREATE_TAG_FORBIDDEN",
    )
    .await
}

async fn delete_ref(
    c: &Caller,
    name: &str,
    kind: RefKind,
    about: About,
    forbidden: &'static str,
) -> BpResult {
    let op = ops::DeleteRef {
        name: name.to_string(),
        kind,
        if_exists: false,
    };
    let r = call(c, op, on(about, forbidden))
        .await?
        .ok_or_else(|| BauplanError::new(svc(Error::RefNotFound(name.into())), about, forbidden))?;
    answer(ref_json(&r), None, None)
}

async fn delete_branch(c: Caller, Path(name): Path<String>) -> BpResult {
    delete_ref(
        &c,
        &name,
        RefKind::Branch,
        About::Branch,
        "DELETE_BRANCH_FORBIDDEN",
    )
    .await
}

async fn delete_tag(c: Caller, Path(name): Path<String>) -> BpResult {
    delete_ref(&c, &name, RefKind::Tag, About::Tag, "DELETE_TAG_FORBIDDEN").await
}

#[derive(Default, Deserialize, JsonSchema)]
struct RenameBranch {
    branch_name: String,
}

#[derive(Default, Deserialize, JsonSchema)]
struct RenameTag {
    tag_name: String,
}

async fn rename_ref(
    c: &Caller,
    old: &str,
    new: &str,
    kind: RefKind,
    about: About,
    forbidden: &'static str,
) -> BpResult {
    let op = ops::RenameRef {
        name: old.to_string(),
        new_name: new.to_string(),
        kind,
    };
    let r = call(c, op, on(about, forbidden)).await?;
    let j = ref_json(&r);
    answer(j.clone(), Some(j), None)
}

async fn rename_branch(
    c: Caller,
    Path(name): Path<String>,
    BpBody(b): BpBody<RenameBranch>,
) -> BpResult {
    rename_ref(
        &c,
        &name,
        &b.branch_name,
        RefKind::Branch,
        About::Branch,
        "RENAME_BRANCH_FORBIDDEN",
    )
    .await
}

async fn rename_tag(c: Caller, Path(name): Path<String>, BpBody(b): BpBody<RenameTag>) -> BpResult {
    rename_ref(
        &c,
        &name,
        &b.tag_name,
        RefKind::Tag,
        About::Tag,
        "RENAME_TAG_FORBIDDEN",
    )
    .await
}

#[derive(Default, Deserialize, JsonSchema)]
struct MergeBody {
    commit_message: Option<String>,
    #[serde(flatten)]
    commit: CommitExtras,
}

async fn merge(
    c: Caller,
    Path((source, into)): Path<(String, String)>,
    BpBody(b): BpBody<MergeBody>,
) -> BpResult {
    let op = ops::Merge {
        source,
        into: Some(into),
        message: b.commit_message,
        commit: b.commit,
    };
    let m = call(&c, op, on(About::Other, "MERGE_FORBIDDEN")).await?;
    let at = json!({"type": "BRANCH", "name": m.into, "hash": m.hash});
    answer(json!({"outcome": m.outcome}), Some(at), None)
}

// ------------------------------------------------------------------------------------ commits

#[derive(Default, Deserialize)]
struct CommitsQ {
    filter_by_message: Option<String>,
    filter_by_author_username: Option<String>,
    filter_by_author_name: Option<String>,
    filter_by_properties: Option<String>,
    #[serde(flatten)]
    paging: Paging,
}

fn commit_json(c: &CommitInfo, at: &Value) -> Value {
    let actor = json!({"name": c.author, "email": null});
    let mut here = at.clone();
    here["hash"] = json!(c.hash);
    let mut parent = at.clone();
    parent["hash"] = json!(c.parent_hashes.first().cloned().unwrap_or_default());
    json!({
        "ref": here,
        "message": c.message,
        "authors": [actor],
        "authored_date": c.date,
        "committer": actor,
        "committed_date": c.date,
        "parent_ref": parent,
        "parent_hashes": c.parent_hashes,
        "properties": c.properties,
        "signed_off_by": [],
    })
}

async fn commits(c: Caller, Path(at): Path<String>, BpQuery(q): BpQuery<CommitsQ>) -> BpResult {
    let err = on(About::Other, "FORBIDDEN");
    let author = q
        .filter_by_author_username
        .clone()
        .or(q.filter_by_author_name.clone());
    let properties = match q.filter_by_properties.as_deref() {
        Some(p) => serde_json::from_str::<BTreeMap<String, String>>(p)
            .map_err(|e| {
                ApiError::BadRequest(format!("filter_by_properties: expected a JSON object: {e}"))
            })
            .map_err(&err)?
            .into_iter()
            .collect(),
        None => Vec::new(),
    };
    let filter = LogFilter {
        message: LogFilter::optional("filter_by_message", q.filter_by_message.as_deref())
            .map_err(svc)
            .map_err(&err)?,
        author: LogFilter::optional("author", author.as_deref())
            .map_err(svc)
            .map_err(&err)?,
        properties,
    };
    let r = resolved(&c, &at).await.map_err(&err)?;
    let want = match q.paging.max_records().map_err(&err)? {
        Some(n) => Some(n.saturating_add(q.paging.offset().map_err(&err)?)),
        None => None,
    };
    let op = ops::Commits {
        at: Some(at.clone()),
        filter,
        limit: want,
    };
    let log = call(&c, op, &err).await?;
    let items: Vec<Value> = log.iter().map(|x| commit_json(x, &r)).collect();
    let (items, next) = page(items, &q.paging).map_err(&err)?;
    answer(Value::Array(items), Some(r), next)
}

// ------------------------------------------------------------------------------------ namespaces

async fn list_namespaces(
    c: Caller,
    Path(at): Path<String>,
    BpQuery(p): BpQuery<Paging>,
) -> BpResult {
    let err = on(About::Other, "FORBIDDEN");
    let r = resolved(&c, &at).await.map_err(&err)?;
    let op = ops::ListNamespaces {
        at: Some(at.clone()),
    };
    let ns: Vec<Value> = call(&c, op, &err)
        .await?
        .into_iter()
        .map(|n| json!({"name": n}))
        .collect();
    let (items, next) = page(ns, &p).map_err(&err)?;
    answer(Value::Array(items), Some(r), next)
}

async fn get_namespace(c: Caller, Path((at, ns)): Path<(String, String)>) -> BpResult {
    let err = on(About::Other, "FORBIDDEN");
    let r = resolved(&c, &at).await.map_err(&err)?;
    let op = ops::GetNamespace {
        name: ns.clone(),
        at: Some(at.clone()),
    };
    call(&c, op, &err).await?;
    answer(json!({"name": ns}), Some(r), None)
}

#[derive(Default, Deserialize, JsonSchema)]
struct NewNamespace {
    namespace_name: String,
    #[serde(flatten)]
    commit: CommitExtras,
}

fn branch_ref(branch: &str, hash: &str) -> Value {
    json!({"type": "BRANCH", "name": branch, "hash": hash})
}

async fn create_namespace(
    c: Caller,
    Path(branch): Path<String>,
    BpBody(b): BpBody<NewNamespace>,
) -> BpResult {
    let op = ops::CreateNamespace {
        name: b.namespace_name.clone(),
        branch: Some(branch),
        commit: b.commit,
    };
    let w = call(&c, op, on(About::Other, "CREATE_NAMESPACE_FORBIDDEN")).await?;
    answer(
        json!({"name": b.namespace_name}),
        Some(branch_ref(&w.branch, w.hash.as_deref().unwrap_or_default())),
        None,
    )
}

async fn delete_namespace(
    c: Caller,
    Path((branch, ns)): Path<(String, String)>,
    BpBody(extras): BpBody<CommitExtras>,
) -> BpResult {
    let op = ops::DropNamespace {
        name: ns.clone(),
        branch: Some(branch),
        commit: extras,
    };
    let w = call(&c, op, on(About::Other, "DELETE_NAMESPACE_FORBIDDEN")).await?;
    answer(
        json!({"name": ns}),
        Some(branch_ref(&w.branch, w.hash.as_deref().unwrap_or_default())),
        None,
    )
}

// ------------------------------------------------------------------------------------ tables

fn table_json(t: &TableInfo) -> Value {
    let fields: Vec<Value> = t
        .fields
        .iter()
        .map(|f| json!({"id": f.id, "name": f.name, "required": f.required, "type": f.ty}))
        .collect();
    let partitions: Vec<Value> = t
        .partitions
        .iter()
        .map(|p| json!({"name": p.name, "transform": p.transform}))
        .collect();
    json!({
        "id": t.id,
        "name": t.name,
        "namespace": t.namespace,
        "kind": "TABLE",
        "records": t.records,
        "size": t.size,
        "last_updated_at": t.last_updated_ms,
        "fields": fields,
        "snapshots": t.snapshots,
        "partitions": partitions,
        "metadata_location": t.metadata_location,
        "current_snapshot_id": t.current_snapshot_id,
        "current_schema_id": t.current_schema_id,
        "properties": {},
    })
}

#[derive(Default, Deserialize)]
struct TablesQ {
    namespace: Option<String>,
    filter_by_name: Option<String>,
    filter_by_namespace: Option<String>,
    #[serde(flatten)]
    paging: Paging,
}

async fn list_tables(c: Caller, Path(at): Path<String>, BpQuery(q): BpQuery<TablesQ>) -> BpResult {
    let err = on(About::Other, "FORBIDDEN");
    let r = resolved(&c, &at).await.map_err(&err)?;
    let ns = q.namespace.clone().or(q.filter_by_namespace.clone());
    let op = ops::ListTables {
        at: Some(at.clone()),
        namespace: ns,
    };
    let summaries = call(&c, op, &err).await?;
    let mut items = Vec::new();
    for s in summaries {
        if q.filter_by_name
            .as_deref()
            .is_some_and(|n| !s.name.contains(n))
        {
            continue;
        }
        let op = ops::GetTable {
            table: s.name.clone(),
            namespace: Some(s.namespace.clone()),
            at: Some(at.clone()),
        };
        let t = call(&c, op, &err).await?;
        items.push(table_json(&t));
    }
    let (items, next) = page(items, &q.paging).map_err(&err)?;
    answer(Value::Array(items), Some(r), next)
}

#[derive(Default, Deserialize)]
struct NsQ {
    namespace: Option<String>,
}

async fn get_table(
    c: Caller,
    Path((at, table)): Path<(String, String)>,
    BpQuery(q): BpQuery<NsQ>,
) -> BpResult {
    let err = on(About::Other, "FORBIDDEN");
    let r = resolved(&c, &at).await.map_err(&err)?;
    let op = ops::GetTable {
        table,
        namespace: q.namespace.clone(),
        at: Some(at.clone()),
    };
    let t = call(&c, op, &err).await?;
    answer(table_json(&t), Some(r), None)
}

async fn delete_table(
    c: Caller,
    Path((branch, table)): Path<(String, String)>,
    BpQuery(q): BpQuery<NsQ>,
    BpBody(extras): BpBody<CommitExtras>,
) -> BpResult {
    let op = ops::DropTable {
        table,
        namespace: q.namespace,
        branch: Some(branch),
        if_exists: false,
        commit: extras,
    };
    let w = call(&c, op, on(About::Other, "DELETE_TABLE_FORBIDDEN")).await?;
    answer(
        Value::Null,
        Some(branch_ref(&w.branch, w.hash.as_deref().unwrap_or_default())),
        None,
    )
}

#[derive(Default, Deserialize, JsonSchema)]
struct RevertBody {
    #[serde(default)]
    replace: bool,
    #[serde(flatten)]
    commit: CommitExtras,
}

async fn revert_table(
    c: Caller,
    Path((source, table, into)): Path<(String, String, String)>,
    BpQuery(q): BpQuery<NsQ>,
    BpBody(b): BpBody<RevertBody>,
) -> BpResult {
    let op = ops::RevertTable {
        table,
        namespace: q.namespace,
        source_ref: source,
        into: Some(into),
        commit: b.commit,
        bauplan_rules: Some(ops::BauplanRevert { replace: b.replace }),
    };
    let w = c
        .service()
        .call(op)
        .await
        .map_err(|e| match (e.to_string(), e) {
            (message, Error::RevertUnchanged { table, .. }) => BauplanError {
                status: StatusCode::CONFLICT,
                kind: "REVERT_IDENTICAL_TABLE".into(),
                message,
                context: json!({"source_table_name": table, "destination_table_name": table}),
            },
            (_, Error::TableExists(t)) => BauplanError {
                status: StatusCode::CONFLICT,
                kind: "REVERT_DESTINATION_TABLE_EXISTS".into(),
                message: format!(
                    "table '{t}' exists on the destination: revert with replace to overwrite it"
                ),
                context: json!({"source_table_name": t, "destination_table_name": t}),
            },
            (_, e) => on(About::Other, "REVERT_TABLE_FORBIDDEN")(svc(e)),
        })?;
    answer(
        Value::Null,
        Some(branch_ref(&w.branch, w.hash.as_deref().unwrap_or_default())),
        None,
    )
}

/// The error shape of routes this API does not have.
async fn not_found() -> BauplanError {
    BauplanError {
        status: StatusCode::NOT_FOUND,
        kind: "NOT_FOUND".into(),
        message: "no such route in the catalog API".into(),
        context: json!({}),
    }
}
