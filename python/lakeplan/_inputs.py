"""Inputs of a node: `Model(...)` (a table) and `Parameter(...)` (a run parameter).

Both styles of Bauplan work:

    def f(trips=Model("taxi_trips", columns=["a"], filter="a > 3")): ...          # 0.1.x
    def f(trips: Annotated[pa.Table, Model("taxi_trips", projection_schema=Cols)]): ...  # 0.3.x

At run time these objects are only placeholders: the worker passes the real table or value as a
keyword argument. The planner reads their literal arguments statically.
"""

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

__all__ = ["Model", "Parameter"]


class Model:
    """A table input of a node: `name` (a table or another model), an optional column list,
    a SQL `filter` pushed into the scan, a `ref` (branch, tag or commit) to read it at, or a
    `projection_schema` (a `TableSchema` subclass whose columns are read). Other keyword
    arguments (connector options of newer Bauplan versions) are kept in `kwargs`."""

    __slots__ = (
        "name",
        "columns",
        "filter",
        "ref",
        "projection_schema",
        "connector",
        "connector_config_key",
        "connector_config_uri",
        "kwargs",
    )

    def __init__(
        self,
        name: str,
        columns: Optional[List[str]] = None,
        filter: Optional[str] = None,  # noqa: A002 - Bauplan's argument name
        ref: Optional[str] = None,
        projection_schema: Any = None,
        connector: Optional[str] = None,
        connector_config_key: Optional[str] = None,
        connector_config_uri: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        self.name = name
        self.columns = columns
        self.filter = filter
        self.ref = ref
        self.projection_schema = projection_schema
        self.connector = connector
        self.connector_config_key = connector_config_key
        self.connector_config_uri = connector_config_uri
        self.kwargs: Dict[str, Any] = kwargs

    def selected_columns(self) -> Optional[List[str]]:
        """The columns this input reads: `columns`, else the projection schema's columns,
        else None (every column)."""
        if self.columns is not None:
            return list(self.columns)
        schema = self.projection_schema
        if schema is not None and hasattr(schema, "column_names"):
            return schema.column_names()
        return None

    def _fields(self) -> tuple:
        return tuple(getattr(self, slot) for slot in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Model):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable, holds lists

    def __repr__(self) -> str:
        parts = [repr(self.name)]
        for slot in self.__slots__[1:-1]:
            value = getattr(self, slot)
            if value is not None:
                shown = getattr(value, "__name__", None) if slot == "projection_schema" else None
                parts.append(f"{slot}={shown or repr(value)}")
        parts.extend(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"Model({', '.join(parts)})"


@dataclass(frozen=True)
class Parameter:
    """A run parameter input (`lakeplan run --param name=value`), by its name in the project."""

    param_name: str
