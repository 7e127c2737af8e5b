//! The project folder and its project file (`lakeplan_project.yml`, or Bauplan's
//! `bauplan_project.yml` / `.yaml`): project metadata, typed parameters, `include_paths`, and the
//! Python and SQL files that make up the pipeline. Also `lakeplan parameter set|rm`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde_yaml::{Mapping, Value};

use crate::error::{Location, PipelineError, Result};

/// Project file names, in order of preference.
pub const PROJECT_FILES: [&str; 4] = [
    "lakeplan_project.yml",
    "lakeplan_project.yaml",
    "bauplan_project.yml",
    "bauplan_project.yaml",
];

/// The type of a project parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    Str,
    Int,
    Float,
    Bool,
    /// Stored encrypted in the project file (`default` is the ciphertext, `key` names the key
    /// that sealed it); only the lake that owns the key can open it, at run time.
    Secret,
}

impl ParamType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::Str => "str",
            ParamType::Int => "int",
            ParamType::Float => "float",
            ParamType::Bool => "bool",
            ParamType::Secret => "secret",
        }
    }

    pub fn parse(s: &str) -> Option<ParamType> {
        match s {
            "str" | "string" => Some(ParamType::Str),
            "int" => Some(ParamType::Int),
            "float" => Some(ParamType::Float),
            "bool" => Some(ParamType::Bool),
            "secret" => Some(ParamType::Secret),
            _ => None,
        }
    }

    /// Parses a command-line value (`--param k=v`) as this type. A secret is never given as
    /// text: its value is the sealed one of the project file.
    pub fn parse_value(self, name: &str, raw: &str) -> Result<ParamValue> {
        let bad = || PipelineError::ParameterType {
            name: name.to_string(),
            expected: self.as_str().to_string(),
            value: raw.to_string(),
        };
        Ok(match self {
            ParamType::Str => ParamValue::Str(raw.to_string()),
            ParamType::Int => ParamValue::Int(raw.trim().parse().map_err(|_| bad())?),
            ParamType::Float => {
                let v: f64 = raw.trim().parse().map_err(|_| bad())?;
                if !v.is_finite() {
                    return Err(bad());
                }
                ParamValue::Float(v)
            }
            ParamType::Bool => match raw.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => ParamValue::Bool(true),
                "false" | "0" | "no" => ParamValue::Bool(false),
                _ => return Err(bad()),
            },
            ParamType::Secret => {
                return Err(PipelineError::SecretOverride {
                    name: name.to_string(),
                })
            }
        })
    }

    /// Converts a YAML value to this type (an int is accepted for a float).
    fn value_from_yaml(self, v: &Value) -> Option<ParamValue> {
        match (self, v) {
            (ParamType::Str, Value::String(s)) => Some(ParamValue::Str(s.clone())),
            (ParamType::Int, Value::Number(n)) => n.as_i64().map(ParamValue::Int),
            (ParamType::Float, Value::Number(n)) => {
                n.as_f64().filter(|f| f.is_finite()).map(ParamValue::Float)
            }
            (ParamType::Bool, Value::Bool(b)) => Some(ParamValue::Bool(*b)),
            _ => None,
        }
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A secret as the project file holds it: sealed by the lake's key. The plaintext is never in
/// a plan; the lake opens it for the one function that declares the parameter.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SealedSecret {
    /// The parameter's name (bound into the ciphertext: it opens under this name only).
    pub name: String,
    /// The project's id (the plaintext is `{project_id}={value}`, as Bauplan's is).
    pub project_id: String,
    /// Base64 of the ciphertext.
    pub ciphertext: String,
    /// Which key sealed it.
    pub key: String,
}

/// A typed parameter value.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Secret(SealedSecret),
}

impl ParamValue {
    pub fn param_type(&self) -> ParamType {
        match self {
            ParamValue::Str(_) => ParamType::Str,
            ParamValue::Int(_) => ParamType::Int,
            ParamValue::Float(_) => ParamType::Float,
            ParamValue::Bool(_) => ParamType::Bool,
            ParamValue::Secret(_) => ParamType::Secret,
        }
    }

    /// The value as a SQL literal: strings quoted with `'` doubled, floats always with a `.`.
    /// None for a secret, which SQL models cannot use (their text is logged and stored).
    pub fn to_sql_literal(&self) -> Option<String> {
        Some(match self {
            ParamValue::Str(s) => format!("'{}'", s.replace('\'', "''")),
            ParamValue::Int(i) => i.to_string(),
            ParamValue::Float(f) => format_float(*f),
            ParamValue::Bool(true) => "TRUE".to_string(),
            ParamValue::Bool(false) => "FALSE".to_string(),
            ParamValue::Secret(_) => return None,
        })
    }

