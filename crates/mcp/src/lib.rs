//! MCP tools over the lake (Model Context Protocol, with the official Rust SDK `rmcp`), so that
//! agents can explore and change a lake safely. The same tools serve two transports:
//!
//! - `lakeplan mcp`: stdio, on a local lake (embedded) or bridged to a server (remote mode);
//! - `/mcp` on `lakeplan serve`: streamable HTTP, each call acting under the request's API key.
//!
//! ```text
//! MCP client ── tools/call {name, arguments} ──▶ LakeMcp ── Op ──▶ Backend (the lake, or a key's view of a server)
//!                                                   └── audit: every call, its arguments and outcome
//! ```
//!
//! This crate knows the tools, their JSON-schema arguments, limits and error reporting; what an
//! [`Op`] does is the [`Backend`]'s (the CLI's for a local lake, the server's for a key), so the
//! rules of the rest of the product (the zone rule, read-only SQL, scoped keys) apply unchanged.

mod local;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use lakeplan_core::Error;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::{schemars, tool, tool_handler, tool_router, ErrorData, RoleServer, ServerHandler};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use local::{record, LocalBackend};

/// Rows a query returns unless it asks for fewer.
pub const DEFAULT_MAX_ROWS: usize = 100;
/// The most rows a query may return: tool results go into a model's context.
pub const MAX_ROWS: usize = 10_000;
/// How long a query may run unless it asks for less (seconds), and the most it may ask for.
pub const DEFAULT_QUERY_TIMEOUT: u64 = 60;
pub const MAX_QUERY_TIMEOUT: u64 = 300;
/// Commits listed unless asked otherwise, and the most.
pub const DEFAULT_COMMITS: usize = 20;
pub const MAX_COMMITS: usize = 500;

/// One tool call, as the backend executes it.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "tool", rename_all = "snake_case")]
pub enum Op {
    ListBranches,
    ListTags,
    ListNamespaces {
        at: Option<String>,
    },
    ListTables {
        at: Option<String>,
        namespace: Option<String>,
    },
    GetTable {
        table: String,
        at: Option<String>,
        namespace: Option<String>,
    },
    ListCommits {
        at: Option<String>,
        limit: usize,
        message: Option<String>,
        author: Option<String>,
    },
    Diff {
        from: String,
        to: String,
    },
    Query {
        sql: String,
        at: Option<String>,
        namespace: Option<String>,
        max_rows: usize,
    },
    CreateBranch {
        name: String,
        from_ref: Option<String>,
    },
    ImportData {
        table: String,
        search_uri: String,
        branch: String,
        namespace: Option<String>,
        create_table: bool,
    },
    RunPipeline {
        branch: String,
        files: BTreeMap<String, String>,
        parameters: BTreeMap<String, String>,
        dry_run: bool,
    },
    Merge {
        source: String,
        into: String,
    },
}

impl Op {
    /// The tool's name.
    pub fn tool(&self) -> &'static str {
        match self {
            Op::ListBranches => "list_branches",
            Op::ListTags => "list_tags",
            Op::ListNamespaces { .. } => "list_namespaces",
            Op::ListTables { .. } => "list_tables",
            Op::GetTable { .. } => "get_table",
            Op::ListCommits { .. } => "list_commits",
            Op::Diff { .. } => "diff_refs",
            Op::Query { .. } => "query",
            Op::CreateBranch { .. } => "create_branch",
            Op::ImportData { .. } => "import_data",
            Op::RunPipeline { .. } => "run_pipeline",
            Op::Merge { .. } => "merge_branch",
        }
    }

    /// Whether the tool only reads the lake (its `readOnlyHint`). Every tool is named here (no
    /// wildcard), so a tool added later is classified on purpose. Rights are not decided here:
    /// each tool is an operation of the service, whose policy decides.
    pub fn read_only(&self) -> bool {
        match self {
            Op::ListBranches
            | Op::ListTags
            | Op::ListNamespaces { .. }
            | Op::ListTables { .. }
            | Op::GetTable { .. }
            | Op::ListCommits { .. }
            | Op::Diff { .. }
            | Op::Query { .. } => true,
            Op::CreateBranch { .. }
            | Op::ImportData { .. }
            | Op::RunPipeline { .. }
            | Op::Merge { .. } => false,
        }
    }
}

