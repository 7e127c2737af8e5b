use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use lakeplan_core::{Error, RefKind, Result};
use lakeplan_lake::{ops, CreatePlan, ImportOptions, Lake, LakeConfig, Progress, ProgressFn};

use crate::remote::{CommitFilter, Remote};
use crate::service::Service;

use crate::args::*;
use crate::output;

fn lake_dir(cli_lake: Option<PathBuf>) -> Result<PathBuf> {
    match cli_lake {
        Some(p) => Ok(p),
        None => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".lakeplan"))
            .ok_or_else(|| Error::InvalidInput("set LAKEPLAN_LAKE or --lake (no HOME)".into())),
    }
}

pub async fn run(cli: Cli) -> Result<()> {
    let dir = lake_dir(cli.lake.clone())?;
    let out = cli.output;
    // Project commands edit a project folder and need no lake.
    let cmd = match cli.cmd {
        Cmd::Init { path, name } => return crate::pipeline::init(path, name, out),
        // ... except sealing a secret, which needs the lake's key (or the server's).
        Cmd::Parameter(p) if !crate::pipeline::is_secret_set(&p) => {
            return crate::pipeline::parameter(p, out)
        }
        // Server commands use the server's metastore, not a lake.
        Cmd::Serve(args) => return crate::server::serve(args).await,
        Cmd::Worker(args) => return crate::server::worker(args).await,
        Cmd::Admin(cmd) => return crate::server::admin(cmd, out),
        other => other,
    };
    let cli = Cli { cmd, ..cli };
    let svc = match Remote::from_env(cli.profile.as_deref())? {
        Some(remote) => {
            if let Cmd::Lake(LakeCmd::Init { .. }) = cli.cmd {
                return Err(Error::InvalidOperation {
                    op: "lake init".into(),
                    reason: format!(
                        "in remote mode ({}) lakes are a server's tenants: see `lakeplan admin tenant create`",
                        remote.endpoint()
                    ),
                });
            }
            Service::Remote(remote)
        }
        None => Service::Local(match &cli.cmd {
            Cmd::Lake(LakeCmd::Init { warehouse }) => {
                Lake::init(&dir, warehouse.as_deref(), LakeConfig::default())?
            }
            _ => Lake::open(&dir, LakeConfig::default())?,
        }),
    };
    let lake = &svc;
    let say = |msg: String| {
        if out == Output::Tty {
            outln!("{msg}");
        }
    };
    match cli.cmd {
        Cmd::Lake(LakeCmd::Init { .. }) | Cmd::Lake(LakeCmd::Info) => {
            let info = match &svc {
                Service::Local(lake) => serde_json::json!({
                    "lake": lake.root().display().to_string(),
                    "warehouse": lake.warehouse_url(),
                    "active_branch": lake.active_branch()?,
                    "default_namespace": lake.default_namespace()?,
                }),
                Service::Remote(r) => {
                    let who = r.info().await?;
                    serde_json::json!({
                        "endpoint": r.endpoint(),
                        "tenant": who["tenant"],
                        "user": who["user"],
                        "scope": who["scope"],
                        "active_branch": r.active_branch()?,
                    })
                }
            };
            match out {
                Output::Json => output::json(&info)?,
                _ => {
                    for (k, v) in info.as_object().into_iter().flatten() {
                        let v = v
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string());
                        outln!("{:<15}{v}", format!("{}:", k.replace('_', " ")));
                    }
                }
            }
        }
        Cmd::Lake(LakeCmd::Config { name, value, unset }) => {
            lake_config(lake, name, value, unset, out).await?
        }
        Cmd::Branch(cmd) => branch(lake, cmd, out).await?,
        Cmd::Checkout {
            branch,
            create,
            from_ref,
        } => {
            if create {
                lake.create_ref(&branch, RefKind::Branch, from_ref.as_deref(), false)
                    .await?;
            }
            lake.set_active_branch(&branch).await?;
            say(format!("Active branch: {branch}"));
            if out == Output::Json {
                output::json(&serde_json::json!({"active_branch": branch}))?;
            }
        }
        Cmd::Tag(cmd) => tag(lake, cmd, out).await?,
        Cmd::Namespace(cmd) => namespace(lake, cmd, out).await?,
        Cmd::Table(cmd) => table(lake, cmd, out).await?,
        Cmd::Commit {
            r,
            n,
            message,
            author,
            property,
        } => {
            let mut properties = Vec::new();
            for p in &property {
                let (k, v) = p.split_once('=').ok_or_else(|| {
                    Error::InvalidInput(format!("--property '{p}': expected k=v"))
                })?;
                properties.push((k.to_string(), v.to_string()));
            }
            let filter = CommitFilter {
                message,
                author,
                properties,
            };
            let commits = lake.commits(r.as_deref(), &filter, n).await?;
            match out {
                Output::Json => output::json(&commits)?,
                _ => {
                    for c in commits {
                        outln!("commit {}", c.hash);
                        if c.parent_hashes.len() > 1 {
                            let short: Vec<&str> =
                                c.parent_hashes.iter().map(|p| &p[..12]).collect();
                            outln!("Merge: {}", short.join(" "));
                        }
                        outln!("Author: {}", c.author);
                        outln!("Date:   {}", c.date);
                        for (k, v) in &c.properties {
                            outln!("        {k}={v}");
                        }
                        outln!("\n    {}\n", c.message);
                    }
                }
            }
        }
        Cmd::Query(q) => query(lake, q, out).await?,
        Cmd::Run(args) => match &svc {
            Service::Local(l) => crate::pipeline::run(l, &dir, args, out).await?,
            Service::Remote(r) => crate::pipeline::run_remote(r, args, out).await?,
        },
        Cmd::Job(cmd) => crate::pipeline::job(lake, cmd, out).await?,
        Cmd::Rerun {
            id,
            r,
            dry_run,
            no_cache,
        } => match &svc {
            Service::Local(l) => crate::pipeline::rerun(l, &id, r, dry_run, no_cache, out).await?,
            Service::Remote(rm) => {
                crate::pipeline::rerun_remote(rm, &id, r, dry_run, no_cache, out).await?
            }
        },
        Cmd::Parameter(p) => crate::pipeline::set_secret(lake, p, out).await?,
        Cmd::Init { .. } | Cmd::Serve(_) | Cmd::Worker(_) | Cmd::Admin(_) => {
            return Err(Error::Internal(
                "project and server commands are handled before the lake opens".into(),
            ))
        }
        Cmd::Mcp => match svc {
            Service::Local(lake) => {
                let lake = lake.acting_as(LakeConfig {
                    client: "mcp".into(),
                    ..LakeConfig::default()
                });
                lakeplan_mcp::serve_stdio(std::sync::Arc::new(lakeplan_mcp::LocalBackend::open(
                    lake,
                )))
                .await?
            }
            Service::Remote(r) => r.mcp_bridge().await?,
        },
        Cmd::Audit { n } => {
            let recs = lake.audit_log(n).await?;
            match out {
                Output::Json => output::json(&recs)?,
                _ => output::table(
                    &[
                        "SEQ",
                        "TIME",
                        "ACTOR",
                        "OPERATION",
                        "TARGET",
                        "RESULT",
                        "ERROR",
                    ],
                    recs.iter()
                        .map(|r| {
                            vec![
                                r.seq.to_string(),
                                r.timestamp
                                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                                r.actor.clone(),
                                r.operation.clone(),
                                r.target.clone(),
                                r.result.clone(),
                                r.error.clone().unwrap_or_default(),
                            ]
                        })
                        .collect(),
                ),
            }
        }
    }
    Ok(())
}

