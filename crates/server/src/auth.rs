//! Who may do what. Every request but `/healthz` carries `Authorization: Bearer <key>`; the key
//! names a tenant, a user and a scope. Reads need any key. Writes follow the zone rule:
//!
//! - an admin key writes anywhere in its tenant;
//! - a write key writes only branches and tags named `<user>.*` (its zone), and merges into
//!   `main` only if its user may merge into main;
//! - a read key writes nothing.
//!
//! Tenants are separated by construction: a key resolves to one tenant's lake, so another
//! tenant's refs, tables and jobs are simply not there (404, never 403).
//!
//! A [`KeyPolicy`] (a key's [`Principal`] and the server's rules for source files) is the
//! server's [`Policy`]: a handler makes the caller's [`Service`] with [`Caller::service`], and
//! the service asks the policy about the access each operation declares. Handlers do not check
//! rights themselves.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use lakeplan_core::MAIN_BRANCH;
use lakeplan_lake::ops::{Access, Policy, Service};
use lakeplan_lake::{Lake, LakeConfig};

use lakeplan_core::Error::Forbidden;

use crate::error::ApiError;
use crate::registry::{Principal, Scope};
use crate::state::AppState;

impl Principal {
    fn zone(&self) -> String {
        format!("{}.", self.user.name)
    }

    /// May this key change branch (or tag) `name`: create, delete, rename, write tables on it?
    pub fn check_ref_write(&self, name: &str) -> lakeplan_core::Result<()> {
        if let (Some(glob), Scope::Write | Scope::Admin) = (&self.branches, self.scope) {
            return if crate::registry::glob_match(glob, name) {
                Ok(())
            } else {
                Err(Forbidden(format!(
                    "key {} writes only to refs matching '{glob}'; '{name}' does not",
                    self.key_id
                )))
            };
        }
        match self.scope {
            Scope::Admin => Ok(()),
            Scope::Read => Err(Forbidden(format!(
                "key {} is read-only: it cannot change '{name}'",
                self.key_id
            ))),
            Scope::Write if name.starts_with(&self.zone()) && name.len() > self.zone().len() => {
                Ok(())
            }
            Scope::Write => Err(Forbidden(format!(
                "user '{}' writes only to refs in its zone '{}*'; '{name}' is outside it",
                self.user.name,
                self.zone()
            ))),
        }
    }

    /// May this key merge into `into`? Into `main` only for users allowed to merge into main
    /// (or with an admin key); into other branches by the zone rule.
    pub fn check_merge_into(&self, into: &str) -> lakeplan_core::Result<()> {
        // A key limited to some branches merges only into those (an agent's key never into
        // `main`, unless its glob names it).
        if self.branches.is_some() {
            return self.check_ref_write(into);
        }
        if into == MAIN_BRANCH && self.scope == Scope::Write {
            return if self.user.can_merge_main {
                Ok(())
            } else {
                Err(Forbidden(format!(
                    "user '{}' may not merge into '{MAIN_BRANCH}'",
                    self.user.name
                )))
            };
        }
        self.check_ref_write(into)
    }

    /// May this key write at all (seal a secret, say)?
    pub fn check_write(&self) -> lakeplan_core::Result<()> {
        if self.scope == Scope::Read {
            Err(Forbidden(format!(
                "key {} is read-only: it cannot write",
                self.key_id
            )))
        } else {
            Ok(())
        }
    }

    pub fn check_admin(&self) -> lakeplan_core::Result<()> {
        if self.scope == Scope::Admin {
            Ok(())
        } else {
            Err(Forbidden(format!(
                "key {} is not an admin key",
                self.key_id
            )))
        }
    }
}

/// A key's rights on this server: its principal's, and where it may have source files read.
pub struct KeyPolicy {
    pub principal: Principal,
    pub state: AppState,
    /// The tenant's reach, read from the registry (every tenant's warehouse) once per policy:
    /// a plan naming many files is checked against one reading.
    reach: std::sync::OnceLock<lakeplan_lake::Reach>,
}

impl Policy for KeyPolicy {
    fn allow(&self, access: &Access) -> lakeplan_core::Result<()> {
        let p = &self.principal;
        match access {
            Access::Read => Ok(()),
            Access::WriteRef(r) => p.check_ref_write(r),
            Access::MergeInto(r) => p.check_merge_into(r),
            Access::Write => p.check_write(),
            Access::Admin => p.check_admin(),
            Access::Execute if p.scope == Scope::Read => Err(Forbidden(format!(
                "key {} is read-only: it cannot run pipelines",
                p.key_id
            ))),
            Access::Execute => Ok(()),
            Access::ReadSource(uri) => self.check_source(uri),
        }
    }

    fn reach(&self) -> lakeplan_core::Result<lakeplan_lake::Reach> {
        if let Some(r) = self.reach.get() {
            return Ok(r.clone());
        }
        let r = self.state.registry.reach(
            &self.principal.tenant,
            self.state.config.metastore.state_dir(),
        )?;
        Ok(self.reach.get_or_init(|| r).clone())
    }
}

impl KeyPolicy {
    /// Where sources may be read from. Never from another tenant's warehouse (the server's
    /// storage credentials could reach it), and from the server's own disk only when the
    /// server was started with `--allow-local-paths`. This is an early answer on the location
    /// as named; the worker that resolves the files checks each one it would read (globs,
    /// folders and links resolved) against the same reach.
    fn check_source(&self, uri: &str) -> lakeplan_core::Result<()> {
        let is_s3 = uri.starts_with("s3://");
        if !is_s3 && !self.state.config.allow_local_paths {
            return Err(Forbidden(format!(
                "'{uri}': this server imports only from s3:// URIs (it was not started with --allow-local-paths)"
            )));
        }
        if !is_s3 && uri.split('/').any(|seg| seg == "..") {
            return Err(lakeplan_core::Error::InvalidInput(format!(
                "'{uri}': '..' is not allowed in a path"
            )));
        }
        self.reach()?.check(uri)
    }
}

