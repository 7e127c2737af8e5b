"""The errors `lakeplan.Client` raises, with Bauplan's names (`bauplan.exceptions` re-exports them).

Every error the server answers has one shape, `{"error": {"type", "message", "context"}}`, and
one status (crates/dataplane/src/error.rs). `error_from_response` turns it into an exception
through one table, `_BY_TYPE`: the server's `type` picks the class, the HTTP status is the
fallback for types this client does not know yet. Catch by HTTP meaning (`NotFoundError`,
`ConflictError`) or by what is missing or in conflict (`BranchNotFoundError`,
`MergeConflictError`)::

    LakeplanError
    ├─ ConfigurationError, LakeplanConnectionError, NotAvailableError, JobTimeoutError
    └─ LakeplanHTTPError(status, type, message, context)
       ├─ BadRequestError 400 ─ InvalidRefError ─ NotAWriteBranchRefError; InvalidDataError
       │                        ─ SchemaConflictError; InvalidNameError; InvalidOperationError;
       │                        NamespaceIsNotEmptyError; SqlError; PlanError
       ├─ UnauthorizedError 401, ForbiddenError 403
       ├─ NotFoundError 404 ─ ResourceNotFoundError ─ RefNotFoundError ─ BranchNotFoundError,
       │                      TagNotFoundError; TableNotFoundError; NamespaceNotFoundError; JobNotFoundError
       ├─ MethodNotAllowedError 405, RequestTimeoutError 408, PayloadTooLargeError 413,
       │  TooManyRequestsError 429
       ├─ ConflictError 409 ─ UpdateConflictError ─ RefExistsError ─ BranchExistsError, TagExistsError;
       │                      TableExistsError; NamespaceExistsError; BranchHeadChangedError;
       │                      MergeConflictError
       └─ ServerError 5xx ─ InternalError 500, BadGatewayError 502, ServiceUnavailableError 503,
                            GatewayTimeoutError 504

The short names (`NotFound`, `MergeConflict`, `Forbidden`, ...) are aliases of the same classes.
"""

import json
from typing import Any, Dict, Optional


class LakeplanError(Exception):
    """Every error of the lakeplan client."""


class ConfigurationError(LakeplanError):
    """No API key could be found, or a profile is missing or malformed."""


class LakeplanConnectionError(LakeplanError, ConnectionError):
    """The server could not be reached (or did not answer in time)."""


class NotAvailableError(LakeplanError, NotImplementedError):
    """A client method whose server side does not exist yet."""


class JobTimeoutError(LakeplanError, TimeoutError):
    """A job that had not ended when the client stopped waiting (`client_timeout`). The job goes
    on in the server: `job_id` names it for `get_job`, `get_job_logs` and `cancel_job`."""

    def __init__(self, message: str, *, job_id: str):
        super().__init__(message)
        self.job_id = job_id


class ResultTruncatedWarning(UserWarning):
    """A query result the server cut short though the client set no `max_rows`."""


class LakeplanHTTPError(LakeplanError):
    """An error answered by the server: `status` (HTTP), `type` (the server's error kind),
    `message` and `context` (details to act on, e.g. `context["tables"]` of a conflict)."""

    status: Optional[int] = None

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        type: str = "",  # noqa: A002 - the server's field name, as in Bauplan
        context: Optional[Dict[str, Any]] = None,
    ):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.type = type
        self.context = context or {}

    @property
    def code(self) -> Optional[int]:
        """The HTTP status (Bauplan's name for it)."""
        return self.status

    def __str__(self) -> str:
        return f"{self.message} ({self.status} {self.type})" if self.type else self.message


class BadRequestError(LakeplanHTTPError):
    status = 400


class InvalidRefError(BadRequestError):
    """A ref name or expression that is not valid (`a..b`, an ambiguous short hash)."""


class NotAWriteBranchRefError(InvalidRefError):
    """A write aimed at a tag or a commit: only branches are written."""


class InvalidDataError(BadRequestError):
    """Files that cannot be read or imported."""