fn refs_out(refs: Vec<lakeplan_lake::RefInfo>, filter: Option<&str>, out: Output) -> Result<()> {
    let refs: Vec<_> = refs
        .into_iter()
        .filter(|r| filter.is_none_or(|f| r.name.contains(f)))
        .collect();
    match out {
        Output::Json => output::json(&refs),
        _ => {
            output::table(
                &["NAME", "HASH"],
                refs.iter()
                    .map(|r| vec![r.name.clone(), r.hash.clone()])
                    .collect(),
            );
            Ok(())
        }
    }
}

async fn branch(lake: &Service, cmd: BranchCmd, out: Output) -> Result<()> {
    match cmd {
        BranchCmd::Ls { name } => {
            refs_out(lake.list_refs(RefKind::Branch).await?, name.as_deref(), out)?
        }
        BranchCmd::Create(a) => ref_create(lake, RefKind::Branch, a, out).await?,
        BranchCmd::Rm(a) => ref_rm(lake, RefKind::Branch, a, out).await?,
        BranchCmd::Get { name, namespace } => {
            let r = lake.get_ref(&name, RefKind::Branch).await?;
            let tables = lake.list_tables(Some(&name), namespace.as_deref()).await?;
            match out {
                Output::Json => output::json(&serde_json::json!({"branch": r, "tables": tables}))?,
                _ => {
                    outln!("branch {} at {}", r.name, r.hash);
                    table_list(tables);
                }
            }
        }
        BranchCmd::Diff { a, b } => {
            let d = lake.diff(&a, b.as_deref()).await?;
            match out {
                Output::Json => output::json(&d)?,
                _ => {
                    if d.is_empty() {
                        outln!("No differences");
                    }
                    for x in d {
                        let sign = match x.change.as_str() {
                            "added" | "namespace_added" | "object_added" => "+",
                            "removed" | "namespace_removed" | "object_removed" => "-",
                            _ => "~",
                        };
                        let mut detail = Vec::new();
                        if x.change == "changed" {
                            if x.snapshot_before != x.snapshot_after {
                                detail.push(format!(
                                    "snapshot {} -> {}",
                                    x.snapshot_before.map_or("none".into(), |s| s.to_string()),
                                    x.snapshot_after.map_or("none".into(), |s| s.to_string())
                                ));
                            }
                            if x.schema_changed {
                                detail.push("schema changed".into());
                            }
                            detail.push(format!("rows {:+}", x.records_delta));
                        } else if x.change == "added" || x.change == "removed" {
                            detail.push(format!("rows {:+}", x.records_delta));
                        }
                        let kind = if x.change.starts_with("namespace") {
                            "namespace "
                        } else {
                            ""
                        };
                        outln!("{sign} {kind}{}  {}", x.table, detail.join(", "));
                    }
                }
            }
        }
        BranchCmd::Merge {
            source,
            into,
            commit_message,
            commit,
        } => {
            let m = lake
                .with_commit(commit.extras()?)?
                .merge(&source, into.as_deref(), commit_message.as_deref())
                .await?;
            match out {
                Output::Json => output::json(&m)?,
                _ => match m.outcome.as_str() {
                    "up_to_date" => outln!(
                        "'{}' is already up to date with '{}': nothing to merge",
                        m.into,
                        m.source
                    ),
                    "fast_forward" => outln!(
                        "Fast-forwarded '{}' to '{}' ({})",
                        m.into,
                        m.source,
                        &m.hash[..12]
                    ),
                    _ => outln!(
                        "Merged '{}' into '{}' ({})",
                        m.source,
                        m.into,
                        &m.hash[..12]
                    ),
                },
            }
        }
        BranchCmd::Rename(a) => ref_rename(lake, RefKind::Branch, a, out).await?,
    }
    Ok(())
}

