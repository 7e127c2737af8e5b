"""Standard expectations: vectorised checks on a pyarrow table, each returning a bool.

    from lakeplan.standard_expectations import expect_column_no_nulls

    @expectation()
    def trips_have_ids(data=Model("trips")):
        return expect_column_no_nulls(data, "trip_id")

Every function takes a `pyarrow.Table` (a `RecordBatch` works too) and the column's name, and
raises `ValueError` naming the column and the table's columns when the column does not exist.
Empty columns make "all"-style checks true and mean comparisons false (there is no mean).
"""

from typing import Iterable, List, Sequence, Union

import pyarrow as pa


class _LazyCompute:
    """`pyarrow.compute`, imported on first use. Importing it takes ~0.3 s (it builds a wrapper
    for every compute function), and every pipeline worker imports this package: a node that
    never calls an expectation helper need not pay for it."""

    def __getattr__(self, name: str):
        import pyarrow.compute

        return getattr(pyarrow.compute, name)


pc = _LazyCompute()

__all__ = [
    "expect_column_equal_concatenation",
    "expect_column_mean_greater_than",
    "expect_column_mean_greater_or_equal_than",
    "expect_column_mean_smaller_than",
    "expect_column_mean_smaller_or_equal_than",
    "expect_column_some_null",
    "expect_column_no_nulls",
    "expect_column_all_null",
    "expect_column_all_unique",
    "expect_column_not_unique",
    "expect_column_accepted_values",
]

TableLike = Union[pa.Table, pa.RecordBatch]


def _column(table: TableLike, column_name: str, check: str) -> pa.ChunkedArray:
    """The named column as a ChunkedArray, or a ValueError that says what exists."""
    if not isinstance(table, (pa.Table, pa.RecordBatch)):
        raise TypeError(f"{check}: expected a pyarrow Table, got {type(table).__name__}")
    names: List[str] = table.schema.names
    matches = names.count(column_name)
    if matches == 0:
        raise ValueError(f"{check}: column '{column_name}' not found (columns: {', '.join(names) or 'none'})")
    if matches > 1:
        raise ValueError(f"{check}: column name '{column_name}' is ambiguous ({matches} columns have it)")
    column = table.column(column_name)
    if isinstance(column, pa.Array):
        column = pa.chunked_array([column], type=column.type)
    return column


def _all(mask: Union[pa.Array, pa.ChunkedArray]) -> bool:
    """True when every value of a boolean mask is true (nulls count as false; empty is true)."""
    return bool(pc.all(pc.fill_null(mask, False), min_count=0).as_py())


def _mean(table: TableLike, column_name: str, check: str):
    column = _column(table, column_name, check)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_decimal(column.type)):
        raise TypeError(f"{check}: column '{column_name}' has type {column.type}; the mean needs a numeric column")
    return pc.mean(column).as_py()


def expect_column_equal_concatenation(
    table: TableLike, target_column: str, columns: Sequence[str], separator: str = ""
) -> bool:
    """Expect `target_column` to equal the concatenation of `columns` (cast to strings), joined
    by `separator`, on every row. A row where the target and the concatenation are both null
    passes; a row where only one of them is null fails."""
    check = "expect_column_equal_concatenation"
    if isinstance(columns, str) or not columns:
        raise ValueError(f"{check}: 'columns' must be a non-empty list of column names")
    target = _column(table, target_column, check)
    parts = [pc.cast(_column(table, c, check), pa.large_string()) for c in columns]
    joined = pc.binary_join_element_wise(*parts, pa.scalar(separator, pa.large_string()))
    equal = pc.equal(pc.cast(target, pa.large_string()), joined)
    both_null = pc.and_(pc.is_null(target), pc.is_null(joined))
    return _all(pc.or_(pc.fill_null(equal, False), both_null))


def expect_column_mean_greater_than(table: TableLike, column_name: str, value: float) -> bool:
    """Expect the mean of the column's non-null values to be > `value`."""
    mean = _mean(table, column_name, "expect_column_mean_greater_than")
    return mean is not None and mean > value


def expect_column_mean_greater_or_equal_than(table: TableLike, column_name: str, value: float) -> bool:
    """Expect the mean of the column's non-null values to be >= `value`."""
    mean = _mean(table, column_name, "expect_column_mean_greater_or_equal_than")
    return mean is not None and mean >= value


def expect_column_mean_smaller_than(table: TableLike, column_name: str, value: float) -> bool:
    """Expect the mean of the column's non-null values to be < `value`."""
    mean = _mean(table, column_name, "expect_column_mean_smaller_than")
    return mean is not None and mean < value


def expect_column_mean_smaller_or_equal_than(table: TableLike, column_name: str, value: float) -> bool:
    """Expect the mean of the column's non-null values to be <= `value`."""
    mean = _mean(table, column_name, "expect_column_mean_smaller_or_equal_than")
    return mean is not None and mean <= value


def expect_column_some_null(table: TableLike, column_name: str) -> bool:
    """Expect at least one null in the column."""
    return _column(table, column_name, "expect_column_some_null").null_count > 0


def expect_column_no_nulls(table: TableLike, column_name: str) -> bool:
    """Expect no null in the column."""
    return _column(table, column_name, "expect_column_no_nulls").null_count == 0


def expect_column_all_null(table: TableLike, column_name: str) -> bool:
    """Expect every value of the column to be null."""
    column = _column(table, column_name, "expect_column_all_null")
    return column.null_count == len(column)


def _distinct_is_total(table: TableLike, column_name: str, check: str) -> bool:
    column = _column(table, column_name, check)
    # mode="all" counts null as one value, so two nulls are a duplicate.
    return pc.count_distinct(column, mode="all").as_py() == len(column)


def expect_column_all_unique(table: TableLike, column_name: str) -> bool:
    """Expect no duplicate values in the column (two nulls count as a duplicate)."""
    return _distinct_is_total(table, column_name, "expect_column_all_unique")


def expect_column_not_unique(table: TableLike, column_name: str) -> bool:
    """Expect at least one duplicate value in the column."""
    return not _distinct_is_total(table, column_name, "expect_column_not_unique")


def expect_column_accepted_values(table: TableLike, column_name: str, accepted_values: Iterable) -> bool:
    """Expect every value of the column to be one of `accepted_values`. A null passes only
    when None is one of the accepted values."""
    check = "expect_column_accepted_values"
    column = _column(table, column_name, check)
    values = list(accepted_values)
    value_type = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    try:
        value_set = pa.array(values, type=value_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"{check}: accepted values {values!r} do not fit column '{column_name}' of type {column.type}: {exc}") from exc
    return _all(pc.is_in(column, value_set=value_set, skip_nulls=False))
