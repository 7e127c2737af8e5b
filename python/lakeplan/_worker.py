"""Run one pipeline function: `python -m lakeplan._worker TASK.json` (inside the sandbox).

The contract is section 2 of docs/pipelines-internals.md. In short, TASK.json says which function
of which file to call, with which inputs (Arrow IPC files or parameter values); the worker

1. sets RLIMIT_AS to `memory_bytes` (when given) before reading inputs or importing user code,
2. loads the user module by path (the project dir first on `sys.path`, module name = file stem),
3. reads table inputs zero-copy (memory-mapped Arrow IPC files) and calls the function with them
   as keyword arguments,
4. for a model, converts the returned value to a pyarrow Table and writes it, uncompressed, in
   Arrow IPC file format to `output`; for an expectation, checks that it returned a bool,
5. writes the result JSON to `result`, with the objects the function saved (`bauplan.store`,
   configured from the task's `store`: `{"objects": {key: file}, "save_dir": folder}`) as
   `saved_objects: {key: {"file", "size"}}`.

On failure it prints the traceback to stderr, writes `{"ok": false, ...}` and exits 1. User
prints go to stdout/stderr unchanged, line-buffered so the runtime streams them as they happen.
Exit code 2 means the task file itself was unusable (no result file can be written then).
"""

import errno
import importlib.util
import json
import os
import sys
import time
import traceback
from typing import Any, Dict, Optional, Tuple

import pyarrow as pa
import pyarrow.ipc

EXIT_FAILED = 1
EXIT_BAD_TASK = 2


class BadReturn(Exception):
    """The function returned something the node kind does not accept."""


class TaskError(Exception):
    """TASK.json is missing a field or has a wrong value."""


# ---------------------------------------------------------------------------------------------
# Task, limits, module loading, inputs


def load_task(path: str) -> Dict[str, Any]:
    """Read and check TASK.json."""
    try:
        with open(path, encoding="utf-8") as f:
            task = json.load(f)
    except (OSError, ValueError) as exc:
        raise TaskError(f"cannot read task file {path}: {exc}") from exc
    if not isinstance(task, dict):
        raise TaskError(f"task file {path}: expected a JSON object")
    required = ["node", "kind", "module_file", "function", "result"]
    missing = [k for k in required if not task.get(k)]
    if missing:
        raise TaskError(f"task file {path}: missing {', '.join(missing)}")
    if task["kind"] not in ("model", "expectation"):
        raise TaskError(f"task file {path}: kind must be 'model' or 'expectation', not {task['kind']!r}")
    if task["kind"] == "model" and not task.get("output"):
        raise TaskError(f"task file {path}: a model task needs 'output'")
    if not isinstance(task.get("inputs", []), list):
        raise TaskError(f"task file {path}: 'inputs' must be a list")
    return task


def set_memory_limit(memory_bytes: Optional[int]) -> Optional[Tuple[int, int]]:
    """Lower the soft RLIMIT_AS to `memory_bytes`; return the previous limits (None if unset).

    Only the soft limit is set: the hard limit is the runtime's (`prlimit --as`), and keeping it
    lets the worker restore the soft limit to report a failure after user code ran out of memory.
    """
    if memory_bytes is None:
        return None
    import resource

    previous = resource.getrlimit(resource.RLIMIT_AS)
    soft = int(memory_bytes)
    hard = previous[1]
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    return previous


def restore_memory_limit(previous: Optional[Tuple[int, int]]) -> None:
    """Give back the address space taken away by `set_memory_limit` (best effort)."""
    if previous is None:
        return
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, previous)
    except (ImportError, ValueError, OSError):
        pass


