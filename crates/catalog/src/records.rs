//! Typed records kept as settings of a [`Metastore`]: one kind of record under one key prefix,
//! so that no caller formats a setting key by hand.
//!
//! ```text
//! Records<JobRecord>        "job/"        job/<id>                 → JSON
//! Records<String, Text>     "job-live/"   job-live/<id>/<part>     → text  (via `within(id)`)
//! Index                     "job-time/"   job-time/<order>/<id>    → <id>
//! Slot<String, Text>        "server/warehouse_root"                → text
//! ```
//!
//! An id is one key segment: 1 to 512 characters with no `/` and no control character, so an
//! id can never reach outside its prefix (`Error::InvalidName` otherwise). Records of several
//! levels (`user/<tenant>/<name>`) take one [`Records::within`] per level.
//!
//! What is atomic, given the [`Metastore`] trait:
//! - [`Records::insert`] is one `insert_setting`: of writers racing to insert one id, one wins.
//! - [`Records::update`] reads, changes and compare-and-sets the record
//!   ([`Metastore::cas_setting`]), again from the new value when another writer got there
//!   first: no update is lost, and a record deleted meanwhile is not brought back.
//! - [`Records::put`] and [`Records::delete`] are one statement each; `put` is unconditional
//!   (it creates or replaces, whoever wrote last wins).
//! - Listings are one statement each, but a record and its [`Index`] entry are two settings:
//!   written one after the other, not together.

use std::marker::PhantomData;
use std::sync::Arc;

use lakeplan_core::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::metastore::Metastore;

/// How a kind of record is written into a setting's text value.
pub trait Encoding<T> {
    fn encode(value: &T) -> Result<String>;
    /// `key` names the setting in the error about a value that does not decode.
    fn decode(key: &str, text: &str) -> Result<T>;
}

/// Records as JSON (the default).
pub struct Json;

/// Text kept as it is (logs, code snapshots, index entries, plain settings).
pub struct Text;

impl<T: Serialize + DeserializeOwned> Encoding<T> for Json {
    fn encode(value: &T) -> Result<String> {
        serde_json::to_string(value).map_err(|e| Error::Internal(format!("encoding a record: {e}")))
    }

    fn decode(key: &str, text: &str) -> Result<T> {
        serde_json::from_str(text)
            .map_err(|e| Error::Metastore(format!("record '{key}' is corrupt: {e}")))
    }
}

impl Encoding<String> for Text {
    fn encode(value: &String) -> Result<String> {
        Ok(value.clone())
    }

    fn decode(_key: &str, text: &str) -> Result<String> {
        Ok(text.to_string())
    }
}

/// The longest id a key segment may be.
const MAX_ID: usize = 512;

/// Checks that `id` is one key segment (see the module docs).
pub fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID || id.chars().any(|c| c == '/' || c.is_control()) {
        return Err(Error::InvalidName {
            name: id.to_string(),
            reason: format!(
                "a stored id is 1 to {MAX_ID} characters with no '/' and no control character"
            ),
        });
    }
    Ok(())
}

/// The records of one kind: `<prefix><id>` → the record, encoded by `E`.
pub struct Records<T, E = Json> {
    store: Arc<dyn Metastore>,
    prefix: String,
    kind: PhantomData<fn() -> (T, E)>,
}

impl<T, E> Clone for Records<T, E> {
    fn clone(&self) -> Self {
        Records {
            store: Arc::clone(&self.store),
            prefix: self.prefix.clone(),
            kind: PhantomData,
        }
    }
}

impl<T, E: Encoding<T>> Records<T, E> {
    /// The records under `prefix`, a constant of the caller ending in `/`.
    pub fn new(store: Arc<dyn Metastore>, prefix: &str) -> Self {
        debug_assert!(
            prefix.ends_with('/'),
            "a record prefix ends in '/': {prefix}"
        );
        Records {
            store,
            prefix: prefix.to_string(),
            kind: PhantomData,
        }
    }

    /// The records one level down, under `<prefix><parent>/`.
    pub fn within(&self, parent: &str) -> Result<Self> {
        validate_id(parent)?;
        Ok(Records {
            store: Arc::clone(&self.store),
            prefix: format!("{}{parent}/", self.prefix),
            kind: PhantomData,
        })
    }