async fn tag(lake: &Service, cmd: TagCmd, out: Output) -> Result<()> {
    match cmd {
        TagCmd::Ls { name } => refs_out(lake.list_refs(RefKind::Tag).await?, name.as_deref(), out),
        TagCmd::Create(a) => ref_create(lake, RefKind::Tag, a, out).await,
        TagCmd::Rm(a) => ref_rm(lake, RefKind::Tag, a, out).await,
        TagCmd::Rename(a) => ref_rename(lake, RefKind::Tag, a, out).await,
    }
}

fn capitalized(kind: RefKind) -> &'static str {
    match kind {
        RefKind::Branch => "Branch",
        RefKind::Tag => "Tag",
    }
}

async fn ref_create(lake: &Service, kind: RefKind, a: RefCreate, out: Output) -> Result<()> {
    let r = lake
        .create_ref(&a.name, kind, a.from_ref.as_deref(), a.if_not_exists)
        .await?;
    match out {
        Output::Json => output::json(&r),
        _ => {
            outln!("Created {kind} {} at {}", r.name, &r.hash[..12]);
            Ok(())
        }
    }
}

async fn ref_rm(lake: &Service, kind: RefKind, a: RefRm, out: Output) -> Result<()> {
    let deleted = lake.delete_ref(&a.name, kind, a.if_exists).await?;
    match out {
        Output::Json => output::json(&serde_json::json!({"deleted": deleted, "name": a.name})),
        _ => {
            if deleted {
                outln!("Deleted {kind} {}", a.name);
            } else {
                outln!("{} {} does not exist", capitalized(kind), a.name);
            }
            Ok(())
        }
    }
}

