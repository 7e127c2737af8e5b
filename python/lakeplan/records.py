"""What `lakeplan.Client` returns: small records with the attribute names of Bauplan's objects
(`bauplan.schema` re-exports them). Each keeps the server's JSON as `raw`.

The server's shapes are the serde forms of `crates/lake/src/info.rs` (refs, commits, tables,
diffs, merges, writes), `crates/lake/src/jobs.rs` (jobs) and `lakeplan_storage::ingest`
(creation plans, import reports).
"""

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional


def _parse_time(s: Optional[str]) -> Optional[datetime]:
    if not s:
        return None
    # Python < 3.11 does not read the `Z` suffix, nor more than 6 fractional digits.
    s = s.replace("Z", "+00:00")
    head, dot, rest = s.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        s = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}"
    return datetime.fromisoformat(s)


@dataclass(frozen=True)
class Ref:
    """A named ref at a commit. `type` is `BRANCH`, `TAG` or `DETACHED` (as Bauplan's)."""

    name: Optional[str]
    hash: str
    type: str = "BRANCH"
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "Ref":
        kind = str(d.get("type", "")).upper()
        sub = {"BRANCH": Branch, "TAG": Tag}.get(kind, cls)
        return sub(name=d["name"], hash=d["hash"], type=kind or sub.type, raw=d)

    def __str__(self) -> str:
        """The ref expression this object stands for (what a client method takes)."""
        return self.name if self.name else f"@{self.hash}"


@dataclass(frozen=True)
class Branch(Ref):
    type: str = "BRANCH"


@dataclass(frozen=True)
class Tag(Ref):
    type: str = "TAG"


@dataclass(frozen=True)
class DetachedRef(Ref):
    type: str = "DETACHED"


@dataclass(frozen=True)
class Actor:
    name: str
    email: Optional[str] = None


@dataclass(frozen=True)
class Commit:
    """One commit of a ref's log. `subject` is the message's first line, `body` the rest."""

    hash: str
    message: str
    author: Actor
    authored_date: Optional[datetime]
    parent_hashes: List[str]
    properties: Dict[str, str]
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "Commit":
        return cls(
            hash=d["hash"],
            message=d.get("message", ""),
            author=Actor(name=d.get("author", "")),
            authored_date=_parse_time(d.get("date")),
            parent_hashes=list(d.get("parent_hashes", [])),
            properties=dict(d.get("properties", {})),
            raw=d,
        )

    @property
    def ref(self) -> DetachedRef:
        return DetachedRef(name=None, hash=self.hash)

    @property
    def subject(self) -> str:
        return self.message.split("\n", 1)[0]

    @property
    def body(self) -> Optional[str]:
        _, _, rest = self.message.partition("\n")
        return rest.strip("\n") or None

    @property
    def committed_date(self) -> Optional[datetime]:
        return self.authored_date

    @property
    def authors(self) -> List[Actor]:
        return [self.author]

    @property
    def committer(self) -> Actor:
        return self.author


@dataclass(frozen=True)
class Namespace:
    name: str
    raw: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class TableField:
    id: int
    name: str
    type: str
    required: bool


@dataclass(frozen=True)
class PartitionField:
    name: str
    transform: str
    source: str = ""


@dataclass(frozen=True)
class Table:
    """A table as listed: `fqn` is `namespace.name`."""

    name: str
    namespace: str
    records: Optional[int] = None
    current_snapshot_id: Optional[int] = None
    kind: str = "TABLE"
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def fqn(self) -> str:
        return f"{self.namespace}.{self.name}"

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "Table":
        return cls(
            name=d["name"],
            namespace=d["namespace"],
            records=d.get("records"),
            current_snapshot_id=d.get("snapshot_id"),
            raw=d,
        )