class SchemaConflictError(InvalidDataError):
    """A file whose columns the table cannot take."""


class InvalidNameError(BadRequestError):
    """A table, namespace, tenant or user name that is not valid."""


class InvalidOperationError(BadRequestError):
    """An operation that cannot be done in the lake's current state (reverting an identical
    table, applying a plan with conflicts)."""


class NamespaceIsNotEmptyError(BadRequestError):
    """Deleting a namespace that still holds tables."""


class PlanError(BadRequestError):
    """A pipeline project that does not plan: `context["file"]` (as the user named it) and
    `context["line"]` say where."""

    status = 400


class SqlError(BadRequestError):
    """A query the SQL engine rejected (syntax, unknown table or column, not read-only)."""


class UnauthorizedError(LakeplanHTTPError):
    """No key, an unknown key or a revoked one."""

    status = 401


class ForbiddenError(LakeplanHTTPError):
    """A valid key that may not do this: read-only, outside its zone, merging into main."""

    status = 403


class NotFoundError(LakeplanHTTPError):
    status = 404


class ResourceNotFoundError(NotFoundError):
    pass


class RefNotFoundError(ResourceNotFoundError):
    pass


class BranchNotFoundError(RefNotFoundError):
    pass


class TagNotFoundError(RefNotFoundError):
    pass


class TableNotFoundError(ResourceNotFoundError):
    pass


class NamespaceNotFoundError(ResourceNotFoundError):
    pass


class JobNotFoundError(ResourceNotFoundError):
    pass


class MethodNotAllowedError(LakeplanHTTPError):
    status = 405


class RequestTimeoutError(LakeplanHTTPError):
    """The server gave up on the request (`--request-timeout-secs`)."""

    status = 408


class ConflictError(LakeplanHTTPError):
    status = 409


class UpdateConflictError(ConflictError):
    pass


class RefExistsError(UpdateConflictError):
    pass


class BranchExistsError(RefExistsError):
    pass


class TagExistsError(RefExistsError):
    pass


class TableExistsError(UpdateConflictError):
    pass


class NamespaceExistsError(UpdateConflictError):
    pass


class BranchHeadChangedError(UpdateConflictError):
    """A concurrent write changed the same tables of the branch first (`context["tables"]`)."""


class MergeConflictError(UpdateConflictError):
    """Both sides changed the same tables since the merge base (`context["tables"]`)."""


class PayloadTooLargeError(LakeplanHTTPError):
    status = 413


class TooManyRequestsError(LakeplanHTTPError):
    status = 429


class ServerError(LakeplanHTTPError):
    """5xx: the server failed (its log has the details)."""

    status = 500


class InternalError(ServerError):
    status = 500


class BadGatewayError(ServerError):
    status = 502


class ServiceUnavailableError(ServerError):
    status = 503


class GatewayTimeoutError(ServerError):
    status = 504


