//! How operations travel over `/api/v1`: for each operation a client calls on a server, the
//! request it is (method, path, query, body) and how its answer reads back. The remote client
//! calls every such operation through one generic call ([`OverHttp`]); the server's route rows
//! name the same operations (`crates/server/src/api.rs`), and the contract suites hold the two
//! sides to the same answers. So the embedded lake ([`super::Service`]) and a remote client are
//! one interface: `call(op)`.
//!
//! Defaults the lake owns ([`super::Operation::bind`]: a branch left out is the active one) are
//! the client's own for a remote lake: [`OverHttp::bind_client`] fills them from the client's
//! active branch before the request is made, so the server receives what the caller meant.

use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

use lakeplan_core::{Error, RefKind, Result};

use super::catalog::bound;
use super::*;
use crate::CommitExtras;

/// An HTTP method of the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Delete,
}

/// One API request: `/api/v1/<path segments>` (each percent-encoded by the client), its query
/// and its JSON body.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpCall {
    pub method: Method,
    pub path: Vec<String>,
    pub query: Vec<(&'static str, String)>,
    pub body: Option<Value>,
}

impl HttpCall {
    fn new(method: Method, path: &[&str]) -> HttpCall {
        HttpCall {
            method,
            path: path.iter().map(|s| s.to_string()).collect(),
            query: Vec::new(),
            body: None,
        }
    }

    fn get(path: &[&str]) -> HttpCall {
        HttpCall::new(Method::Get, path)
    }

    fn post(path: &[&str], body: Value) -> HttpCall {
        HttpCall {
            body: Some(body),
            ..HttpCall::new(Method::Post, path)
        }
    }

    fn delete(path: &[&str]) -> HttpCall {
        HttpCall::new(Method::Delete, path)
    }

    /// With `key=value` in the query, if there is a value.
    fn query(mut self, key: &'static str, value: Option<impl ToString>) -> HttpCall {
        if let Some(v) = value {
            self.query.push((key, v.to_string()));
        }
        self
    }

    /// With a request's commit extras (message, properties) in its body (a DELETE's too).
    fn commit(mut self, extras: &CommitExtras) -> HttpCall {
        if extras.is_empty() {
            return self;
        }
        let mut body = match self.body.take() {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        if let Ok(Value::Object(e)) = serde_json::to_value(extras) {
            body.extend(e);
        }
        self.body = Some(Value::Object(body));
        self
    }
}

/// An operation a client can call on a server.
pub trait OverHttp: Operation {
    /// Fills the defaults the caller's side owns: a ref left out is `active`, the client's
    /// active branch.
    fn bind_client(&mut self, _active: &str) {}

    /// The request, once bound. An operation that has fields `/api/v1` does not carry says so
    /// here rather than dropping them.
    fn http(&self) -> Result<HttpCall>;

    /// Its answer, from the response's JSON.
    fn answer(v: Value) -> Result<Self::Output>;
}

/// The answer as the operation's output type.
fn decode<T: DeserializeOwned>(what: &str, v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| Error::Internal(format!("the server's {what}: {e}")))
}

/// `r`, or `active` when it was left out.
fn or_active(r: &mut Option<String>, active: &str) {
    r.get_or_insert_with(|| active.to_string());
}

fn refs(kind: RefKind) -> &'static str {
    match kind {
        RefKind::Branch => "branches",
        RefKind::Tag => "tags",
    }
}

/// Implements [`OverHttp::answer`] as a plain decoding of the operation's output.
macro_rules! answer_as_output {
    () => {
        fn answer(v: Value) -> Result<Self::Output> {
            decode(Self::NAME, v)
        }
    };
}

impl OverHttp for ListRefs {
    fn http(&self) -> Result<HttpCall> {
        Ok(HttpCall::get(&[refs(self.kind)]))
    }
    answer_as_output!();
}

impl OverHttp for GetRef {
    fn http(&self) -> Result<HttpCall> {
        Ok(HttpCall::get(&[refs(self.kind), &self.name]))
    }
    answer_as_output!();
}

impl OverHttp for CreateRef {
    fn bind_client(&mut self, active: &str) {
        or_active(&mut self.from, active);
    }
    fn http(&self) -> Result<HttpCall> {
        Ok(HttpCall::post(
            &[refs(self.kind)],
            json!({"name": self.name, "from_ref": self.from, "if_not_exists": self.if_not_exists}),
        ))
    }
    answer_as_output!();
}