/// What the tools run against.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// Executes `op`; the answer is the tool's JSON result.
    async fn call(&self, op: Op) -> Result<Value, Error>;
    /// Records a tool call in the audit log (`mcp.<tool>`, its arguments, the outcome).
    async fn audit(&self, tool: &str, args: &Value, error: Option<&Error>);
}

/// Finds the backend of a call: the same one for stdio, the request's key's for HTTP (the
/// request's HTTP parts are in the context's extensions then).
pub type Connect =
    Arc<dyn Fn(&RequestContext<RoleServer>) -> Result<Arc<dyn Backend>, Error> + Send + Sync>;

/// The MCP server: lakeplan's tools.
#[derive(Clone)]
pub struct LakeMcp {
    connect: Connect,
    tool_router: ToolRouter<Self>,
}

/// A connection for stdio: every call goes to `backend`.
pub fn fixed(backend: Arc<dyn Backend>) -> Connect {
    Arc::new(move |_| Ok(backend.clone()))
}

/// The HTTP request a streamable-HTTP call came with.
pub fn http_parts(ctx: &RequestContext<RoleServer>) -> Option<&http::request::Parts> {
    ctx.extensions.get::<http::request::Parts>()
}

// ------------------------------------------------------------------------------------ arguments

#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AtRef {
    /// A ref expression: a branch, a tag, `branch@<hash>`, `@<hash>` or `branch*<RFC 3339 time>`
    /// (default: `main`).
    #[serde(rename = "ref", default)]
    pub at: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListTablesArgs {
    /// A ref expression (default: `main`).
    #[serde(rename = "ref", default)]
    pub at: Option<String>,
    /// Only the tables of this namespace.
    #[serde(default)]
    pub namespace: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetTableArgs {
    /// `name` (in namespace `default`, or `namespace`) or `namespace.name`.
    pub table: String,
    /// A ref expression (default: `main`).
    #[serde(rename = "ref", default)]
    pub at: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListCommitsArgs {
    /// A ref expression (default: `main`).
    #[serde(rename = "ref", default)]
    pub at: Option<String>,
    /// At most this many, newest first (default 20, at most 500).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Only commits whose message matches this regular expression.
    #[serde(default)]
    pub message: Option<String>,
    /// Only commits whose author matches this regular expression.
    #[serde(default)]
    pub author: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiffArgs {
    /// The ref to compare from.
    pub from: String,
    /// The ref to compare to.
    pub to: String,
}

#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryArgs {
    /// One read-only SQL statement (DataFusion SQL). Unqualified tables are in `namespace`;
    /// other refs can be named as catalogs: `"main@1a2b3c4d".default.trips`.
    pub sql: String,
    /// The ref the statement reads (default: `main`).
    #[serde(rename = "ref", default)]
    pub at: Option<String>,
    /// The namespace of unqualified table names (default: `default`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// At most this many rows (default 100, at most 10000); `truncated` says if more existed.
    #[serde(default)]
    pub max_rows: Option<usize>,
    /// Give up after this many seconds (default 60, at most 300).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBranchArgs {
    /// The new branch's name (git's rules; your key may limit it, e.g. to `agent.*`).
    pub name: String,
    /// Where it starts (default: `main`).
    #[serde(default)]
    pub from_ref: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportArgs {
    /// The table to append to.
    pub table: String,
    /// The files: a path, folder or glob, or `s3://bucket/prefix/*.parquet` (CSV, Parquet, JSONL).
    pub search_uri: String,
    /// The branch to write (never a tag or a commit).
    pub branch: String,
    #[serde(default)]
    pub namespace: Option<String>,
    /// Create the table (its schema inferred from the files) if it does not exist yet.
    #[serde(default)]
    pub create_table: bool,
}

#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunArgs {
    /// The branch the run publishes to (atomically, only if every function and expectation
    /// passed).
    pub branch: String,
    /// The project's files, by path: `lakeplan_project.yml` (or `bauplan_project.yml`), the
    /// Python files with the decorated functions, `.sql` models.
    pub files: BTreeMap<String, String>,
    /// Project parameters, by name.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// Compute without writing anything.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeArgs {
    /// The ref whose changes are merged.
    pub source: String,
    /// The branch that receives them.
    pub into: String,
}

// ---------------------------------------------------------------------------------------- tools

/// Arguments outside a tool's limits: a tool error (as the SDK answers arguments that do not
/// deserialize), so that the model can correct the call.
fn invalid(message: String) -> Result<CallToolResult, ErrorData> {
    let body = json!({"error": {"type": "InvalidArguments", "message": message}});
    let mut r = CallToolResult::error(vec![ContentBlock::text(message)]);
    r.structured_content = Some(body);
    Ok(r)
}

impl LakeMcp {
    pub fn new(connect: Connect) -> Self {
        LakeMcp {
            connect,
            tool_router: Self::tool_router(),
        }
    }

    /// Runs one tool: finds the backend, executes `op` (within `timeout`), records the call,
    /// and answers its JSON, or a tool error with the service layer's message.
    async fn run(
        &self,
        ctx: &RequestContext<RoleServer>,
        tool: &str,
        args: Value,
        op: Op,
        timeout: Option<Duration>,
    ) -> Result<CallToolResult, ErrorData> {
        let backend = (self.connect)(ctx).map_err(|e| {
            ErrorData::new(
                rmcp::model::ErrorCode(-32001),
                format!("not authorized: {e}"),
                None,
            )
        })?;
        // A run's errors name its files as the caller named them in `files`.
        let named: Vec<String> = match &op {
            Op::RunPipeline { files, .. } => files.keys().cloned().collect(),
            _ => Vec::new(),
        };
        let call = backend.call(op);
        let out = match timeout {
            Some(t) => match tokio::time::timeout(t, call).await {
                Ok(r) => r,
                Err(_) => Err(Error::InvalidOperation {
                    op: tool.to_string(),
                    reason: format!("it did not finish within {} s", t.as_secs()),
                }),
            },
            None => call.await,
        };
        backend.audit(tool, &args, out.as_ref().err()).await;
        Ok(match out {
            Ok(v) => CallToolResult::structured(wrap(v)),
            Err(e) => tool_error(&e, &named),
        })
    }
}

/// A tool's error: `{"error": {"type", "message", "context"}}` as the HTTP API's body, the kind
/// and context (a planning error's file and line, a conflict's tables) as data. A file the error
/// names is the one of `named` (the files a caller gave `run_pipeline`) it is, as the caller
/// named it, not the folder the project was unpacked into.
fn tool_error(e: &Error, named: &[String]) -> CallToolResult {
    let mut message = e.to_string();
    let mut context = e.context();
    if let Some(path) = context["file"].as_str().map(str::to_string) {
        if let Some(name) = as_named(&path, named) {
            message = message.replace(&path, name);
            context["file"] = Value::String(name.to_string());
        }
    }
    let body = json!({"error": {"type": e.kind(), "message": message, "context": context}});
    let mut r = CallToolResult::error(vec![ContentBlock::text(message)]);
    r.structured_content = Some(body);
    r
}

/// The name in `named` that `path` is (the same relative path, or one ending in it; the
/// longest if several are), if any.
fn as_named<'a>(path: &str, named: &'a [String]) -> Option<&'a str> {
    let path = path.strip_prefix("./").unwrap_or(path);
    named
        .iter()
        .map(|n| n.strip_prefix("./").unwrap_or(n))
        .filter(|n| {
            !n.is_empty()
                && (path == *n || path.strip_suffix(*n).is_some_and(|dir| dir.ends_with('/')))
        })
        .max_by_key(|n| n.len())
}