async fn ref_rename(lake: &Service, kind: RefKind, a: RefRename, out: Output) -> Result<()> {
    let r = lake.rename_ref(&a.old, &a.new, kind).await?;
    match out {
        Output::Json => output::json(&r),
        _ => {
            outln!("Renamed {kind} {} to {}", a.old, r.name);
            Ok(())
        }
    }
}

/// `lake config [NAME [VALUE | --unset]]`.
async fn lake_config(
    lake: &Service,
    name: Option<String>,
    value: Option<String>,
    unset: bool,
    out: Output,
) -> Result<()> {
    let all = match (&name, &value, unset) {
        (Some(n), Some(v), _) => lake.set_setting(n, Some(v)).await?,
        (Some(n), None, true) => lake.set_setting(n, None).await?,
        _ => lake.settings().await?,
    };
    let shown: Vec<_> = match &name {
        Some(n) => {
            lakeplan_lake::Setting::parse(n)?;
            all.into_iter().filter(|s| &s.name == n).collect()
        }
        None => all,
    };
    match out {
        Output::Json => output::json(&shown)?,
        _ if name.is_some() && value.is_none() && !unset => {
            for s in &shown {
                outln!("{}", s.value.as_deref().unwrap_or("(unset)"));
            }
        }
        _ => {
            for s in &shown {
                outln!(
                    "{:<20}{:<16}{}",
                    s.name,
                    s.value.as_deref().unwrap_or("(unset)"),
                    s.doc
                );
            }
        }
    }
    Ok(())
}

async fn namespace(lake: &Service, cmd: NamespaceCmd, out: Output) -> Result<()> {
    match cmd {
        NamespaceCmd::Ls { r } => {
            let ns = lake.list_namespaces(r.as_deref()).await?;
            match out {
                Output::Json => output::json(&ns)?,
                _ => output::table(&["NAMESPACE"], ns.into_iter().map(|n| vec![n]).collect()),
            }
        }
        NamespaceCmd::Create {
            namespace,
            branch,
            commit,
        } => {
            let w = lake
                .with_commit(commit.extras()?)?
                .create_namespace(&namespace, branch.as_deref())
                .await?;
            written(out, &format!("Created namespace {namespace}"), &w)?;
        }
        NamespaceCmd::Rm {
            namespace,
            branch,
            commit,
        } => {
            let w = lake
                .with_commit(commit.extras()?)?
                .drop_namespace(&namespace, branch.as_deref())
                .await?;
            written(out, &format!("Deleted namespace {namespace}"), &w)?;
        }
    }
    Ok(())
}

fn written(out: Output, msg: &str, w: &lakeplan_lake::WriteInfo) -> Result<()> {
    match out {
        Output::Json => output::json(w),
        _ => {
            match &w.hash {
                None => outln!("{msg}: nothing changed"),
                Some(h) => outln!("{msg} on branch {} ({})", w.branch, &h[..12.min(h.len())]),
            }
            Ok(())
        }
    }
}

fn table_list(tables: Vec<lakeplan_lake::TableSummary>) {
    output::table(
        &["NAMESPACE", "TABLE", "ROWS", "SNAPSHOT"],
        tables
            .into_iter()
            .map(|t| {
                vec![
                    t.namespace,
                    t.name,
                    t.records.to_string(),
                    t.snapshot_id.map_or("-".into(), |s| s.to_string()),
                ]
            })
            .collect(),
    );
}