impl OverHttp for DeleteRef {
    fn http(&self) -> Result<HttpCall> {
        Ok(HttpCall::delete(&[refs(self.kind), &self.name])
            .query("if_exists", Some(self.if_exists)))
    }
    /// `{"name", "deleted", "ref"}`: the ref as it was, when it was there.
    fn answer(mut v: Value) -> Result<Self::Output> {
        decode(Self::NAME, v["ref"].take())
    }
}

impl OverHttp for RenameRef {
    fn http(&self) -> Result<HttpCall> {
        Ok(HttpCall::post(
            &[refs(self.kind), &self.name, "rename"],
            json!({"new_name": self.new_name}),
        ))
    }
    answer_as_output!();
}

impl OverHttp for Merge {
    fn bind_client(&mut self, active: &str) {
        or_active(&mut self.into, active);
    }
    fn http(&self) -> Result<HttpCall> {
        let body = json!({"into": self.into, "commit_message": self.message});
        Ok(HttpCall::post(&["branches", &self.source, "merge"], body).commit(&self.commit))
    }
    answer_as_output!();
}

impl OverHttp for Diff {
    fn bind_client(&mut self, active: &str) {
        or_active(&mut self.to, active);
    }
    fn http(&self) -> Result<HttpCall> {
        Ok(HttpCall::get(&["diff"])
            .query("from", Some(&self.from))
            .query("to", self.to.as_ref()))
    }
    answer_as_output!();
}

impl OverHttp for Commits {
    fn bind_client(&mut self, active: &str) {
        or_active(&mut self.at, active);
    }
    fn http(&self) -> Result<HttpCall> {
        let mut call = HttpCall::get(&["refs", bound(&self.at), "commits"])
            .query("limit", self.limit)
            .query("message", self.filter.message.as_ref().map(|r| r.as_str()))
            .query("author", self.filter.author.as_ref().map(|r| r.as_str()));
        for (k, v) in &self.filter.properties {
            call = call.query("property", Some(format!("{k}={v}")));
        }
        Ok(call)
    }
    answer_as_output!();
}

impl OverHttp for ListNamespaces {
    fn bind_client(&mut self, active: &str) {
        or_active(&mut self.at, active);
    }
    fn http(&self) -> Result<HttpCall> {
        Ok(HttpCall::get(&["refs", bound(&self.at), "namespaces"]))
    }
    answer_as_output!();
}

impl OverHttp for CreateNamespace {
    fn bind_client(&mut self, active: &str) {
        or_active(&mut self.branch, active);
    }
    fn http(&self) -> Result<HttpCall> {
        let call = HttpCall::post(
            &["branches", bound(&self.branch), "namespaces"],
            json!({"name": self.name}),
        );
        Ok(call.commit(&self.commit))
    }
    answer_as_output!();
}

impl OverHttp for DropNamespace {
    fn bind_client(&mut self, active: &str) {
        or_active(&mut self.branch, active);
    }
    fn http(&self) -> Result<HttpCall> {
        let call = HttpCall::delete(&["branches", bound(&self.branch), "namespaces", &self.name]);
        Ok(call.commit(&self.commit))
    }
    answer_as_output!();
}

impl OverHttp for ListTables {
    fn bind_client(&mut self, active: &str) {
        or_active(&mut self.at, active);
    }
    fn http(&self) -> Result<HttpCall> {
        Ok(HttpCall::get(&["refs", bound(&self.at), "tables"])
            .query("namespace", self.namespace.as_ref()))
    }
    answer_as_output!();
}

impl OverHttp for GetTable {
    fn bind_client(&mut self, active: &str) {
        or_active(&mut self.at, active);
    }
    fn http(&self) -> Result<HttpCall> {
        Ok(
            HttpCall::get(&["refs", bound(&self.at), "tables", &self.table])
                .query("namespace", self.namespace.as_ref()),
        )
    }
    answer_as_output!();
}

impl OverHttp for DropTable {
    fn bind_client(&mut self, active: &str) {
        or_active(&mut self.branch, active);
    }
    fn http(&self) -> Result<HttpCall> {
        let call = HttpCall::delete(&["branches", bound(&self.branch), "tables", &self.table])
            .query("namespace", self.namespace.as_ref())
            .query("if_exists", Some(self.if_exists));
        Ok(call.commit(&self.commit))
    }
    answer_as_output!();
}

