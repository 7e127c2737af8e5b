"""`lakeplan.Client`: the lake of a `lakeplan serve` server from Python, with Bauplan's method names.

    import lakeplan

    client = lakeplan.Client()                   # key and endpoint: see `Client`
    client.create_branch("alice.dev", from_ref="main")
    client.create_table("trips", "s3://bucket/trips/*.parquet", branch="alice.dev")
    client.import_data("trips", "s3://bucket/trips/*.parquet", branch="alice.dev")
    table = client.query("SELECT count(*) AS n FROM trips", ref="alice.dev")   # a pyarrow.Table
    state = client.run("my_project", ref="alice.dev", parameters={"min_fare": 10})
    assert state.job_status == "SUCCESS", state.error
    client.merge_branch("alice.dev", into_branch="main")

Each method is one or two calls of the HTTP/JSON API (docs/server.md, routes in
crates/server/src/api.rs); query results come as Arrow IPC streams. Errors are the typed
exceptions of `lakeplan.exceptions`. HTTP is the standard library's, so the client needs nothing
beyond pyarrow.

List methods (`get_branches`, `get_commits`, ...) return lazy iterators: nothing is fetched until
the first item is asked for. The API has no page tokens yet: lists of refs, namespaces and tables
come in one response; the commit log is fetched in growing pages pinned to the commit the first
page started at, so that new commits do not shift later pages.

`run` uploads a pipeline project as a zip, then polls its job until it ends (the server runs
its functions in sandboxes); like Bauplan's, it returns a `RunState` whether the run succeeded
or failed.
"""

import io
import itertools
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, TypeVar, Union

import pyarrow as pa
import pyarrow.ipc

from . import __version__
from .exceptions import (
    BadRequestError,
    BranchNotFoundError,
    ConfigurationError,
    JobTimeoutError,
    LakeplanConnectionError,
    LakeplanError,
    NamespaceExistsError,
    NamespaceNotFoundError,
    NotAvailableError,
    NotFoundError,
    PayloadTooLargeError,
    RequestTimeoutError,
    ResultTruncatedWarning,
    ServerError,
    SqlError,
    TableNotFoundError,
    TagNotFoundError,
    error_from_response,
)
from .records import (
    Branch,
    Commit,
    Info,
    ImportResult,
    Job,
    Namespace,
    Ref,
    RunExecutionContext,
    RunState,
    Table,
    TableCreatePlan,
    TableDiff,
    TableWithMetadata,
    Tag,
)

DEFAULT_ENDPOINT = "http://127.0.0.1:8181"
# As long as the server lets a request run (`lakeplan serve --request-timeout-secs`).
DEFAULT_TIMEOUT = 300.0
ARROW_STREAM = "application/vnd.apache.arrow.stream"
# Asked of the query route for a ticket to fetch the rows by Arrow Flight DoGet on the worker.
FLIGHT_TICKET = "application/vnd.lakeplan.flight+json"
# How `query` fetches rows: "flight" (pyarrow.flight), "http" (an Arrow IPC stream over HTTP),
# or "auto" (Flight when pyarrow was built with it).
QUERY_TRANSPORTS = ("auto", "flight", "http")
# The query route says whether it cut the result at `max_rows`; `query` keeps that in the
# returned table's schema metadata.
TRUNCATED_HEADER = "x-lakeplan-truncated"
TRUNCATED_KEY = b"lakeplan.truncated"
# How long `run` waits for its job by default (Bauplan's default for job methods), in seconds.
DEFAULT_JOB_TIMEOUT = 1800.0
# The largest project zip `run` uploads: the server's default body limit (`--max-body-mib`).
MAX_PROJECT_BYTES = 16 * 1024 * 1024
# The error types of a project that does not plan (answered by the run route before any job):
# a plan error (with its file and line in the context), or a parameter the run cannot take.
_PLANNING_ERRORS = ("PlanError", "InvalidInput")
# The first page of the commit log; each next page asks for twice as many.
_COMMITS_PAGE = 100

# A ref kind → its collection in the API.
_REFS = {"branch": "branches", "tag": "tags"}

T = TypeVar("T")
RefLike = Union[str, Ref]


# --------------------------------------------------------------------------- configuration


def config_path(config_file_path: Union[str, os.PathLike, None] = None) -> Path:
    """Where profiles are read from: the given path, else `~/.lakeplan/config.yaml`."""
    return Path(config_file_path) if config_file_path else Path.home() / ".lakeplan" / "config.yaml"


def parse_simple_yaml(text: str) -> Dict[str, Any]:
    """Nested mappings of scalars, by indentation (`key: value`; `key:` opens a mapping), with
    comments and quoted scalars: the part of YAML a profiles file uses, for when PyYAML is not
    installed."""
    root: Dict[str, Any] = {}
    stack: List[Tuple[int, Dict[str, Any]]] = [(-1, root)]
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        line = line.split(" #", 1)[0].rstrip()
        if not line.strip() or line.strip() == "---":
            continue
        indent = len(line) - len(line.lstrip(" "))
        key, sep, value = line.strip().partition(":")
        if not sep or not key.strip():
            raise ConfigurationError(f"line {lineno}: expected 'key: value', found {line.strip()!r}")
        while indent <= stack[-1][0]:
            stack.pop()
        parent = stack[-1][1]
        key, value = _unquote(key.strip()), value.strip()
        if value:
            parent[key] = _unquote(value)
        else:
            parent[key] = child = {}
            stack.append((indent, child))
    return root


def _unquote(s: str) -> str:
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    return s


