use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "lakeplan",
    version,
    about = "git for data over Apache Iceberg tables"
)]
pub struct Cli {
    /// The lake folder (catalog.db + warehouse). Default: ~/.lakeplan
    #[arg(long, global = true, env = "LAKEPLAN_LAKE")]
    pub lake: Option<PathBuf>,
    /// Output format
    #[arg(short = 'O', long, global = true, value_enum, default_value = "tty")]
    pub output: Output,
    /// More detail on errors
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Remote mode: the profile in ~/.lakeplan/config.yaml (api_endpoint, api_key) of a server
    #[arg(short = 'P', long, global = true, env = "LAKEPLAN_PROFILE")]
    pub profile: Option<String>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Tty,
    Json,
    Csv,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create or inspect the lake
    #[command(subcommand)]
    Lake(LakeCmd),
    /// Branches: ls, create, rm, get, diff, merge, rename
    #[command(subcommand)]
    Branch(BranchCmd),
    /// Set the active branch (used when -r/-b is not given)
    Checkout {
        branch: String,
        /// Create the branch first
        #[arg(short = 'b')]
        create: bool,
        #[arg(long)]
        from_ref: Option<String>,
    },
    /// Tags: ls, create, rm, rename
    #[command(subcommand)]
    Tag(TagCmd),
    /// Namespaces: ls, create, rm
    #[command(subcommand)]
    Namespace(NamespaceCmd),
    /// Tables: ls, get, rm, create, create-plan, create-plan-apply, import, revert
    #[command(subcommand)]
    Table(TableCmd),
    /// The commit log of a ref: first parents, newest first
    Commit {
        #[arg(name = "REF")]
        r: Option<String>,
        #[arg(short = 'n', long = "max-count", default_value_t = 10)]
        n: usize,
        /// Only commits whose message matches this regex
        #[arg(long)]
        message: Option<String>,
        /// Only commits whose author matches this regex
        #[arg(long)]
        author: Option<String>,
        /// Only commits with this property (k=v); repeatable
        #[arg(long)]
        property: Vec<String>,
    },
    /// Run a read-only SQL query at a ref
    Query(QueryArgs),
    /// Run a pipeline project: plan, run in sandboxes, check, publish atomically
    Run(RunArgs),
    /// Write a working example pipeline project
    Init {
        /// Folder to create the project in (default: the current folder)
        path: Option<PathBuf>,
        /// Project name (default: the folder's name)
        #[arg(long)]
        name: Option<String>,
    },
    /// A project's parameters: ls, set, rm
    #[command(subcommand)]
    Parameter(ParameterCmd),
    /// Pipeline jobs: ls, get, logs, stop
    #[command(subcommand)]
    Job(JobCmd),
    /// Re-run a job from its stored code snapshot against its recorded input commit
    Rerun {
        id: String,
        /// Publish to this branch instead of the job's
        #[arg(short = 'r', long = "ref")]
        r: Option<String>,
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        no_cache: bool,
    },
    /// The audit log: every operation, newest first (also `SELECT * FROM system.audit`)
    Audit {
        #[arg(short = 'n', long, default_value_t = 20)]
        n: usize,
    },
    /// An MCP server on stdin/stdout for agents: the lake's tools (explore, query, branch,
    /// import, run, merge) on the local lake, or through a server in remote mode
    Mcp,
    /// Serve the lakes of many tenants over an HTTP/JSON API (see docs/server.md)
    Serve(ServeArgs),
    /// A data-plane worker: runs a server's queries, imports and pipeline runs, and serves query
    /// results over Arrow Flight (see docs/server.md)
    Worker(WorkerArgs),
    /// A server's tenants, users and API keys (run where the server's metastore is)
    #[command(subcommand)]
    Admin(AdminCmd),
}