    /// The project file's entry of this value (`default:`, and `key:` for a secret).
    fn yaml_entries(&self) -> Vec<(&'static str, Value)> {
        match self {
            ParamValue::Str(s) => vec![("default", Value::String(s.clone()))],
            ParamValue::Int(i) => vec![("default", Value::from(*i))],
            ParamValue::Float(f) => vec![("default", Value::from(*f))],
            ParamValue::Bool(b) => vec![("default", Value::Bool(*b))],
            ParamValue::Secret(s) => vec![
                ("default", Value::String(s.ciphertext.clone())),
                ("key", Value::String(s.key.clone())),
            ],
        }
    }
}

/// How a secret shows wherever values are shown (plans, `parameter ls`, job records).
pub const SECRET_MASK: &str = "<secret>";

fn format_float(f: f64) -> String {
    let s = f.to_string();
    if s.contains(['.', 'e', 'E', 'n', 'i']) {
        s
    } else {
        format!("{s}.0")
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Str(s) => write!(f, "{s:?}"),
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(x) => f.write_str(&format_float(*x)),
            ParamValue::Bool(b) => write!(f, "{b}"),
            ParamValue::Secret(_) => f.write_str(SECRET_MASK),
        }
    }
}

/// A parameter declared in the project file.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ParamSpec {
    #[serde(rename = "type")]
    pub ty: ParamType,
    pub default: Option<ParamValue>,
    pub required: bool,
    pub description: Option<String>,
}

/// A loaded project.
#[derive(Clone, Debug)]
pub struct Project {
    /// The project directory (as given, made absolute).
    pub dir: PathBuf,
    /// The project file's name (`lakeplan_project.yml`, `bauplan_project.yaml`...).
    pub file_name: String,
    pub id: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    /// `project.namespace`: where the project's bare names resolve and its models land.
    pub namespace: Option<String>,
    pub parameters: BTreeMap<String, ParamSpec>,
    pub include_paths: Vec<String>,
    /// Top-level `*.py` files, sorted.
    pub python_files: Vec<PathBuf>,
    /// Top-level `*.sql` files and the `include_paths` matches, sorted, without duplicates.
    pub sql_files: Vec<PathBuf>,
}

impl Project {
    /// Loads the project in `dir`.
    pub fn load(dir: impl AsRef<Path>) -> Result<Project> {
        let dir = absolute(dir.as_ref())?;
        let file_name = find_project_file(&dir)?;
        let path = dir.join(&file_name);
        let text = std::fs::read_to_string(&path).map_err(|e| PipelineError::io(&path, e))?;
        let parsed = parse_project_text(&file_name, &text)?;
        let python_files = top_level_files(&dir, "py")?;
        let mut sql: BTreeSet<PathBuf> = top_level_files(&dir, "sql")?.into_iter().collect();
        for pattern in &parsed.include_paths {
            sql.extend(include_matches(&dir, &file_name, &text, pattern)?);
        }
        Ok(Project {
            dir,
            file_name,
            id: parsed.id,
            name: parsed.name,
            description: parsed.description,
            namespace: parsed.namespace,
            parameters: parsed.parameters,
            include_paths: parsed.include_paths,
            python_files,
            sql_files: sql.into_iter().collect(),
        })
    }

    /// The project file's path.
    pub fn file_path(&self) -> PathBuf {
        self.dir.join(&self.file_name)
    }

    /// `path` relative to the project, as shown in messages: `./models.py`.
    pub fn display_path(&self, path: &Path) -> String {
        display_path(&self.dir, path)
    }
}

pub(crate) fn display_path(dir: &Path, path: &Path) -> String {
    match path.strip_prefix(dir) {
        Ok(rel) => format!("./{}", rel.display()),
        Err(_) => path.display().to_string(),
    }
}

/// `dir` made absolute and lexically clean, as [`Project::load`] reads it (and names it in errors).
pub fn absolute(dir: &Path) -> Result<PathBuf> {
    let abs = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| PipelineError::io(dir, e))?
            .join(dir)
    };
    // `proj/.` and `proj/sub/..` name `proj`: keep messages and job records clean. (Lexical;
    // symlinks are left as they are.)
    let mut clean = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                clean.pop();
            }
            other => clean.push(other),
        }
    }
    Ok(clean)
}

/// The project file present in `dir`; two of them (`.yml` and `.yaml`, or lakeplan and bauplan)
/// are an error naming both.
pub fn find_project_file(dir: &Path) -> Result<String> {
    let present: Vec<&str> = PROJECT_FILES
        .iter()
        .copied()
        .filter(|f| dir.join(f).is_file())
        .collect();
    match present.as_slice() {
        [] => Err(PipelineError::NoProjectFile {
            dir: dir.to_path_buf(),
        }),
        [one] => Ok(one.to_string()),
        [first, second, ..] => Err(PipelineError::ProjectFileAmbiguous {
            dir: dir.to_path_buf(),
            first: first.to_string(),
            second: second.to_string(),
        }),
    }
}

