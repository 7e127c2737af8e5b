//! Tenants, users and API keys, kept as settings of the server's own (system) metastore, so that
//! every server process on one metastore sees the same registry.
//!
//! ```text
//! tenant/<tenant>           → Tenant (its warehouse URL)
//! user/<tenant>/<user>      → User (admin?, may merge into main?)
//! key/<sha256 of the key>   → ApiKey (tenant, user, scope, revoked?)
//! key-id/<tenant>/<key id>  → sha256 of the key (finds a key by its id, lists a tenant's)
//! key-id-index              → set once every key has its `key-id/` entry
//! server/warehouse_root     → where tenants without a warehouse of their own go
//! ```
//!
//! A key is shown once, when created; only its SHA-256 is stored. Keys are 256-bit random
//! strings, so a plain hash (no salt, no slow KDF) is enough: there is nothing to brute-force.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use lakeplan_catalog::records::Text;
use lakeplan_catalog::{AuditRecord, Metastore, Records, Slot};
use lakeplan_core::{sha256_hex, Error, Result};
pub use lakeplan_dataplane::tenants::Tenant;
use lakeplan_lake::Reach;
use serde::{Deserialize, Serialize};

/// What a key may do. Ordered: each scope allows what the ones before it allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Reads only: listings, gets, queries.
    Read,
    /// Reads, and writes to branches and tags in the user's zone `<user>.*` (and merges into
    /// `main` for users allowed to).
    Write,
    /// Everything in the tenant. Only admin users get admin keys.
    Admin,
}

impl Scope {
    pub fn parse(s: &str) -> Result<Scope> {
        match s {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            "admin" => Ok(Scope::Admin),
            other => Err(Error::InvalidInput(format!(
                "unknown scope '{other}': expected read, write or admin"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub tenant: String,
    pub name: String,
    /// Admin users may hold admin keys (writes anywhere in the tenant).
    pub admin: bool,
    /// May merge into `main` with a write key.
    pub can_merge_main: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    /// The first 12 hex digits of the key's hash: names the key in listings and revocation.
    pub id: String,
    pub tenant: String,
    pub user: String,
    pub scope: Scope,
    /// Writes only to branches and tags matching this glob (`*` matches any run of
    /// characters), in place of the user's zone: an agent's key (`agent.*` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branches: Option<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Who is calling: resolved from a valid, unrevoked key.
#[derive(Clone, Debug, PartialEq)]
pub struct Principal {
    pub tenant: Tenant,
    pub user: User,
    pub key_id: String,
    pub scope: Scope,
    /// The key's branch glob, if it has one (see [`ApiKey::branches`]).
    pub branches: Option<String>,
}

/// Whether `name` matches `glob`, where `*` matches any run of characters.
pub fn glob_match(glob: &str, name: &str) -> bool {
    let parts: Vec<&str> = glob.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return glob == name;
    }
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

/// The registry over a system metastore.
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Metastore>,
    tenants: Records<Tenant>,
    users: Records<User>,
    keys: Records<ApiKey>,
    /// A tenant's keys by id: `key-id/<tenant>/<id>` → the key's hash.
    key_ids: Records<String, Text>,
    key_ids_built: Slot<String, Text>,
    warehouse_root: Slot<String, Text>,
}

const KEY_PREFIX: &str = "lpk_";

/// Tenant and user names: lowercase, digits, `_` (and `-` for users), starting with a letter or
/// digit, at most 48 characters. A user name is also the zone of its branches (`<user>.*`), so
/// it must be a valid ref name component; a tenant name is part of a PostgreSQL schema name
/// (`tenant_<name>`), so it must be an identifier.
pub fn validate_principal_name(what: &str, name: &str) -> Result<()> {
    let dash_ok = what != "tenant";
    let ok = !name.is_empty()
        && name.len() <= 48
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || (dash_ok && b == b'-')
        })
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName {
            name: name.to_string(),
            reason: format!(
                "a {what} name is 1-48 characters of a-z, 0-9, '_'{}, starting with a letter or digit",
                if dash_ok { " and '-'" } else { "" }
            ),
        })
    }
}

/// A fresh key: 256 random bits (two v4 UUIDs' worth of OS randomness, 244 bits, plus the
/// hash of a third) in hex, behind a recognizable prefix.
fn new_secret() -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!("{KEY_PREFIX}{a}{b}")
}