/// Where a server keeps its metadata: `sqlite:DIR` or `postgres://...`.
#[derive(Args, Debug, Clone)]
pub struct MetastoreArg {
    /// The server's metastore: sqlite:DIR (DIR/server.db + one catalog per tenant) or
    /// postgres://user@host:port/db (one schema per tenant; several servers may share it)
    #[arg(
        long,
        env = "LAKEPLAN_METASTORE",
        default_value = "sqlite:~/.lakeplan-server"
    )]
    pub metastore: String,
    /// With a PostgreSQL metastore: this server's local folder for job records and runs (and
    /// the default warehouses)
    #[arg(
        long,
        env = "LAKEPLAN_STATE_DIR",
        default_value = "~/.lakeplan-server/state"
    )]
    pub state_dir: String,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:8181")]
    pub listen: String,
    #[command(flatten)]
    pub metastore: MetastoreArg,
    /// Where tenants created without --warehouse keep their tables: ROOT/<tenant> (a folder or
    /// s3://bucket/prefix). Stored with the server.
    #[arg(long)]
    pub warehouse: Option<String>,
    /// Let imports read files on this machine (off: s3:// only). Anyone with a write key can
    /// then read what the server can; for a single-user server on your own machine.
    #[arg(long)]
    pub allow_local_paths: bool,
    /// Largest request body, in MiB
    #[arg(long, default_value_t = 16)]
    pub max_body_mib: usize,
    /// Longest a request may take, in seconds
    #[arg(long, default_value_t = 300)]
    pub request_timeout_secs: u64,
    /// Data-plane workers to start on this machine (0: only workers started elsewhere with
    /// `lakeplan worker`)
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// A worker not heard from for this long is lost: its tasks fail (503) and its runs are
    /// marked failed
    #[arg(long, default_value_t = 10)]
    pub worker_timeout_secs: u64,
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// The control plane's URL (what `lakeplan serve` printed)
    #[arg(long)]
    pub control_plane: String,
    /// Where to serve results (Arrow Flight and HTTP on one port)
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// The URL clients reach this worker at, if not http://<listen address>
    #[arg(long)]
    pub advertise: Option<String>,
    /// A file holding the server's worker token (default: $LAKEPLAN_WORKER_TOKEN; a server
    /// writes its token to <metastore folder or state dir>/worker.token)
    #[arg(long)]
    pub token_file: Option<String>,
    /// Tasks run at once
    #[arg(long, default_value_t = 4)]
    pub max_tasks: usize,
    /// The kinds of task this worker takes, comma-separated: query, import, run (coordinate
    /// pipeline runs), node (run pipeline functions); default: all
    #[arg(long, value_delimiter = ',')]
    pub tasks: Vec<String>,
    /// This worker's local folder (job folders, node cache) when the server's metastore is
    /// PostgreSQL and this worker is on another machine; default: the server's state folder
    #[arg(long)]
    pub state_dir: Option<String>,
    /// Exit when standard input closes (how `serve --workers` ties its workers to itself)
    #[arg(long, hide = true)]
    pub exit_on_stdin_close: bool,
}

#[derive(Subcommand, Debug)]
pub enum AdminCmd {
    /// Tenants: create, ls
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Users of a tenant: create, ls
    #[command(subcommand)]
    User(UserCmd),
    /// API keys: create (shown once), ls, revoke
    #[command(subcommand)]
    Key(KeyCmd),
}

