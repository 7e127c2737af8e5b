//! Arrow Flight SQL on the control plane's port (gRPC over HTTP/2), for ADBC and JDBC clients
//! and the BI tools on them. The control plane plans nothing itself and never holds a row:
//!
//! ```text
//! client ── GetFlightInfo(CommandStatementQuery) ──▶ control plane ── query task ──▶ worker
//!        ◀── FlightInfo{schema, endpoint{ticket, location: grpc+tcp://worker}} ◀── ticket ──┘
//! client ── DoGet(ticket) ──────────────────────────────────────────────────────▶ worker
//! ```
//!
//! Authentication: `authorization: Bearer <API key>` on every call, or a Handshake with basic
//! auth whose password is the key (the answer's bearer token is the key). The ref a statement
//! reads (default `main`) is the `x-lakeplan-ref` call header (ADBC:
//! `adbc.flight.sql.rpc.call_header.x-lakeplan-ref`; the JDBC driver passes URL parameters as
//! headers), and `x-lakeplan-namespace` names the namespace of bare table names; inside the SQL,
//! any other ref is a catalog name (`"main@1a2b3c4d".default.trips`); `USE REF 'x'` makes `x` the
//! ref of the connection's next statements (kept by the server per connection and key, and in a
//! cookie for clients that keep cookies). Prepared statements are
//! the statement's SQL and schema (no parameters). Writes are refused as in every query.

use std::pin::Pin;

use arrow::datatypes::Schema;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, ProstMessageExt, SqlInfo,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    Ticket,
};
use base64::Engine;
use futures::{Stream, StreamExt, TryStreamExt};
use lakeplan_core::MAIN_BRANCH;
use lakeplan_core::{RefKind, TableName};
use lakeplan_lake::ops;
use prost::Message;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{principal_of, Caller};
use crate::dispatch::Work;
use crate::error::ApiError;
use crate::state::AppState;
use lakeplan_dataplane::protocol::{decode, AnswerKind, QuerySchema, QueryTicket};

/// The call header naming the ref statements read.
pub const REF_HEADER: &str = "x-lakeplan-ref";
/// The call header naming the namespace of bare table names.
pub const NAMESPACE_HEADER: &str = "x-lakeplan-namespace";
/// The cookie `USE REF 'x'` sets: the session's ref, for clients that keep cookies (ADBC:
/// `adbc.flight.sql.rpc.with_cookie_middleware`). It wins over the call header.
pub const REF_COOKIE: &str = "lakeplan_ref";
/// The header the server puts on every call of an HTTP/2 connection (replacing any a client
/// sent): the connection's number in [`Sessions`].
pub const CONNECTION_HEADER: &str = "x-lakeplan-connection";

/// The refs `USE REF` set, by connection and key, for clients that keep no cookies: the next
/// statements of the same connection under the same key read that ref. A connection's refs go
/// when it closes.
#[derive(Default)]
pub struct Sessions {
    next: std::sync::atomic::AtomicU64,
    refs: std::sync::Mutex<std::collections::HashMap<(u64, String), String>>,
}