@dataclass(frozen=True)
class TableWithMetadata(Table):
    """A table with its Iceberg metadata at a ref: schema (field ids), partition spec, size."""

    id: str = ""
    ref: str = ""
    metadata_location: str = ""
    current_schema_id: int = 0
    fields: List[TableField] = field(default_factory=list)
    partitions: List[PartitionField] = field(default_factory=list)
    size: int = 0
    snapshots: int = 0
    data_files: int = 0
    last_updated_at: Optional[datetime] = None

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "TableWithMetadata":
        ms = d.get("last_updated_ms")
        return cls(
            name=d["name"],
            namespace=d["namespace"],
            records=d.get("records"),
            current_snapshot_id=d.get("current_snapshot_id"),
            id=d.get("id", ""),
            ref=d.get("ref", ""),
            metadata_location=d.get("metadata_location", ""),
            current_schema_id=d.get("current_schema_id", 0),
            fields=[TableField(f["id"], f["name"], f["type"], f["required"]) for f in d.get("fields", [])],
            partitions=[
                PartitionField(p["name"], p["transform"], p.get("source", "")) for p in d.get("partitions", [])
            ],
            size=d.get("size", 0),
            snapshots=d.get("snapshots", 0),
            data_files=d.get("data_files", 0),
            last_updated_at=datetime.fromtimestamp(ms / 1000, timezone.utc) if ms is not None else None,
            raw=d,
        )


@dataclass(frozen=True)
class TableDiff:
    """How a table differs between two refs: `change` is added, removed or changed."""

    table: str
    change: str
    schema_changed: bool
    records_before: Optional[int]
    records_after: Optional[int]
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "TableDiff":
        return cls(
            table=d["table"],
            change=d["change"],
            schema_changed=bool(d.get("schema_changed")),
            records_before=d.get("records_before"),
            records_after=d.get("records_after"),
            raw=d,
        )


@dataclass(frozen=True)
class TableCreatePlan:
    """A table creation plan (`plan_table_creation`): `plan` is the server's plan, a dict that
    may be edited (a column's `type`, `partitions`) before `apply_table_creation_plan`."""

    plan: Dict[str, Any]

    @property
    def can_auto_apply(self) -> bool:
        return not self.plan.get("conflicts")

    @property
    def files_to_be_imported(self) -> List[str]:
        return [f["path"] for f in self.plan.get("files", [])]


@dataclass(frozen=True)
class ImportResult:
    """What `import_data` did: rows and files imported, files skipped (with `continue_on_error`)
    and already-imported duplicates, and the commit it wrote (`branch`)."""

    rows: int
    bytes: int
    data_files: int
    imported: List[Dict[str, Any]]
    skipped: List[Dict[str, Any]]
    duplicates: List[str]
    schema_changes: List[str]
    branch: Branch
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "ImportResult":
        r = d["report"]
        return cls(
            rows=r.get("rows", 0),
            bytes=r.get("bytes", 0),
            data_files=r.get("data_files", 0),
            imported=list(r.get("imported", [])),
            skipped=list(r.get("skipped", [])),
            duplicates=list(r.get("duplicates", [])),
            schema_changes=list(r.get("schema_changes", [])),
            branch=Branch(name=d["commit"]["branch"], hash=d["commit"]["hash"], raw=d["commit"]),
            raw=d,
        )


# The server's job statuses → Bauplan's `JobState` names.
_JOB_STATES = {"running": "RUNNING", "succeeded": "COMPLETE", "failed": "FAIL", "cancelled": "ABORT"}


@dataclass(frozen=True)
class Job:
    """A pipeline run. `status` is Bauplan's `JobState` name (RUNNING, COMPLETE, FAIL, ABORT);
    `human_readable_status` the server's (running, succeeded, failed, cancelled)."""

    id: str
    status: str
    human_readable_status: str
    user: str
    target: str
    created_at: Optional[datetime]
    finished_at: Optional[datetime]
    error_message: Optional[str]
    kind: str = "RUN"
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "Job":
        status = str(d.get("status", ""))
        return cls(
            id=d["id"],
            status=_JOB_STATES.get(status, "OTHER"),
            human_readable_status=status,
            user=d.get("actor", ""),
            target=d.get("target", ""),
            created_at=_parse_time(d.get("created_at")),
            finished_at=_parse_time(d.get("finished_at")),
            error_message=d.get("error"),
            raw=d,
        )