struct ParsedProject {
    id: Option<String>,
    name: Option<String>,
    description: Option<String>,
    namespace: Option<String>,
    parameters: BTreeMap<String, ParamSpec>,
    include_paths: Vec<String>,
}

/// The line of the first `key:` in the YAML text (for messages about a value serde does not place).
fn key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let t = l.trim_start().trim_start_matches("- ");
            let t = t
                .strip_prefix(key)
                .or_else(|| t.strip_prefix(&format!("\"{key}\"")))
                .or_else(|| t.strip_prefix(&format!("'{key}'")));
            matches!(t, Some(rest) if rest.trim_start().starts_with(':'))
        })
        .map(|i| i + 1)
}

fn yaml_err(file: &str, e: &serde_yaml::Error) -> PipelineError {
    let line = e.location().map(|l| l.line());
    PipelineError::ProjectFile {
        at: Location::new(format!("./{file}"), line),
        message: e.to_string(),
    }
}

fn parse_project_text(file: &str, text: &str) -> Result<ParsedProject> {
    let root: Value = serde_yaml::from_str(text).map_err(|e| yaml_err(file, &e))?;
    let at = |key: &str| Location::new(format!("./{file}"), key_line(text, key));
    let err = |key: &str, message: String| PipelineError::ProjectFile {
        at: at(key),
        message,
    };
    let root = match root {
        Value::Null => Mapping::new(),
        Value::Mapping(m) => m,
        _ => {
            return Err(PipelineError::ProjectFile {
                at: Location::at(format!("./{file}"), 1),
                message: "the project file must be a mapping with `project`, `parameters` and `include_paths`".into(),
            })
        }
    };
    for key in root.keys() {
        match key.as_str() {
            Some("project" | "parameters" | "include_paths") => {}
            Some(other) => {
                return Err(err(
                    other,
                    format!("unknown key '{other}' (expected project, parameters, include_paths)"),
                ))
            }
            None => return Err(err("", "keys of the project file must be strings".into())),
        }
    }

    let (mut id, mut name, mut description, mut namespace) = (None, None, None, None);
    match root.get("project") {
        None | Some(Value::Null) => {}
        Some(Value::Mapping(p)) => {
            for (k, v) in p {
                let key = k.as_str().unwrap_or_default();
                let value = match v {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => {
                        return Err(err(key, format!("project.{key} must be a string")));
                    }
                };
                match key {
                    "id" => id = value,
                    "name" => name = value,
                    "description" => description = value,
                    "namespace" => {
                        if let Some(ns) = &value {
                            lakeplan_core::validate_identifier(ns).map_err(|e| {
                                err("namespace", format!("project.namespace: {e}"))
                            })?;
                        }
                        namespace = value
                    }
                    other => {
                        return Err(err(
                            other,
                            format!(
                                "unknown key 'project.{other}' (expected id, name, description, namespace)"
                            ),
                        ))
                    }
                }
            }
        }
        Some(_) => {
            return Err(err(
                "project",
                "`project` must be a mapping with id, name, description".into(),
            ))
        }
    }

    let mut parameters = BTreeMap::new();
    match root.get("parameters") {
        None | Some(Value::Null) => {}
        Some(Value::Mapping(ps)) => {
            for (k, v) in ps {
                let Some(pname) = k.as_str() else {
                    return Err(err("parameters", "parameter names must be strings".into()));
                };
                let spec = parse_param_spec(pname, v, id.as_deref()).map_err(|m| err(pname, m))?;
                parameters.insert(pname.to_string(), spec);
            }
        }
        Some(_) => {
            return Err(err(
                "parameters",
                "`parameters` must be a mapping of name -> {type, default, required, description}"
                    .into(),
            ))
        }
    }

    let mut include_paths = Vec::new();
    match root.get("include_paths") {
        None | Some(Value::Null) => {}
        Some(Value::Sequence(items)) => {
            for item in items {
                let Some(p) = item.as_str() else {
                    return Err(err(
                        "include_paths",
                        "include_paths entries must be strings".into(),
                    ));
                };
                validate_include_path(p).map_err(|m| err("include_paths", m))?;
                include_paths.push(p.to_string());
            }
        }
        Some(_) => {
            return Err(err(
                "include_paths",
                "`include_paths` must be a list of relative globs ending in .sql".into(),
            ))
        }
    }
    Ok(ParsedProject {
        id,
        name,
        description,
        namespace,
        parameters,
        include_paths,
    })
}