/// Structured results are objects: lists come as `{"items": [...]}`.
fn wrap(v: Value) -> Value {
    match v {
        Value::Object(_) => v,
        other => json!({ "items": other }),
    }
}

fn args<T: Serialize>(a: &T) -> Value {
    serde_json::to_value(a).unwrap_or(Value::Null)
}

#[tool_router]
impl LakeMcp {
    #[tool(
        description = "List the lake's branches with their head commits.",
        annotations(read_only_hint = true)
    )]
    async fn list_branches(
        &self,
        Parameters(a): Parameters<NoArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(&ctx, "list_branches", args(&a), Op::ListBranches, None)
            .await
    }

    #[tool(
        description = "List the lake's tags (read-only refs) with their commits.",
        annotations(read_only_hint = true)
    )]
    async fn list_tags(
        &self,
        Parameters(a): Parameters<NoArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(&ctx, "list_tags", args(&a), Op::ListTags, None)
            .await
    }

    #[tool(
        description = "List the namespaces at a ref.",
        annotations(read_only_hint = true)
    )]
    async fn list_namespaces(
        &self,
        Parameters(a): Parameters<AtRef>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let op = Op::ListNamespaces { at: a.at.clone() };
        self.run(&ctx, "list_namespaces", args(&a), op, None).await
    }

    #[tool(
        description = "List the tables at a ref (namespace, name, row count, snapshot id).",
        annotations(read_only_hint = true)
    )]
    async fn list_tables(
        &self,
        Parameters(a): Parameters<ListTablesArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let op = Op::ListTables {
            at: a.at.clone(),
            namespace: a.namespace.clone(),
        };
        self.run(&ctx, "list_tables", args(&a), op, None).await
    }

    #[tool(
        description = "A table at a ref: its schema (field ids, types), partition spec, snapshots, row count, size and metadata location.",
        annotations(read_only_hint = true)
    )]
    async fn get_table(
        &self,
        Parameters(a): Parameters<GetTableArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let op = Op::GetTable {
            table: a.table.clone(),
            at: a.at.clone(),
            namespace: a.namespace.clone(),
        };
        self.run(&ctx, "get_table", args(&a), op, None).await
    }

    #[tool(
        description = "The commit log of a ref, newest first (first parents), with optional regex filters.",
        annotations(read_only_hint = true)
    )]
    async fn list_commits(
        &self,
        Parameters(a): Parameters<ListCommitsArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let limit = a.limit.unwrap_or(DEFAULT_COMMITS);
        if limit == 0 || limit > MAX_COMMITS {
            return invalid(format!("limit must be 1 to {MAX_COMMITS}, got {limit}"));
        }
        let op = Op::ListCommits {
            at: a.at.clone(),
            limit,
            message: a.message.clone(),
            author: a.author.clone(),
        };
        self.run(&ctx, "list_commits", args(&a), op, None).await
    }

    #[tool(
        description = "Tables added, removed and changed between two refs (schema changes, snapshot changes, row-count deltas).",
        annotations(read_only_hint = true)
    )]
    async fn diff_refs(
        &self,
        Parameters(a): Parameters<DiffArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let op = Op::Diff {
            from: a.from.clone(),
            to: a.to.clone(),
        };
        self.run(&ctx, "diff_refs", args(&a), op, None).await
    }

    #[tool(
        description = "Run one read-only SQL query at a ref. Returns columns, rows (as JSON objects) and whether the rows were cut at max_rows.",
        annotations(read_only_hint = true)
    )]
    async fn query(
        &self,
        Parameters(a): Parameters<QueryArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let max_rows = a.max_rows.unwrap_or(DEFAULT_MAX_ROWS);
        if max_rows > MAX_ROWS {
            return invalid(format!(
                "max_rows must be at most {MAX_ROWS}, got {max_rows}"
            ));
        }
        let secs = a.timeout_secs.unwrap_or(DEFAULT_QUERY_TIMEOUT);
        if secs == 0 || secs > MAX_QUERY_TIMEOUT {
            return invalid(format!(
                "timeout_secs must be 1 to {MAX_QUERY_TIMEOUT}, got {secs}"
            ));
        }
        if a.sql.trim().is_empty() {
            return invalid("sql is empty".into());
        }
        let op = Op::Query {
            sql: a.sql.clone(),
            at: a.at.clone(),
            namespace: a.namespace.clone(),
            max_rows,
        };
        let timeout = Some(Duration::from_secs(secs));
        self.run(&ctx, "query", args(&a), op, timeout).await
    }

    #[tool(
        description = "Create a branch of the whole lake (O(1): no data is copied).",
        annotations(read_only_hint = false)
    )]
    async fn create_branch(
        &self,
        Parameters(a): Parameters<CreateBranchArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let op = Op::CreateBranch {
            name: a.name.clone(),
            from_ref: a.from_ref.clone(),
        };
        self.run(&ctx, "create_branch", args(&a), op, None).await
    }

    #[tool(
        description = "Append files (CSV, Parquet, JSONL) to a table on a branch: one commit, or nothing. With create_table, a missing table is created with the files' inferred schema first.",
        annotations(read_only_hint = false)
    )]
    async fn import_data(
        &self,
        Parameters(a): Parameters<ImportArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let op = Op::ImportData {
            table: a.table.clone(),
            search_uri: a.search_uri.clone(),
            branch: a.branch.clone(),
            namespace: a.namespace.clone(),
            create_table: a.create_table,
        };
        self.run(&ctx, "import_data", args(&a), op, None).await
    }

    #[tool(
        description = "Run a pipeline project (its files given inline) on a branch: Python functions in sandboxes and SQL models; publishes atomically only if everything passed. Returns the job.",
        annotations(read_only_hint = false)
    )]
    async fn run_pipeline(
        &self,
        Parameters(a): Parameters<RunArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        if a.files.is_empty() {
            return invalid("files is empty: give the project's files".into());
        }
        let op = Op::RunPipeline {
            branch: a.branch.clone(),
            files: a.files.clone(),
            parameters: a.parameters.clone(),
            dry_run: a.dry_run,
        };
        // The arguments recorded: the file names, not their contents.
        let recorded = json!({"branch": a.branch, "files": a.files.keys().collect::<Vec<_>>(),
                              "parameters": a.parameters, "dry_run": a.dry_run});
        self.run(&ctx, "run_pipeline", recorded, op, None).await
    }

    #[tool(
        description = "Merge a ref into a branch (three-way at table level; a conflict names the tables and writes nothing).",
        annotations(read_only_hint = false)
    )]
    async fn merge_branch(
        &self,
        Parameters(a): Parameters<MergeArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let op = Op::Merge {
            source: a.source.clone(),
            into: a.into.clone(),
        };
        self.run(&ctx, "merge_branch", args(&a), op, None).await
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for LakeMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("lakeplan", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "lakeplan: git for data over Iceberg tables. Explore with list_branches, \
                 list_tables, get_table, list_commits, diff_refs and query (read-only SQL). \
                 Change the lake only on a branch of your own (create_branch; your key may limit \
                 you to branches like 'agent.*'), with import_data or run_pipeline, then \
                 merge_branch if your key allows it.",
            )
    }
}

