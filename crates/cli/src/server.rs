//! `lakeplan serve` and `lakeplan admin`: server mode (crates/server) from the command line.

use std::path::PathBuf;
use std::time::Duration;

use lakeplan_core::{Error, Result};
use lakeplan_server::{AppState, MetastoreUrl, Registry, Scope, ServerConfig};

use crate::args::{
    AdminCmd, KeyCmd, MetastoreArg, Output, ServeArgs, TenantCmd, UserCmd, WorkerArgs,
};
use crate::output;

/// `~/x` → `$HOME/x`.
fn expand_home(s: &str) -> Result<String> {
    match s.strip_prefix("~/") {
        Some(rest) => {
            let home = std::env::var_os("HOME")
                .ok_or_else(|| Error::InvalidInput(format!("'{s}': no HOME to expand ~ in")))?;
            Ok(PathBuf::from(home).join(rest).display().to_string())
        }
        None => Ok(s.to_string()),
    }
}

/// `dir` made absolute (workers may start elsewhere).
fn absolute(dir: &str) -> Result<String> {
    std::path::absolute(dir)
        .map(|p| p.display().to_string())
        .map_err(|e| Error::io(dir, e))
}

fn metastore_url(arg: &MetastoreArg) -> Result<MetastoreUrl> {
    let url = match arg.metastore.strip_prefix("sqlite:") {
        Some(dir) if !dir.is_empty() => format!("sqlite:{}", absolute(&expand_home(dir)?)?),
        _ => arg.metastore.clone(),
    };
    MetastoreUrl::parse(
        &url,
        PathBuf::from(absolute(&expand_home(&arg.state_dir)?)?),
    )
}

fn registry(arg: &MetastoreArg) -> Result<(Registry, MetastoreUrl)> {
    let url = metastore_url(arg)?;
    Ok((Registry::new(url.system_store()?), url))
}

pub async fn serve(args: ServeArgs) -> Result<()> {
    let url = metastore_url(&args.metastore)?;
    let mut config = ServerConfig::new(url);
    config.allow_local_paths = args.allow_local_paths;
    config.max_body_bytes = args.max_body_mib.saturating_mul(1024 * 1024);
    config.request_timeout = Duration::from_secs(args.request_timeout_secs);
    config.dispatch.worker_timeout = Duration::from_secs(args.worker_timeout_secs.max(1));
    config.worker_token = worker_token(&config.metastore)?;
    let token = config.worker_token.clone();
    let state = AppState::open(config)?;
    if let Some(root) = &args.warehouse {
        state.registry.set_warehouse_root(root)?;
    }
    let listener = lakeplan_server::bind(&args.listen).await?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Internal(format!("listening address: {e}")))?;
    // The first line says where to connect (tests and scripts read it).
    println!("lakeplan server listening on http://{addr}");
    let control_plane = format!("http://{addr}");
    let local: Vec<_> = (0..args.workers)
        .map(|i| tokio::spawn(supervise_worker(i, control_plane.clone(), token.clone())))
        .collect();
    let served = lakeplan_server::serve(listener, state, shutdown_signal()).await;
    // Dropping a supervisor's child kills it.
    for w in local {
        w.abort();
        let _ = w.await;
    }
    served
}

/// The secret of the internal routes: `$LAKEPLAN_WORKER_TOKEN`, or a new random one written
/// (owner-only) to `<state folder>/worker.token` for workers started by hand on this machine.
fn worker_token(url: &MetastoreUrl) -> Result<String> {
    if let Ok(t) = std::env::var("LAKEPLAN_WORKER_TOKEN") {
        if !t.trim().is_empty() {
            return Ok(t.trim().to_string());
        }
    }
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let dir = url.state_dir();
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
    let path = dir.join("worker.token");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(path.display(), e))?;
        f.write_all(token.as_bytes())
            .map_err(|e| Error::io(path.display(), e))?;
    }
    Ok(token)
}

