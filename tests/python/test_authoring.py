"""The authoring package: decorators, Model/Parameter, TableSchema, standard expectations, and
the `bauplan` alias. Pure Python: no lakeplan binary needed."""

import os
import subprocess
import sys
import typing
from pathlib import Path

import pyarrow as pa
import pytest

PYTHON_DIR = Path(__file__).resolve().parents[2] / "python"
sys.path.insert(0, str(PYTHON_DIR))

import bauplan  # noqa: E402
import lakeplan  # noqa: E402
from lakeplan import standard_expectations as se  # noqa: E402

# --------------------------------------------------------------------------- decorators


@pytest.mark.parametrize("name", ["model", "python", "expectation", "resources", "extras"])
def test_decorator_without_parentheses_is_identity(name):
    def f(trips=lakeplan.Model("t")):
        return trips

    assert getattr(lakeplan, name)(f) is f
    assert f(trips=3) == 3


@pytest.mark.parametrize(
    "decorator",
    [
        lakeplan.model(),
        lakeplan.model("out", columns=["a"], materialization_strategy="REPLACE", cache_strategy="NONE",
                       partitioned_by=["a", "day(b)"], overwrite_filter="a > 1", internet_access=True,
                       some_future_option=3),
        lakeplan.python(),
        lakeplan.python("3.11", pip={"polars": "1.37"}),
        lakeplan.python(version="3.12", pip={}, something_new="x"),
        lakeplan.expectation(),
        lakeplan.expectation(name="x"),
        lakeplan.resources(),
        lakeplan.resources(cpus=2, memory="2GB", memory_swap="1GB", timeout=60),
        lakeplan.extras(),
        lakeplan.extras("a", "b"),
    ],
)
def test_decorator_with_parentheses_is_identity(decorator):
    def f(x=1):
        return x * 10

    assert decorator(f) is f
    assert f(2) == 20


def test_decorators_stack_and_record_their_arguments():
    @bauplan.model(name="clean", materialization_strategy="REPLACE")
    @bauplan.python("3.11", pip={"polars": "1.37"})
    @bauplan.resources(memory="1GB")
    def clean(trips=bauplan.Model("trips")):
        return trips

    assert clean(trips="t") == "t"
    marks = clean.__lakeplan__
    assert marks["model"]["name"] == "clean"
    assert marks["model"]["materialization_strategy"] == "REPLACE"
    assert marks["python"] == {"version": "3.11", "pip": {"polars": "1.37"}}
    assert marks["resources"]["memory"] == "1GB"


def test_bare_model_records_default_options():
    @lakeplan.model
    def m():
        return None

    assert m.__lakeplan__["model"]["name"] is None


# --------------------------------------------------------------------------- Model / Parameter


def test_model_as_default_argument_value():
    m = lakeplan.Model("taxi_trips", columns=["a"], filter="a > 3", ref=None)
    assert (m.name, m.columns, m.filter, m.ref) == ("taxi_trips", ["a"], "a > 3", None)
    assert m.selected_columns() == ["a"]

    def f(trips=m):
        return trips

    assert f() is m


def test_model_as_annotated_metadata_with_projection_schema():
    class TripCols(lakeplan.TableSchema):
        a: lakeplan.Int64
        b: lakeplan.String | None = lakeplan.TableField(name="B")

    def f(trips: typing.Annotated[pa.Table, lakeplan.Model("taxi_trips", projection_schema=TripCols, filter="a > 3")]):
        return trips

    hints = typing.get_type_hints(f, include_extras=True)
    (meta,) = hints["trips"].__metadata__
    assert isinstance(meta, lakeplan.Model)
    assert meta.projection_schema is TripCols
    assert meta.selected_columns() == ["a", "B"]
    assert meta.filter == "a > 3"


def test_model_tolerates_unknown_kwargs_and_connector_options():
    m = lakeplan.Model("t", connector="iceberg", connector_config_key="k", connector_config_uri="s3://x", future=1)
    assert m.connector == "iceberg" and m.connector_config_key == "k" and m.connector_config_uri == "s3://x"
    assert m.kwargs == {"future": 1}
    assert m == lakeplan.Model("t", connector="iceberg", connector_config_key="k", connector_config_uri="s3://x", future=1)
    assert m != lakeplan.Model("t")
    assert "connector='iceberg'" in repr(m)


def test_parameter():
    p = lakeplan.Parameter("rate")
    assert p.param_name == "rate"
    assert p == lakeplan.Parameter(param_name="rate")
    with pytest.raises(Exception):
        p.param_name = "other"  # frozen


# --------------------------------------------------------------------------- TableSchema

FIELD_TYPES = {
    "Bool": pa.bool_(),
    "Int32": pa.int32(),
    "Int64": pa.int64(),
    "Float64": pa.float64(),
    "String": pa.string(),
    "Binary": pa.binary(),
    "Date32": pa.date32(),
    "Date64": pa.date64(),
    "TimestampMicro": pa.timestamp("us"),
    "TimestampNano": pa.timestamp("ns"),
    "TimestampMicroUTC": pa.timestamp("us", tz="UTC"),
    "TimestampNanoUTC": pa.timestamp("ns", tz="UTC"),
}


