//! Remote mode: the same commands, through a lakeplan server's HTTP API (docs/server.md).
//!
//! On when `LAKEPLAN_API_ENDPOINT` is set, or a profile is chosen (`-P/--profile` or
//! `LAKEPLAN_PROFILE`) from `~/.lakeplan/config.yaml`:
//!
//! ```yaml
//! profiles:
//!   default:
//!     api_endpoint: http://127.0.0.1:8181
//!     api_key: lpk_...
//! ```
//!
//! `LAKEPLAN_API_KEY` overrides the profile's key. The server returns the records the service
//! layer returns, so the CLI prints them exactly as in embedded mode. The active branch (for
//! commands without `-r`/`-b`) is kept on this machine, per profile, in
//! `~/.lakeplan/remote-state.json`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use arrow::record_batch::RecordBatch;
use lakeplan_core::{Error, RefKind, Result, MAIN_BRANCH};
use lakeplan_lake::ops;
use lakeplan_lake::{CommitExtras, QueryResult};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

/// Filters of `lakeplan commit`, as given (regexes are compiled where they are used).
#[derive(Default)]
pub struct CommitFilter {
    pub message: Option<String>,
    pub author: Option<String>,
    pub properties: Vec<(String, String)>,
}

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

#[derive(Deserialize, Default, Clone)]
struct Profile {
    api_endpoint: Option<String>,
    api_key: Option<String>,
}

#[derive(Clone)]
pub struct Remote {
    client: reqwest::Client,
    base: url::Url,
    key: String,
    /// Names this connection in the local state file.
    profile: String,
    /// Sent with every write (`commit_body`, `commit_properties`).
    extras: CommitExtras,
}