def load_profiles(path: Path) -> Dict[str, Dict[str, Any]]:
    """The `profiles` of a config file (`{}` when there is no file)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    try:
        import yaml  # PyYAML, when installed: the whole of YAML
    except ImportError:
        data = parse_simple_yaml(text)
    else:
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigurationError(f"{path}: not valid YAML: {e}") from None
    profiles = data.get("profiles", {}) if isinstance(data, dict) else None
    if not isinstance(profiles, dict) or not all(isinstance(p, dict) for p in profiles.values()):
        raise ConfigurationError(f"{path}: expected 'profiles: {{NAME: {{api_key: ..., api_endpoint: ...}}}}'")
    return profiles


def resolve_credentials(
    profile: Optional[str] = None,
    api_key: Optional[str] = None,
    endpoint: Optional[str] = None,
    config_file_path: Union[str, os.PathLike, None] = None,
) -> Tuple[str, str]:
    """`(api_key, endpoint)`, each from the first that has it: the argument; the profile named
    by the `profile` argument; `LAKEPLAN_API_KEY` / `LAKEPLAN_API_ENDPOINT`; the profile named by
    `LAKEPLAN_PROFILE`, else profile `default`. The endpoint defaults to a local server."""
    path = config_path(config_file_path)
    name = profile or os.environ.get("LAKEPLAN_PROFILE") or "default"
    profiles = load_profiles(path)
    if name not in profiles and name != "default":
        known = ", ".join(sorted(profiles)) or "none"
        raise ConfigurationError(f"profile '{name}' is not in {path} (profiles there: {known})")
    chosen = profiles.get(name, {})

    def pick(arg: Optional[str], field: str, env: str) -> Optional[str]:
        if arg:
            return arg
        if profile and chosen.get(field):
            return str(chosen[field])
        if os.environ.get(env):
            return os.environ[env]
        return str(chosen[field]) if chosen.get(field) else None

    key = pick(api_key, "api_key", "LAKEPLAN_API_KEY")
    if not key:
        raise ConfigurationError(
            "no lakeplan API key: pass Client(api_key=...), set LAKEPLAN_API_KEY, or write "
            f"'profiles: {{{name}: {{api_key: ..., api_endpoint: ...}}}}' to {path} "
            "(`lakeplan admin key create` makes a key)"
        )
    return key, (pick(endpoint, "api_endpoint", "LAKEPLAN_API_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


# --------------------------------------------------------------------------- helpers


def _name(x: Any, what: str) -> str:
    """A ref, namespace or table argument as the name the API takes: a string, or one of the
    records this client returns (or any object with a `name`)."""
    if isinstance(x, Ref):
        return str(x)
    if isinstance(x, str) and x:
        return x
    n = getattr(x, "name", None)
    if isinstance(n, str) and n:
        return n
    raise TypeError(f"{what}: expected a name or a {what} object, got {x!r}")


def _seg(s: str) -> str:
    """A path segment, percent-encoded (`/`, `@` and `*` of ref expressions included)."""
    return urllib.parse.quote(s, safe="")


def _lazy(fetch: Callable[[], Iterable[T]], limit: Optional[int] = None) -> Iterator[T]:
    """An iterator that calls `fetch` on its first `next`, and stops after `limit` items."""
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer, got {limit!r}")

    def items() -> Iterator[T]:
        yield from fetch()

    return itertools.islice(items(), limit)


def _exists(get: Callable[[], Any], missing: type) -> bool:
    """Whether `get()` finds its object (False on the `missing` error; other errors raise)."""
    try:
        get()
        return True
    except missing:
        return False


def _unsupported(method: str, **given: Any) -> None:
    """Bauplan keywords the server cannot honour yet: refused when given, never ignored."""
    used = sorted(k for k, v in given.items() if v not in (None, False))
    if used:
        raise NotAvailableError(f"{method}: {', '.join(used)} not supported by the lakeplan API yet")


def _flight_location(endpoint: str) -> str:
    """A worker's endpoint (`http://host:port`) as a Flight location (`grpc+tcp://host:port`)."""
    u = urllib.parse.urlsplit(endpoint)
    if u.scheme not in ("http", "https") or not u.netloc:
        raise LakeplanConnectionError(f"the server named a worker endpoint that is not http(s)://host:port: {endpoint!r}")
    return ("grpc+tls://" if u.scheme == "https" else "grpc+tcp://") + u.netloc


def _flight_message(e: Exception) -> str:
    """A Flight error's message without gRPC's debug trailer."""
    return str(e).split(". gRPC client debug context", 1)[0].split(". Detail:", 1)[0].strip()


def _commit(body: Optional[str], properties: Optional[Dict[str, str]]) -> Dict[str, Any]:
    """Bauplan's `commit_body` / `commit_properties`, as the API's write bodies take them."""
    out: Dict[str, Any] = {}
    if body is not None:
        if not isinstance(body, str):
            raise TypeError(f"commit_body: expected a string, got {type(body).__name__}")
        out["commit_body"] = body
    if properties:
        if not isinstance(properties, dict):
            raise TypeError(f"commit_properties: expected a dict, got {type(properties).__name__}")
        out["commit_properties"] = {str(k): str(v) for k, v in properties.items()}
    return out


def _switch(value: Union[bool, str, None], what: str) -> bool:
    """One of Bauplan's run switches: True/False or 'on'/'off' (None: on)."""
    if value is None or isinstance(value, bool):
        return value is not False
    if isinstance(value, str) and value.lower() in ("on", "off"):
        return value.lower() == "on"
    raise ValueError(f"{what}: expected True, False, 'on' or 'off', got {value!r}")


def _param_args(parameters: Optional[Dict[str, Any]]) -> List[str]:
    """Run parameters as the API's `name=value` texts (None: the project's default)."""
    out = []
    for k, v in (parameters or {}).items():
        if not isinstance(k, str) or not k.strip() or "=" in k:
            raise ValueError(f"parameters: {k!r} is not a parameter name")
        if v is None:
            continue
        if isinstance(v, bool):
            text = "true" if v else "false"
        elif isinstance(v, (int, float, str)):
            text = str(v)
        else:
            raise TypeError(f"parameters[{k!r}]: expected a str, int, float, bool or None, got {type(v).__name__}")
        out.append(f"{k}={text}")
    return out


def project_files(project_dir: Union[str, os.PathLike]) -> List[Tuple[str, Path]]:
    """The files a run uploads: `(path inside the project, with '/', file)`, sorted. Hidden
    files and folders, `__pycache__` and symbolic links are left out (as `lakeplan run` does)."""
    root = Path(project_dir)
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a project folder")
    files, stack = [], [root]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for e in entries:
                if e.name.startswith(".") or e.name == "__pycache__":
                    continue
                if e.is_dir(follow_symlinks=False):
                    stack.append(Path(e.path))
                elif e.is_file(follow_symlinks=False):
                    files.append((Path(e.path).relative_to(root).as_posix(), Path(e.path)))
    return sorted(files)


