//! A lake's own settings (`lakeplan lake config`), kept in its metastore beside the refs, so
//! every machine of a shared lake and every tenant of a server sees its own. Each setting is
//! one [`Setting`]: its name, what it means and how a value is checked are written here once,
//! for the CLI, the HTTP API and the SDK.

use std::collections::BTreeMap;

use lakeplan_core::{validate_identifier, Error, Result, DEFAULT_NAMESPACE};
use serde::{Deserialize, Serialize};

use crate::lake::Lake;

/// A setting of the lake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    /// Where bare table names resolve (queries, imports, table commands) and where a
    /// pipeline's models land when neither the run nor its project names a namespace.
    DefaultNamespace,
}

impl Setting {
    pub const ALL: [Setting; 1] = [Setting::DefaultNamespace];

    pub fn name(self) -> &'static str {
        match self {
            Setting::DefaultNamespace => "default_namespace",
        }
    }

    /// What the setting means and its value when unset, for `--help` and `lake config`.
    pub fn doc(self) -> &'static str {
        match self {
            Setting::DefaultNamespace => {
                "namespace of bare table names and of a run's models when neither `-n` nor the project names one (unset: 'default'; a Bauplan project then uses 'bauplan')"
            }
        }
    }

    pub fn parse(name: &str) -> Result<Setting> {
        Setting::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "unknown lake setting '{name}' (expected one of: {})",
                    Setting::ALL.map(Setting::name).join(", ")
                ))
            })
    }

    /// The metastore key the value is kept under.
    fn key(self) -> &'static str {
        match self {
            Setting::DefaultNamespace => "config/default_namespace",
        }
    }

    fn check(self, value: &str) -> Result<()> {
        match self {
            Setting::DefaultNamespace => {
                validate_identifier(value)?;
                if value == "system" {
                    return Err(Error::InvalidName {
                        name: value.into(),
                        reason: "'system' is reserved for lakeplan's system tables".into(),
                    });
                }
                Ok(())
            }
        }
    }
}

/// Every setting and its value (None: unset), as `lake config` shows them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SettingValue {
    pub name: String,
    pub value: Option<String>,
    pub doc: String,
}

impl Lake {
    /// A setting's value, None when unset.
    pub fn setting(&self, s: Setting) -> Result<Option<String>> {
        self.catalog.store().get_setting(s.key())
    }

    /// Every setting with its value.
    pub fn settings(&self) -> Result<Vec<SettingValue>> {
        Setting::ALL
            .into_iter()
            .map(|s| {
                Ok(SettingValue {
                    name: s.name().to_string(),
                    value: self.setting(s)?,
                    doc: s.doc().to_string(),
                })
            })
            .collect()
    }

    /// Sets (`Some`) or unsets (`None`) a setting; recorded in the audit log.
    pub fn set_setting(&self, s: Setting, value: Option<&str>) -> Result<()> {
        if let Some(v) = value {
            s.check(v)?;
        }
        let details = serde_json::json!({ "value": value });
        self.audited("lake.config", s.name(), details, || match value {
            Some(v) => self.catalog.store().set_setting(s.key(), v),
            None => self.catalog.store().delete_setting(s.key()).map(|_| ()),
        })
    }

    /// The lake's own default namespace, if it sets one.
    pub fn configured_namespace(&self) -> Result<Option<String>> {
        self.setting(Setting::DefaultNamespace)
    }

    /// Where bare table names resolve: the lake's setting, else `default`.
    pub fn default_namespace(&self) -> Result<String> {
        Ok(self
            .configured_namespace()?
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()))
    }
}

/// `name -> value` of every set setting (for `lake info`).
pub fn set_values(all: &[SettingValue]) -> BTreeMap<String, String> {
    all.iter()
        .filter_map(|s| s.value.clone().map(|v| (s.name.clone(), v)))
        .collect()
}