fn home() -> Result<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .ok_or_else(|| Error::InvalidInput("remote mode needs HOME (for ~/.lakeplan)".into()))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Remote {
    /// The remote connection asked for, if any (see the module documentation).
    pub fn from_env(profile: Option<&str>) -> Result<Option<Remote>> {
        let profile = profile
            .map(str::to_string)
            .or_else(|| env("LAKEPLAN_PROFILE"));
        let endpoint_env = env("LAKEPLAN_API_ENDPOINT");
        if profile.is_none() && endpoint_env.is_none() {
            return Ok(None);
        }
        let name = profile.clone().unwrap_or_else(|| "default".into());
        let path = home()?.join(".lakeplan").join("config.yaml");
        let file: ConfigFile = match std::fs::read_to_string(&path) {
            Ok(text) => serde_yaml::from_str(&text).map_err(|e| {
                Error::InvalidInput(format!("{}: not a valid config: {e}", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ConfigFile::default(),
            Err(e) => return Err(Error::io(path.display(), e)),
        };
        let p = file.profiles.get(&name).cloned();
        if profile.is_some() && p.is_none() {
            return Err(Error::InvalidInput(format!(
                "profile '{name}' not found in {}",
                path.display()
            )));
        }
        let p = p.unwrap_or_default();
        let endpoint = endpoint_env.or(p.api_endpoint).ok_or_else(|| {
            Error::InvalidInput(format!(
                "profile '{name}' has no api_endpoint (or set LAKEPLAN_API_ENDPOINT)"
            ))
        })?;
        let key = env("LAKEPLAN_API_KEY").or(p.api_key).ok_or_else(|| {
            Error::InvalidInput(format!(
                "no API key: set LAKEPLAN_API_KEY or api_key in profile '{name}' of {}",
                path.display()
            ))
        })?;
        let base = url::Url::parse(&endpoint)
            .map_err(|e| Error::InvalidInput(format!("API endpoint '{endpoint}': {e}")))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(Error::InvalidInput(format!(
                "API endpoint '{endpoint}': expected http(s)://host:port"
            )));
        }
        Ok(Some(Remote {
            client: reqwest::Client::new(),
            base,
            key,
            profile: format!("{name}@{endpoint}"),
            extras: CommitExtras::default(),
        }))
    }

    /// The same connection, sending `extras` with its writes.
    pub fn with_commit(&self, extras: CommitExtras) -> Remote {
        Remote {
            extras,
            ..self.clone()
        }
    }

    /// `body` with the commit extras, if any.
    fn with_extras(&self, mut body: Value) -> Value {
        if let (Value::Object(map), Ok(Value::Object(extras))) =
            (&mut body, serde_json::to_value(&self.extras))
        {
            map.extend(extras);
        }
        body
    }

    pub fn endpoint(&self) -> &str {
        self.base.as_str()
    }

    /// `/api/v1/<segments>` with each segment percent-encoded (ref names may hold `/`).
    fn url(&self, segments: &[&str]) -> Result<url::Url> {
        let mut u = self.base.clone();
        {
            let mut p = u
                .path_segments_mut()
                .map_err(|_| Error::InvalidInput("API endpoint cannot take a path".into()))?;
            p.pop_if_empty().extend(["api", "v1"]).extend(segments);
        }
        Ok(u)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = req.bearer_auth(&self.key).send().await.map_err(|e| {
            Error::InvalidInput(format!("cannot reach the server at {}: {e}", self.base))
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let kind = v["error"]["type"].as_str().unwrap_or("Remote").to_string();
        let message = v["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("the server answered HTTP {status}: {}", text.trim()));
        Err(Error::Remote {
            kind,
            status,
            message,
            context: match &v["error"]["context"] {
                c @ Value::Object(_) => c.clone(),
                _ => Value::Object(Default::default()),
            },
        })
    }

    async fn json<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T> {
        self.send(req)
            .await?
            .json()
            .await
            .map_err(|e| Error::Internal(format!("the server's answer: {e}")))
    }

    /// Any operation of the service, as `/api/v1` carries it ([`ops::OverHttp`]): its defaults
    /// bound to this client's active branch, its request sent with this client's commit
    /// extras, its answer read back. The same `call(op)` as the embedded lake's service.
    pub async fn call<O: ops::OverHttp>(&self, mut op: O) -> Result<O::Output> {
        op.bind_client(&self.active_branch()?);
        let c = op.http()?;
        let url = self.url(&c.path.iter().map(String::as_str).collect::<Vec<_>>())?;
        let body = self.with_extras(c.body.unwrap_or_else(|| json!({})));
        let req = match c.method {
            ops::Method::Get => self.client.get(url),
            ops::Method::Post => self.client.post(url).json(&body),
            ops::Method::Delete if body == json!({}) => self.client.delete(url),
            ops::Method::Delete => self.client.delete(url).json(&body),
        };
        let v: Value = self.json(req.query(&c.query)).await?;
        O::answer(v)
    }

    async fn get<T: DeserializeOwned>(&self, seg: &[&str], q: &[(&str, String)]) -> Result<T> {
        self.json(self.client.get(self.url(seg)?).query(q)).await
    }

    fn state_path() -> Result<PathBuf> {
        Ok(home()?.join(".lakeplan").join("remote-state.json"))
    }

    fn state() -> Result<BTreeMap<String, String>> {
        let path = Self::state_path()?;
        match std::fs::read_to_string(&path) {
            Ok(t) => serde_json::from_str(&t).map_err(|e| {
                Error::InvalidInput(format!("{}: not valid JSON: {e}", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(Error::io(path.display(), e)),
        }
    }

    pub fn active_branch(&self) -> Result<String> {
        Ok(Self::state()?
            .get(&self.profile)
            .cloned()
            .unwrap_or_else(|| MAIN_BRANCH.to_string()))
    }

    pub async fn set_active_branch(&self, branch: &str) -> Result<()> {
        self.call(ops::GetRef {
            name: branch.to_string(),
            kind: RefKind::Branch,
        })
        .await?;
        let mut state = Self::state()?;
        state.insert(self.profile.clone(), branch.to_string());
        let path = Self::state_path()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
        }
        let text = serde_json::to_string_pretty(&state)
            .map_err(|e| Error::Internal(format!("remote state: {e}")))?;
        std::fs::write(&path, text).map_err(|e| Error::io(path.display(), e))
    }

    pub fn ref_or_active(&self, r: Option<&str>) -> Result<String> {
        match r {
            Some(r) => Ok(r.to_string()),
            None => self.active_branch(),
        }
    }

    pub async fn info(&self) -> Result<Value> {
        self.get(&["info"], &[]).await
    }

    /// Runs a query on the server and reads its Arrow IPC stream from the worker that holds
    /// the rows (asked for with this key: a ticket is good only for the key that ran the
    /// query, and a redirect to another host would not carry it).
    pub async fn query(
        &self,
        sql: &str,
        r: Option<&str>,
        ns: Option<&str>,
        max_rows: Option<usize>,
    ) -> Result<QueryResult> {
        let r = self.ref_or_active(r)?;
        let req = self
            .client
            .post(self.url(&["query"])?)
            .header(
                reqwest::header::ACCEPT,
                "application/vnd.lakeplan.flight+json",
            )
            .json(&json!({"sql": sql, "ref": r, "namespace": ns, "max_rows": max_rows}));
        let t: Value = self.json(req).await?;
        let (Some(endpoint), Some(ticket)) = (t["endpoint"].as_str(), t["ticket"].as_str()) else {
            return Err(Error::Internal(format!(
                "the server answered no ticket for the query: {t}"
            )));
        };
        let req = self
            .client
            .get(format!(
                "{}/results/{ticket}",
                endpoint.trim_end_matches('/')
            ))
            .header(
                reqwest::header::ACCEPT,
                "application/vnd.apache.arrow.stream",
            );
        let resp = self.send(req).await?;
        let truncated = resp
            .headers()
            .get("x-lakeplan-truncated")
            .is_some_and(|v| v == "true");
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Error::Internal(format!("reading the query result: {e}")))?;
        let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
            .map_err(|e| Error::Internal(format!("the query result: {e}")))?;
        let schema = reader.schema();
        let batches = reader
            .collect::<std::result::Result<Vec<RecordBatch>, _>>()
            .map_err(|e| Error::Internal(format!("the query result: {e}")))?;
        Ok(QueryResult {
            schema,
            batches,
            truncated,
        })
    }

    pub async fn job_logs(&self, id: &str) -> Result<String> {
        self.send(self.client.get(self.url(&["jobs", id, "logs"])?))
            .await?
            .text()
            .await
            .map_err(|e| Error::Internal(format!("reading the log of job {id}: {e}")))
    }

    /// Follows a job's log as the server streams it (server-sent events), calling `on_line` for
    /// each line, until the job ends. Returns the job's final status.
    pub async fn follow_log(&self, id: &str, mut on_line: impl FnMut(&str)) -> Result<String> {
        use futures::StreamExt;
        let resp = self
            .send(self.client.get(self.url(&["jobs", id, "logs", "stream"])?))
            .await?;
        let mut body = resp.bytes_stream();
        let mut buf = String::new();
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| Error::Internal(format!("the log stream of job {id}: {e}")))?;
            buf.push_str(&String::from_utf8_lossy(&chunk));
            // Events end with a blank line; each has an optional `event:` and `data:` lines.
            while let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                let mut kind = "message";
                let mut data = Vec::new();
                for line in event.lines() {
                    if let Some(k) = line.strip_prefix("event:") {
                        kind = k.trim();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push(d.strip_prefix(' ').unwrap_or(d));
                    }
                }
                let data = data.join("\n");
                match kind {
                    "end" => return Ok(data),
                    "error" => return Err(Error::Internal(format!("the log of job {id}: {data}"))),
                    _ if event.starts_with(':') => {}
                    _ => on_line(&data),
                }
            }
        }
        Err(Error::Internal(format!(
            "the log stream of job {id} ended before the job did"
        )))
    }

    /// Uploads a project (zipped) and starts a run of it; returns the job id.
    pub async fn start_run(&self, zip: Vec<u8>, query: &[(&str, String)]) -> Result<String> {
        let req = self
            .client
            .post(self.url(&["runs"])?)
            .query(query)
            .header(reqwest::header::CONTENT_TYPE, "application/zip")
            .body(zip);
        let v: Value = self.json(req).await?;
        v["job_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Internal(format!("the server's answer to a run: {v}")))
    }
}

impl Remote {
    /// `lakeplan mcp` in remote mode: MCP messages from stdin go to the server's `/mcp`
    /// (streamable HTTP, with this connection's key), and what it answers (a JSON body, or the
    /// messages of an event stream) goes to stdout, one message a line. Calls run one at a time.
    pub async fn mcp_bridge(&self) -> Result<()> {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| Error::InvalidInput("API endpoint cannot take a path".into()))?
            .pop_if_empty()
            .push("mcp");
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        let mut stdout = tokio::io::stdout();
        let mut session: Option<String> = None;
        let mut version: Option<String> = None;
        let io = |e: std::io::Error| Error::io("stdio", e);
        while let Some(line) = lines.next_line().await.map_err(io)? {
            if line.trim().is_empty() {
                continue;
            }
            let msg: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            let mut req = self
                .client
                .post(url.clone())
                .bearer_auth(&self.key)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(
                    reqwest::header::ACCEPT,
                    "application/json, text/event-stream",
                )
                .body(line.clone());
            if let Some(s) = &session {
                req = req.header("mcp-session-id", s);
            }
            if let Some(v) = &version {
                req = req.header("mcp-protocol-version", v);
            }
            let answers = match req.send().await {
                Ok(resp) => {
                    if let Some(s) = resp.headers().get("mcp-session-id") {
                        session = s.to_str().ok().map(str::to_string);
                    }
                    let status = resp.status();
                    let sse = resp
                        .headers()
                        .get(reqwest::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.starts_with("text/event-stream"));
                    let text = resp.text().await.unwrap_or_default();
                    if status.is_success() {
                        if sse {
                            sse_messages(&text)
                        } else if text.trim().is_empty() {
                            Vec::new()
                        } else {
                            vec![text]
                        }
                    } else {
                        error_reply(
                            &msg,
                            &format!("the server answered {status}: {}", text.trim()),
                        )
                    }
                }
                Err(e) => error_reply(
                    &msg,
                    &format!("cannot reach the server at {}: {e}", self.base),
                ),
            };
            for a in answers {
                if msg["method"] == "initialize" {
                    if let Ok(v) = serde_json::from_str::<Value>(&a) {
                        version = v["result"]["protocolVersion"].as_str().map(str::to_string);
                    }
                }
                stdout
                    .write_all(format!("{}\n", a.trim()).as_bytes())
                    .await
                    .map_err(io)?;
                stdout.flush().await.map_err(io)?;
            }
        }
        Ok(())
    }
}

/// The `data:` payloads of an event stream, one message each.
fn sse_messages(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for event in text.split("\n\n") {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim_start)
            .collect();
        if !data.is_empty() && !data.iter().all(|d| d.is_empty()) {
            out.push(data.join("\n"));
        }
    }
    out
}

/// A JSON-RPC error answer to `msg` (none for a notification, which has no id).
fn error_reply(msg: &Value, message: &str) -> Vec<String> {
    match msg.get("id") {
        Some(id) if !id.is_null() => vec![json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {"code": -32000, "message": message},
        })
        .to_string()],
        _ => {
            eprintln!("lakeplan mcp: {message}");
            Vec::new()
        }
    }
}