def zip_project(project_dir: Union[str, os.PathLike]) -> bytes:
    """The project's files (`project_files`) as the zip `Client.run` uploads. Raises
    `PayloadTooLargeError` over the server's default body limit."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, path in project_files(project_dir):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())
    data = buf.getvalue()
    if len(data) > MAX_PROJECT_BYTES:
        raise PayloadTooLargeError(
            f"the project in {project_dir} zips to {len(data)} bytes: more than the {MAX_PROJECT_BYTES} "
            "a run uploads (the server's body limit)",
            type="PayloadTooLarge",
        )
    return data


def is_truncated(table: pa.Table) -> bool:
    """Whether `Client.query` (or `scan`) returned only the first rows of a longer result."""
    return (table.schema.metadata or {}).get(TRUNCATED_KEY) == b"true"


def quote_identifier(name: str) -> str:
    """A SQL identifier, double-quoted (so case and odd characters survive)."""
    return '"' + name.replace('"', '""') + '"'


def _json_default(v: Any) -> Any:
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.hex()
    return str(v)  # Decimal, and anything else pyarrow hands back


# --------------------------------------------------------------------------- the client


class Client:
    """A client of one lakeplan server, acting as the user of its API key.

    The key and endpoint come from the first that has them: the `api_key` / `endpoint`
    arguments; the profile named by `profile`; the environment (`LAKEPLAN_API_KEY`,
    `LAKEPLAN_API_ENDPOINT`); the profile named by `LAKEPLAN_PROFILE`, else profile `default`, of
    `~/.lakeplan/config.yaml` (or `config_file_path`)::

        profiles:
          default:
            api_key: lpk_...
            api_endpoint: http://127.0.0.1:8181

    `timeout` (Bauplan: `client_timeout`) bounds each request, in seconds; `client_timeout`
    also bounds how long `run` waits for its job (default 1800 s).

    Query rows never pass through the server: a worker answers them. `query_transport` says
    how they are fetched from it: `"flight"` (Arrow Flight `DoGet` with the single-use ticket
    the server hands out), `"http"` (an Arrow IPC stream from the worker's `/results/{ticket}`,
    for networks that pass only HTTP/1.1), or `"auto"` (the default: Flight when `pyarrow.flight`
    is available, else HTTP).
    """

    def __init__(
        self,
        profile: Optional[str] = None,
        api_key: Optional[str] = None,
        *,
        endpoint: Optional[str] = None,
        timeout: Optional[float] = None,
        client_timeout: Optional[float] = None,
        config_file_path: Union[str, os.PathLike, None] = None,
        query_transport: str = "auto",
    ):
        if query_transport not in QUERY_TRANSPORTS:
            raise ValueError(f"query_transport must be one of {', '.join(QUERY_TRANSPORTS)}, got {query_transport!r}")
        self._api_key, self.endpoint = resolve_credentials(profile, api_key, endpoint, config_file_path)
        self.query_transport = query_transport
        self._flight_clients: Dict[str, Any] = {}
        self.profile = profile
        # A negative `client_timeout` (no limit for `run`) leaves requests their default bound.
        self.timeout = float(timeout or (client_timeout if (client_timeout or 0) > 0 else None) or DEFAULT_TIMEOUT)
        self._job_timeout = float(client_timeout) if client_timeout is not None else DEFAULT_JOB_TIMEOUT

    def __repr__(self) -> str:
        return f"lakeplan.Client(endpoint={self.endpoint!r})"

    # ----------------------------------------------------------------------- transport

    def _call(self, method: str, path: str, **kw: Any) -> bytes:
        """One request's answer body (see `_send`)."""
        return self._send(method, path, **kw)[0]

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[Tuple[str, Any]] = (),
        body: Any = None,
        data: Optional[bytes] = None,
        content_type: Optional[str] = None,
        accept: str = "application/json",
        timeout: Optional[float] = None,
    ) -> Tuple[bytes, Any]:
        """One request: its answer's body and headers. `body` is sent as JSON, or `data` as is
        (of `content_type`). An error answer raises its typed exception (`exceptions._BY_TYPE`;
        a request about one tag by its name refines a missing ref to `TagNotFoundError`)."""
        query = [(k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in params if v is not None]
        url = self.endpoint + path + ("?" + urllib.parse.urlencode(query) if query else "")
        headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Accept": accept,
            "User-Agent": f"lakeplan-python/{__version__}",
        }
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            content_type = "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                return resp.read(), resp.headers
        except urllib.error.HTTPError as e:
            answer = e.read()
            e.close()
            kind = "tag" if path.startswith("/api/v1/tags/") else None
            raise error_from_response(e.code, answer, kind) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise LakeplanConnectionError(
                f"cannot reach the lakeplan server at {self.endpoint}: {reason}"
            ) from None

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return json.loads(self._call(method, path, **kw))

    # ----------------------------------------------------------------------- info

    def info(self, *, client_timeout: Optional[float] = None) -> Info:
        """Who this client's key is (tenant, user, scope) and the server's version."""
        d = self._json("GET", "/api/v1/info", timeout=client_timeout)
        return Info(
            tenant=d["tenant"],
            user=d["user"],
            scope=d["scope"],
            key_id=d["key_id"],
            can_merge_main=bool(d.get("can_merge_main")),
            server_version=d.get("version", ""),
            client_version=__version__,
            raw=d,
        )

    # ----------------------------------------------------------------------- branches and tags

    def _list_refs(self, kind: str, name: Optional[str], keep: Callable[[Ref], bool], limit: Optional[int]):
        def fetch() -> Iterator[Ref]:
            for d in self._json("GET", f"/api/v1/{_REFS[kind]}", params=[("name", name)]):
                r = Ref.from_json(d)
                if keep(r):
                    yield r

        return _lazy(fetch, limit)

    def _create_ref(self, kind: str, name: RefLike, from_ref: RefLike, if_not_exists: bool) -> Ref:
        body = {"name": _name(name, kind), "from_ref": _name(from_ref, "ref"), "if_not_exists": if_not_exists}
        return Ref.from_json(self._json("POST", f"/api/v1/{_REFS[kind]}", body=body))

    def _get_ref(self, kind: str, name: RefLike) -> Ref:
        return Ref.from_json(self._json("GET", f"/api/v1/{_REFS[kind]}/{_seg(_name(name, kind))}"))

    def _delete_ref(self, kind: str, name: RefLike, if_exists: bool) -> bool:
        path = f"/api/v1/{_REFS[kind]}/{_seg(_name(name, kind))}"
        return bool(self._json("DELETE", path, params=[("if_exists", if_exists)])["deleted"])

    def _rename_ref(self, kind: str, name: RefLike, new_name: RefLike) -> Ref:
        path = f"/api/v1/{_REFS[kind]}/{_seg(_name(name, kind))}/rename"
        return Ref.from_json(self._json("POST", path, body={"new_name": _name(new_name, kind)}))

    def get_branches(
        self, name: Optional[str] = None, *, user: Optional[str] = None, limit: Optional[int] = None
    ) -> Iterator[Branch]:
        """Branches whose name contains `name`, of `user`'s zone (`<user>.*`) if given."""
        zone = f"{user}." if user else ""
        return self._list_refs("branch", name, lambda r: r.name.startswith(zone), limit)

    def get_branch(self, branch: RefLike) -> Branch:
        return self._get_ref("branch", branch)

    def has_branch(self, branch: RefLike) -> bool:
        return _exists(lambda: self.get_branch(branch), BranchNotFoundError)

    def create_branch(self, branch: RefLike, from_ref: RefLike, *, if_not_exists: bool = False) -> Branch:
        """A new branch at `from_ref` (O(1): no data is copied)."""
        return self._create_ref("branch", branch, from_ref, if_not_exists)

    def delete_branch(self, branch: RefLike, *, if_exists: bool = False) -> bool:
        """Whether the branch was deleted (False only with `if_exists` and no such branch)."""
        return self._delete_ref("branch", branch, if_exists)

    def rename_branch(self, branch: RefLike, new_branch: RefLike) -> Branch:
        return self._rename_ref("branch", branch, new_branch)

    def merge_branch(
        self,
        source_ref: RefLike,
        into_branch: RefLike,
        *,
        commit_message: Optional[str] = None,
        commit_body: Optional[str] = None,
        commit_properties: Optional[Dict[str, str]] = None,
    ) -> Branch:
        """Merges `source_ref` into `into_branch` (three-way, at table level) and returns the
        branch at its new head (`raw["outcome"]`: up_to_date, fast_forward or merged). Tables
        changed on both sides raise `MergeConflictError` with `context["tables"]`."""
        path = f"/api/v1/branches/{_seg(_name(source_ref, 'ref'))}/merge"
        body = {
            "into": _name(into_branch, "branch"),
            "commit_message": commit_message,
            **_commit(commit_body, commit_properties),
        }
        d = self._json("POST", path, body=body)
        return Branch(name=d["into"], hash=d["hash"], raw=d)

    def get_tags(self, *, filter_by_name: Optional[str] = None, limit: Optional[int] = None) -> Iterator[Tag]:
        return self._list_refs("tag", filter_by_name, lambda r: True, limit)

    def get_tag(self, tag: RefLike) -> Tag:
        return self._get_ref("tag", tag)

    def has_tag(self, tag: RefLike) -> bool:
        return _exists(lambda: self.get_tag(tag), TagNotFoundError)

    def create_tag(self, tag: RefLike, from_ref: RefLike, *, if_not_exists: bool = False) -> Tag:
        return self._create_ref("tag", tag, from_ref, if_not_exists)

    def delete_tag(self, tag: RefLike, *, if_exists: bool = False) -> bool:
        return self._delete_ref("tag", tag, if_exists)

    def rename_tag(self, tag: RefLike, new_tag: RefLike) -> Tag:
        return self._rename_ref("tag", tag, new_tag)

    def diff(self, from_ref: RefLike, to_ref: RefLike) -> List[TableDiff]:
        """Tables added, removed and changed from `from_ref` to `to_ref` (not in Bauplan's API)."""
        params = [("from", _name(from_ref, "ref")), ("to", _name(to_ref, "ref"))]
        return [TableDiff.from_json(d) for d in self._json("GET", "/api/v1/diff", params=params)]

    # ----------------------------------------------------------------------- commits

    def get_commits(
        self,
        ref: RefLike,
        *,
        filter_by_message: Optional[str] = None,
        filter_by_author_username: Optional[str] = None,
        filter_by_author_name: Optional[str] = None,
        filter_by_author_email: Optional[str] = None,
        filter_by_authored_date: Optional[str] = None,
        filter_by_authored_date_start_at: Optional[str] = None,
        filter_by_authored_date_end_at: Optional[str] = None,
        filter_by_parent_hash: Optional[str] = None,
        filter_by_properties: Optional[Dict[str, str]] = None,
        filter: Optional[str] = None,  # noqa: A002 - Bauplan's name
        limit: Optional[int] = None,
    ) -> Iterator[Commit]:
        """The log of `ref`, newest first (first parents). The message and author filters are
        regular expressions; `filter_by_properties` must all match."""
        _unsupported(
            "get_commits",
            filter_by_author_email=filter_by_author_email,
            filter_by_authored_date=filter_by_authored_date,
            filter_by_authored_date_start_at=filter_by_authored_date_start_at,
            filter_by_authored_date_end_at=filter_by_authored_date_end_at,
            filter_by_parent_hash=filter_by_parent_hash,
            filter=filter,
        )
        if filter_by_author_username and filter_by_author_name:
            raise BadRequestError("get_commits: give filter_by_author_username or filter_by_author_name, not both")
        params = [
            ("message", filter_by_message),
            ("author", filter_by_author_username or filter_by_author_name),
            *(("property", f"{k}={v}") for k, v in (filter_by_properties or {}).items()),
        ]
        at = _name(ref, "ref")

        def fetch() -> Iterator[Commit]:
            start, seen, size = at, 0, _COMMITS_PAGE
            while True:
                want = size if limit is None else min(size, limit)
                page = self._json("GET", f"/api/v1/refs/{_seg(start)}/commits", params=[*params, ("limit", want)])
                for d in page[seen:]:
                    yield Commit.from_json(d)
                if len(page) < want:
                    return
                if seen == 0:
                    # Later pages start at the first page's first commit: commits made
                    # meanwhile do not shift them.
                    start = "@" + page[0]["hash"]
                seen, size = len(page), size * 2

        return _lazy(fetch, limit)

    # ----------------------------------------------------------------------- namespaces

    def get_namespaces(
        self, ref: RefLike, *, filter_by_name: Optional[str] = None, limit: Optional[int] = None
    ) -> Iterator[Namespace]:
        """Namespaces at `ref` whose name contains `filter_by_name`."""
        path = f"/api/v1/refs/{_seg(_name(ref, 'ref'))}/namespaces"

        def fetch() -> Iterator[Namespace]:
            for n in self._json("GET", path):
                if filter_by_name is None or filter_by_name in n:
                    yield Namespace(name=n, raw=n)

        return _lazy(fetch, limit)

    def get_namespace(self, namespace: Union[str, Namespace], ref: RefLike) -> Namespace:
        name = _name(namespace, "namespace")
        for ns in self.get_namespaces(ref):
            if ns.name == name:
                return ns
        raise NamespaceNotFoundError(
            f"namespace '{name}' not found at ref '{_name(ref, 'ref')}'",
            status=404,
            type="NamespaceNotFound",
            context={"namespace": name},
        )

    def has_namespace(self, namespace: Union[str, Namespace], ref: RefLike) -> bool:
        return _exists(lambda: self.get_namespace(namespace, ref), NamespaceNotFoundError)

    def create_namespace(
        self,
        namespace: Union[str, Namespace],
        branch: RefLike,
        *,
        commit_body: Optional[str] = None,
        commit_properties: Optional[Dict[str, str]] = None,
        if_not_exists: bool = False,
    ) -> Namespace:
        name = _name(namespace, "namespace")
        path = f"/api/v1/branches/{_seg(_name(branch, 'branch'))}/namespaces"
        try:
            d = self._json("POST", path, body={"name": name, **_commit(commit_body, commit_properties)})
        except NamespaceExistsError:
            if not if_not_exists:
                raise
            d = None
        return Namespace(name=name, raw=d)

    def delete_namespace(
        self,
        namespace: Union[str, Namespace],
        branch: RefLike,
        *,
        if_exists: bool = False,
        commit_body: Optional[str] = None,
        commit_properties: Optional[Dict[str, str]] = None,
    ) -> Branch:
        """Deletes an empty namespace (a commit); returns the branch at that commit."""
        b = _name(branch, "branch")
        path = f"/api/v1/branches/{_seg(b)}/namespaces/{_seg(_name(namespace, 'namespace'))}"
        try:
            return self._write(self._json("DELETE", path, body=_commit(commit_body, commit_properties) or None))
        except NamespaceNotFoundError:
            if not if_exists:
                raise
            return self.get_branch(b)

    # ----------------------------------------------------------------------- tables

    @staticmethod
    def _write(d: Dict[str, Any]) -> Branch:
        """A write's answer (`{branch, hash}`) as the branch at the commit it made."""
        return Branch(name=d["branch"], hash=d["hash"], raw=d)

    def get_tables(
        self,
        ref: RefLike,
        *,
        namespace: Optional[Union[str, Namespace]] = None,
        filter_by_name: Optional[str] = None,
        filter_by_namespace: Optional[str] = None,
        limit: Optional[int] = None,
    ) -> Iterator[Table]:
        """Tables at `ref`, of `namespace` (Bauplan: `filter_by_namespace`) if given, whose name
        contains `filter_by_name`."""
        ns = namespace if namespace is not None else filter_by_namespace
        params = [("namespace", _name(ns, "namespace") if ns is not None else None)]
        path = f"/api/v1/refs/{_seg(_name(ref, 'ref'))}/tables"

        def fetch() -> Iterator[Table]:
            for d in self._json("GET", path, params=params):
                if filter_by_name is None or filter_by_name in d["name"]:
                    yield Table.from_json(d)

        return _lazy(fetch, limit)

    def get_table(
        self, table: Union[str, Table], ref: RefLike, *, namespace: Optional[str] = None
    ) -> TableWithMetadata:
        """A table at `ref` with its schema (field ids), partitions, size and snapshots. `table`
        is `name` (in `namespace`, default `default`) or `namespace.name`."""
        path = f"/api/v1/refs/{_seg(_name(ref, 'ref'))}/tables/{_seg(_table_name(table))}"
        return TableWithMetadata.from_json(self._json("GET", path, params=[("namespace", namespace)]))

    def has_table(self, table: Union[str, Table], ref: RefLike, *, namespace: Optional[str] = None) -> bool:
        return _exists(lambda: self.get_table(table, ref, namespace=namespace), TableNotFoundError)

    def delete_table(
        self,
        table: Union[str, Table],
        branch: RefLike,
        *,
        namespace: Optional[str] = None,
        if_exists: bool = False,
        commit_body: Optional[str] = None,
        commit_properties: Optional[Dict[str, str]] = None,
    ) -> Branch:
        """Removes a table from a branch (a commit; its files stay for other refs)."""
        path = f"/api/v1/branches/{_seg(_name(branch, 'branch'))}/tables/{_seg(_table_name(table))}"
        params = [("namespace", namespace), ("if_exists", if_exists)]
        body = _commit(commit_body, commit_properties) or None
        return self._write(self._json("DELETE", path, params=params, body=body))

    def revert_table(
        self,
        table: Union[str, Table],
        source_ref: RefLike,
        into_branch: RefLike,
        *,
        namespace: Optional[str] = None,
        replace: Optional[bool] = None,
        commit_body: Optional[str] = None,
        commit_properties: Optional[Dict[str, str]] = None,
    ) -> Branch:
        """Makes `into_branch`'s table what it is at `source_ref` (no file is copied). The table
        is always replaced if it exists: `replace=False` is refused."""
        if replace is False:
            raise NotAvailableError("revert_table: replace=False is not supported: the table is always replaced")
        path = f"/api/v1/branches/{_seg(_name(into_branch, 'branch'))}/tables/{_seg(_table_name(table))}/revert"
        body = {"source_ref": _name(source_ref, "ref"), "namespace": namespace, **_commit(commit_body, commit_properties)}
        return self._write(self._json("POST", path, body=body))

    def _table_at(self, table: str, namespace: Optional[str], written: Branch) -> TableWithMetadata:
        return self.get_table(table, f"{written.name}@{written.hash}", namespace=namespace)

    def create_table(
        self,
        table: str,
        search_uri: str,
        branch: Optional[RefLike] = None,
        *,
        namespace: Optional[str] = None,
        partitioned_by: Optional[str] = None,
        replace: Optional[bool] = None,
        args: Optional[Dict[str, str]] = None,
        priority: Optional[int] = None,
        client_timeout: Optional[float] = None,
    ) -> TableWithMetadata:
        """Creates an empty table whose schema is inferred from the files at `search_uri` (a
        file, a folder or a glob; `s3://` unless the server allows local paths), on `branch`
        (default `main`). `partitioned_by` is e.g. `"day(pickup_at), vendor"`. Then
        `import_data` fills it."""
        b = _name(branch, "branch") if branch is not None else "main"
        body = {
            "table": table,
            "search_uri": search_uri,
            "namespace": namespace,
            "partitioned_by": partitioned_by,
            "replace": bool(replace),
        }
        d = self._json("POST", f"/api/v1/branches/{_seg(b)}/tables", body=body, timeout=client_timeout)
        return self._table_at(table, namespace, self._write(d))

    def plan_table_creation(
        self,
        table: str,
        search_uri: str,
        branch: Optional[RefLike] = None,
        *,
        namespace: Optional[str] = None,
        partitioned_by: Optional[str] = None,
        replace: Optional[bool] = None,
        args: Optional[Dict[str, str]] = None,
        priority: Optional[int] = None,
        client_timeout: Optional[float] = None,
    ) -> TableCreatePlan:
        """The schema `create_table` would give, without creating anything; files that disagree
        on a column's type are listed in `plan["conflicts"]` (then `can_auto_apply` is False)."""
        body = {
            "table": table,
            "search_uri": search_uri,
            "branch": _name(branch, "branch") if branch is not None else "main",
            "namespace": namespace,
            "partitioned_by": partitioned_by,
            "replace": bool(replace),
        }
        return TableCreatePlan(plan=self._json("POST", "/api/v1/table-plans", body=body, timeout=client_timeout))

    def apply_table_creation_plan(
        self,
        plan: Union[TableCreatePlan, Dict[str, Any], str],
        *,
        args: Optional[Dict[str, str]] = None,
        priority: Optional[int] = None,
        client_timeout: Optional[float] = None,
    ) -> TableWithMetadata:
        """Creates the table a plan describes (a `TableCreatePlan`, its dict, or the plan as
        JSON or YAML text as `lakeplan table create-plan --save-plan` writes it)."""
        if isinstance(plan, TableCreatePlan):
            plan = plan.plan
        elif isinstance(plan, str):
            plan = _load_plan_text(plan)
        d = self._json("POST", "/api/v1/table-plans/apply", body={"plan": plan}, timeout=client_timeout)
        return self._table_at(plan["table"], None, self._write(d))

    def import_data(
        self,
        table: str,
        search_uri: str,
        branch: Optional[RefLike] = None,
        *,
        namespace: Optional[str] = None,
        continue_on_error: bool = False,
        import_duplicate_files: bool = False,
        best_effort: bool = False,
        preview: Optional[str] = None,
        args: Optional[Dict[str, str]] = None,
        priority: Optional[int] = None,
        client_timeout: Optional[float] = None,
        detach: bool = False,
    ) -> ImportResult:
        """Appends the files at `search_uri` to a table on `branch` (default `main`): one commit,
        or nothing. Files imported before are skipped unless `import_duplicate_files`."""
        _unsupported("import_data", best_effort=best_effort, preview=preview, detach=detach)
        b = _name(branch, "branch") if branch is not None else "main"
        path = f"/api/v1/branches/{_seg(b)}/tables/{_seg(_table_name(table))}/import"
        body = {
            "search_uri": search_uri,
            "namespace": namespace,
            "continue_on_error": continue_on_error,
            "import_duplicate_files": import_duplicate_files,
        }
        return ImportResult.from_json(self._json("POST", path, body=body, timeout=client_timeout))

    # ----------------------------------------------------------------------- queries

    def query(
        self,
        query: str,
        *,
        ref: Optional[RefLike] = None,
        max_rows: Optional[int] = None,
        cache: Optional[str] = None,
        namespace: Optional[str] = None,
        args: Optional[Dict[str, str]] = None,
        priority: Optional[int] = None,
        client_timeout: Optional[float] = None,
    ) -> pa.Table:
        """Runs one read-only SQL statement at `ref` (default `main`); unqualified table names are
        in `namespace` (default `default`). Returns a pyarrow Table of at most `max_rows` rows;
        when the query had more, `is_truncated(table)` is True (the schema's metadata has
        `lakeplan.truncated: true`). A result cut short though no `max_rows` was given also
        warns (`ResultTruncatedWarning`). (`cache`, `args` and `priority` are accepted for
        Bauplan's sake and not used.)"""
        if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 0):
            raise ValueError(f"max_rows must be a non-negative integer, got {max_rows!r}")
        body = {
            "sql": query,
            "ref": _name(ref, "ref") if ref is not None else None,
            "namespace": namespace,
            "max_rows": max_rows,
        }
        if self._flight_module() is not None:
            table, truncated = self._query_flight(body, max_rows, client_timeout)
        else:
            raw, headers = self._send("POST", "/api/v1/query", body=body, accept=ARROW_STREAM, timeout=client_timeout)
            table = pa.ipc.open_stream(raw).read_all()
            truncated = str(headers.get(TRUNCATED_HEADER, "")).strip().lower() == "true"
        if not truncated:
            return table
        if max_rows is None:
            warnings.warn(
                f"the server returned only the first {table.num_rows} rows of the query's result",
                ResultTruncatedWarning,
                stacklevel=2,
            )
        return table.replace_schema_metadata({**(table.schema.metadata or {}), TRUNCATED_KEY: b"true"})

    def _flight_module(self) -> Any:
        """`pyarrow.flight` when queries go over Flight, else None."""
        if self.query_transport == "http":
            return None
        try:
            import pyarrow.flight as flight
        except ImportError:
            if self.query_transport == "flight":
                raise NotAvailableError("query_transport='flight': this pyarrow has no pyarrow.flight") from None
            return None
        return flight

    def _query_flight(self, body: Dict[str, Any], max_rows: Optional[int], timeout: Optional[float]) -> Tuple[pa.Table, bool]:
        """The rows by Arrow Flight: the server answers a worker's endpoint and a single-use
        ticket, and `DoGet` on the worker streams them. One row more than `max_rows` is asked
        for, so that a cut result is known."""
        flight = self._flight_module()
        ask = dict(body, max_rows=None if max_rows is None else max_rows + 1)
        t = self._json("POST", "/api/v1/query", body=ask, accept=FLIGHT_TICKET, timeout=timeout)
        endpoint = t["endpoint"]
        location = _flight_location(endpoint)
        client = self._flight_clients.get(location)
        if client is None:
            client = self._flight_clients[location] = flight.FlightClient(location)
        # A ticket is good only for the key that ran the query.
        auth = [(b"authorization", f"Bearer {self._api_key}".encode())]
        options = flight.FlightCallOptions(timeout=timeout or self.timeout, headers=auth)
        try:
            table = client.do_get(flight.Ticket(t["ticket"].encode()), options).read_all()
        except flight.FlightUnavailableError as e:
            raise LakeplanConnectionError(f"cannot reach the worker at {endpoint}: {e}") from None
        except flight.FlightTimedOutError as e:
            raise RequestTimeoutError(f"fetching the rows from {endpoint}: {e}", status=408, type="RequestTimeout") from None
        except pa.ArrowInvalid as e:
            raise SqlError(_flight_message(e), status=400, type="Sql") from None
        except pa.ArrowKeyError as e:  # gRPC NOT_FOUND: the ticket expired before the fetch
            raise NotFoundError(_flight_message(e), status=404, type="NotFound") from None
        except flight.FlightError as e:
            raise ServerError(f"fetching the rows from {endpoint}: {_flight_message(e)}", status=500, type="Flight") from None
        if max_rows is not None and table.num_rows > max_rows:
            return table.slice(0, max_rows), True
        return table, False

    def query_to_generator(self, query: str, **kw: Any) -> Iterator[Dict[str, Any]]:
        """The rows of `query` as dicts (the query runs on the first `next`)."""

        def rows() -> Iterator[Dict[str, Any]]:
            for batch in self.query(query, **kw).to_batches():
                yield from batch.to_pylist()

        return rows()

    def query_to_parquet_file(self, path: Union[str, os.PathLike], query: str, **kw: Any) -> Path:
        import pyarrow.parquet as pq

        pq.write_table(self.query(query, **kw), str(path))
        return Path(path)

    def query_to_csv_file(self, path: Union[str, os.PathLike], query: str, **kw: Any) -> Path:
        import pyarrow.csv as pcsv

        pcsv.write_csv(self.query(query, **kw), str(path))
        return Path(path)

    def query_to_json_file(
        self, path: Union[str, os.PathLike], query: str, *, file_format: str = "json", **kw: Any
    ) -> Path:
        """The rows as a JSON array (`file_format="json"`) or one object a line (`"jsonl"`)."""
        if file_format not in ("json", "jsonl"):
            raise ValueError(f"file_format must be 'json' or 'jsonl', got {file_format!r}")
        rows = self.query(query, **kw).to_pylist()
        with open(path, "w", encoding="utf-8") as f:
            if file_format == "json":
                json.dump(rows, f, default=_json_default)
            else:
                for row in rows:
                    f.write(json.dumps(row, default=_json_default) + "\n")
        return Path(path)

    def scan(
        self,
        table: Union[str, Table],
        *,
        ref: Optional[RefLike] = None,
        columns: Optional[Sequence[str]] = None,
        filters: Optional[str] = None,
        limit: Optional[int] = None,
        cache: Optional[str] = None,
        namespace: Optional[str] = None,
        args: Optional[Dict[str, str]] = None,
        priority: Optional[int] = None,
        client_timeout: Optional[float] = None,
    ) -> pa.Table:
        """`columns` of `table` (all by default) at `ref`, the rows where the SQL predicate
        `filters` holds (e.g. `"fare > 10 AND vendor = 'yell'"`), at most `limit` of them."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ValueError(f"limit must be a non-negative integer, got {limit!r}")
        if isinstance(columns, str):
            raise TypeError("columns: expected a list of column names, got a string")
        cols = ", ".join(quote_identifier(c) for c in columns) if columns else "*"
        sql = f"SELECT {cols} FROM {'.'.join(quote_identifier(p) for p in _table_name(table).split('.'))}"
        if filters:
            sql += f" WHERE ({filters})"
        if limit is not None:
            sql += f" LIMIT {limit}"
        return self.query(sql, ref=ref, namespace=namespace, client_timeout=client_timeout)

    # ----------------------------------------------------------------------- jobs

    def run(
        self,
        project_dir: Union[str, os.PathLike, None] = None,
        *,
        ref: Optional[RefLike] = None,
        namespace: Optional[Union[str, Namespace]] = None,
        parameters: Optional[Dict[str, Union[str, int, float, bool, None]]] = None,
        cache: Union[bool, str, None] = None,
        transaction: Union[bool, str, None] = None,
        dry_run: Optional[bool] = None,
        strict: Union[bool, str, None] = None,
        preview: Optional[str] = None,
        args: Optional[Dict[str, str]] = None,
        priority: Optional[int] = None,
        client_timeout: Optional[float] = None,
        detach: bool = False,
        strict_python: bool = False,
    ) -> RunState:
        """Runs the pipeline project in `project_dir` (default: the current folder) on the server,
        publishing to branch `ref` (default `main`), and waits for it to end.

        The project's files are uploaded as a zip (hidden folders and files and `__pycache__`
        left out; at most 16 MiB zipped). `parameters` override the project's (`None` keeps the
        project's default). `cache`, `transaction` and `strict` take True/False or Bauplan's
        `'on'`/`'off'` (default on): `cache='off'` recomputes every model, `transaction='off'`
        writes the branch directly instead of through a temporary branch merged at the end,
        `strict='off'` lets failed expectations pass. `dry_run` computes without writing.
        `strict_python` (lakeplan's) fails functions whose imports are not declared.

        Returns a `RunState`: `job_status` SUCCESS, FAILED or CANCELLED, `error`, `user_logs`
        (the job's log), `job_id`. As in Bauplan, a run that fails is returned, not raised; so is
        a project that does not plan (then `job_id` is None and `error` gives file and line).
        Requests the server refuses raise as elsewhere (`ForbiddenError` for a branch outside
        the key's zone, `BranchNotFoundError`, ...). With `detach=True` the state is returned as
        soon as the job is recorded (`job_status` RUNNING): follow it with `get_job(job_id)`.
        Waiting ends after `client_timeout` seconds (default: the client's `client_timeout`, else
        1800; negative: no limit) with `JobTimeoutError`; the job goes on in the server.
        `preview` ('on'/'head', 'tail', 'off') puts each model's first or last 10 rows in the
        job's log (`user_logs`). `args` (Bauplan's free-form flags, `{key: value}`) and
        `priority` (1 lowest to 10 highest) are checked and recorded in the job (`get_job`):
        runs start at once here, never queued, so nothing else changes. Plan errors name
        files under `project_dir` as given (`my_project/models.py:31`)."""
        if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 10):
            raise ValueError(f"priority: expected an integer from 1 (lowest) to 10 (highest), got {priority!r}")
        if args is not None and (not isinstance(args, dict) or any(not isinstance(k, str) or not k.strip() for k in args)):
            raise ValueError("args: expected a dict of non-empty string keys to values")
        if preview is not None and (not isinstance(preview, str) or preview.lower() not in ("on", "off", "head", "tail")):
            raise ValueError(f"preview: expected 'on', 'off', 'head' or 'tail', got {preview!r}")
        on = {k: _switch(v, k) for k, v in (("cache", cache), ("transaction", transaction), ("strict", strict))}
        directory = Path(project_dir if project_dir is not None else ".")
        zipped = zip_project(directory)
        target = _name(ref, "ref") if ref is not None else None
        ns = _name(namespace, "namespace") if namespace is not None else None
        query: List[Tuple[str, Any]] = [("ref", target), ("namespace", ns), ("project_dir", str(directory))]
        query += [("param", p) for p in _param_args(parameters)]
        query += [("arg", f"{k}={v}") for k, v in (args or {}).items()]
        query += [
            ("priority", priority),
            ("dry_run", bool(dry_run)),
            ("no_cache", not on["cache"]),
            ("strict", on["strict"]),
            ("transaction", on["transaction"]),
            ("strict_python", bool(strict_python)),
            ("preview", preview.lower() if preview is not None else None),
        ]
        ctx = RunExecutionContext(
            project_dir=str(directory.resolve()),
            ref=target,
            namespace=ns,
            dry_run=bool(dry_run),
            preview=preview,
            detach=detach,
            **{k: "on" if v else "off" for k, v in on.items()},
        )
        wait = self._job_timeout if client_timeout is None else float(client_timeout)
        deadline = None if wait < 0 else time.monotonic() + wait
        try:
            started = self._json(
                "POST",
                "/api/v1/runs",
                params=query,
                data=zipped,
                content_type="application/zip",
            )
        except BadRequestError as e:
            if e.type not in _PLANNING_ERRORS:
                raise
            where = {k: e.context[k] for k in ("file", "line") if k in e.context} or None
            return RunState(job_id=None, job_status="FAILED", error=e.message, ctx=ctx, error_location=where)
        job_id = started["job_id"]
        if detach:
            return RunState.from_job(self._json("GET", f"/api/v1/jobs/{_seg(job_id)}"), ctx)
        job = self._wait_for_job(job_id, deadline, wait)
        return RunState.from_job(job, ctx, self.get_job_logs(job_id))

    def _wait_for_job(self, job_id: str, deadline: Optional[float], wait: float) -> Dict[str, Any]:
        """The job's record once it has ended, polled at growing intervals (up to 1 s)."""
        delay = 0.05
        while True:
            job = self._json("GET", f"/api/v1/jobs/{_seg(job_id)}")
            if job.get("status") != "running":
                return job
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise JobTimeoutError(
                    f"job {job_id} was still running after {wait:g} s (client_timeout); it goes on in "
                    f"the server: get_job({job_id!r}) follows it, cancel_job({job_id!r}) stops it",
                    job_id=job_id,
                )
            time.sleep(delay if deadline is None else min(delay, deadline - now))
            delay = min(delay * 2, 1.0)

    def get_jobs(
        self,
        *,
        filter_by_ids: Optional[Sequence[str]] = None,
        filter_by_users: Optional[Sequence[str]] = None,
        filter_by_statuses: Optional[Sequence[str]] = None,
        limit: Optional[int] = None,
    ) -> Iterator[Job]:
        """Pipeline runs of the tenant, newest first. Statuses are Bauplan's (`COMPLETE`, `FAIL`,
        ...) or the server's (`succeeded`, `failed`, ...)."""
        ids = set(filter_by_ids or ())
        users = set(filter_by_users or ())
        statuses = {s.upper() for s in filter_by_statuses or ()}
        filtered = bool(ids or users or statuses)

        def fetch() -> Iterator[Job]:
            # The server's list has a limit only: filters are applied here, over all jobs.
            n = 1_000_000 if filtered or limit is None else limit
            for d in self._json("GET", "/api/v1/jobs", params=[("limit", n)]):
                j = Job.from_json(d)
                if (
                    (not ids or j.id in ids)
                    and (not users or j.user in users)
                    and (not statuses or {j.status, j.human_readable_status.upper()} & statuses)
                ):
                    yield j

        return _lazy(fetch, limit)

    def get_job(self, job_id: Union[str, Job]) -> Job:
        return Job.from_json(self._json("GET", f"/api/v1/jobs/{_seg(_job_id(job_id))}"))

    def get_job_logs(self, job_id: Union[str, Job]) -> str:
        """The run's log, as text."""
        return self._call("GET", f"/api/v1/jobs/{_seg(_job_id(job_id))}/logs", accept="text/plain").decode(
            "utf-8", "replace"
        )

    def cancel_job(self, job_id: Union[str, Job]) -> Job:
        """Stops a running pipeline (its target branch stays as it was)."""
        return Job.from_json(self._json("POST", f"/api/v1/jobs/{_seg(_job_id(job_id))}/cancel"))


def _table_name(table: Union[str, Table]) -> str:
    return table.fqn if isinstance(table, Table) else _name(table, "table")


def _job_id(job: Union[str, Job]) -> str:
    return job.id if isinstance(job, Job) else _name(job, "job")


def _load_plan_text(text: str) -> Dict[str, Any]:
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        import yaml
    except ImportError:
        raise LakeplanError("a plan given as YAML text needs PyYAML (pass the plan's dict instead)") from None
    return yaml.safe_load(text)