/// Middleware: resolves the bearer key into a [`Principal`] (401 otherwise) and stores it in the
/// request's extensions for the handlers.
pub async fn require_key(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    match principal_of(&state, req.headers()).await {
        Ok(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// The principal of a request's bearer key: 401 without one, or for an unknown or revoked key.
///
/// The key is looked up in the registry on every request, so a revocation takes effect at the
/// next request; the lookup reads the metastore, so it runs on the blocking pool
/// ([`crate::blocking`]): a slow metastore delays the requests that need it, never the runtime
/// threads that serve `/healthz` and the workers' heartbeats.
pub async fn principal_of(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<Principal, ApiError> {
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|s| s.trim().to_string())
        .ok_or(ApiError::Unauthorized)?;
    let registry = state.registry.clone();
    crate::blocking(move || registry.authenticate(&secret))
        .await?
        .ok_or(ApiError::Unauthorized)
}

/// A handler's view of the caller: who it is, and its tenant's lake acting as that user (so
/// commits and audit records name the user, with client `api`).
pub struct Caller {
    pub principal: Principal,
    pub lake: Lake,
    pub state: AppState,
}

impl Caller {
    /// The caller's lake under its key's rights, its files read and its code run by the
    /// data-plane workers: what every operation goes through.
    pub fn service(&self) -> Service {
        Service::new(self.lake.clone(), std::sync::Arc::new(self.policy()))
            .with_data_plane(std::sync::Arc::new(self.workers()))
    }

    /// The caller's rights, as its service decides them.
    fn policy(&self) -> KeyPolicy {
        KeyPolicy {
            principal: self.principal.clone(),
            state: self.state.clone(),
            reach: Default::default(),
        }
    }

    /// The data-plane workers, taking tasks as this caller.
    pub fn workers(&self) -> crate::workers::Workers {
        crate::workers::Workers {
            state: self.state.clone(),
            principal: self.principal.clone(),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or(ApiError::Unauthorized)?;
        // Opening a tenant's lake (on its first request) connects to its metastore.
        let (tenants, tenant) = (state.tenants.clone(), principal.tenant.clone());
        let lake = crate::blocking(move || tenants.lake(&tenant)).await?;
        let lake = lake.acting_as(LakeConfig {
            actor: principal.user.name.clone(),
            client: "api".into(),
        });
        Ok(Caller {
            principal,
            lake,
            state: state.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Tenant, User};

    fn principal(scope: Scope, can_merge_main: bool) -> Principal {
        let now = chrono::Utc::now();
        Principal {
            tenant: Tenant {
                name: "acme".into(),
                warehouse: "/tmp/acme".into(),
                created_at: now,
            },
            user: User {
                tenant: "acme".into(),
                name: "alice".into(),
                admin: scope == Scope::Admin,
                can_merge_main,
                created_at: now,
            },
            key_id: "abc".into(),
            scope,
            branches: None,
        }
    }

    #[test]
    fn the_zone_rule() {
        let w = principal(Scope::Write, false);
        assert!(w.check_ref_write("alice.dev").is_ok());
        assert!(w.check_ref_write("alice.a.b").is_ok());
        for outside in [
            "main",
            "alice",
            "alice.",
            "alicex.dev",
            "bob.dev",
            "dev.alice.x",
        ] {
            assert!(w.check_ref_write(outside).is_err(), "{outside}");
        }
        assert!(w.check_merge_into("main").is_err());
        assert!(w.check_merge_into("alice.x").is_ok());
        assert!(principal(Scope::Write, true)
            .check_merge_into("main")
            .is_ok());
        assert!(principal(Scope::Write, true)
            .check_merge_into("bob.x")
            .is_err());
        let r = principal(Scope::Read, true);
        assert!(r.check_ref_write("alice.dev").is_err());
        assert!(r.check_merge_into("main").is_err());
        let a = principal(Scope::Admin, false);
        assert!(a.check_ref_write("main").is_ok() && a.check_merge_into("main").is_ok());
        assert!(w.check_admin().is_err() && a.check_admin().is_ok());

        // A key with a branch glob writes only there, for write and admin scopes alike.
        for scope in [Scope::Write, Scope::Admin] {
            let agent = Principal {
                branches: Some("agent.*".into()),
                ..principal(scope, true)
            };
            assert!(agent.check_ref_write("agent.fix").is_ok());
            for outside in ["main", "alice.dev", "agent", "agentx.y"] {
                assert!(agent.check_ref_write(outside).is_err(), "{outside}");
            }
            assert!(agent.check_merge_into("main").is_err());
            assert!(agent.check_merge_into("agent.b").is_ok());
        }
        let read = Principal {
            branches: Some("*".into()),
            ..principal(Scope::Read, false)
        };
        assert!(read.check_ref_write("anything").is_err());
    }

    #[test]
    fn globs() {
        use crate::registry::glob_match as m;
        assert!(m("agent.*", "agent.x") && m("agent.*", "agent.") && !m("agent.*", "agent"));
        assert!(m("*", "") && m("a*b*c", "abc") && m("a*b*c", "axxbyyc") && !m("a*b*c", "acb"));
        assert!(m("main", "main") && !m("main", "mainx") && m("*.tmp", "x.tmp"));
    }
}
