//! `lakeplan mcp`, driven as an agent's MCP client drives it: JSON-RPC lines on its stdin and
//! stdout, on a local lake (embedded mode) and bridged to a server's `/mcp` (remote mode).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};

use serde_json::{json, Value};

use crate::util::Lake;

/// A `lakeplan mcp` process with an initialized session; closed and reaped on drop.
pub(crate) struct McpSession {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

impl Drop for McpSession {
    fn drop(&mut self) {
        // Closing stdin ends the session; a process that does not end is killed.
        drop(self.stdin.take());
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl McpSession {
    /// `lakeplan mcp` on `lake` (remote mode when `lake` is a remote one), with `key` in place
    /// of its profile's key when given.
    pub(crate) fn start(lake: &Lake, key: Option<&str>) -> McpSession {
        let mut cmd = lake.cmd(&["mcp"]);
        if let Some(k) = key {
            cmd.env("LAKEPLAN_API_KEY", k);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start lakeplan mcp");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut s = McpSession {
            child,
            stdin: Some(stdin),
            stdout,
            next_id: 0,
        };
        let init = s.request(
            "initialize",
            json!({"protocolVersion": "2025-03-26", "capabilities": {},
                   "clientInfo": {"name": "lakeplan-tests", "version": "0"}}),
        );
        assert_eq!(init["serverInfo"]["name"], "lakeplan", "{init}");
        s.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        s
    }

    fn send(&mut self, msg: &Value) {
        let stdin = self.stdin.as_mut().expect("open session");
        writeln!(stdin, "{msg}").expect("write to lakeplan mcp");
        stdin.flush().expect("flush");
    }

    /// One JSON-RPC request; its `result` (a protocol error fails the test).
    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).expect("read lakeplan mcp");
            assert!(n > 0, "lakeplan mcp closed its output during {method}");
            let msg: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not JSON-RPC ({e}): {line}"));
            // Notifications (logging, progress) have no id.
            if msg["id"] != json!(id) {
                continue;
            }
            assert!(msg["error"].is_null(), "{method}: {msg}");
            return msg["result"].clone();
        }
    }

    /// Calls `tool`: its structured answer (a list unwrapped from `{"items": [...]}`), or its
    /// structured error (`{"type", "message", "context"}`).
    pub(crate) fn call(&mut self, tool: &str, args: Value) -> Result<Value, Value> {
        let r = self.request("tools/call", json!({"name": tool, "arguments": args}));
        let content = r["structuredContent"].clone();
        if r["isError"] == json!(true) {
            assert!(content["error"].is_object(), "{tool}: {r}");
            return Err(content["error"].clone());
        }
        Ok(match content {
            Value::Object(mut m) if m.len() == 1 && m.contains_key("items") => {
                m.remove("items").unwrap_or_default()
            }
            other => other,
        })
    }
}

/// A project whose model reads a table that is not there (a planning error at `m.sql:2`), and
/// one whose Python file does not parse (`models.py:4`).
fn broken_projects() -> Vec<(BTreeMap<String, String>, &'static str, u64)> {
    let yml = (
        "lakeplan_project.yml".to_string(),
        "project:\n  name: broken\n".to_string(),
    );
    let missing_input = BTreeMap::from([
        yml.clone(),
        (
            "m.sql".to_string(),
            "-- lakeplan: materialization_strategy=REPLACE\nSELECT * FROM no_such_table\n"
                .to_string(),
        ),
    ]);
    let syntax = BTreeMap::from([
        yml,
        (
            "models.py".to_string(),
            "import lakeplan\n\n\ndef model(:\n    pass\n".to_string(),
        ),
    ]);
    vec![(missing_input, "m.sql", 2), (syntax, "models.py", 4)]
}

/// `run_pipeline` of a project that does not plan answers the planning error's kind and, as
/// data, its file (as the caller named it among `files`) and line; nothing is written.
fn assert_plan_errors_are_structured(lake: &Lake, key: Option<&str>) {
    let mut s = McpSession::start(lake, key);
    let before = s.call("list_commits", json!({"ref": "main"})).expect("log");
    for (files, file, line) in broken_projects() {
        let e = s
            .call("run_pipeline", json!({"branch": "main", "files": files}))
            .expect_err("a project that does not plan");
        assert_eq!(e["type"], "PlanError", "{e}");
        assert_eq!(e["context"]["file"], file, "{e}");
        assert_eq!(e["context"]["line"], line, "{e}");
        assert!(
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains(&format!(":{line}"))),
            "{e}"
        );
    }
    let after = s.call("list_commits", json!({"ref": "main"})).expect("log");
    assert_eq!(before, after, "a run that does not plan writes nothing");
}

#[test]
fn mcp_run_pipeline_answers_a_planning_error_with_its_file_and_line_on_a_local_lake() {
    let lake = Lake::new();
    lake.ok(&["lake", "init"]);
    assert_plan_errors_are_structured(&lake, None);
}

/// Through `lakeplan mcp` in remote mode, which bridges to the server's `/mcp` (streamable
/// HTTP): the server's MCP answers the same data.
///
/// Ignored until the server's MCP keeps a relayed error's context: `service()` in
/// `crates/server/src/mcp.rs` turns the worker's planning error (`ApiError::Relayed`, whose
/// context has the file and line) into an `Error::Remote` without it, so the tool answers
/// `"context": {}` (the kind and the message are right).
#[test]
fn mcp_run_pipeline_answers_a_planning_error_with_its_file_and_line_through_a_server() {
    let (lake, _server) = crate::server::remote_lake(&[]);
    assert_plan_errors_are_structured(&lake, None);
}