@pytest.mark.parametrize("name,arrow", sorted(FIELD_TYPES.items()))
def test_field_type_arrow_types(name, arrow):
    assert getattr(lakeplan, name).arrow_type() == arrow


def test_any_has_no_arrow_type():
    assert lakeplan.Any.arrow_type() is None


def test_union_with_none_is_optional():
    assert (lakeplan.Int64 | None) == typing.Optional[lakeplan.Int64]
    assert (None | lakeplan.Int64) == typing.Optional[lakeplan.Int64]


class Trips(lakeplan.TableSchema):
    """A schema using every way to declare a column."""

    vendor: lakeplan.String
    fare: lakeplan.Float64 | None = lakeplan.TableField(doc="in dollars")
    pickup: lakeplan.TimestampMicroUTC = lakeplan.TableField(name="pickup_at", lineage="raw.pickup")
    tip: typing.Optional[lakeplan.Int32]
    day: "lakeplan.Date32 | None"
    flag: typing.Annotated[lakeplan.Bool, lakeplan.TableField(name="is_flagged")]


def test_table_schema_to_arrow_schema():
    schema = Trips.to_arrow_schema()
    expected = pa.schema([
        pa.field("vendor", pa.string(), nullable=False),
        pa.field("fare", pa.float64(), nullable=True, metadata={"doc": "in dollars"}),
        pa.field("pickup_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("tip", pa.int32(), nullable=True),
        pa.field("day", pa.date32(), nullable=True),
        pa.field("is_flagged", pa.bool_(), nullable=False),
    ])
    assert schema.equals(expected, check_metadata=True)
    assert Trips.column_names() == ["vendor", "fare", "pickup_at", "tip", "day", "is_flagged"]


def test_table_schema_getitem_returns_field_type():
    assert Trips["vendor"] is lakeplan.String
    assert Trips["fare"] is lakeplan.Float64
    assert Trips["pickup_at"] is lakeplan.TimestampMicroUTC
    assert Trips["pickup"] is lakeplan.TimestampMicroUTC  # attribute name works too
    with pytest.raises(KeyError, match="Trips has no column 'nope'"):
        Trips["nope"]


def test_table_schema_inherits_columns():
    class More(Trips):
        extra: lakeplan.Binary

    assert More.column_names()[-1] == "extra"
    assert More.to_arrow_schema().field("extra").type == pa.binary()


def test_table_schema_errors_name_the_column():
    class WithAny(lakeplan.TableSchema):
        x: lakeplan.Any

    assert WithAny["x"] is lakeplan.Any
    with pytest.raises(TypeError, match="column 'x' of WithAny has type Any"):
        WithAny.to_arrow_schema()

    class Wrong(lakeplan.TableSchema):
        y: int

    with pytest.raises(TypeError, match="column 'y' of Wrong"):
        Wrong.to_arrow_schema()


# --------------------------------------------------------------------------- standard expectations

TABLE = pa.table({
    "id": [1, 2, 3, 4],
    "dup": [1, 1, 2, 3],
    "first": ["a", "b", "c", None],
    "last": ["x", "y", "z", None],
    "full": ["a-x", "b-y", "c-z", None],
    "wrong": ["a-x", "b-y", "c-q", None],
    "num": [1, 2, 3, 4],
    "some_null": [1.0, None, 3.0, 4.0],
    "all_null": pa.array([None] * 4, pa.int64()),
    "status": ["paid", "paid", "shipped", "pending"],
})


@pytest.mark.parametrize(
    "check,args,expected",
    [
        (se.expect_column_equal_concatenation, ("full", ["first", "last"], "-"), True),
        (se.expect_column_equal_concatenation, ("wrong", ["first", "last"], "-"), False),
        (se.expect_column_equal_concatenation, ("full", ["first", "last"]), False),  # no separator
        (se.expect_column_mean_greater_than, ("num", 2.4), True),
        (se.expect_column_mean_greater_than, ("num", 2.5), False),
        (se.expect_column_mean_greater_or_equal_than, ("num", 2.5), True),
        (se.expect_column_mean_greater_or_equal_than, ("num", 2.6), False),
        (se.expect_column_mean_smaller_than, ("num", 2.6), True),
        (se.expect_column_mean_smaller_than, ("num", 2.5), False),
        (se.expect_column_mean_smaller_or_equal_than, ("num", 2.5), True),
        (se.expect_column_mean_smaller_or_equal_than, ("num", 2.4), False),
        (se.expect_column_mean_greater_than, ("all_null", 0), False),  # no mean at all
        (se.expect_column_some_null, ("some_null",), True),
        (se.expect_column_some_null, ("num",), False),
        (se.expect_column_no_nulls, ("num",), True),
        (se.expect_column_no_nulls, ("some_null",), False),
        (se.expect_column_all_null, ("all_null",), True),
        (se.expect_column_all_null, ("some_null",), False),
        (se.expect_column_all_unique, ("id",), True),
        (se.expect_column_all_unique, ("dup",), False),
        (se.expect_column_not_unique, ("dup",), True),
        (se.expect_column_not_unique, ("id",), False),
        (se.expect_column_accepted_values, ("status", ["paid", "shipped", "pending"]), True),
        (se.expect_column_accepted_values, ("status", ["paid", "shipped"]), False),
        (se.expect_column_accepted_values, ("num", [1, 2, 3, 4, 5]), True),
        (se.expect_column_accepted_values, ("first", ["a", "b", "c"]), False),  # null not accepted
        (se.expect_column_accepted_values, ("first", ["a", "b", "c", None]), True),
    ],
)
def test_standard_expectation(check, args, expected):
    result = check(TABLE, *args)
    assert type(result) is bool
    assert result is expected


def test_standard_expectations_accept_record_batches_and_chunked_tables():
    batch = TABLE.to_batches()[0]
    assert se.expect_column_all_unique(batch, "id") is True
    chunked = pa.concat_tables([TABLE.slice(0, 2), TABLE.slice(2)])
    assert chunked.column("dup").num_chunks == 2
    assert se.expect_column_not_unique(chunked, "dup") is True
    assert se.expect_column_equal_concatenation(chunked, "full", ["first", "last"], separator="-") is True


def test_equal_concatenation_casts_non_strings():
    t = pa.table({"a": [1, 2], "b": ["x", "y"], "t": ["1x", "2y"]})
    assert se.expect_column_equal_concatenation(t, "t", ["a", "b"]) is True


def test_accepted_values_on_dictionary_column():
    t = pa.table({"s": pa.array(["a", "b", "a"]).dictionary_encode()})
    assert se.expect_column_accepted_values(t, "s", ["a", "b"]) is True
    assert se.expect_column_accepted_values(t, "s", ["a"]) is False


def test_empty_table():
    t = pa.table({"x": pa.array([], pa.int64())})
    assert se.expect_column_no_nulls(t, "x") is True
    assert se.expect_column_all_unique(t, "x") is True
    assert se.expect_column_accepted_values(t, "x", [1]) is True
    assert se.expect_column_mean_greater_than(t, "x", 0) is False


@pytest.mark.parametrize(
    "check,args",
    [
        (se.expect_column_no_nulls, ("missing",)),
        (se.expect_column_some_null, ("missing",)),
        (se.expect_column_all_null, ("missing",)),
        (se.expect_column_all_unique, ("missing",)),
        (se.expect_column_not_unique, ("missing",)),
        (se.expect_column_mean_greater_than, ("missing", 1)),
        (se.expect_column_mean_smaller_or_equal_than, ("missing", 1)),
        (se.expect_column_accepted_values, ("missing", [1])),
        (se.expect_column_equal_concatenation, ("full", ["first", "missing"])),
        (se.expect_column_equal_concatenation, ("missing", ["first"])),
    ],
)
def test_unknown_column_is_a_clear_error(check, args):
    with pytest.raises(ValueError, match=rf"{check.__name__}: column 'missing' not found \(columns: id, dup, "):
        check(TABLE, *args)


def test_type_errors_are_clear():
    with pytest.raises(TypeError, match="column 'status' has type string; the mean needs a numeric column"):
        se.expect_column_mean_greater_than(TABLE, "status", 1)
    with pytest.raises(TypeError, match="do not fit column 'num'"):
        se.expect_column_accepted_values(TABLE, "num", ["x"])
    with pytest.raises(TypeError, match="expected a pyarrow Table, got dict"):
        se.expect_column_no_nulls({"a": [1]}, "a")


# --------------------------------------------------------------------------- bauplan alias


def test_bauplan_exports_the_same_objects():
    assert set(bauplan.__all__) == set(lakeplan.__all__)
    for name in lakeplan.__all__:
        if name in ("standard_expectations", "store"):  # bauplan's own modules, same functions
            continue
        assert getattr(bauplan, name) is getattr(lakeplan, name), name


def test_bauplan_standard_expectations():
    from bauplan.standard_expectations import expect_column_no_nulls

    import bauplan.standard_expectations as bse

    assert expect_column_no_nulls is se.expect_column_no_nulls
    assert set(bse.__all__) == set(se.__all__)
    for name in se.__all__:
        assert getattr(bse, name) is getattr(se, name)
    assert bauplan.standard_expectations is bse


def test_import_needs_only_stdlib_and_pyarrow():
    """`import lakeplan, bauplan` loads neither the analyzer nor pandas/polars/numpy-dependent code."""
    code = (
        "import sys, lakeplan, bauplan, bauplan.standard_expectations\n"
        "print(sorted(m for m in ('lakeplan._analyze', 'lakeplan._worker', 'pandas', 'polars') if m in sys.modules))"
    )
    env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