impl Registry {
    pub fn new(store: Arc<dyn Metastore>) -> Registry {
        Registry {
            tenants: Records::new(store.clone(), "tenant/"),
            users: Records::new(store.clone(), "user/"),
            keys: Records::new(store.clone(), "key/"),
            key_ids: Records::new(store.clone(), "key-id/"),
            key_ids_built: Slot::new(store.clone(), "key-id-index"),
            warehouse_root: Slot::new(store.clone(), "server/warehouse_root"),
            store,
        }
    }

    /// The `key-id/` entries of tenant `tenant`, after giving every key its entry (once per
    /// metastore: keys made before the entries existed).
    fn key_ids(&self, tenant: &str) -> Result<Records<String, Text>> {
        if self.key_ids_built.get()?.is_none() {
            for (hash, k) in self.keys.list()? {
                self.key_ids.within(&k.tenant)?.put(&k.id, &hash)?;
            }
            self.key_ids_built.set(&"1".to_string())?;
        }
        self.key_ids.within(tenant)
    }

    /// Records an administrative action in the system metastore's audit log.
    pub fn audit(&self, actor: &str, op: &str, target: &str, err: Option<&Error>) {
        let rec = AuditRecord {
            seq: 0,
            timestamp: Utc::now(),
            actor: actor.to_string(),
            client: "admin".into(),
            operation: op.to_string(),
            target: target.to_string(),
            details: serde_json::json!({}),
            result: if err.is_some() { "error" } else { "ok" }.into(),
            error: err.map(|e| e.to_string()),
        };
        if let Err(e) = self.store.append_audit(&rec) {
            eprintln!("warning: could not record '{op}' in the audit log: {e}");
        }
    }

    /// Where tenants created without a warehouse of their own keep their tables: `ROOT/<tenant>`.
    pub fn warehouse_root(&self) -> Result<Option<String>> {
        self.warehouse_root.get()
    }

    pub fn set_warehouse_root(&self, root: &str) -> Result<()> {
        self.warehouse_root
            .set(&root.trim_end_matches('/').to_string())
    }

    pub fn create_tenant(&self, name: &str, warehouse: &str) -> Result<Tenant> {
        validate_principal_name("tenant", name)?;
        let exists = || Error::Exists {
            what: format!("tenant '{name}'"),
        };
        if self.tenants.get(name)?.is_some() {
            return Err(exists());
        }
        let wh = warehouse.trim_end_matches('/');
        for t in self.tenants()? {
            if t.name == name {
                // made since the look-up above, by a creator racing this one
                return Err(exists());
            }
            let other = t.warehouse.trim_end_matches('/');
            if nested(wh, other) || nested(other, wh) {
                return Err(Error::InvalidOperation {
                    op: format!("create tenant '{name}'"),
                    reason: format!(
                        "its warehouse {wh} overlaps tenant '{}''s warehouse {other}: tenants never share storage",
                        t.name
                    ),
                });
            }
        }
        let t = Tenant {
            name: name.to_string(),
            warehouse: wh.to_string(),
            created_at: Utc::now(),
        };
        // One step: of servers sharing the metastore creating the same tenant, one wins.
        if !self.tenants.insert(name, &t)? {
            return Err(exists());
        }
        Ok(t)
    }

    pub fn tenant(&self, name: &str) -> Result<Tenant> {
        self.tenants
            .get(name)?
            .ok_or_else(|| Error::NotFound(format!("tenant '{name}' not found")))
    }

    pub fn tenants(&self) -> Result<Vec<Tenant>> {
        Ok(self.tenants.list()?.into_iter().map(|(_, t)| t).collect())
    }