@dataclass(frozen=True)
class Info:
    """Who the client's key is, and the server's version."""

    tenant: str
    user: str
    scope: str
    key_id: str
    can_merge_main: bool
    server_version: str
    client_version: str
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def organization(self) -> str:
        """The tenant (Bauplan's name for it)."""
        return self.tenant


# The server's job statuses → the `job_status` of Bauplan's `RunState`.
_RUN_STATES = {"running": "RUNNING", "succeeded": "SUCCESS", "failed": "FAILED", "cancelled": "CANCELLED"}


def _ns(t: Optional[datetime]) -> Optional[int]:
    return None if t is None else int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1_000


@dataclass(frozen=True)
class RunExecutionContext:
    """How a run was asked for (Bauplan's `RunState.ctx`). `strict`, `cache` and `transaction`
    are `'on'` or `'off'`; `snapshot_id` is the hash of the code the server ran."""

    project_dir: str
    ref: Optional[str]
    namespace: Optional[str]
    dry_run: bool
    strict: str
    cache: str
    transaction: str
    preview: Optional[str] = None
    detach: bool = False
    debug: bool = False
    snapshot_id: Optional[str] = None
    snapshot_uri: Optional[str] = None


@dataclass(frozen=True)
class RunState:
    """What `Client.run` returns (Bauplan's `RunState`). `job_status` is `SUCCESS`, `FAILED`,
    `CANCELLED`, or `RUNNING` for a detached run; a run that failed has `error` set (it is
    returned, not raised). `job_id` is None when the project did not plan (`error` says where).

    Beyond Bauplan's names: `job` (the job record, `job.raw` the server's JSON), `nodes` (each
    node's outcome: `node`, `status`, `rows`, `seconds`, `error`, `table`), `result_commit` (the
    commit the run published), `tx_ref` (the temporary branch it materialized into) and, for a
    project that did not plan, `error_location` (`{"file": ..., "line": ...}`, the file as the
    caller named it)."""

    job_id: Optional[str]
    job_status: str
    error: Optional[str]
    ctx: RunExecutionContext
    user_logs: List[str] = field(default_factory=list)
    job: Optional[Job] = field(default=None, repr=False)
    error_location: Optional[Dict[str, Any]] = None

    @classmethod
    def from_job(cls, d: Dict[str, Any], ctx: RunExecutionContext, logs: Optional[str] = None) -> "RunState":
        """The state of the run whose job record is `d` (`logs`: its log's text)."""
        job = Job.from_json(d)
        status = job.human_readable_status
        ctx = replace(
            ctx,
            ref=d.get("target") or ctx.ref,
            namespace=d.get("namespace") or ctx.namespace,
            snapshot_id=d.get("code_hash") or None,
        )
        return cls(
            job_id=job.id,
            job_status=_RUN_STATES.get(status, status.upper()),
            error=job.error_message,
            ctx=ctx,
            user_logs=logs.splitlines() if logs else [],
            job=job,
        )

    @property
    def started_at_ns(self) -> Optional[int]:
        return _ns(self.job.created_at) if self.job else None

    @property
    def ended_at_ns(self) -> Optional[int]:
        return _ns(self.job.finished_at) if self.job else None

    @property
    def duration_ns(self) -> Optional[int]:
        start, end = self.started_at_ns, self.ended_at_ns
        return None if start is None or end is None else end - start

    @property
    def duration(self) -> Optional[float]:
        """Seconds from the job's start to its end (None while it runs)."""
        ns = self.duration_ns
        return None if ns is None else ns / 1e9

    @property
    def nodes(self) -> List[Dict[str, Any]]:
        return list(self.job.raw.get("nodes") or []) if self.job else []

    @property
    def result_commit(self) -> Optional[str]:
        return self.job.raw.get("result_commit") if self.job else None

    @property
    def tx_ref(self) -> Optional[str]:
        return self.job.raw.get("tx_branch") if self.job else None

    @property
    def parameters(self) -> Dict[str, str]:
        """The parameter values the run used (as text), project defaults included."""
        return dict(self.job.raw.get("parameters") or {}) if self.job else {}