fn parse_param_spec(
    name: &str,
    v: &Value,
    project_id: Option<&str>,
) -> std::result::Result<ParamSpec, String> {
    let m = match v {
        Value::Mapping(m) => m.clone(),
        // `rate: 2.0` shorthand: the default, typed by its YAML type.
        Value::Null => Mapping::new(),
        other => {
            let mut m = Mapping::new();
            m.insert(Value::from("default"), other.clone());
            m
        }
    };
    let mut ty = None;
    let mut default = None;
    let mut key = None;
    let mut required = false;
    let mut description = None;
    for (k, val) in &m {
        match k.as_str() {
            Some("type") => {
                let s = val.as_str().unwrap_or_default();
                ty = Some(match ParamType::parse(s) {
                    Some(t) => t,
                    None if s == "vault" => {
                        return Err(format!(
                            "parameter '{name}': type 'vault' is not supported by lakeplan (use str, int, float, bool or secret)"
                        ))
                    }
                    None => {
                        return Err(format!(
                            "parameter '{name}': unknown type {val:?} (expected str, int, float, bool or secret)"
                        ))
                    }
                });
            }
            Some("default") => default = Some(val.clone()),
            Some("required") => {
                required = val.as_bool().ok_or_else(|| {
                    format!("parameter '{name}': required must be true or false")
                })?
            }
            Some("description") => match val {
                Value::Null => {}
                Value::String(s) => description = Some(s.clone()),
                _ => return Err(format!("parameter '{name}': description must be a string")),
            },
            Some("key") => match val {
                Value::Null => {}
                Value::String(s) => key = Some(s.clone()),
                _ => return Err(format!("parameter '{name}': key must be a string")),
            },
            _ => {
                return Err(format!(
                    "parameter '{name}': unknown key {k:?} (expected type, default, required, description, key)"
                ))
            }
        }
    }
    let default = default.filter(|d| !d.is_null());
    // Without a type, the default's YAML type decides (str when there is no default).
    let ty = match (ty, &default) {
        (Some(t), _) => t,
        (None, Some(Value::Bool(_))) => ParamType::Bool,
        (None, Some(Value::Number(n))) if n.is_i64() => ParamType::Int,
        (None, Some(Value::Number(_))) => ParamType::Float,
        (None, _) => ParamType::Str,
    };
    let default = match (ty, default) {
        (_, None) => None,
        // The default of a secret is its ciphertext (never shown: it is not quoted here).
        (ParamType::Secret, Some(d)) => {
            let Value::String(ciphertext) = d else {
                return Err(format!(
                    "parameter '{name}' is a secret: its default must be the base64 ciphertext that `lakeplan parameter set {name} VALUE --type secret` writes"
                ));
            };
            let Some(key) = key else {
                return Err(format!(
                    "parameter '{name}' is a secret without `key` (the key that sealed it): set it again with `lakeplan parameter set {name} VALUE --type secret`"
                ));
            };
            Some(ParamValue::Secret(SealedSecret {
                name: name.to_string(),
                project_id: project_id.unwrap_or_default().to_string(),
                ciphertext,
                key,
            }))
        }
        (_, Some(d)) => Some(ty.value_from_yaml(&d).ok_or_else(|| {
            format!(
                "parameter '{name}' has type {ty} but its default {} is not a {ty}",
                yaml_scalar(&d)
            )
        })?),
    };
    Ok(ParamSpec {
        ty,
        default,
        required,
        description,
    })
}

fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// An include path is a relative glob ending in `.sql`, without `..`.
fn validate_include_path(p: &str) -> std::result::Result<(), String> {
    let path = Path::new(p);
    if path.is_absolute() || p.starts_with('/') || p.starts_with('\\') {
        return Err(format!(
            "include_paths entry '{p}' is absolute; use a path relative to the project"
        ));
    }
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!(
            "include_paths entry '{p}' leaves the project ('..' is not allowed)"
        ));
    }
    if !p.ends_with(".sql") {
        return Err(format!(
            "include_paths entry '{p}' must end in .sql (only SQL models can be included)"
        ));
    }
    glob::Pattern::new(p).map_err(|e| format!("include_paths entry '{p}' is not a glob: {e}"))?;
    Ok(())
}

fn include_matches(dir: &Path, file: &str, text: &str, pattern: &str) -> Result<Vec<PathBuf>> {
    let root = dir.canonicalize().map_err(|e| PipelineError::io(dir, e))?;
    let full = format!(
        "{}/{}",
        glob::Pattern::escape(&dir.to_string_lossy()),
        pattern
    );
    let paths = glob::glob(&full).map_err(|e| PipelineError::ProjectFile {
        at: Location::new(format!("./{file}"), key_line(text, "include_paths")),
        message: format!("include_paths entry '{pattern}' is not a glob: {e}"),
    })?;
    let mut out = Vec::new();
    for entry in paths {
        let path = entry.map_err(|e| {
            let p = e.path().to_path_buf();
            PipelineError::io(p, e.into())
        })?;
        if !path.is_file() {
            continue;
        }
        let real = path
            .canonicalize()
            .map_err(|e| PipelineError::io(&path, e))?;
        if !real.starts_with(&root) {
            return Err(PipelineError::ProjectFile {
                at: Location::new(format!("./{file}"), key_line(text, "include_paths")),
                message: format!(
                    "include_paths entry '{pattern}' matches {}, a link out of the project",
                    path.display()
                ),
            });
        }
        out.push(path);
    }
    Ok(out)
}