/// Serves the tools on stdin/stdout until the client closes them.
pub async fn serve_stdio(backend: Arc<dyn Backend>) -> Result<(), Error> {
    use rmcp::ServiceExt;
    let running = LakeMcp::new(fixed(backend))
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| Error::Internal(format!("MCP over stdio: {e}")))?;
    running
        .waiting()
        .await
        .map_err(|e| Error::Internal(format!("MCP over stdio: {e}")))?;
    Ok(())
}

/// The streamable-HTTP service (mount it at `/mcp`): each call's backend comes from `connect`,
/// which finds the request's HTTP parts with [`http_parts`].
pub fn http_service(
    connect: Connect,
) -> rmcp::transport::streamable_http_server::StreamableHttpService<
    LakeMcp,
    rmcp::transport::streamable_http_server::session::local::LocalSessionManager,
> {
    rmcp::transport::streamable_http_server::StreamableHttpService::new(
        move || Ok(LakeMcp::new(connect.clone())),
        Default::default(),
        rmcp::transport::streamable_http_server::StreamableHttpServerConfig::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One call of every tool.
    fn every_op() -> Vec<Op> {
        let s = String::new;
        vec![
            Op::ListBranches,
            Op::ListTags,
            Op::ListNamespaces { at: None },
            Op::ListTables {
                at: None,
                namespace: None,
            },
            Op::GetTable {
                table: s(),
                at: None,
                namespace: None,
            },
            Op::ListCommits {
                at: None,
                limit: 1,
                message: None,
                author: None,
            },
            Op::Diff { from: s(), to: s() },
            Op::Query {
                sql: s(),
                at: None,
                namespace: None,
                max_rows: 1,
            },
            Op::CreateBranch {
                name: s(),
                from_ref: None,
            },
            Op::ImportData {
                table: s(),
                search_uri: s(),
                branch: s(),
                namespace: None,
                create_table: false,
            },
            Op::RunPipeline {
                branch: s(),
                files: BTreeMap::new(),
                parameters: BTreeMap::new(),
                dry_run: false,
            },
            Op::Merge {
                source: s(),
                into: s(),
            },
        ]
    }

    /// A planning error in a run names the file as the caller named it among `files`: from
    /// the folder the project was unpacked into, or relative to the project.
    #[test]
    fn an_mcp_run_error_names_its_file_as_the_caller_did() {
        let named = vec!["models.py".to_string(), "sql/m.sql".to_string()];
        let e = Error::Plan {
            file: Some("/lake/uploads/1a2b/project/sql/m.sql".into()),
            line: Some(3),
            message: "/lake/uploads/1a2b/project/sql/m.sql:3: input 'x' is not there".into(),
        };
        let r = tool_error(&e, &named);
        assert_eq!(r.is_error, Some(true));
        assert_eq!(
            r.structured_content,
            Some(json!({"error": {"type": "PlanError",
                "message": "sql/m.sql:3: input 'x' is not there",
                "context": {"file": "sql/m.sql", "line": 3}}}))
        );
        assert_eq!(as_named("./models.py", &named), Some("models.py"));
        // Not a file of the run's, nor one whose name merely ends the same.
        assert_eq!(as_named("/elsewhere/other_models.py", &named), None);
        assert_eq!(as_named("m.sql", &named), None);
        // Other errors keep their context as it is.
        let e = Error::RefNotFound("dev".into());
        let r = tool_error(&e, &named);
        assert_eq!(
            r.structured_content,
            Some(
                json!({"error": {"type": "RefNotFound", "message": e.to_string(),
                "context": {"ref": "dev"}}})
            )
        );
    }

    /// What a server lets any key call without a rights check (`Op::read_only`) is what the
    /// tools tell clients (`readOnlyHint`), for every tool served.
    #[test]
    fn every_tool_says_whether_it_only_reads() {
        let ops: BTreeMap<&str, bool> = every_op()
            .iter()
            .map(|o| (o.tool(), o.read_only()))
            .collect();
        let tools = LakeMcp::tool_router().list_all();
        assert_eq!(tools.len(), ops.len());
        for t in tools {
            let hint = t.annotations.as_ref().and_then(|a| a.read_only_hint);
            assert!(hint.is_some(), "{} has no readOnlyHint", t.name);
            assert_eq!(hint, ops.get(t.name.as_ref()).copied(), "{}", t.name);
        }
    }
}