# The one table: the server's error `type` (crates/core/src/error.rs `Error::kind` and
# crates/dataplane/src/error.rs) → class. A `(type, kind)` row refines it by the kind of ref: the
# server's `context["kind"]` (`RefExists` has it), else the request's (a tag named in the path).
# A name that is neither a branch nor a tag is a missing branch, whichever method named it
# (`get_branch`, `import_data(branch=)`, `merge_branch`, `query(ref=)`, `get_tables`, ...): one
# condition, one class, and `BranchNotFoundError` is a `RefNotFoundError` for those who catch that.
_BY_TYPE = {
    "BadRequest": BadRequestError,
    "BadGateway": BadGatewayError,
    "InvalidInput": BadRequestError,
    "InvalidRef": InvalidRefError,
    "AmbiguousCommit": InvalidRefError,
    "NotAWriteBranch": NotAWriteBranchRefError,
    "InvalidData": InvalidDataError,
    "SchemaConflict": SchemaConflictError,
    "InvalidName": InvalidNameError,
    "InvalidOperation": InvalidOperationError,
    "NamespaceNotEmpty": NamespaceIsNotEmptyError,
    "Sql": SqlError,
    "PlanError": PlanError,
    "Unauthorized": UnauthorizedError,
    "Forbidden": ForbiddenError,
    "NotFound": NotFoundError,
    "RefNotFound": BranchNotFoundError,
    "CommitNotFound": RefNotFoundError,
    ("RefNotFound", "tag"): TagNotFoundError,
    "TableNotFound": TableNotFoundError,
    "NamespaceNotFound": NamespaceNotFoundError,
    "JobNotFound": JobNotFoundError,
    "RefExists": RefExistsError,
    ("RefExists", "branch"): BranchExistsError,
    ("RefExists", "tag"): TagExistsError,
    "TableExists": TableExistsError,
    "NamespaceExists": NamespaceExistsError,
    "Conflict": BranchHeadChangedError,
    "MergeConflict": MergeConflictError,
    "Exists": ConflictError,
    "RequirementFailed": UpdateConflictError,
    "RevertUnchanged": UpdateConflictError,
    "ServiceUnavailable": ServiceUnavailableError,
    "PayloadTooLarge": PayloadTooLargeError,
    "Storage": InternalError,
    "Metastore": InternalError,
    "Io": InternalError,
    "Internal": InternalError,
}

# Statuses without a (known) type: the class of the HTTP meaning.
_BY_STATUS = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    405: MethodNotAllowedError,
    408: RequestTimeoutError,
    409: ConflictError,
    413: PayloadTooLargeError,
    429: TooManyRequestsError,
    500: InternalError,
    502: BadGatewayError,
    503: ServiceUnavailableError,
    504: GatewayTimeoutError,
}


def error_class(status: int, type_: str, kind: Optional[str] = None) -> type:
    """The class for an error answer. A type whose class disagrees with the status (a server
    newer than this client, say) yields to the status."""
    cls = _BY_TYPE.get((type_, kind)) or _BY_TYPE.get(type_)
    if cls is not None and cls.status == status:
        return cls
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError if status >= 500 else LakeplanHTTPError


def error_from_response(status: int, body: bytes, kind: Optional[str] = None) -> LakeplanHTTPError:
    """The exception for an HTTP error answer (`kind`: `"tag"` when the request was about a tag
    by its name; the server's `context["kind"]` wins)."""
    type_, message, context = "", "", {}
    try:
        err = json.loads(body.decode("utf-8"))["error"]
        type_ = str(err.get("type") or "")
        message = str(err.get("message") or "")
        context = err.get("context") or {}
    except (ValueError, KeyError, TypeError, AttributeError):
        message = body.decode("utf-8", "replace").strip()[:500]
    if not message:
        message = f"HTTP {status}"
    if isinstance(context, dict) and context.get("kind") in ("branch", "tag"):
        kind = context["kind"]
    cls = error_class(status, type_, kind)
    return cls(message, status=status, type=type_, context=context)


# Short names for the same classes.
Unauthorized = UnauthorizedError
Forbidden = ForbiddenError
NotFound = NotFoundError
RefNotFound = RefNotFoundError
BranchNotFound = BranchNotFoundError
TagNotFound = TagNotFoundError
TableNotFound = TableNotFoundError
NamespaceNotFound = NamespaceNotFoundError
JobNotFound = JobNotFoundError
Conflict = ConflictError
MergeConflict = MergeConflictError
BranchHeadChanged = BranchHeadChangedError
RefExists = RefExistsError
BranchExists = BranchExistsError
TagExists = TagExistsError
TableExists = TableExistsError
NamespaceExists = NamespaceExistsError
BadRequest = BadRequestError
InvalidRef = InvalidRefError
InvalidData = InvalidDataError
PayloadTooLarge = PayloadTooLargeError
JobTimeout = JobTimeoutError

__all__ = sorted(
    [k for k, v in globals().items() if isinstance(v, type) and issubclass(v, Exception)]
    + ["error_class", "error_from_response"]
)