#[derive(Subcommand, Debug)]
pub enum TenantCmd {
    Create {
        name: String,
        /// Where the tenant's tables live (default: the server's --warehouse root/<name>, or
        /// DIR/warehouses/<name> for sqlite:DIR)
        #[arg(long)]
        warehouse: Option<String>,
        #[command(flatten)]
        metastore: MetastoreArg,
    },
    Ls {
        #[command(flatten)]
        metastore: MetastoreArg,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    Create {
        name: String,
        #[arg(long)]
        tenant: String,
        /// May hold admin keys (writes anywhere in the tenant)
        #[arg(long)]
        admin: bool,
        /// May merge into main with a write key
        #[arg(long)]
        can_merge_main: bool,
        #[command(flatten)]
        metastore: MetastoreArg,
    },
    Ls {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        metastore: MetastoreArg,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        user: String,
        /// read, write (the user's zone `<user>.*`) or admin
        #[arg(long, default_value = "write")]
        scope: String,
        /// Write only branches and tags matching this glob (`*`: any characters), in place of
        /// the user's zone; merges only into those
        #[arg(long, value_name = "GLOB")]
        branches: Option<String>,
        /// A key for an agent (an MCP client): --branches 'agent.*' unless given
        #[arg(long)]
        agent: bool,
        #[command(flatten)]
        metastore: MetastoreArg,
    },
    Ls {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        metastore: MetastoreArg,
    },
    Revoke {
        id: String,
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        metastore: MetastoreArg,
    },
}

#[derive(Subcommand, Debug)]
pub enum LakeCmd {
    /// Create the lake (optionally with its data in another folder)
    Init {
        #[arg(long)]
        warehouse: Option<String>,
    },
    /// Where the lake and its warehouse are, and the active branch
    Info,
    /// The lake's settings: `lake config` lists them, `lake config NAME` prints one,
    /// `lake config NAME VALUE` sets it, `lake config NAME --unset` unsets it.
    /// Settings: default_namespace (namespace of bare table names in queries, imports and
    /// table commands, and of a run's models when neither -n nor the project names one;
    /// unset: 'default', and 'bauplan' for a Bauplan project). In remote mode they are the
    /// tenant's, and changing one needs an admin key.
    Config {
        name: Option<String>,
        value: Option<String>,
        /// Unset the setting (back to its default)
        #[arg(long, conflicts_with = "value", requires = "name")]
        unset: bool,
    },
}

/// `create NAME [--from-ref REF] [--if-not-exists]` for branches and tags.
#[derive(Args, Debug)]
pub struct RefCreate {
    pub name: String,
    #[arg(long)]
    pub from_ref: Option<String>,
    #[arg(long)]
    pub if_not_exists: bool,
}

/// `rm NAME [--if-exists]` for branches and tags.
#[derive(Args, Debug)]
pub struct RefRm {
    pub name: String,
    #[arg(long)]
    pub if_exists: bool,
}

/// `rename OLD NEW` for branches and tags.
#[derive(Args, Debug)]
pub struct RefRename {
    pub old: String,
    pub new: String,
}

#[derive(Subcommand, Debug)]
pub enum BranchCmd {
    Ls {
        /// Only branches whose name contains this
        name: Option<String>,
    },
    Create(RefCreate),
    Rm(RefRm),
    Get {
        name: String,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Tables added, removed and changed between two refs (B defaults to the active branch)
    Diff {
        a: String,
        b: Option<String>,
    },
    Merge {
        source: String,
        #[arg(long)]
        into: Option<String>,
        #[arg(long)]
        commit_message: Option<String>,
        #[command(flatten)]
        commit: CommitArgs,
    },
    Rename(RefRename),
}

#[derive(Subcommand, Debug)]
pub enum TagCmd {
    Ls { name: Option<String> },
    Create(RefCreate),
    Rm(RefRm),
    Rename(RefRename),
}

#[derive(Subcommand, Debug)]
pub enum NamespaceCmd {
    Ls {
        #[arg(short = 'r', long = "ref")]
        r: Option<String>,
    },
    Create {
        namespace: String,
        #[arg(short = 'b', long)]
        branch: Option<String>,
        #[command(flatten)]
        commit: CommitArgs,
    },
    Rm {
        namespace: String,
        #[arg(short = 'b', long)]
        branch: Option<String>,
        #[command(flatten)]
        commit: CommitArgs,
    },
}

/// What a write adds to its commit (Bauplan's `--commit-body` / `--commit-property`).
#[derive(Args, Debug, Default)]
pub struct CommitArgs {
    /// A body under the commit's message
    #[arg(long)]
    pub commit_body: Option<String>,
    /// A property of the commit, KEY=VALUE (repeatable; `lakeplan.*` keys are reserved)
    #[arg(long = "commit-property", value_name = "KEY=VALUE")]
    pub commit_property: Vec<String>,
}

impl CommitArgs {
    pub fn extras(&self) -> lakeplan_core::Result<lakeplan_lake::CommitExtras> {
        lakeplan_lake::CommitExtras::new(self.commit_body.clone(), &self.commit_property)
    }
}

#[derive(Args, Debug)]
pub struct TableTarget {
    pub table: String,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum TableCmd {
    Ls {
        #[arg(short = 'r', long = "ref")]
        r: Option<String>,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    Get {
        #[command(flatten)]
        t: TableTarget,
        #[arg(short = 'r', long = "ref")]
        r: Option<String>,
    },
    /// Remove a table from a branch (a commit; its files stay for other refs)
    Rm {
        #[command(flatten)]
        t: TableTarget,
        #[arg(short = 'b', long)]
        branch: Option<String>,
        #[arg(long)]
        if_exists: bool,
        #[command(flatten)]
        commit: CommitArgs,
    },
    /// Create an empty table whose schema is inferred from files
    Create {
        #[command(flatten)]
        t: TableTarget,
        #[arg(long)]
        search_uri: String,
        #[arg(short = 'b', long)]
        branch: Option<String>,
        /// e.g. "vendor, day(pickup_at)"
        #[arg(long)]
        partitioned_by: Option<String>,
        /// Replace an existing table of that name (a new table version)
        #[arg(short = 'r', long)]
        replace: bool,
        #[command(flatten)]
        commit: CommitArgs,
    },
    /// Infer the schema from files and print (or save) it as a YAML plan
    CreatePlan {
        #[command(flatten)]
        t: TableTarget,
        #[arg(long)]
        search_uri: String,
        #[arg(short = 'b', long)]
        branch: Option<String>,
        #[arg(long)]
        partitioned_by: Option<String>,
        #[arg(short = 'r', long)]
        replace: bool,
        #[arg(short = 'p', long)]
        save_plan: Option<PathBuf>,
    },
    /// Create the table a saved plan describes
    CreatePlanApply {
        #[arg(long)]
        plan: PathBuf,
        #[command(flatten)]
        commit: CommitArgs,
    },
    /// Append files to a table (one commit, or nothing)
    Import {
        #[command(flatten)]
        t: TableTarget,
        #[arg(long)]
        search_uri: String,
        #[arg(short = 'b', long)]
        branch: Option<String>,
        /// Skip files that fail, report each, import the rest
        #[arg(long)]
        continue_on_error: bool,
        /// Import files even if this table already imported them
        #[arg(long)]
        import_duplicate_files: bool,
        #[command(flatten)]
        commit: CommitArgs,
    },
    /// Make a branch's table what it is at another ref
    Revert {
        #[command(flatten)]
        t: TableTarget,
        #[arg(short = 's', long)]
        source_ref: String,
        #[arg(short = 'i', long)]
        into_branch: Option<String>,
        #[command(flatten)]
        commit: CommitArgs,
    },
}

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// The SQL (or use -f FILE)
    pub sql: Option<String>,
    #[arg(short = 'r', long = "ref")]
    pub r: Option<String>,
    /// Default namespace for unqualified table names
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[arg(short = 'f', long)]
    pub file: Option<PathBuf>,
    #[arg(long, default_value_t = 10, conflicts_with = "all_rows")]
    pub max_rows: usize,
    #[arg(long)]
    pub all_rows: bool,
    /// Write all rows to a Parquet file instead of printing
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Stop the query after this many seconds (0: no limit); as a server's request timeout
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub timeout: u64,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Preview {
    On,
    Off,
    Head,
    Tail,
}

impl Preview {
    /// The name the API and [`lakeplan_lake::parse_preview`] take.
    pub fn as_str(self) -> &'static str {
        match self {
            Preview::On => "on",
            Preview::Off => "off",
            Preview::Head => "head",
            Preview::Tail => "tail",
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The project folder
    #[arg(short = 'p', long = "project-dir", default_value = ".")]
    pub project_dir: PathBuf,
    /// The branch to publish to (any ref with --dry-run); default: the active branch
    #[arg(short = 'r', long = "ref")]
    pub r: Option<String>,
    /// Namespace of input tables named bare, and of materialized models
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// A project parameter, name=value; repeatable
    #[arg(long = "param")]
    pub param: Vec<String>,
    /// Re-execute every node, ignoring cached outputs
    #[arg(long)]
    pub no_cache: bool,
    /// Execute without materializing anything
    #[arg(long)]
    pub dry_run: bool,
    /// Publish even when an expectation fails or an output breaks its contract
    #[arg(long)]
    pub no_strict: bool,
    /// Materialize directly on the branch instead of a temporary branch merged at the end
    #[arg(long)]
    pub no_transaction: bool,
    /// Show model outputs after the run
    #[arg(long, value_enum, default_value = "off")]
    pub preview: Preview,
    /// Start the run in the background and print its job id
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Fail when a function's declared Python version is not installed (default: run on the
    /// nearest installed version with a warning)
    #[arg(long, env = "LAKEPLAN_STRICT_PYTHON")]
    pub strict_python: bool,
    /// Nodes run at once (default: the number of cores)
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Bauplan's free-form backend flag, KEY=VALUE; repeatable. Recorded in the job (`job get`);
    /// none changes how a run executes here
    #[arg(short = 'a', long = "arg", value_name = "KEY=VALUE")]
    pub arg: Vec<String>,
    /// Bauplan's job priority, 1 (lowest) to 10 (highest). Recorded in the job: runs here start
    /// at once and never queue behind each other, so there is nothing for it to order
    #[arg(long, value_name = "1-10")]
    pub priority: Option<u8>,
    /// Internal: the job id of a detached run
    #[arg(long, hide = true)]
    pub job_id: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ParameterCmd {
    /// List the project's parameters
    Ls {
        #[arg(short = 'p', long = "project-dir", default_value = ".")]
        project_dir: PathBuf,
    },
    /// Add or change a parameter (its default value, type, description). A secret
    /// (`--type secret`) is sealed with the lake's key (the tenant's, on a server) and only its
    /// ciphertext is written; without VALUE it is read from stdin.
    Set {
        name: String,
        value: Option<String>,
        #[arg(short = 'p', long = "project-dir", default_value = ".")]
        project_dir: PathBuf,
        /// str | int | float | bool | secret
        #[arg(long = "type")]
        ty: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Remove a parameter
    Rm {
        name: String,
        #[arg(short = 'p', long = "project-dir", default_value = ".")]
        project_dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum JobCmd {
    /// Jobs, newest first
    Ls {
        #[arg(short = 'n', long, default_value_t = 20)]
        n: usize,
    },
    /// One job: status, refs, parameters, per-node outcome
    Get { id: String },
    /// A job's log
    Logs { id: String },
    /// Stop a running job (its target branch stays as it was)
    Stop { id: String },
}