fn top_level_files(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| PipelineError::io(dir, e))? {
        let entry = entry.map_err(|e| PipelineError::io(dir, e))?;
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) == Some(ext) && path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Parameter values for a run: the defaults, overridden by `--param name=value` pairs (parsed by
/// the declared type). Unknown names, bad values and required parameters without a value are errors.
/// A parameter without a default that is not required and not given has no value (a model that
/// uses it is rejected by the planner).
pub fn resolve_parameters(
    project: &Project,
    overrides: &[(String, String)],
) -> Result<BTreeMap<String, ParamValue>> {
    let mut values = BTreeMap::new();
    for (name, spec) in &project.parameters {
        if let Some(d) = &spec.default {
            values.insert(name.clone(), d.clone());
        }
    }
    let mut given = BTreeSet::new();
    for (name, raw) in overrides {
        let spec = project
            .parameters
            .get(name)
            .ok_or_else(|| PipelineError::UnknownParameter {
                name: name.clone(),
                known: project.parameters.keys().cloned().collect(),
            })?;
        // A secret's value comes from the project file, sealed (as on Bauplan): a value on the
        // command line would land in shell history, process lists and request URLs.
        values.insert(name.clone(), spec.ty.parse_value(name, raw)?);
        given.insert(name.clone());
    }
    for (name, spec) in &project.parameters {
        if spec.required && spec.ty == ParamType::Secret && spec.default.is_none() {
            return Err(PipelineError::SecretUnset { name: name.clone() });
        }
        if spec.required && !given.contains(name) && spec.default.is_none() {
            return Err(PipelineError::ParameterRequired { name: name.clone() });
        }
    }
    Ok(values)
}

fn read_project_yaml(dir: &Path) -> Result<(PathBuf, String, Mapping)> {
    let file = find_project_file(dir)?;
    let path = dir.join(&file);
    let text = std::fs::read_to_string(&path).map_err(|e| PipelineError::io(&path, e))?;
    // Validate the whole file first: never rewrite a file we could not load.
    parse_project_text(&file, &text)?;
    let root: Value = serde_yaml::from_str(&text).map_err(|e| yaml_err(&file, &e))?;
    let map = match root {
        Value::Mapping(m) => m,
        _ => Mapping::new(),
    };
    Ok((path, file, map))
}

fn write_project_yaml(path: &Path, file: &str, root: &Mapping) -> Result<()> {
    let text = serde_yaml::to_string(root).map_err(|e| yaml_err(file, &e))?;
    // Check what we are about to write loads back.
    parse_project_text(file, &text)?;
    let tmp = path.with_extension("yml.tmp");
    std::fs::write(&tmp, &text).map_err(|e| PipelineError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| PipelineError::io(path, e))
}

/// `lakeplan parameter set`: adds or updates a parameter in the project file of `dir`.
/// `value` is parsed by `ty` (or the parameter's existing type, or `str`); `None` keeps the
/// existing default. Returns the new declaration. A secret's value is sealed by the lake first
/// and written with [`set_secret_parameter`]; here it can only keep its sealed default.
pub fn set_parameter(
    dir: impl AsRef<Path>,
    name: &str,
    value: Option<&str>,
    ty: Option<ParamType>,
    description: Option<&str>,
) -> Result<ParamSpec> {
    let dir = dir.as_ref();
    let (path, file, mut root) = read_project_yaml(dir)?;
    let existing = existing_param(&root, &file, name)?;
    let ty = ty
        .or(existing.as_ref().map(|s| s.ty))
        .unwrap_or(ParamType::Str);
    let default = match value {
        Some(raw) => Some(ty.parse_value(name, raw)?),
        None => match existing.as_ref().and_then(|s| s.default.clone()) {
            Some(d) if d.param_type() == ty => Some(d),
            // A secret's plaintext is not here to convert: a new type needs a new value.
            Some(ParamValue::Secret(_)) | None if ty == ParamType::Secret => None,
            Some(ParamValue::Secret(_)) => {
                return Err(PipelineError::ProjectFile {
                    at: Location::file(format!("./{file}")),
                    message: format!(
                        "parameter '{name}' is a secret: give a value to make it a {ty} (`lakeplan parameter set {name} VALUE --type {ty}`)"
                    ),
                })
            }
            Some(d) => Some(ty.parse_value(name, &d.to_string())?),
            None => None,
        },
    };
    write_param(
        &path,
        &file,
        &mut root,
        name,
        ty,
        default,
        existing,
        description,
    )
}

/// `lakeplan parameter set NAME VALUE --type secret`: writes the secret `sealed` (by the lake
/// that will open it) as the parameter's default, `{type: secret, default: <ciphertext>, key:
/// <key id>}`, as Bauplan's project files hold it.
pub fn set_secret_parameter(
    dir: impl AsRef<Path>,
    sealed: SealedSecret,
    description: Option<&str>,
) -> Result<ParamSpec> {
    let (path, file, mut root) = read_project_yaml(dir.as_ref())?;
    let name = sealed.name.clone();
    let existing = existing_param(&root, &file, &name)?;
    write_param(
        &path,
        &file,
        &mut root,
        &name,
        ParamType::Secret,
        Some(ParamValue::Secret(sealed)),
        existing,
        description,
    )
}

/// The current declaration of `name` in the project file, after checking the name.
fn existing_param(root: &Mapping, file: &str, name: &str) -> Result<Option<ParamSpec>> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(PipelineError::ProjectFile {
            at: Location::file(format!("./{file}")),
            message: format!("parameter name '{name}' must use only letters, digits and '_'"),
        });
    }
    let project_id = root
        .get("project")
        .and_then(|p| p.get("id"))
        .and_then(|v| v.as_str());
    match root.get("parameters") {
        Some(Value::Mapping(ps)) => ps
            .get(name)
            .map(|v| parse_param_spec(name, v, project_id))
            .transpose()
            .map_err(|m| PipelineError::ProjectFile {
                at: Location::file(format!("./{file}")),
                message: m,
            }),
        _ => Ok(None),
    }
}