def load_function(task: Dict[str, Any]):
    """Import the user module by path and return the function named in the task."""
    module_file = os.path.abspath(task["module_file"])
    project_dir = task.get("project_dir") or os.path.dirname(module_file)
    sys.path.insert(0, os.path.abspath(project_dir))
    stem = os.path.splitext(os.path.basename(module_file))[0]
    spec = importlib.util.spec_from_file_location(stem, module_file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {module_file} as a Python module")
    module = importlib.util.module_from_spec(spec)
    # Registered so dataclasses, pickling and `import <stem>` from helpers find it, unless the
    # name is taken already (a file named like a stdlib module must not replace it).
    registered = sys.modules.setdefault(stem, module) is module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if registered:
            sys.modules.pop(stem, None)
        raise
    name = task["function"]
    fn = getattr(module, name, None)
    if fn is None:
        raise AttributeError(f"{module_file} has no function '{name}'")
    if not callable(fn):
        raise TypeError(f"'{name}' in {module_file} is a {type(fn).__name__}, not a function")
    return fn


def read_table(path: str) -> pa.Table:
    """Read an Arrow IPC file zero-copy: the buffers point into the memory-mapped file."""
    source = pa.memory_map(path, "r")
    return pa.ipc.open_file(source).read_all()


def read_inputs(task: Dict[str, Any]) -> Dict[str, Any]:
    """The keyword arguments of the call: tables and parameter values by parameter name."""
    kwargs: Dict[str, Any] = {}
    for i, item in enumerate(task.get("inputs", [])):
        param = item.get("param") if isinstance(item, dict) else None
        if not param:
            raise TaskError(f"input #{i} of node '{task['node']}' has no 'param'")
        kind = item.get("kind")
        if kind == "table":
            # `paths`: one file per partition of a parallel scan, concatenated without copying
            # (the chunks point into each mapped file); `path`: one file.
            paths = item.get("paths") or [item.get("path")]
            if not all(isinstance(p, str) and p for p in paths):
                raise TaskError(f"input '{param}' of node '{task['node']}' has no path")
            tables = [read_table(p) for p in paths]
            kwargs[param] = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        elif kind == "parameter":
            kwargs[param] = item.get("value")
        elif kind == "secret":
            # A secret parameter, opened by the lake for this function only: read once from
            # this node's private folder, and the file removed so nothing else finds it.
            path = item.get("path")
            if not isinstance(path, str) or not path:
                raise TaskError(f"input '{param}' of node '{task['node']}' has no path")
            with open(path, encoding="utf-8") as f:
                kwargs[param] = f.read()
            try:
                os.remove(path)
            except OSError:
                pass
        else:
            raise TaskError(f"input '{param}' of node '{task['node']}': unknown kind {kind!r}")
    return kwargs


# ---------------------------------------------------------------------------------------------
# Return values


def _type_name(value: Any) -> str:
    cls = type(value)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _is_instance_of(value: Any, module: str, class_name: str) -> bool:
    """isinstance against a class of a library that is only checked if already imported (the
    user's code imported it to build the value), so pandas/polars are never imported here."""
    lib = sys.modules.get(module)
    cls = getattr(lib, class_name, None) if lib is not None else None
    return cls is not None and isinstance(value, cls)


def _from_pandas(df: Any) -> pa.Table:
    # A named index (e.g. after groupby) is data: keep it as columns. A default RangeIndex is not.
    keep_index = any(name is not None for name in df.index.names)
    table = pa.Table.from_pandas(df, preserve_index=keep_index)
    return table.replace_schema_metadata(None)


def to_table(value: Any, function: str) -> pa.Table:
    """Convert a model's return value to a pyarrow Table, or raise BadReturn."""
    if isinstance(value, pa.Table):
        return value
    if isinstance(value, pa.RecordBatch):
        return pa.Table.from_batches([value])
    if _is_instance_of(value, "pandas", "DataFrame"):
        return _from_pandas(value)
    if _is_instance_of(value, "polars", "DataFrame"):
        return value.to_arrow()
    if isinstance(value, list):
        if not value:
            raise BadReturn(f"function '{function}' returned an empty list, expected a table (no rows to infer columns from)")
        bad = next((row for row in value if not isinstance(row, dict)), None)
        if bad is not None:
            raise BadReturn(f"function '{function}' returned a list of {_type_name(bad)}, expected a table (a list of dicts works)")
        return pa.Table.from_pylist(value)
    raise BadReturn(f"function '{function}' returned {_type_name(value)}, expected a table")


def to_bool(value: Any, function: str) -> bool:
    """An expectation's return value as a bool: bool, numpy bool or a non-null pyarrow boolean
    scalar; anything else raises BadReturn."""
    if isinstance(value, bool):
        return value
    if type(value).__module__ == "numpy" and getattr(getattr(value, "dtype", None), "kind", None) == "b" and getattr(value, "ndim", 1) == 0:
        return bool(value)
    if isinstance(value, pa.BooleanScalar) and value.is_valid:
        return bool(value.as_py())
    raise BadReturn(f"function '{function}' returned {_type_name(value)}, expected a bool")


def write_table(table: pa.Table, path: str) -> None:
    """Write `table` uncompressed in Arrow IPC file format, atomically (temp file + rename)."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_result(path: str, result: Dict[str, Any]) -> None:
    """Write the result JSON atomically."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f)
        f.write("\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Failures


def is_memory_error(exc: BaseException) -> bool:
    """MemoryError (pyarrow's ArrowMemoryError included) or an OS allocation failure."""
    if isinstance(exc, MemoryError):
        return True
    return isinstance(exc, OSError) and exc.errno == errno.ENOMEM


def assertion_message(exc: AssertionError, module_file: str) -> str:
    """`str(exc)`, or for a bare `assert` the failing line of the user's file."""
    message = str(exc)
    if message:
        return message
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if os.path.abspath(f.filename) == os.path.abspath(module_file)] or frames
    if not user:
        return "assertion failed"
    frame = user[-1]
    where = f"{os.path.basename(frame.filename)}:{frame.lineno}"
    return f"assertion failed at {where}: {frame.line}" if frame.line else f"assertion failed at {where}"


def failure(exc: BaseException, node: str) -> Dict[str, Any]:
    """The failure result of an exception, after printing its traceback to stderr."""
    if isinstance(exc, BadReturn):
        kind, error, trace = "bad_return", str(exc), ""
        print(f"lakeplan: node '{node}': {error}", file=sys.stderr, flush=True)
    else:
        kind = "memory" if is_memory_error(exc) else "exception"
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if kind == "memory":
            error += " (the node ran out of memory: raise @resources(memory=...))"
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        sys.stderr.write(trace)
        sys.stderr.flush()
    return {"ok": False, "error": error, "error_kind": kind, "traceback": trace}


# ---------------------------------------------------------------------------------------------
# Main


def run(task: Dict[str, Any]) -> Dict[str, Any]:
    """Run the task's function and write its output; return the result (success only: failures
    propagate as exceptions)."""
    from . import store

    # `bauplan.store`: the objects this function may load, and where its saves go.
    store._configure(task.get("store"))
    fn = load_function(task)
    kwargs = read_inputs(task)
    name = task["function"]
    if task["kind"] == "model":
        table = to_table(fn(**kwargs), name)
        del kwargs  # drop input tables before writing
        write_table(table, task["output"])
        result = {"ok": True, "rows": table.num_rows}
    else:
        try:
            result = {"ok": True, "value": to_bool(fn(**kwargs), name), "message": None}
        except AssertionError as exc:
            result = {"ok": True, "value": False, "message": assertion_message(exc, task["module_file"])}
    saved = store._saved_objects()
    if saved:
        result["saved_objects"] = saved
    return result


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except (AttributeError, ValueError):
            pass
    wait = bool(argv) and argv[0] == "--wait"
    if wait:
        argv = argv[1:]
    if len(argv) != 1:
        print("usage: python -m lakeplan._worker [--wait] TASK.json", file=sys.stderr)
        return EXIT_BAD_TASK
    if wait:
        # Started ahead of its inputs (the interpreter and pyarrow load meanwhile): the task
        # file appears, complete, when they are ready. The caller kills us if they never are.
        while not os.path.exists(argv[0]):
            time.sleep(0.002)
    try:
        task = load_task(argv[0])
    except TaskError as exc:
        print(f"lakeplan worker: {exc}", file=sys.stderr, flush=True)
        return EXIT_BAD_TASK

    previous_limit = None
    try:
        previous_limit = set_memory_limit(task.get("memory_bytes"))
        result = run(task)
    except BaseException as exc:  # noqa: BLE001 - every failure of user code is reported
        if isinstance(exc, KeyboardInterrupt):
            raise
        # Drop the failing frames (and what they allocated) and lift the limit, so reporting an
        # out-of-memory failure cannot itself run out of memory.
        restore_memory_limit(previous_limit)
        result = failure(exc, task["node"])
        traceback.clear_frames(exc.__traceback__)
        del exc
        write_result(task["result"], result)
        return EXIT_FAILED
    restore_memory_limit(previous_limit)
    write_result(task["result"], result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