impl Sessions {
    /// A new connection's number.
    pub fn open(&self) -> u64 {
        self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Forgets a closed connection's refs.
    pub fn close(&self, connection: u64) {
        self.lock().retain(|(c, _), _| *c != connection);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<(u64, String), String>> {
        self.refs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn connection(m: &MetadataMap) -> Option<u64> {
        header(m, CONNECTION_HEADER)?.parse().ok()
    }

    fn set(&self, m: &MetadataMap, key_id: &str, r: &str) {
        if let Some(c) = Self::connection(m) {
            self.lock().insert((c, key_id.to_string()), r.to_string());
        }
    }

    fn get(&self, m: &MetadataMap, key_id: &str) -> Option<String> {
        let c = Self::connection(m)?;
        self.lock().get(&(c, key_id.to_string())).cloned()
    }
}
/// The ticket type of a `USE REF` statement's one-row answer.
const USE_REF_TYPE: &str = "type.googleapis.com/lakeplan.UseRef";

/// The ref of `USE REF 'x'` (or `"x"`, or a bare `x`), if `sql` is that statement.
fn use_ref(sql: &str) -> Option<String> {
    let re =
        regex::Regex::new(r#"(?i)^\s*USE\s+REF\s+(?:'([^']+)'|"([^"]+)"|([^\s;'"]+))\s*;?\s*$"#)
            .ok()?;
    let c = re.captures(sql)?;
    c.get(1)
        .or_else(|| c.get(2))
        .or_else(|| c.get(3))
        .map(|m| m.as_str().to_string())
}

/// A cookie value: the ref, percent-encoded outside a safe set.
fn cookie_value(r: &str) -> String {
    r.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'@' | b'*' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The ref in the call's `lakeplan_ref` cookie, percent-decoded.
fn cookie_ref(m: &MetadataMap) -> Option<String> {
    let cookies = m.get("cookie")?.to_str().ok()?;
    let raw = cookies.split(';').find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == REF_COOKIE).then(|| v.to_string())
    })?;
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().filter(|r| !r.is_empty())
}

/// The ref a call's statements read: the session's (`USE REF`: its cookie, else the ref `kept`
/// for the connection), else the call header's, else `main`.
fn session_ref(m: &MetadataMap, kept: Option<String>) -> String {
    cookie_ref(m)
        .or(kept)
        .or_else(|| header(m, REF_HEADER).map(str::to_string))
        .unwrap_or_else(|| MAIN_BRANCH.to_string())
}

/// The Flight SQL service, as routes to merge into the control plane's router.
pub fn routes(state: AppState) -> axum::Router {
    axum::Router::new().route_service(
        "/arrow.flight.protocol.FlightService/{method}",
        FlightServiceServer::new(FlightSql { state }),
    )
}

#[derive(Clone)]
pub struct FlightSql {
    state: AppState,
}

/// The gRPC status of an API error.
fn status(e: ApiError) -> Status {
    let (code, _, message, _) = e.parts();
    match code.as_u16() {
        400 | 413 => Status::invalid_argument(message),
        401 => Status::unauthenticated(message),
        403 => Status::permission_denied(message),
        404 => Status::not_found(message),
        408 => Status::deadline_exceeded(message),
        409 => Status::aborted(message),
        503 => Status::unavailable(message),
        _ => Status::internal(message),
    }
}

fn header<'a>(m: &'a MetadataMap, name: &str) -> Option<&'a str> {
    m.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// A worker's endpoint (`http://host:port`) as a Flight location.
fn location(endpoint: &str) -> String {
    match endpoint.split_once("://") {
        Some(("https", rest)) => format!("grpc+tls://{rest}"),
        Some((_, rest)) => format!("grpc+tcp://{rest}"),
        None => format!("grpc+tcp://{endpoint}"),
    }
}

impl FlightSql {
    /// The key's principal and its tenant's lake, both read off the runtime's threads (see
    /// [`crate::blocking`]).
    async fn caller(&self, m: &MetadataMap) -> Result<Caller, Status> {
        let principal = principal_of(&self.state, &m.clone().into_headers())
            .await
            .map_err(status)?;
        let (tenants, tenant) = (self.state.tenants.clone(), principal.tenant.clone());
        let lake = crate::blocking(move || tenants.lake(&tenant))
            .await
            .map_err(|e| status(e.into()))?
            .acting_as(lakeplan_lake::LakeConfig {
                actor: principal.user.name.clone(),
                client: "flight-sql".into(),
            });
        Ok(Caller {
            principal,
            lake,
            state: self.state.clone(),
        })
    }

    /// The ref `c`'s statements on this call read (see [`session_ref`]).
    fn ref_of(&self, m: &MetadataMap, c: &Caller) -> String {
        let kept = self.state.flight_sessions.get(m, &c.principal.key_id);
        session_ref(m, kept)
    }