    fn key(&self, id: &str) -> Result<String> {
        validate_id(id)?;
        Ok(format!("{}{id}", self.prefix))
    }

    /// Stores `value` as record `id` unless there is one, in one step: false, writing nothing,
    /// if `id` exists.
    pub fn insert(&self, id: &str, value: &T) -> Result<bool> {
        self.store
            .insert_setting(&self.key(id)?, &E::encode(value)?)
    }

    pub fn get(&self, id: &str) -> Result<Option<T>> {
        let key = self.key(id)?;
        self.store
            .get_setting(&key)?
            .map(|text| E::decode(&key, &text))
            .transpose()
    }

    /// Creates or replaces record `id`, unconditionally.
    pub fn put(&self, id: &str, value: &T) -> Result<()> {
        self.store.set_setting(&self.key(id)?, &E::encode(value)?)
    }

    /// Changes record `id` with `change` and stores the result if the record is still what
    /// `change` saw; otherwise runs `change` again on what is stored now. The stored record,
    /// or None (writing nothing) if there is no record `id`. An error from `change` writes
    /// nothing and is returned.
    pub fn update(
        &self,
        id: &str,
        mut change: impl FnMut(&mut T) -> Result<()>,
    ) -> Result<Option<T>> {
        let key = self.key(id)?;
        loop {
            let Some(old) = self.store.get_setting(&key)? else {
                return Ok(None);
            };
            let mut value = E::decode(&key, &old)?;
            change(&mut value)?;
            let new = E::encode(&value)?;
            if new == old || self.store.cas_setting(&key, &old, &new)? {
                return Ok(Some(value));
            }
        }
    }

    /// Removes record `id`; true if there was one.
    pub fn delete(&self, id: &str) -> Result<bool> {
        self.store.delete_setting(&self.key(id)?)
    }

    /// Every record, with its id, sorted by id (byte order).
    pub fn list(&self) -> Result<Vec<(String, T)>> {
        self.decoded(self.store.list_settings(&self.prefix)?)
    }

    /// The records whose id starts with `start` (one key segment), sorted by id.
    pub fn starting_with(&self, start: &str) -> Result<Vec<(String, T)>> {
        self.decoded(self.store.list_settings(&self.key(start)?)?)
    }

    /// The `limit` records with the greatest ids, greatest first.
    pub fn last(&self, limit: usize) -> Result<Vec<(String, T)>> {
        self.decoded(self.store.last_settings(&self.prefix, limit)?)
    }

    fn decoded(&self, rows: Vec<(String, String)>) -> Result<Vec<(String, T)>> {
        rows.into_iter()
            .map(|(key, text)| {
                let value = E::decode(&key, &text)?;
                let id = key
                    .strip_prefix(self.prefix.as_str())
                    .unwrap_or(key.as_str())
                    .to_string();
                Ok((id, value))
            })
            .collect()
    }
}

/// A secondary index: `<prefix><order>/<id>` → `<id>`, for reading the ids of the records
/// with the greatest `order` (a fixed-width time, say) without reading every record.
#[derive(Clone)]
pub struct Index {
    entries: Records<String, Text>,
}

impl Index {
    pub fn new(store: Arc<dyn Metastore>, prefix: &str) -> Index {
        Index {
            entries: Records::new(store, prefix),
        }
    }

    /// Files `id` under `order` (again is harmless).
    pub fn add(&self, order: &str, id: &str) -> Result<()> {
        self.entries.within(order)?.put(id, &id.to_string())
    }

    /// Removes `id`'s entry under `order`; true if there was one.
    pub fn remove(&self, order: &str, id: &str) -> Result<bool> {
        self.entries.within(order)?.delete(id)
    }

    /// The ids of the `limit` entries of greatest order, greatest first.
    pub fn last(&self, limit: usize) -> Result<Vec<String>> {
        Ok(self
            .entries
            .last(limit)?
            .into_iter()
            .map(|(_, id)| id)
            .collect())
    }
}

