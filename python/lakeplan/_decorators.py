"""Pipeline decorators: `@model`, `@python`, `@expectation`, `@resources`, `@extras`.

They are identity functions. The planner reads their arguments statically (see
`lakeplan/_analyze.py`, which never imports user code) and the worker calls the decorated
function directly, so at run time a decorator only records its arguments on the function (in
the `__lakeplan__` dict, for introspection and tests) and returns the very same object.

Each decorator works with and without parentheses: `@model`, `@model()`, `@model(name="x")`.
None of them validates its arguments: Bauplan-valid code must always import cleanly; the
planner reports wrong values with their file and line.
"""

from typing import Any, Callable, Dict, Optional

__all__ = ["model", "python", "expectation", "resources", "extras"]

MARK_ATTRIBUTE = "__lakeplan__"


def _mark(fn: Callable, key: str, value: Any) -> Callable:
    """Record `value` under `key` in `fn.__lakeplan__` and return `fn` itself."""
    try:
        marks = fn.__dict__.setdefault(MARK_ATTRIBUTE, {})
        marks[key] = value
    except (AttributeError, TypeError):
        # Builtins, functools.partial objects, ...: nothing to mark, still an identity.
        pass
    return fn


def _decorator(key: str, value: Any) -> Callable[[Callable], Callable]:
    """A decorator that marks the function with `value` under `key`."""

    def decorate(fn: Callable) -> Callable:
        return _mark(fn, key, value)

    return decorate


def _bare(first: Any, others: Dict[str, Any]) -> bool:
    """True when a decorator was applied without parentheses (`@model def f(...)`)."""
    return callable(first) and all(v is None for v in others.values())


def model(
    name: Optional[str] = None,
    columns: Optional[list] = None,
    partitioned_by: Any = None,
    materialization_strategy: Optional[str] = None,
    cache_strategy: Optional[str] = None,
    overwrite_filter: Optional[str] = None,
    internet_access: Optional[bool] = None,
    **kwargs: Any,
):
    """Mark a function as a model: a node that returns a table.

    `name` is the output table (default: the function name), `columns` the declared output
    columns, `materialization_strategy` "NONE" | "REPLACE" | "APPEND" | "OVERWRITE_PARTITIONS",
    `cache_strategy` "DEFAULT" | "NONE", `partitioned_by` and `overwrite_filter` as in Bauplan.
    """
    options = {
        "columns": columns,
        "partitioned_by": partitioned_by,
        "materialization_strategy": materialization_strategy,
        "cache_strategy": cache_strategy,
        "overwrite_filter": overwrite_filter,
        "internet_access": internet_access,
    }
    if _bare(name, options) and not kwargs:
        return _mark(name, "model", dict(options, name=None))
    return _decorator("model", dict(options, name=name, **kwargs))


def python(version: Optional[str] = None, pip: Optional[Dict[str, str]] = None, **kwargs: Any):
    """Declare the Python version and pip packages (`{"polars": "1.37"}`) a node runs with."""
    if _bare(version, {"pip": pip}) and not kwargs:
        return _mark(version, "python", {"version": None, "pip": None})
    return _decorator("python", dict(kwargs, version=version, pip=pip))


def expectation(*args: Any, **kwargs: Any):
    """Mark a function as an expectation: a node that returns a bool about its inputs."""
    if len(args) == 1 and _bare(args[0], {}) and not kwargs:
        return _mark(args[0], "expectation", {})
    return _decorator("expectation", dict(kwargs, args=list(args)) if args else dict(kwargs))


def resources(
    cpus: Optional[float] = None,
    memory: Any = None,
    memory_swap: Any = None,
    timeout: Optional[int] = None,
    **kwargs: Any,
):
    """Declare the CPUs, memory (bytes or "2GB"), swap and timeout (seconds) of a node."""
    options = {"memory": memory, "memory_swap": memory_swap, "timeout": timeout}
    if _bare(cpus, options) and not kwargs:
        return _mark(cpus, "resources", dict(options, cpus=None))
    return _decorator("resources", dict(options, cpus=cpus, **kwargs))


def extras(*args: Any, **kwargs: Any):
    """Accept Bauplan's `@extras(...)` (optional features of a node); recorded, otherwise unused."""
    if len(args) == 1 and _bare(args[0], {}) and not kwargs:
        return _mark(args[0], "extras", [])
    return _decorator("extras", list(args) if not kwargs else {"args": list(args), **kwargs})