    /// Plans `sql` on a worker (at the call's ref): its schema, and unless `describe`, the
    /// worker's endpoint and the ticket of its rows.
    async fn plan(
        &self,
        m: &MetadataMap,
        sql: String,
        describe: bool,
    ) -> Result<(Schema, Option<(String, String)>), Status> {
        let c = self.caller(m).await?;
        let work = Work::Query {
            sql,
            at: self.ref_of(m, &c),
            namespace: header(m, NAMESPACE_HEADER).map(str::to_string),
            max_rows: None,
            describe,
        };
        let kind = AnswerKind::of(&work);
        let v = c
            .workers()
            .submit(work)
            .await
            .map_err(|e| status(e.into()))?;
        let malformed = |e: lakeplan_dataplane::ProtocolError| Status::internal(e.to_string());
        let (schema, rows) = if describe {
            let a: QuerySchema = decode(kind, v).map_err(malformed)?;
            (a.schema, None)
        } else {
            let a: QueryTicket = decode(kind, v).map_err(malformed)?;
            (a.schema, Some((a.endpoint, a.ticket)))
        };
        let ipc = base64::engine::general_purpose::STANDARD
            .decode(schema)
            .map_err(|e| Status::internal(format!("the worker's schema: {e}")))?;
        let schema = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc), None)
            .map_err(|e| Status::internal(format!("the worker's schema: {e}")))?
            .schema();
        Ok((schema.as_ref().clone(), rows))
    }

    async fn flight_info(
        &self,
        m: &MetadataMap,
        sql: String,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let (schema, rows) = self.plan(m, sql, false).await?;
        let (endpoint, ticket) =
            rows.ok_or_else(|| Status::internal("the worker answered no ticket"))?;
        let info = FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::internal(format!("encoding the schema: {e}")))?
            .with_endpoint(
                FlightEndpoint::new()
                    .with_ticket(Ticket::new(ticket.into_bytes()))
                    .with_location(location(&endpoint)),
            )
            .with_descriptor(descriptor)
            .with_total_records(-1)
            .with_ordered(true);
        Ok(Response::new(info))
    }
}

type HandshakeStream = Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>;
type DoGetStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send>>;

/// The catalog name of the call's own ref (as in SQL: `lake.default.trips`).
const SESSION_CATALOG: &str = "lake";

fn arrow_err(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("building a metadata result: {e}"))
}

/// A metadata command's `FlightInfo`: its schema and one endpoint whose ticket is the command
/// itself, fetched from the control plane (metadata, not table data).
fn metadata_info(
    schema: &Schema,
    command: Any,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(arrow_err)?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(command.encode_to_vec())))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

fn batch_stream(batch: arrow::record_batch::RecordBatch) -> Response<DoGetStream> {
    let schema = batch.schema();
    let out = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::iter([Ok(batch)]))
        .map_err(Status::from);
    Response::new(out.boxed())
}

/// What the server says about itself (`GetSqlInfo`).
fn sql_info() -> Result<SqlInfoData, Status> {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "lakeplan");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "58");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    b.build().map_err(arrow_err)
}

fn use_ref_schema() -> Schema {
    Schema::new(vec![arrow::datatypes::Field::new(
        "ref",
        arrow::datatypes::DataType::Utf8,
        false,
    )])
}

impl FlightSql {
    /// `USE REF 'r'`: checks that `r` resolves for the caller, and answers a `FlightInfo` whose
    /// ticket (on the control plane) returns `r`; `r` becomes the session's ref, kept for the
    /// connection and in a cookie (for clients that keep cookies across connections).
    async fn use_ref_info(
        &self,
        m: &MetadataMap,
        r: String,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let c = self.caller(m).await?;
        // The ref must resolve for the caller.
        let op = ops::Commits {
            at: Some(r.clone()),
            limit: Some(1),
            ..Default::default()
        };
        c.service().call(op).await.map_err(|e| status(e.into()))?;
        let ticket = Any {
            type_url: USE_REF_TYPE.to_string(),
            value: r.clone().into_bytes().into(),
        };
        let mut resp = metadata_info(&use_ref_schema(), ticket, descriptor)?;
        let cookie: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
            format!("{REF_COOKIE}={}; Path=/", cookie_value(&r))
                .parse()
                .map_err(|_| Status::invalid_argument("a ref that cannot be a cookie"))?;
        resp.metadata_mut().insert("set-cookie", cookie);
        self.state.flight_sessions.set(m, &c.principal.key_id, &r);
        Ok(resp)
    }

