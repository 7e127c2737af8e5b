"""What `lakeplan.Client` returns: small records with the attribute names of Bauplan's objects
(`bauplan.schema` re-exports them). Each keeps the server's JSON as `raw`.

The server's shapes are the serde forms of `crates/lake/src/info.rs` (refs, commits, tables,
diffs, merges, writes), `crates/lake/src/jobs.rs` (jobs) and `lakeplan_storage::ingest`
(creation plans, import reports).
"""

from dataclasses import dataclass, field
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