/// Keeps local worker `i` running: a worker that dies is started again (its tasks have failed
/// and may be retried).
async fn supervise_worker(i: usize, control_plane: String, token: String) {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot start local workers: {e}");
            return;
        }
    };
    loop {
        let child = tokio::process::Command::new(&exe)
            .args([
                "worker",
                "--control-plane",
                &control_plane,
                "--exit-on-stdin-close",
            ])
            .env("LAKEPLAN_WORKER_TOKEN", &token)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: cannot start local worker {i}: {e}");
                return;
            }
        };
        // `wait` closes the child's stdin unless it is taken: keep it open while the child runs.
        let _stdin = child.stdin.take();
        let status = child.wait().await;
        eprintln!("warning: local worker {i} exited ({status:?}); starting it again");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `lakeplan worker`: serves until stopped (or, with --exit-on-stdin-close, until its parent
/// goes away).
pub async fn worker(args: WorkerArgs) -> Result<()> {
    let token = match &args.token_file {
        Some(f) => std::fs::read_to_string(expand_home(f)?)
            .map_err(|e| Error::io(f, e))?
            .trim()
            .to_string(),
        None => std::env::var("LAKEPLAN_WORKER_TOKEN").unwrap_or_default(),
    };
    if token.is_empty() {
        return Err(Error::InvalidInput(
            "a worker needs the server's worker token: --token-file FILE (the server writes \
             worker.token in its state folder) or LAKEPLAN_WORKER_TOKEN"
                .into(),
        ));
    }
    let mut tasks = Vec::new();
    for t in &args.tasks {
        let kind = lakeplan_server::dispatch::TaskKind::parse(t).ok_or_else(|| {
            Error::InvalidInput(format!(
                "--tasks '{t}': expected {}",
                lakeplan_server::dispatch::TaskKind::ALL.join(", ")
            ))
        })?;
        tasks.push(kind);
    }
    let opts = lakeplan_server::worker::WorkerOptions {
        control_plane: args.control_plane,
        token,
        listen: args.listen,
        advertise: args.advertise,
        max_tasks: args.max_tasks,
        tasks,
        state_dir: match &args.state_dir {
            Some(d) => Some(std::path::PathBuf::from(absolute(&expand_home(d)?)?)),
            None => None,
        },
    };
    let stdin_closed = async move {
        if args.exit_on_stdin_close {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 64];
            let mut stdin = tokio::io::stdin();
            while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
        } else {
            std::future::pending::<()>().await
        }
    };
    let stop = async move {
        tokio::select! {
            _ = shutdown_signal() => {},
            _ = stdin_closed => {},
        }
    };
    lakeplan_server::worker::run(opts, stop).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Runs `f` and records it in the server's audit log, failures included.
fn audited<T>(reg: &Registry, op: &str, target: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let actor = std::env::var("USER").unwrap_or_else(|_| "admin".into());
    let out = f();
    reg.audit(&actor, op, target, out.as_ref().err());
    out
}

pub fn admin(cmd: AdminCmd, out: Output) -> Result<()> {
    match cmd {
        AdminCmd::Tenant(TenantCmd::Create {
            name,
            warehouse,
            metastore,
        }) => {
            let (reg, url) = registry(&metastore)?;
            let warehouse = match warehouse {
                Some(w) => w,
                None => {
                    let root = reg
                        .warehouse_root()?
                        .unwrap_or_else(|| url.default_warehouse_root());
                    format!("{root}/{name}")
                }
            };
            let t = audited(&reg, "tenant.create", &name, || {
                reg.create_tenant(&name, &warehouse)
            })?;
            match out {
                Output::Json => output::json(&t)?,
                _ => outln!("Created tenant {} (warehouse {})", t.name, t.warehouse),
            }
        }
        AdminCmd::Tenant(TenantCmd::Ls { metastore }) => {
            let (reg, _) = registry(&metastore)?;
            let ts = reg.tenants()?;
            match out {
                Output::Json => output::json(&ts)?,
                _ => output::table(
                    &["NAME", "WAREHOUSE", "CREATED"],
                    ts.iter()
                        .map(|t| {
                            vec![
                                t.name.clone(),
                                t.warehouse.clone(),
                                t.created_at.to_rfc3339(),
                            ]
                        })
                        .collect(),
                ),
            }
        }
        AdminCmd::User(UserCmd::Create {
            name,
            tenant,
            admin,
            can_merge_main,
            metastore,
        }) => {
            let (reg, _) = registry(&metastore)?;
            let u = audited(&reg, "user.create", &format!("{tenant}/{name}"), || {
                reg.create_user(&tenant, &name, admin, can_merge_main)
            })?;
            match out {
                Output::Json => output::json(&u)?,
                _ => outln!("Created user {} in tenant {}", u.name, u.tenant),
            }
        }
        AdminCmd::User(UserCmd::Ls { tenant, metastore }) => {
            let (reg, _) = registry(&metastore)?;
            let us = reg.users(&tenant)?;
            match out {
                Output::Json => output::json(&us)?,
                _ => output::table(
                    &["NAME", "ADMIN", "CAN_MERGE_MAIN"],
                    us.iter()
                        .map(|u| {
                            vec![
                                u.name.clone(),
                                u.admin.to_string(),
                                u.can_merge_main.to_string(),
                            ]
                        })
                        .collect(),
                ),
            }
        }
        AdminCmd::Key(KeyCmd::Create {
            tenant,
            user,
            scope,
            branches,
            agent,
            metastore,
        }) => {
            let (reg, _) = registry(&metastore)?;
            let scope = Scope::parse(&scope)?;
            let branches = branches.or_else(|| agent.then(|| "agent.*".to_string()));
            let (k, secret) = audited(&reg, "key.create", &format!("{tenant}/{user}"), || {
                reg.create_scoped_key(&tenant, &user, scope, branches.as_deref())
            })?;
            match out {
                Output::Json => output::json(&serde_json::json!({
                    "id": k.id, "tenant": k.tenant, "user": k.user, "scope": k.scope,
                    "branches": k.branches, "key": secret
                }))?,
                _ => {
                    // The key alone on stdout, so `KEY=$(lakeplan admin key create ...)` works;
                    // what it is goes to stderr.
                    eprintln!(
                        "Created {} key {} for {}/{} (shown only now):",
                        k.scope.as_str(),
                        k.id,
                        k.tenant,
                        k.user
                    );
                    outln!("{secret}");
                }
            }
        }
        AdminCmd::Key(KeyCmd::Ls { tenant, metastore }) => {
            let (reg, _) = registry(&metastore)?;
            let ks = reg.keys(&tenant)?;
            match out {
                Output::Json => output::json(&ks)?,
                _ => output::table(
                    &["ID", "USER", "SCOPE", "BRANCHES", "CREATED", "REVOKED"],
                    ks.iter()
                        .map(|k| {
                            vec![
                                k.id.clone(),
                                k.user.clone(),
                                k.scope.as_str().to_string(),
                                k.branches.clone().unwrap_or_default(),
                                k.created_at.to_rfc3339(),
                                k.revoked_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                            ]
                        })
                        .collect(),
                ),
            }
        }
        AdminCmd::Key(KeyCmd::Revoke {
            id,
            tenant,
            metastore,
        }) => {
            let (reg, _) = registry(&metastore)?;
            let k = audited(&reg, "key.revoke", &format!("{tenant}/{id}"), || {
                reg.revoke_key(&tenant, &id)
            })?;
            match out {
                Output::Json => output::json(&k)?,
                _ => outln!("Revoked key {} of {}/{}", k.id, k.tenant, k.user),
            }
        }
    }
    Ok(())
}