    /// Where `tenant`'s imports, plans and registered tables may read, on a machine whose
    /// server state is in `state_dir`: nowhere in another tenant's warehouse, nor in the
    /// server's folder (the registry, the worker token, the other tenants' job records and
    /// runs) but for the tenant's own folder and warehouse there.
    pub fn reach(&self, tenant: &Tenant, state_dir: &Path) -> Result<Reach> {
        let mut denied = vec![state_dir.display().to_string()];
        denied.extend(
            self.tenants()?
                .into_iter()
                .filter(|t| t.name != tenant.name)
                .map(|t| t.warehouse),
        );
        let own = [
            tenant.warehouse.clone(),
            state_dir
                .join("tenants")
                .join(&tenant.name)
                .display()
                .to_string(),
        ];
        Ok(Reach::denying(denied, own))
    }

    pub fn create_user(
        &self,
        tenant: &str,
        name: &str,
        admin: bool,
        can_merge_main: bool,
    ) -> Result<User> {
        validate_principal_name("user", name)?;
        self.tenant(tenant)?;
        let u = User {
            tenant: tenant.to_string(),
            name: name.to_string(),
            admin,
            can_merge_main,
            created_at: Utc::now(),
        };
        // One step: of servers sharing the metastore creating the same user, one wins.
        if !self.users.within(tenant)?.insert(name, &u)? {
            return Err(Error::Exists {
                what: format!("user '{name}' in tenant '{tenant}'"),
            });
        }
        Ok(u)
    }

    pub fn user(&self, tenant: &str, name: &str) -> Result<User> {
        self.users
            .within(tenant)?
            .get(name)?
            .ok_or_else(|| Error::NotFound(format!("user '{name}' in tenant '{tenant}' not found")))
    }

    pub fn users(&self, tenant: &str) -> Result<Vec<User>> {
        Ok(self
            .users
            .within(tenant)?
            .list()?
            .into_iter()
            .map(|(_, u)| u)
            .collect())
    }

    /// Creates a key and returns it with its secret, which is shown only now.
    pub fn create_key(&self, tenant: &str, user: &str, scope: Scope) -> Result<(ApiKey, String)> {
        self.create_scoped_key(tenant, user, scope, None)
    }

