//! `lakeplan serve` and `lakeplan admin`: server mode (crates/server) from the command line.

use std::path::PathBuf;
use std::time::Duration;

use lakeplan_core::{Error, Result};
use lakeplan_server::{AppState, MetastoreUrl, Registry, Scope, ServerConfig};

use crate::args::{AdminCmd, KeyCmd, MetastoreArg, Output, ServeArgs, TenantCmd, UserCmd};
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

fn metastore_url(arg: &MetastoreArg) -> Result<MetastoreUrl> {
    let url = match arg.metastore.strip_prefix("sqlite:") {
        Some(dir) => format!("sqlite:{}", expand_home(dir)?),
        None => arg.metastore.clone(),
    };
    MetastoreUrl::parse(&url, PathBuf::from(expand_home(&arg.state_dir)?))
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
    lakeplan_server::serve(listener, state, shutdown_signal()).await
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
            metastore,
        }) => {
            let (reg, _) = registry(&metastore)?;
            let scope = Scope::parse(&scope)?;
            let (k, secret) = audited(&reg, "key.create", &format!("{tenant}/{user}"), || {
                reg.create_key(&tenant, &user, scope)
            })?;
            match out {
                Output::Json => output::json(&serde_json::json!({
                    "id": k.id, "tenant": k.tenant, "user": k.user, "scope": k.scope, "key": secret
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
                    &["ID", "USER", "SCOPE", "CREATED", "REVOKED"],
                    ks.iter()
                        .map(|k| {
                            vec![
                                k.id.clone(),
                                k.user.clone(),
                                k.scope.as_str().to_string(),
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