impl OverHttp for RevertTable {
    fn bind_client(&mut self, active: &str) {
        or_active(&mut self.into, active);
    }
    fn http(&self) -> Result<HttpCall> {
        if self.bauplan_rules.is_some() {
            return Err(Error::InvalidInput(
                "a revert with Bauplan's rules goes through /catalog/v0, not /api/v1".into(),
            ));
        }
        let call = HttpCall::post(
            &[
                "branches",
                bound(&self.into),
                "tables",
                &self.table,
                "revert",
            ],
            json!({"source_ref": self.source_ref, "namespace": self.namespace}),
        );
        Ok(call.commit(&self.commit))
    }
    answer_as_output!();
}

impl OverHttp for Settings {
    fn http(&self) -> Result<HttpCall> {
        Ok(HttpCall::get(&["settings"]))
    }
    answer_as_output!();
}

impl OverHttp for SetSetting {
    fn http(&self) -> Result<HttpCall> {
        Ok(HttpCall::post(
            &["settings", &self.name],
            json!({ "value": self.value }),
        ))
    }
    answer_as_output!();
}

impl OverHttp for AuditLog {
    fn http(&self) -> Result<HttpCall> {
        Ok(HttpCall::get(&["audit"]).query("limit", self.limit))
    }
    answer_as_output!();
}

impl OverHttp for SealSecret {
    fn http(&self) -> Result<HttpCall> {
        Ok(HttpCall::post(
            &["secrets"],
            json!({"name": self.name, "value": self.value, "project_id": self.project_id}),
        ))
    }
    answer_as_output!();
}

/// A table plan's request as a body (with its branch for `table-plans`, without it where the
/// branch is in the path).
fn plan_body(req: &PlanTable, with_branch: bool) -> Result<Value> {
    let mut body = serde_json::to_value(req)
        .map_err(|e| Error::Internal(format!("a table plan's request: {e}")))?;
    if let (Some(o), false) = (body.as_object_mut(), with_branch) {
        o.remove("branch");
    }
    Ok(body)
}

impl OverHttp for PlanTable {
    fn bind_client(&mut self, active: &str) {
        or_active(&mut self.branch, active);
    }
    fn http(&self) -> Result<HttpCall> {
        Ok(HttpCall::post(&["table-plans"], plan_body(self, true)?))
    }
    answer_as_output!();
}

impl OverHttp for CreateTable {
    fn bind_client(&mut self, active: &str) {
        self.plan.bind_client(active);
    }
    fn http(&self) -> Result<HttpCall> {
        let path = ["branches", bound(&self.plan.branch), "tables"];
        Ok(HttpCall::post(&path, plan_body(&self.plan, false)?).commit(&self.commit))
    }
    answer_as_output!();
}

impl OverHttp for ApplyPlan {
    fn http(&self) -> Result<HttpCall> {
        let call = HttpCall::post(&["table-plans", "apply"], json!({"plan": self.plan}));
        Ok(call.commit(&self.commit))
    }
    answer_as_output!();
}

impl OverHttp for Import {
    fn bind_client(&mut self, active: &str) {
        or_active(&mut self.branch, active);
    }
    fn http(&self) -> Result<HttpCall> {
        if self.create_table {
            return Err(Error::InvalidInput(
                "an import that creates its table is MCP's import_data: over /api/v1, create the table first".into(),
            ));
        }
        let call = HttpCall::post(
            &[
                "branches",
                bound(&self.branch),
                "tables",
                &self.table,
                "import",
            ],
            json!({"namespace": self.namespace, "search_uri": self.search_uri,
                   "continue_on_error": self.continue_on_error,
                   "import_duplicate_files": self.import_duplicate_files}),
        );
        Ok(call.commit(&self.commit))
    }
    answer_as_output!();
}

impl OverHttp for ListJobs {
    fn http(&self) -> Result<HttpCall> {
        Ok(HttpCall::get(&["jobs"]).query("limit", self.limit))
    }
    answer_as_output!();
}

impl OverHttp for GetJob {
    fn http(&self) -> Result<HttpCall> {
        Ok(HttpCall::get(&["jobs", &self.id]))
    }
    answer_as_output!();
}

impl OverHttp for CancelJob {
    fn http(&self) -> Result<HttpCall> {
        Ok(HttpCall::post(&["jobs", &self.id, "cancel"], json!({})))
    }
    answer_as_output!();
}

impl OverHttp for Rerun {
    fn http(&self) -> Result<HttpCall> {
        let call = HttpCall::post(&["jobs", &self.job_id, "rerun"], json!({}))
            .query("ref", self.at.as_ref())
            .query("dry_run", Some(self.dry_run))
            .query("no_cache", Some(self.no_cache));
        Ok(call)
    }
    fn answer(v: Value) -> Result<String> {
        v["job_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Internal(format!("the server's rerun answered no job id: {v}")))
    }
}