#[allow(clippy::too_many_arguments)]
fn write_param(
    path: &Path,
    file: &str,
    root: &mut Mapping,
    name: &str,
    ty: ParamType,
    default: Option<ParamValue>,
    existing: Option<ParamSpec>,
    description: Option<&str>,
) -> Result<ParamSpec> {
    let spec = ParamSpec {
        ty,
        default,
        required: existing.as_ref().is_some_and(|s| s.required),
        description: description
            .map(str::to_string)
            .or_else(|| existing.as_ref().and_then(|s| s.description.clone())),
    };
    let mut entry = Mapping::new();
    entry.insert("type".into(), ty.as_str().into());
    if let Some(d) = &spec.default {
        for (k, v) in d.yaml_entries() {
            entry.insert(k.into(), v);
        }
    }
    if spec.required {
        entry.insert("required".into(), true.into());
    }
    if let Some(d) = &spec.description {
        entry.insert("description".into(), d.as_str().into());
    }
    let params = root
        .entry("parameters".into())
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if !params.is_mapping() {
        *params = Value::Mapping(Mapping::new());
    }
    if let Value::Mapping(ps) = params {
        ps.insert(name.into(), Value::Mapping(entry));
    }
    write_project_yaml(path, file, root)?;
    Ok(spec)
}