fn progress_bar(out: Output) -> (ProgressFn, Option<ProgressBar>) {
    if out != Output::Tty || !std::io::stderr().is_terminal() {
        return (Arc::new(|_| {}), None);
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let b = bar.clone();
    let rows = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let files_done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let files_total = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let f: ProgressFn = Arc::new(move |p| {
        use std::sync::atomic::Ordering::Relaxed;
        match p {
            Progress::Start { files, bytes } => {
                files_total.store(files as u64, Relaxed);
                b.set_length(bytes);
            }
            Progress::Rows(n) => {
                rows.fetch_add(n, Relaxed);
            }
            Progress::FileDone { bytes, .. } => {
                files_done.fetch_add(1, Relaxed);
                b.inc(bytes);
            }
        }
        b.set_message(format!(
            "files {}/{} rows {}",
            files_done.load(Relaxed),
            files_total.load(Relaxed),
            rows.load(Relaxed)
        ));
    });
    (f, Some(bar))
}

async fn table(lake: &Service, cmd: TableCmd, out: Output) -> Result<()> {
    match cmd {
        TableCmd::Ls { r, namespace } => {
            let tables = lake.list_tables(r.as_deref(), namespace.as_deref()).await?;
            match out {
                Output::Json => output::json(&tables)?,
                _ => table_list(tables),
            }
        }
        TableCmd::Get { t, r } => {
            let info = lake
                .get_table(&t.table, t.namespace.as_deref(), r.as_deref())
                .await?;
            match out {
                Output::Json => output::json(&info)?,
                _ => {
                    outln!("table:             {} (at {})", info.fqn, info.at);
                    outln!("id:                {}", info.id);
                    outln!("metadata location: {}", info.metadata_location);
                    outln!(
                        "current snapshot:  {}",
                        info.current_snapshot_id
                            .map_or("none".into(), |s| s.to_string())
                    );
                    outln!("snapshots:         {}", info.snapshots);
                    outln!("records:           {}", info.records);
                    outln!(
                        "size:              {} bytes in {} data files",
                        info.size,
                        info.data_files
                    );
                    outln!("schema (id {}):", info.current_schema_id);
                    output::table(
                        &["  ID", "NAME", "TYPE", "REQUIRED"],
                        info.fields
                            .iter()
                            .map(|f| {
                                vec![
                                    format!("  {}", f.id),
                                    f.name.clone(),
                                    f.ty.clone(),
                                    f.required.to_string(),
                                ]
                            })
                            .collect(),
                    );
                    if info.partitions.is_empty() {
                        outln!("partitioning:      none");
                    } else {
                        outln!("partitioning:");
                        for p in info.partitions {
                            outln!("  {} = {}({})", p.name, p.transform, p.source);
                        }
                    }
                }
            }
        }
        TableCmd::Rm {
            t,
            branch,
            if_exists,
            commit,
        } => {
            let w = lake
                .with_commit(commit.extras()?)?
                .drop_table(
                    &t.table,
                    t.namespace.as_deref(),
                    branch.as_deref(),
                    if_exists,
                )
                .await?;
            written(out, &format!("Deleted table {}", t.table), &w)?;
        }
        TableCmd::Create {
            t,
            search_uri,
            branch,
            partitioned_by,
            replace,
            commit,
        } => {
            let req = ops::PlanTable {
                table: t.table.clone(),
                namespace: t.namespace,
                search_uri,
                branch,
                partitioned_by,
                replace,
            };
            let w = lake
                .with_commit(commit.extras()?)?
                .create_table(req)
                .await?;
            written(out, &format!("Created table {}", t.table), &w)?;
        }
        TableCmd::CreatePlan {
            t,
            search_uri,
            branch,
            partitioned_by,
            replace,
            save_plan,
        } => {
            let plan = lake
                .plan_table(ops::PlanTable {
                    table: t.table,
                    namespace: t.namespace,
                    search_uri,
                    branch,
                    partitioned_by,
                    replace,
                })
                .await?;
            let yaml = serde_yaml::to_string(&plan).map_err(|e| Error::Internal(e.to_string()))?;
            match save_plan {
                Some(path) => {
                    std::fs::write(&path, &yaml).map_err(|e| Error::io(path.display(), e))?;
                    if out == Output::Json {
                        output::json(
                            &serde_json::json!({"plan": path, "can_auto_apply": plan.can_auto_apply(), "conflicts": plan.conflicts}),
                        )?;
                    } else {
                        outln!("Plan saved to {}", path.display());
                        if !plan.can_auto_apply() {
                            outln!("{} column(s) conflict between files: edit the plan before applying", plan.conflicts.len());
                        }
                    }
                }
                None => match out {
                    Output::Json => output::json(&plan)?,
                    _ => out!("{yaml}"),
                },
            }
        }
        TableCmd::CreatePlanApply { plan, commit } => {
            let lake = lake.with_commit(commit.extras()?)?;
            let text = std::fs::read_to_string(&plan).map_err(|e| Error::io(plan.display(), e))?;
            let p: CreatePlan = serde_yaml::from_str(&text).map_err(|e| {
                Error::InvalidInput(format!("{}: not a valid plan: {e}", plan.display()))
            })?;
            let w = lake.apply_plan(&p).await?;
            written(out, &format!("Created table {}", p.table), &w)?;
        }
        TableCmd::Import {
            t,
            search_uri,
            branch,
            continue_on_error,
            import_duplicate_files,
            commit,
        } => {
            let lake = lake.with_commit(commit.extras()?)?;
            let opts = ImportOptions {
                continue_on_error,
                import_duplicate_files,
                ..Default::default()
            };
            let (progress, bar) = progress_bar(out);
            let res = lake
                .import(
                    &t.table,
                    t.namespace.as_deref(),
                    &search_uri,
                    branch.as_deref(),
                    &opts,
                    progress,
                )
                .await;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            let (report, w) = res?;
            match out {
                Output::Json => output::json(&serde_json::json!({"report": report, "commit": w}))?,
                _ => {
                    for c in &report.schema_changes {
                        outln!("schema: {c}");
                    }
                    for d in &report.duplicates {
                        outln!("skipped (already imported): {d}");
                    }
                    for s in &report.skipped {
                        outln!("skipped (error): {}: {}", s.path, s.reason);
                    }
                    written(
                        out,
                        &format!(
                            "Imported {} rows from {} file(s) ({} bytes) into {}",
                            report.rows,
                            report.imported.len(),
                            report.bytes,
                            t.table
                        ),
                        &w,
                    )?;
                }
            }
        }
        TableCmd::Revert {
            t,
            source_ref,
            into_branch,
            commit,
        } => {
            let w = lake
                .with_commit(commit.extras()?)?
                .revert_table(
                    &t.table,
                    t.namespace.as_deref(),
                    &source_ref,
                    into_branch.as_deref(),
                )
                .await?;
            written(
                out,
                &format!("Reverted table {} to {source_ref}", t.table),
                &w,
            )?;
        }
    }
    Ok(())
}

async fn query(lake: &Service, q: QueryArgs, out: Output) -> Result<()> {
    let sql = match (&q.sql, &q.file) {
        (Some(s), None) => s.clone(),
        (None, Some(f)) => std::fs::read_to_string(f).map_err(|e| Error::io(f.display(), e))?,
        (Some(_), Some(_)) => {
            return Err(Error::InvalidInput(
                "give the SQL or -f FILE, not both".into(),
            ))
        }
        (None, None) => {
            return Err(Error::InvalidInput(
                "no SQL: give it as an argument or with -f FILE".into(),
            ))
        }
    };
    let max_rows = if q.all_rows || q.out.is_some() {
        None
    } else {
        Some(q.max_rows)
    };
    let run = lake.query(&sql, q.r.as_deref(), q.namespace.as_deref(), max_rows);
    let res = if q.timeout == 0 {
        run.await?
    } else {
        // Dropping the query on time-out stops its execution (DataFusion's tasks end with
        // their stream); in remote mode it closes the request.
        tokio::time::timeout(std::time::Duration::from_secs(q.timeout), run)
            .await
            .map_err(|_| Error::InvalidOperation {
                op: "finish the query".into(),
                reason: format!(
                    "it ran longer than {} s and was stopped (--timeout SECS sets the limit; 0 for none)",
                    q.timeout
                ),
            })??
    };
    if let Some(path) = q.out {
        let file = std::fs::File::create(&path).map_err(|e| Error::io(path.display(), e))?;
        let mut w = parquet::arrow::ArrowWriter::try_new(file, res.schema.clone(), None)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let mut rows = 0;
        for b in &res.batches {
            rows += b.num_rows();
            w.write(b).map_err(|e| Error::Internal(e.to_string()))?;
        }
        w.close().map_err(|e| Error::Internal(e.to_string()))?;
        if out == Output::Tty {
            outln!("Wrote {rows} rows to {}", path.display());
        }
        return Ok(());
    }
    match out {
        Output::Json => output::batches_json(&res.batches)?,
        Output::Csv => output::batches_csv(&res.batches)?,
        Output::Tty => {
            output::batches_tty(&res.batches)?;
            if res.truncated {
                outln!(
                    "(showing the first {} rows; --all-rows for all)",
                    q.max_rows
                );
            }
        }
    }
    Ok(())
}
