"""Table schemas for projections and outputs (Bauplan 0.3.x style).

    class TripCols(TableSchema):
        vendor: String
        fare: Float64 | None = TableField(doc="in dollars")
        pickup: TimestampMicro = TableField(name="pickup_at")

    TripCols.to_arrow_schema()   # vendor: string not null, fare: double, pickup_at: timestamp[us] not null
    TripCols["fare"]             # Float64

A field is nullable when its annotation is `X | None` or `Optional[X]`. `TableField(name=...)`
renames the column (the attribute name is the default).
"""

import sys
import typing
from dataclasses import dataclass
from typing import Any as _TypingAny
from typing import List, Optional, Tuple

import pyarrow as pa

__all__ = [
    "TableSchema",
    "TableField",
    "FieldType",
    "Any",
    "Bool",
    "Int32",
    "Int64",
    "Float64",
    "String",
    "Binary",
    "Date32",
    "Date64",
    "TimestampMicro",
    "TimestampNano",
    "TimestampMicroUTC",
    "TimestampNanoUTC",
]


class _FieldTypeMeta(type):
    """Lets `Int64 | None` (and `None | Int64`) mean `Optional[Int64]` on every Python >= 3.9."""

    def __or__(cls, other: object) -> object:
        return typing.Union[cls, other]

    def __ror__(cls, other: object) -> object:
        return typing.Union[other, cls]

    def __repr__(cls) -> str:
        return cls.__name__


class FieldType(metaclass=_FieldTypeMeta):
    """Base of the column types usable in a `TableSchema`."""

    @classmethod
    def arrow_type(cls) -> Optional[pa.DataType]:
        """The pyarrow type of this column type (None for `Any`)."""
        raise NotImplementedError(f"{cls.__name__} is abstract: use Int64, String, ...")


def _field_type(name: str, arrow: Optional[pa.DataType], doc: str) -> type:
    def arrow_type(cls) -> Optional[pa.DataType]:
        return arrow

    arrow_type.__doc__ = f"The pyarrow type of {name}: {arrow}."
    return _FieldTypeMeta(name, (FieldType,), {"arrow_type": classmethod(arrow_type), "__doc__": doc, "__module__": __name__})


Any = _field_type("Any", None, "A column of any type (only its presence is declared).")
Bool = _field_type("Bool", pa.bool_(), "A boolean column.")
Int32 = _field_type("Int32", pa.int32(), "A 32-bit signed integer column.")
Int64 = _field_type("Int64", pa.int64(), "A 64-bit signed integer column.")
Float64 = _field_type("Float64", pa.float64(), "A 64-bit floating point column.")
String = _field_type("String", pa.string(), "A UTF-8 string column.")
Binary = _field_type("Binary", pa.binary(), "A binary column.")
Date32 = _field_type("Date32", pa.date32(), "A date column (days since the epoch).")
Date64 = _field_type("Date64", pa.date64(), "A date column (milliseconds since the epoch).")
TimestampMicro = _field_type("TimestampMicro", pa.timestamp("us"), "A timestamp in microseconds, without time zone.")
TimestampNano = _field_type("TimestampNano", pa.timestamp("ns"), "A timestamp in nanoseconds, without time zone.")
TimestampMicroUTC = _field_type("TimestampMicroUTC", pa.timestamp("us", tz="UTC"), "A UTC timestamp in microseconds.")
TimestampNanoUTC = _field_type("TimestampNanoUTC", pa.timestamp("ns", tz="UTC"), "A UTC timestamp in nanoseconds.")


FIELD_TYPES = (Any, Bool, Int32, Int64, Float64, String, Binary, Date32, Date64,
               TimestampMicro, TimestampNano, TimestampMicroUTC, TimestampNanoUTC)


@dataclass(frozen=True)
class TableField:
    """Column options, as the default value of a `TableSchema` attribute: `name` (the column's
    name when it differs from the attribute), `doc`, and `lineage` (free-form provenance)."""

    name: Optional[str] = None
    doc: Optional[str] = None
    lineage: _TypingAny = None


@dataclass(frozen=True)
class SchemaField:
    """One resolved column of a `TableSchema`."""

    attribute: str
    name: str
    type: type
    nullable: bool
    doc: Optional[str]


_UNION_TYPES: Tuple[object, ...] = (typing.Union,)
if sys.version_info >= (3, 10):
    import types as _types

    _UNION_TYPES = (typing.Union, _types.UnionType)


def _unwrap(schema: str, attribute: str, annotation: object) -> Tuple[type, bool, Optional[TableField]]:
    """(field type, nullable, TableField from Annotated metadata) of one annotation."""
    field = None
    if typing.get_origin(annotation) is typing.Annotated:
        annotation, *metadata = typing.get_args(annotation)
        field = next((m for m in metadata if isinstance(m, TableField)), None)
    nullable = False
    if typing.get_origin(annotation) in _UNION_TYPES:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(members) < len(typing.get_args(annotation))
        if len(members) != 1:
            raise TypeError(f"column '{attribute}' of {schema}: a union of several types ({annotation}) is not a column type")
        annotation = members[0]
    if not (isinstance(annotation, type) and issubclass(annotation, FieldType) and annotation is not FieldType):
        names = ", ".join(t.__name__ for t in FIELD_TYPES)
        raise TypeError(f"column '{attribute}' of {schema}: {annotation!r} is not a column type (one of {names})")
    return annotation, nullable, field


class TableSchema:
    """Base class of table schemas: annotate one attribute per column with a field type."""

    @classmethod
    def fields(cls) -> List[SchemaField]:
        """The columns, in declaration order (base classes' columns first)."""
        try:
            hints = typing.get_type_hints(cls, include_extras=True)
        except Exception as exc:  # NameError, TypeError from a bad string annotation
            raise TypeError(f"cannot evaluate the annotations of schema {cls.__name__}: {exc}") from exc
        out = []
        for attribute, annotation in hints.items():
            if typing.get_origin(annotation) is typing.ClassVar:
                continue
            field_type, nullable, field = _unwrap(cls.__name__, attribute, annotation)
            default = getattr(cls, attribute, None)
            if isinstance(default, TableField):
                field = default
            field = field or TableField()
            out.append(SchemaField(attribute, field.name or attribute, field_type, nullable, field.doc))
        return out

    @classmethod
    def column_names(cls) -> List[str]:
        """The column names (a `TableField(name=...)` overrides the attribute name)."""
        return [f.name for f in cls.fields()]

    @classmethod
    def to_arrow_schema(cls) -> pa.Schema:
        """The pyarrow schema: one field per column, nullable when declared `X | None`, with
        the column's `doc` as field metadata `{"doc": ...}`. `Any` columns have no Arrow type
        and are an error here."""
        out = []
        for f in cls.fields():
            arrow = f.type.arrow_type()
            if arrow is None:
                raise TypeError(f"column '{f.name}' of {cls.__name__} has type Any, which has no Arrow type")
            metadata = {"doc": f.doc} if f.doc else None
            out.append(pa.field(f.name, arrow, nullable=f.nullable, metadata=metadata))
        return pa.schema(out)

    def __class_getitem__(cls, column: str) -> type:
        """`Schema["col"]`: the field type of a column, by column name or attribute name."""
        fields = cls.fields()
        for f in fields:
            if f.name == column:
                return f.type
        for f in fields:
            if f.attribute == column:
                return f.type
        known = ", ".join(f.name for f in fields) or "none"
        raise KeyError(f"schema {cls.__name__} has no column '{column}' (columns: {known})")