    /// A key that writes only branches and tags matching `branches` (a glob such as `agent.*`).
    pub fn create_scoped_key(
        &self,
        tenant: &str,
        user: &str,
        scope: Scope,
        branches: Option<&str>,
    ) -> Result<(ApiKey, String)> {
        if let Some(g) = branches {
            let ok = !g.is_empty()
                && g.len() <= 255
                && g.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-/*@".contains(c));
            if !ok {
                return Err(Error::InvalidInput(format!(
                    "branch glob '{g}': use letters, digits, '.', '_', '-', '/' and '*'"
                )));
            }
        }
        let u = self.user(tenant, user)?;
        if scope == Scope::Admin && !u.admin {
            return Err(Error::InvalidOperation {
                op: "create an admin key".into(),
                reason: format!("user '{user}' is not an admin of tenant '{tenant}'"),
            });
        }
        let ids = self.key_ids(tenant)?;
        loop {
            let secret = new_secret();
            let hash = sha256_hex(secret.as_bytes());
            let k = ApiKey {
                id: hash[..12].to_string(),
                tenant: tenant.to_string(),
                user: user.to_string(),
                scope,
                branches: branches.map(str::to_string),
                created_at: Utc::now(),
                revoked_at: None,
            };
            // The id first: a key is never stored without the entry that finds it, and two
            // keys of one tenant never share an id (draw again in the unlikely case).
            if !ids.insert(&k.id, &hash)? {
                continue;
            }
            if !self.keys.insert(&hash, &k)? {
                return Err(Error::Internal(format!("key {} exists already", k.id)));
            }
            return Ok((k, secret));
        }
    }

    /// Keys of a tenant (without secrets, which are not stored), by id.
    pub fn keys(&self, tenant: &str) -> Result<Vec<ApiKey>> {
        let mut out = Vec::new();
        for (_, hash) in self.key_ids(tenant)?.list()? {
            out.extend(self.keys.get(&hash)?);
        }
        Ok(out)
    }

    /// Revokes key `id` of `tenant`: requests with it get 401 from then on.
    pub fn revoke_key(&self, tenant: &str, id: &str) -> Result<ApiKey> {
        let not_found =
            || Error::InvalidInput(format!("key '{id}' not found in tenant '{tenant}'"));
        if lakeplan_catalog::records::validate_id(id).is_err() {
            return Err(not_found());
        }
        let hash = match self.key_ids(tenant)?.get(id)? {
            Some(hash) => hash,
            // Made by an older server sharing this metastore, after the entries were built.
            None => self
                .keys
                .list()?
                .into_iter()
                .find(|(_, k)| k.id == id && k.tenant == tenant)
                .map(|(hash, _)| hash)
                .ok_or_else(not_found)?,
        };
        self.keys
            .update(&hash, |k| {
                if k.tenant != tenant {
                    return Err(not_found());
                }
                k.revoked_at.get_or_insert_with(Utc::now);
                Ok(())
            })?
            .ok_or_else(not_found)
    }

    /// The principal behind `secret`, or None if the key is unknown or revoked (the caller
    /// answers 401 either way, without saying which).
    pub fn authenticate(&self, secret: &str) -> Result<Option<Principal>> {
        if !secret.starts_with(KEY_PREFIX) || secret.len() > 256 {
            return Ok(None);
        }
        let hash = sha256_hex(secret.as_bytes());
        let Some(k) = self.keys.get(&hash)? else {
            return Ok(None);
        };
        if k.revoked_at.is_some() {
            return Ok(None);
        }
        let tenant = self.tenant(&k.tenant)?;
        let user = self.user(&k.tenant, &k.user)?;
        Ok(Some(Principal {
            tenant,
            user,
            key_id: k.id,
            scope: k.scope,
            branches: k.branches,
        }))
    }
}

/// Whether location `inner` is `outer` or below it.
pub(crate) fn nested(inner: &str, outer: &str) -> bool {
    inner == outer || inner.starts_with(&format!("{outer}/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lakeplan_catalog::SqliteMetastore;

    fn registry() -> Registry {
        Registry::new(Arc::new(SqliteMetastore::open_in_memory().expect("db")))
    }

    /// A registry with tenant `acme`, its user `alice` and a key of hers: (registry, key,
    /// secret).
    fn acme_alice(scope: Scope) -> (Registry, ApiKey, String) {
        let r = registry();
        r.create_tenant("acme", "/tmp/acme").expect("tenant");
        r.create_user("acme", "alice", false, false).expect("user");
        let (k, secret) = r.create_key("acme", "alice", scope).expect("key");
        (r, k, secret)
    }

    #[test]
    fn keys_authenticate_until_revoked_and_only_their_hash_is_stored() {
        let (r, k, secret) = acme_alice(Scope::Write);
        assert!(secret.starts_with("lpk_") && secret.len() == 4 + 64);
        let p = r.authenticate(&secret).expect("auth").expect("known key");
        assert_eq!(
            (p.tenant.name.as_str(), p.user.name.as_str()),
            ("acme", "alice")
        );
        assert_eq!(p.scope, Scope::Write);
        // The secret itself is nowhere in the store.
        let all = r.store.list_settings("").expect("list");
        assert!(all
            .iter()
            .all(|(k, v)| !k.contains(&secret) && !v.contains(&secret)));
        assert_eq!(r.authenticate("lpk_0000").expect("auth"), None);
        assert_eq!(r.authenticate("Bearer nonsense").expect("auth"), None);
        // Revocation is per tenant: another tenant cannot revoke it.
        r.create_tenant("other", "/tmp/other").expect("tenant");
        assert!(r.revoke_key("other", &k.id).is_err());
        r.revoke_key("acme", &k.id).expect("revoke");
        assert_eq!(r.authenticate(&secret).expect("auth"), None);
        assert!(r.keys("acme").expect("keys")[0].revoked_at.is_some());
        assert!(r.keys("other").expect("keys").is_empty());
    }

    /// Creating what exists is a conflict (409), in one step even when creators race (servers
    /// sharing a metastore); a missing tenant is not found (404).
    #[test]
    fn creators_race_and_exactly_one_wins() {
        use crate::error::status_of;
        let r = registry();
        let results: Vec<Result<User>> = std::thread::scope(|s| {
            let tenant = (0..8)
                .map(|_| s.spawn(|| r.create_tenant("acme", "/tmp/acme")))
                .collect::<Vec<_>>();
            let tenants: Vec<Result<Tenant>> = tenant
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect();
            assert_eq!(tenants.iter().filter(|t| t.is_ok()).count(), 1);
            for e in tenants.iter().filter_map(|t| t.as_ref().err()) {
                assert_eq!(status_of(e).as_u16(), 409, "{e}");
                assert_eq!(e.to_string(), "tenant 'acme' already exists");
            }
            (0..8)
                .map(|_| s.spawn(|| r.create_user("acme", "bob", false, false)))
                .collect::<Vec<_>>()
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        assert_eq!(results.iter().filter(|u| u.is_ok()).count(), 1);
        for e in results.iter().filter_map(|u| u.as_ref().err()) {
            assert_eq!(status_of(e).as_u16(), 409, "{e}");
        }
        let e = r
            .create_user("ghost", "carol", false, false)
            .expect_err("no tenant");
        assert_eq!(
            (status_of(&e).as_u16(), e.to_string().as_str()),
            (404, "tenant 'ghost' not found")
        );
    }

    #[test]
    fn admin_keys_need_admin_users_and_names_are_checked() {
        let r = registry();
        r.create_tenant("acme", "s3://bucket/acme").expect("tenant");
        r.create_user("acme", "bob", false, true).expect("user");
        assert!(r.create_key("acme", "bob", Scope::Admin).is_err());
        r.create_user("acme", "root", true, true)
            .expect("admin user");
        r.create_key("acme", "root", Scope::Admin)
            .expect("admin key");
        assert!(r.create_key("acme", "nobody", Scope::Read).is_err());
        assert!(
            r.create_user("acme", "bob", false, false).is_err(),
            "duplicate"
        );
        assert!(
            r.create_user("ghost", "carol", false, false).is_err(),
            "no tenant"
        );
        assert!(
            r.create_tenant("a-b", "/tmp/ab").is_err(),
            "tenants are identifiers"
        );
        r.create_user("acme", "carol-x", false, false)
            .expect("users may have dashes");
        for bad in ["", "Alice", "a.b", "../x", "-a", &"x".repeat(49)] {
            assert!(r.create_tenant(bad, "/tmp/x").is_err(), "{bad:?}");
            assert!(r.create_user("acme", bad, false, false).is_err(), "{bad:?}");
        }
    }

    /// A registry written before the typed stores (no `key-id/` entries) reads the same, its
    /// keys are found by id once the entries are built, and what is written now lands at the
    /// keys an earlier server wrote.
    #[test]
    fn the_stored_layout_is_unchanged() {
        let m: Arc<dyn Metastore> = Arc::new(SqliteMetastore::open_in_memory().expect("db"));
        let at = Utc::now();
        let tenant = Tenant {
            name: "acme".into(),
            warehouse: "s3://b/acme".into(),
            created_at: at,
        };
        let user = User {
            tenant: "acme".into(),
            name: "alice".into(),
            admin: false,
            can_merge_main: true,
            created_at: at,
        };
        let secret = format!("{KEY_PREFIX}{}", "ab".repeat(32));
        let hash = sha256_hex(secret.as_bytes());
        let key = ApiKey {
            id: hash[..12].to_string(),
            tenant: "acme".into(),
            user: "alice".into(),
            scope: Scope::Write,
            branches: Some("agent.*".into()),
            created_at: at,
            revoked_at: None,
        };
        for (k, v) in [
            (
                "tenant/acme".to_string(),
                serde_json::to_string(&tenant).expect("json"),
            ),
            (
                "user/acme/alice".to_string(),
                serde_json::to_string(&user).expect("json"),
            ),
            (
                format!("key/{hash}"),
                serde_json::to_string(&key).expect("json"),
            ),
            ("server/warehouse_root".to_string(), "s3://b".to_string()),
        ] {
            m.set_setting(&k, &v).expect("old setting");
        }
        let r = Registry::new(m.clone());
        assert_eq!(r.tenant("acme").expect("tenant"), tenant);
        assert_eq!(r.user("acme", "alice").expect("user"), user);
        assert_eq!(r.warehouse_root().expect("root").as_deref(), Some("s3://b"));
        let p = r.authenticate(&secret).expect("auth").expect("an old key");
        assert_eq!(p.branches.as_deref(), Some("agent.*"));
        assert_eq!(r.keys("acme").expect("keys"), std::slice::from_ref(&key));
        assert_eq!(
            m.get_setting(&format!("key-id/acme/{}", key.id))
                .expect("raw")
                .as_deref(),
            Some(hash.as_str()),
            "old keys get their id entry"
        );
        r.revoke_key("acme", &key.id).expect("revoke an old key");
        assert_eq!(r.authenticate(&secret).expect("auth"), None);

        // Written now: the same keys, JSON values as before.
        r.create_tenant("beta", "s3://b/beta").expect("tenant");
        r.create_user("beta", "bob", true, false).expect("user");
        let (k, secret) = r.create_key("beta", "bob", Scope::Admin).expect("key");
        r.set_warehouse_root("s3://c/").expect("root");
        let raw = |key: &str| m.get_setting(key).expect("raw").expect(key);
        assert_eq!(
            serde_json::from_str::<Tenant>(&raw("tenant/beta")).expect("json"),
            r.tenant("beta").expect("tenant")
        );
        assert_eq!(
            serde_json::from_str::<User>(&raw("user/beta/bob")).expect("json"),
            r.user("beta", "bob").expect("user")
        );
        let hash = sha256_hex(secret.as_bytes());
        assert_eq!(
            serde_json::from_str::<ApiKey>(&raw(&format!("key/{hash}"))).expect("json"),
            k
        );
        assert_eq!(raw("server/warehouse_root"), "s3://c");
    }

    /// Names and ids that could reach another tenant's records are refused or not found.
    #[test]
    fn slashes_in_names_reach_nothing() {
        let (r, k, _) = acme_alice(Scope::Read);
        r.create_tenant("other", "/tmp/other").expect("tenant");
        assert!(r.user("acme/alice", "x").is_err());
        assert!(r.users("acme/alice").is_err());
        assert!(r.tenant("acme/").is_err());
        assert!(r.keys("other/../acme").is_err());
        assert!(r.revoke_key("other", &k.id).is_err());
        let e = r
            .revoke_key("other", &format!("../acme/{}", k.id))
            .expect_err("not in tenant other");
        assert_eq!(
            e.to_string(),
            format!("key '../acme/{}' not found in tenant 'other'", k.id)
        );
        assert!(r.keys("acme").expect("keys")[0].revoked_at.is_none());
    }

    #[test]
    fn tenants_never_share_a_warehouse() {
        let r = registry();
        r.create_tenant("a", "s3://bucket/lake/a/").expect("tenant");
        assert!(r.create_tenant("b", "s3://bucket/lake/a").is_err());
        assert!(r.create_tenant("c", "s3://bucket/lake/a/c").is_err());
        assert!(r.create_tenant("d", "s3://bucket/lake").is_err());
        r.create_tenant("e", "s3://bucket/lake/ab")
            .expect("a sibling is fine");
        assert!(r.create_tenant("a", "s3://other").is_err(), "duplicate");
        let names: Vec<String> = r
            .tenants()
            .expect("list")
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["a", "e"]);
    }
}