/// One setting of a fixed key (a marker, a server-wide value).
pub struct Slot<T, E = Json> {
    store: Arc<dyn Metastore>,
    key: &'static str,
    kind: PhantomData<fn() -> (T, E)>,
}

impl<T, E> Clone for Slot<T, E> {
    fn clone(&self) -> Self {
        Slot {
            store: Arc::clone(&self.store),
            key: self.key,
            kind: PhantomData,
        }
    }
}

impl<T, E: Encoding<T>> Slot<T, E> {
    pub fn new(store: Arc<dyn Metastore>, key: &'static str) -> Self {
        Slot {
            store,
            key,
            kind: PhantomData,
        }
    }

    pub fn get(&self) -> Result<Option<T>> {
        self.store
            .get_setting(self.key)?
            .map(|text| E::decode(self.key, &text))
            .transpose()
    }

    /// Creates or replaces the value.
    pub fn set(&self, value: &T) -> Result<()> {
        self.store.set_setting(self.key, &E::encode(value)?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;

    use serde::Deserialize;

    use super::*;
    use crate::SqliteMetastore;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Job {
        status: String,
        runs: u32,
    }

    fn job(status: &str) -> Job {
        Job {
            status: status.into(),
            runs: 0,
        }
    }

    fn store() -> Arc<dyn Metastore> {
        Arc::new(SqliteMetastore::open_in_memory().expect("metastore"))
    }

    #[test]
    fn insert_twice_refuses_the_second_and_keeps_the_first() {
        let m = store();
        let jobs: Records<Job> = Records::new(m.clone(), "job/");
        assert!(jobs.insert("j1", &job("running")).expect("insert"));
        assert!(!jobs.insert("j1", &job("failed")).expect("insert again"));
        assert_eq!(jobs.get("j1").expect("get"), Some(job("running")));
        // The key layout is the caller's prefix and the id, the value JSON.
        assert_eq!(
            m.get_setting("job/j1").expect("raw").as_deref(),
            Some(r#"{"status":"running","runs":0}"#)
        );
    }

    #[test]
    fn concurrent_inserts_of_one_id_have_one_winner() {
        let m = store();
        let threads = 8;
        let barrier = Barrier::new(threads);
        let wins = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|i| {
                    let jobs: Records<Job> = Records::new(m.clone(), "job/");
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        jobs.insert("same", &job(&format!("writer {i}")))
                            .expect("insert")
                            .then_some(i)
                    })
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().expect("thread"))
                .collect::<Vec<_>>()
        });
        assert_eq!(wins.len(), 1, "exactly one insert wins: {wins:?}");
        let jobs: Records<Job> = Records::new(m, "job/");
        assert_eq!(
            jobs.get("same").expect("get"),
            Some(job(&format!("writer {}", wins[0])))
        );
    }

    #[test]
    fn a_missing_id_is_none_and_is_not_updated_into_being() {
        let jobs: Records<Job> = Records::new(store(), "job/");
        assert_eq!(jobs.get("nope").expect("get"), None);
        let mut called = false;
        let updated = jobs
            .update("nope", |_| {
                called = true;
                Ok(())
            })
            .expect("update");
        assert_eq!(updated, None);
        assert!(!called, "nothing to change");
        assert_eq!(jobs.get("nope").expect("get"), None);
        assert!(!jobs.delete("nope").expect("delete"));
    }

    #[test]
    fn ids_that_could_leave_their_prefix_are_refused() {
        let m = store();
        let users: Records<Job> = Records::new(m.clone(), "user/");
        let acme = users.within("acme").expect("a tenant");
        acme.put("alice", &job("x")).expect("put");
        let too_long = "x".repeat(MAX_ID + 1);
        for bad in [
            "",
            "a/b",
            "../other",
            "/",
            "a\u{0}b",
            "line\nbreak",
            &too_long,
        ] {
            for result in [
                acme.get(bad).map(|_| ()),
                acme.insert(bad, &job("y")).map(|_| ()),
                acme.put(bad, &job("y")),
                acme.delete(bad).map(|_| ()),
                acme.update(bad, |_| Ok(())).map(|_| ()),
                acme.starting_with(bad).map(|_| ()),
                users.within(bad).map(|_| ()),
            ] {
                let e = result.expect_err(bad);
                assert!(matches!(e, Error::InvalidName { .. }), "{bad:?}: {e}");
            }
        }
        assert_eq!(
            m.list_settings("").expect("all"),
            vec![(
                "user/acme/alice".to_string(),
                r#"{"status":"x","runs":0}"#.to_string()
            )],
            "nothing but the one good record was written"
        );
        // Dots, dashes and the like are fine inside one segment.
        acme.put("a.b-c_d@e", &job("z")).expect("an ordinary id");
    }

    #[test]
    fn list_is_by_id_and_stays_within_its_prefix() {
        let m = store();
        let jobs: Records<Job> = Records::new(m.clone(), "job/");
        for id in ["b2", "a1", "c3", "a10"] {
            jobs.insert(id, &job(id)).expect("insert");
        }
        // Neighbours that share the prefix's first characters are not records of this kind.
        m.set_setting("job-time/x", "a1").expect("set");
        m.set_setting("jobs", "x").expect("set");
        let ids = |rows: Vec<(String, Job)>| rows.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
        assert_eq!(ids(jobs.list().expect("list")), ["a1", "a10", "b2", "c3"]);
        assert_eq!(ids(jobs.starting_with("a1").expect("start")), ["a1", "a10"]);
        assert_eq!(ids(jobs.last(2).expect("last")), ["c3", "b2"]);
        let nested: Records<String, Text> = Records::new(m, "job-time/");
        assert_eq!(
            nested.list().expect("list"),
            [("x".to_string(), "a1".to_string())]
        );
    }

    #[test]
    fn updates_from_racing_writers_are_all_kept() {
        let m = store();
        let jobs: Records<Job> = Records::new(m, "job/");
        jobs.insert("j", &job("running")).expect("insert");
        let threads = 8;
        std::thread::scope(|s| {
            for _ in 0..threads {
                let jobs = jobs.clone();
                s.spawn(move || {
                    for _ in 0..5 {
                        jobs.update("j", |j| {
                            j.runs += 1;
                            Ok(())
                        })
                        .expect("update")
                        .expect("exists");
                    }
                });
            }
        });
        assert_eq!(
            jobs.get("j").expect("get").map(|j| j.runs),
            Some(threads * 5)
        );
        // A refusal from the change writes nothing.
        let e = jobs
            .update("j", |j| {
                j.status = "stopped".into();
                Err(Error::InvalidInput("no".into()))
            })
            .expect_err("refused");
        assert!(matches!(e, Error::InvalidInput(_)));
        assert_eq!(
            jobs.get("j").expect("get").map(|j| j.status),
            Some("running".into())
        );
    }

    #[test]
    fn an_index_lists_the_greatest_orders_first() {
        let m = store();
        let by_time = Index::new(m.clone(), "job-time/");
        by_time.add("20260101", "old").expect("add");
        by_time.add("20260301", "new").expect("add");
        by_time.add("20260201", "mid").expect("add");
        by_time.add("20260201", "mid").expect("again");
        assert_eq!(by_time.last(10).expect("last"), ["new", "mid", "old"]);
        assert_eq!(by_time.last(1).expect("last"), ["new"]);
        assert_eq!(
            m.get_setting("job-time/20260201/mid")
                .expect("raw")
                .as_deref(),
            Some("mid"),
            "entries are `<prefix><order>/<id>` → id"
        );
        assert!(by_time.remove("20260301", "new").expect("remove"));
        assert_eq!(by_time.last(1).expect("last"), ["mid"]);
        assert!(
            by_time.add("2026/01", "x").is_err(),
            "an order is one segment"
        );
    }

    #[test]
    fn a_slot_is_one_fixed_key() {
        let m = store();
        let root: Slot<String, Text> = Slot::new(m.clone(), "server/warehouse_root");
        assert_eq!(root.get().expect("get"), None);
        root.set(&"s3://b/lake".to_string()).expect("set");
        assert_eq!(root.get().expect("get").as_deref(), Some("s3://b/lake"));
        assert_eq!(
            m.get_setting("server/warehouse_root")
                .expect("raw")
                .as_deref(),
            Some("s3://b/lake"),
            "text is stored as it is, not as JSON"
        );
    }
}