    /// The catalogs a client can browse: `lake` (the call's ref), and every branch and tag.
    async fn catalogs(&self, m: &MetadataMap) -> Result<(Caller, Vec<(String, String)>), Status> {
        let c = self.caller(m).await?;
        let session = self.ref_of(m, &c);
        let mut out = vec![(SESSION_CATALOG.to_string(), session)];
        let svc = c.service();
        for kind in [RefKind::Branch, RefKind::Tag] {
            let refs = svc
                .call(ops::ListRefs { kind })
                .await
                .map_err(|e| status(e.into()))?;
            for r in refs {
                out.push((r.name.clone(), r.name));
            }
        }
        Ok((c, out))
    }
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    /// Basic auth whose password is an API key (the user name is not checked: the key says who
    /// it is), or a bearer key; the answer carries the key as the bearer token.
    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<HandshakeStream>, Status> {
        let auth = header(request.metadata(), "authorization").ok_or_else(|| {
            Status::unauthenticated("send basic auth (password: an API key) or a bearer key")
        })?;
        let key = if let Some(basic) = auth.strip_prefix("Basic ") {
            // Go's Flight client leaves the padding out.
            let decoded = base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(basic.trim().trim_end_matches('='))
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| Status::unauthenticated("malformed basic auth"))?;
            decoded
                .split_once(':')
                .map(|(_, p)| p.to_string())
                .ok_or_else(|| Status::unauthenticated("malformed basic auth"))?
        } else if let Some(bearer) = auth.strip_prefix("Bearer ") {
            bearer.trim().to_string()
        } else {
            return Err(Status::unauthenticated("send basic auth or a bearer key"));
        };
        let mut m = MetadataMap::new();
        let bearer: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
            format!("Bearer {key}")
                .parse()
                .map_err(|_| Status::unauthenticated("malformed key"))?;
        m.insert("authorization", bearer.clone());
        self.caller(&m).await?;
        let out = futures::stream::iter([Ok(HandshakeResponse {
            protocol_version: 0,
            payload: key.clone().into_bytes().into(),
        })]);
        let mut resp: Response<HandshakeStream> = Response::new(Box::pin(out));
        resp.metadata_mut().insert("authorization", bearer);
        Ok(resp)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        if query.transaction_id.is_some() {
            return Err(Status::unimplemented(
                "transactions: every query is read-only",
            ));
        }
        let (m, _, descriptor) = request.into_parts();
        if let Some(r) = use_ref(&query.query) {
            return self.use_ref_info(&m, r, descriptor).await;
        }
        self.flight_info(&m, query.query, descriptor).await
    }

    /// The one-row answer of a `USE REF` statement (the ref it set), served by the control
    /// plane.
    async fn do_get_fallback(
        &self,
        request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<DoGetStream>, Status> {
        if message.type_url != USE_REF_TYPE {
            return Err(Status::invalid_argument(format!(
                "not a ticket of this server: {}",
                message.type_url
            )));
        }
        self.caller(request.metadata()).await?;
        let r = String::from_utf8(message.value.to_vec())
            .map_err(|_| Status::invalid_argument("a malformed USE REF ticket"))?;
        let batch = arrow::record_batch::RecordBatch::try_new(
            std::sync::Arc::new(use_ref_schema()),
            vec![std::sync::Arc::new(arrow::array::StringArray::from(vec![
                r,
            ]))],
        )
        .map_err(arrow_err)?;
        Ok(batch_stream(batch))
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let sql = String::from_utf8(cmd.prepared_statement_handle.to_vec())
            .map_err(|_| Status::invalid_argument("not a lakeplan prepared statement handle"))?;
        let (m, _, descriptor) = request.into_parts();
        if let Some(r) = use_ref(&sql) {
            return self.use_ref_info(&m, r, descriptor).await;
        }
        self.flight_info(&m, sql, descriptor).await
    }

    /// A prepared statement is its SQL (the handle) and its result's schema, planned on a
    /// worker now so that errors answer at once.
    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        if query.transaction_id.is_some() {
            return Err(Status::unimplemented(
                "transactions: every query is read-only",
            ));
        }
        let schema = if use_ref(&query.query).is_some() {
            use_ref_schema()
        } else {
            self.plan(request.metadata(), query.query.clone(), true)
                .await?
                .0
        };
        let message = arrow_flight::IpcMessage::try_from(arrow_flight::SchemaAsIpc::new(
            &schema,
            &arrow::ipc::writer::IpcWriteOptions::default(),
        ))
        .map_err(|e| Status::internal(format!("encoding the schema: {e}")))?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: query.query.into_bytes().into(),
            dataset_schema: message.0,
            parameter_schema: Default::default(),
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        // Nothing is kept for a prepared statement; the caller must still be one.
        self.caller(request.metadata()).await?;
        Ok(())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(request.metadata()).await?;
        let schema = query.into_builder().schema();
        metadata_info(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let (_, catalogs) = self.catalogs(request.metadata()).await?;
        let mut b = query.into_builder();
        for (name, _) in catalogs {
            b.append(name);
        }
        Ok(batch_stream(b.build().map_err(arrow_err)?))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(request.metadata()).await?;
        let schema = query.clone().into_builder().schema();
        metadata_info(&schema, query.as_any(), request.into_inner())
    }

    /// Namespaces, per catalog (a catalog is a ref).
    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let (c, catalogs) = self.catalogs(request.metadata()).await?;
        let only = query.catalog.clone();
        let mut b = query.into_builder();
        for (catalog, at) in catalogs {
            if only.as_deref().is_some_and(|o| o != catalog) {
                continue;
            }
            let op = ops::ListNamespaces { at: Some(at) };
            for ns in c.service().call(op).await.map_err(|e| status(e.into()))? {
                b.append(&catalog, ns);
            }
        }
        Ok(batch_stream(b.build().map_err(arrow_err)?))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(request.metadata()).await?;
        let schema = query.clone().into_builder().schema();
        metadata_info(&schema, query.as_any(), request.into_inner())
    }

    /// Tables, per catalog and namespace; with `include_schema`, each table's Arrow schema
    /// (from its Iceberg metadata).
    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let (c, catalogs) = self.catalogs(request.metadata()).await?;
        let only = query.catalog.clone();
        let with_schema = query.include_schema;
        let mut b = query.into_builder();
        let empty = Schema::empty();
        for (catalog, at) in catalogs {
            if only.as_deref().is_some_and(|o| o != catalog) {
                continue;
            }
            let svc = c.service();
            let op = ops::ListTables {
                at: Some(at.clone()),
                namespace: None,
            };
            for t in svc.call(op).await.map_err(|e| status(e.into()))? {
                let schema = if with_schema {
                    let name =
                        TableName::new(&t.namespace, &t.name).map_err(|e| status(e.into()))?;
                    let op = ops::IcebergLoadTable {
                        at: at.clone(),
                        table: name.clone(),
                    };
                    let table = svc.call(op).await.map_err(|e| status(e.into()))?;
                    iceberg::arrow::schema_to_arrow_schema(table.metadata.current_schema())
                        .map_err(|e| Status::internal(format!("table {name}: {e}")))?
                } else {
                    empty.clone()
                };
                b.append(&catalog, &t.namespace, &t.name, "TABLE", &schema)
                    .map_err(arrow_err)?;
            }
        }
        Ok(batch_stream(b.build().map_err(arrow_err)?))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(request.metadata()).await?;
        let schema = query.into_builder().schema();
        metadata_info(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.caller(request.metadata()).await?;
        let mut b = query.into_builder();
        b.append("TABLE");
        Ok(batch_stream(b.build().map_err(arrow_err)?))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(request.metadata()).await?;
        let info = sql_info()?;
        let schema = query.clone().into_builder(&info).schema();
        metadata_info(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.caller(request.metadata()).await?;
        let info = sql_info()?;
        let batch = query.into_builder(&info).build().map_err(arrow_err)?;
        Ok(batch_stream(batch))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_ref_statements_and_their_cookie() {
        assert_eq!(use_ref("USE REF 'alice.dev'").as_deref(), Some("alice.dev"));
        assert_eq!(
            use_ref("  use ref \"main@1a2b3c4d\" ; ").as_deref(),
            Some("main@1a2b3c4d")
        );
        assert_eq!(use_ref("use REF v1").as_deref(), Some("v1"));
        for not in [
            "SELECT 1",
            "USE REF",
            "USE REF 'a' AND 'b'",
            "USE REFS x",
            "USE REF a b",
        ] {
            assert_eq!(use_ref(not), None, "{not}");
        }
        for r in ["main*2026-11-25T10:00:00Z", "alice.dev", "a/b c%"] {
            let mut m = MetadataMap::new();
            let cookie = format!("other=1; {REF_COOKIE}={}; x=y", cookie_value(r));
            m.insert("cookie", cookie.parse().expect("ascii"));
            assert_eq!(cookie_ref(&m).as_deref(), Some(r));
            assert_eq!(
                session_ref(&m, Some("kept".into())),
                r,
                "the cookie wins over the connection's ref and the header"
            );
        }
        let mut m = MetadataMap::new();
        m.insert(REF_HEADER, "alice.x".parse().expect("ascii"));
        assert_eq!(session_ref(&m, None), "alice.x");
        assert_eq!(session_ref(&m, Some("kept".into())), "kept");
        assert_eq!(session_ref(&MetadataMap::new(), None), "main");
    }
}
