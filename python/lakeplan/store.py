"""Python objects kept between pipeline functions and between runs (`bauplan.store`).

    from bauplan.store import save_obj, load_obj

    save_obj("regression", model)       # in one function (pickled)
    model = load_obj("regression")      # in a later one, or in a later run on the branch

An object saved by a function is written by its run, in the same commit as the run's tables, to
the branch the run writes (a transactional run's temporary branch, published with the tables).
`load_obj` sees the objects of the commit the run reads, plus those saved in this run by the
nodes the function depends on (directly or through others). Two nodes of one run may not save
one key.

These functions work inside a pipeline function run by lakeplan; elsewhere they raise
`StoreNotAvailableError`.
"""

import os
import pickle
from typing import Any, Dict, Optional

__all__ = [
    "save_obj",
    "load_obj",
    "StoreError",
    "StoreNotAvailableError",
    "UserObjectKeyNotExistsError",
    "UserObjectWithKeyExistsError",
    "ObjectCannotBeSerializedError",
    "ObjectTooBigError",
]

# The largest pickle a function may save (the run copies it into the warehouse).
MAX_OBJECT_BYTES = 2 * 1024 * 1024 * 1024
MAX_KEY_BYTES = 255


class StoreError(Exception):
    """Every error of `save_obj` and `load_obj`."""


class StoreNotAvailableError(StoreError):
    """Called outside a pipeline function run by lakeplan."""


class UserObjectKeyNotExistsError(StoreError, KeyError):
    """`load_obj` of a key that no object was saved under (on the run's branch, or upstream)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UserObjectWithKeyExistsError(StoreError):
    """`save_obj` of a key this function saved already in this run."""


class ObjectCannotBeSerializedError(StoreError):
    """An object that pickle cannot serialize (or cannot read back)."""


class ObjectTooBigError(StoreError):
    """An object whose pickle is larger than the store takes."""


# Set by the worker for the function it runs: {"objects": {key: path}, "save_dir": path}.
_context: Optional[Dict[str, Any]] = None
# Saved by this function: key -> {"file": path, "size": n}.
_saved: Dict[str, Dict[str, Any]] = {}


def _configure(store: Optional[Dict[str, Any]]) -> None:
    """Called by the worker before the function runs."""
    global _context
    _context = store
    _saved.clear()


def _saved_objects() -> Dict[str, Dict[str, Any]]:
    """What the function saved, for the worker's result."""
    return dict(_saved)


def _require() -> Dict[str, Any]:
    if _context is None:
        raise StoreNotAvailableError(
            "bauplan.store works inside a pipeline function run by lakeplan (`lakeplan run`)"
        )
    return _context


def _check_key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"an object key is a str, not {type(key).__name__}")
    if not key:
        raise ValueError("an object key cannot be empty")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise ValueError(f"object key {key[:40]!r}...: at most {MAX_KEY_BYTES} bytes")
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise ValueError(f"object key {key!r}: no control characters")
    return key


def save_obj(key: str, obj: Any) -> None:
    """Store a Python object under `key`, for later functions of this run and later runs on the
    branch. The object is pickled now: changing it afterwards changes nothing stored.

    Raises UserObjectWithKeyExistsError if this function saved `key` already,
    ObjectCannotBeSerializedError if pickle cannot serialize it (or read it back),
    ObjectTooBigError if its pickle is larger than 2 GiB.
    """
    ctx = _require()
    key = _check_key(key)
    if key in _saved:
        raise UserObjectWithKeyExistsError(f"object '{key}' was saved already by this function")
    try:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        # The basic check that a later load can work: the pickle reads back here.
        pickle.loads(data)
    except Exception as exc:  # noqa: BLE001 - any pickling failure is this error
        raise ObjectCannotBeSerializedError(
            f"object '{key}' ({type(obj).__module__}.{type(obj).__qualname__}) cannot be pickled: {exc}"
        ) from exc
    if len(data) > MAX_OBJECT_BYTES:
        raise ObjectTooBigError(f"object '{key}' is {len(data)} bytes pickled; at most {MAX_OBJECT_BYTES}")
    save_dir = ctx["save_dir"]
    os.makedirs(save_dir, exist_ok=True)
    path = os.path.join(save_dir, f"{len(_saved)}.pkl")
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    _saved[key] = {"file": path, "size": len(data)}


def load_obj(key: str) -> Any:
    """Return the Python object saved under `key`: by this function, by a node it depends on in
    this run, or by an earlier run on the branch (the commit the run reads).

    Raises UserObjectKeyNotExistsError (a KeyError) if there is none.
    """
    ctx = _require()
    key = _check_key(key)
    saved = _saved.get(key)
    path = saved["file"] if saved else ctx.get("objects", {}).get(key)
    if path is None:
        known = sorted(ctx.get("objects", {})) + sorted(_saved)
        hint = f"; saved objects: {', '.join(known[:10])}" if known else "; no object is saved there"
        raise UserObjectKeyNotExistsError(
            f"no object is saved under '{key}' on the run's branch (nor by a node this function depends on){hint}"
        )
    with open(path, "rb") as f:
        data = f.read()
    try:
        return pickle.loads(data)
    except Exception as exc:  # noqa: BLE001 - report which object could not be read
        raise ObjectCannotBeSerializedError(
            f"object '{key}' cannot be unpickled here ({type(exc).__name__}: {exc}); "
            "the function that loads it needs the classes and libraries of the one that saved it"
        ) from exc