/// `lakeplan parameter rm`: removes a parameter from the project file of `dir`.
pub fn remove_parameter(dir: impl AsRef<Path>, name: &str) -> Result<()> {
    let (path, file, mut root) = read_project_yaml(dir.as_ref())?;
    let known: Vec<String> = match root.get("parameters") {
        Some(Value::Mapping(ps)) => ps
            .keys()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    let removed = match root.get_mut("parameters") {
        Some(Value::Mapping(ps)) => ps.remove(name).is_some(),
        _ => false,
    };
    if !removed {
        return Err(PipelineError::UnknownParameter {
            name: name.to_string(),
            known,
        });
    }
    write_project_yaml(&path, &file, &root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        if let Some(parent) = dir.join(name).parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(dir.join(name), text).unwrap();
    }

    const BASIC: &str = "project:\n  id: 11111111-2222-3333-4444-555555555555\n  name: demo\nparameters:\n  rate: {type: float, default: 2}\n  run_date: {type: str, required: true}\n  flag: {type: bool, default: true}\n  n: {default: 3}\n";

    #[test]
    fn loads_project_and_files() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "bauplan_project.yml", BASIC);
        write(d.path(), "models.py", "");
        write(d.path(), "a.sql", "select 1");
        write(d.path(), "views/v.sql", "select 1");
        write(d.path(), "views/x.txt", "");
        let p = Project::load(d.path()).unwrap();
        assert_eq!(p.file_name, "bauplan_project.yml");
        assert_eq!(p.name.as_deref(), Some("demo"));
        assert_eq!(p.parameters["rate"].default, Some(ParamValue::Float(2.0)));
        assert_eq!(p.parameters["n"].ty, ParamType::Int);
        assert!(p.parameters["run_date"].required);
        assert_eq!(p.python_files.len(), 1);
        assert_eq!(p.sql_files.len(), 1);

        let mut text = BASIC.to_string();
        text.push_str("include_paths:\n  - views/*.sql\n");
        write(d.path(), "bauplan_project.yml", &text);
        let p = Project::load(d.path()).unwrap();
        assert_eq!(p.sql_files.len(), 2);
        assert_eq!(p.display_path(&p.sql_files[1]), "./views/v.sql");
    }

    #[test]
    fn two_project_files_are_ambiguous() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "bauplan_project.yml", "project: {}");
        write(d.path(), "bauplan_project.yaml", "project: {}");
        let e = Project::load(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("bauplan_project.yml") && e.contains("bauplan_project.yaml"),
            "{e}"
        );
    }

    #[test]
    fn missing_project_file() {
        let d = tempfile::tempdir().unwrap();
        let e = Project::load(d.path()).unwrap_err();
        assert!(matches!(e, PipelineError::NoProjectFile { .. }));
    }

    #[test]
    fn yaml_syntax_error_has_line() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "lakeplan_project.yml",
            "project:\n  name: x\nparameters:\n  rate: {type: float\n",
        );
        let e = Project::load(d.path()).unwrap_err().to_string();
        assert!(e.starts_with("./lakeplan_project.yml:"), "{e}");
        assert!(e.contains(":4") || e.contains(":5"), "{e}");
    }

    #[test]
    fn wrong_typed_default_is_an_error_with_line() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "lakeplan_project.yml",
            "project:\n  name: x\nparameters:\n  rate:\n    type: int\n    default: abc\n",
        );
        let e = Project::load(d.path()).unwrap_err().to_string();
        assert!(e.contains("./lakeplan_project.yml:4"), "{e}");
        assert!(e.contains("default \"abc\" is not a int"), "{e}");
    }

    #[test]
    fn bad_include_paths() {
        for (entry, want) in [
            ("/etc/*.sql", "absolute"),
            ("../x/*.sql", "'..'"),
            ("views/*.py", "must end in .sql"),
        ] {
            let d = tempfile::tempdir().unwrap();
            write(
                d.path(),
                "lakeplan_project.yml",
                &format!("project:\n  name: x\ninclude_paths:\n  - {entry}\n"),
            );
            let e = Project::load(d.path()).unwrap_err().to_string();
            assert!(e.contains("./lakeplan_project.yml:3"), "{e}");
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn unknown_keys_and_types() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "lakeplan_project.yml",
            "project:\n  name: x\nparameter:\n  a: 1\n",
        );
        let e = Project::load(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("./lakeplan_project.yml:3") && e.contains("unknown key 'parameter'"),
            "{e}"
        );
        write(
            d.path(),
            "lakeplan_project.yml",
            "parameters:\n  s:\n    type: vault\n",
        );
        let e = Project::load(d.path()).unwrap_err().to_string();
        assert!(e.contains(":2") && e.contains("not supported"), "{e}");
    }

    #[test]
    fn secret_parameters_parse_mask_and_refuse_overrides() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "bauplan_project.yml",
            "project:\n  id: p-1\nparameters:\n  tok: {type: secret, default: QUJD, key: 'lakeplan:k1'}\n  other: {type: secret}\n",
        );
        let p = Project::load(d.path()).unwrap();
        let spec = &p.parameters["tok"];
        assert_eq!(spec.ty, ParamType::Secret);
        let Some(ParamValue::Secret(s)) = &spec.default else {
            panic!("{spec:?}")
        };
        assert_eq!(
            (
                s.name.as_str(),
                s.project_id.as_str(),
                s.ciphertext.as_str(),
                s.key.as_str()
            ),
            ("tok", "p-1", "QUJD", "lakeplan:k1")
        );
        // Shown masked, never as its ciphertext, and never as SQL.
        assert_eq!(spec.default.as_ref().unwrap().to_string(), SECRET_MASK);
        assert_eq!(spec.default.as_ref().unwrap().to_sql_literal(), None);
        // Overrides are refused without echoing the value.
        let e = resolve_parameters(&p, &[("tok".into(), "plain".into())])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'tok' is a secret") && !e.contains("plain"),
            "{e}"
        );
        assert!(resolve_parameters(&p, &[]).is_ok());

        // A secret needs its key, and a string ciphertext.
        for bad in [
            "parameters:\n  tok: {type: secret, default: QUJD}\n",
            "parameters:\n  tok: {type: secret, default: 3, key: k}\n",
        ] {
            write(d.path(), "bauplan_project.yml", bad);
            let e = Project::load(d.path()).unwrap_err().to_string();
            assert!(e.contains("'tok' is a secret"), "{e}");
        }
        // A required secret without a value says how to set it.
        write(
            d.path(),
            "bauplan_project.yml",
            "parameters:\n  tok: {type: secret, required: true}\n",
        );
        let p = Project::load(d.path()).unwrap();
        let e = resolve_parameters(&p, &[]).unwrap_err().to_string();
        assert!(e.contains("parameter set tok VALUE --type secret"), "{e}");
    }

    #[test]
    fn set_secret_parameter_writes_ciphertext_and_key() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "bauplan_project.yml", "project:\n  id: p-1\n");
        let sealed = SealedSecret {
            name: "tok".into(),
            project_id: "p-1".into(),
            ciphertext: "Q0lQSEVS".into(),
            key: "lakeplan:k1".into(),
        };
        set_secret_parameter(d.path(), sealed.clone(), Some("a token")).unwrap();
        let text = std::fs::read_to_string(d.path().join("bauplan_project.yml")).unwrap();
        assert!(
            text.contains("type: secret")
                && text.contains("default: Q0lQSEVS")
                && text.contains("key: lakeplan:k1"),
            "{text}"
        );
        let p = Project::load(d.path()).unwrap();
        assert_eq!(
            p.parameters["tok"].default,
            Some(ParamValue::Secret(sealed))
        );
        // A description change keeps the sealed value; a plain value for a secret is refused;
        // a new type needs a new value.
        set_parameter(d.path(), "tok", None, None, Some("new")).unwrap();
        let p = Project::load(d.path()).unwrap();
        assert!(matches!(
            p.parameters["tok"].default,
            Some(ParamValue::Secret(_))
        ));
        assert!(set_parameter(d.path(), "tok", Some("x"), None, None).is_err());
        let e = set_parameter(d.path(), "tok", None, Some(ParamType::Str), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("give a value"), "{e}");
        set_parameter(d.path(), "tok", Some("plain"), Some(ParamType::Str), None).unwrap();
        let text = std::fs::read_to_string(d.path().join("bauplan_project.yml")).unwrap();
        assert!(!text.contains("key:"), "{text}");
    }

    #[test]
    fn resolve_parameters_checks_names_types_and_required() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "lakeplan_project.yml", BASIC);
        let p = Project::load(d.path()).unwrap();
        let e = resolve_parameters(&p, &[]).unwrap_err();
        assert!(matches!(e, PipelineError::ParameterRequired { ref name } if name == "run_date"));
        let ok = resolve_parameters(
            &p,
            &[
                ("run_date".into(), "2024-01-01".into()),
                ("rate".into(), "3.5".into()),
                ("flag".into(), "false".into()),
            ],
        )
        .unwrap();
        assert_eq!(ok["rate"], ParamValue::Float(3.5));
        assert_eq!(ok["flag"], ParamValue::Bool(false));
        assert_eq!(ok["n"], ParamValue::Int(3));
        assert_eq!(ok["run_date"], ParamValue::Str("2024-01-01".into()));
        let e = resolve_parameters(&p, &[("nope".into(), "1".into())])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown parameter 'nope'") && e.contains("rate"),
            "{e}"
        );
        let e = resolve_parameters(&p, &[("n".into(), "1.5".into())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("'n' is a int"), "{e}");
    }

    #[test]
    fn set_and_remove_parameters_rewrite_the_file() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "bauplan_project.yaml", "project:\n  name: x\n");
        set_parameter(
            d.path(),
            "rate",
            Some("2.5"),
            Some(ParamType::Float),
            Some("a rate"),
        )
        .unwrap();
        set_parameter(d.path(), "day", Some("mon"), None, None).unwrap();
        // Updating keeps the type and description.
        set_parameter(d.path(), "rate", Some("4"), None, None).unwrap();
        let p = Project::load(d.path()).unwrap();
        assert_eq!(p.file_name, "bauplan_project.yaml");
        assert_eq!(p.name.as_deref(), Some("x"));
        assert_eq!(p.parameters["rate"].default, Some(ParamValue::Float(4.0)));
        assert_eq!(p.parameters["rate"].description.as_deref(), Some("a rate"));
        assert_eq!(p.parameters["day"].ty, ParamType::Str);
        let e = set_parameter(d.path(), "rate", Some("x"), None, None).unwrap_err();
        assert!(matches!(e, PipelineError::ParameterType { .. }));
        remove_parameter(d.path(), "day").unwrap();
        let p = Project::load(d.path()).unwrap();
        assert!(!p.parameters.contains_key("day"));
        let e = remove_parameter(d.path(), "day").unwrap_err().to_string();
        assert!(
            e.contains("unknown parameter 'day'") && e.contains("rate"),
            "{e}"
        );
    }

    #[test]
    fn sql_literals() {
        assert_eq!(
            ParamValue::Str("it's".into()).to_sql_literal().unwrap(),
            "'it''s'"
        );
        assert_eq!(ParamValue::Float(2.0).to_sql_literal().unwrap(), "2.0");
        assert_eq!(ParamValue::Int(-3).to_sql_literal().unwrap(), "-3");
        assert_eq!(ParamValue::Bool(true).to_sql_literal().unwrap(), "TRUE");
    }
}
