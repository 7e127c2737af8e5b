"""The worker (`python -m lakeplan._worker TASK.json`, contract section 2), run as a subprocess
over real Arrow IPC files in a temporary job folder. No lakeplan binary needed."""

import json
import os
import subprocess
import time
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc
import pytest

PYTHON_DIR = Path(__file__).resolve().parents[2] / "python"
sys.path.insert(0, str(PYTHON_DIR))

TRIPS = pa.table({"id": [1, 2, 3, 4], "fare": [5.0, 12.5, 30.0, None], "vendor": ["a", "b", "a", "c"]})


class Job:
    """A project folder with a models file plus a job folder with inputs, like the runtime's."""

    def __init__(self, root: Path, source: str, module: str = "models.py"):
        self.project = root / "project"
        self.inputs = root / "job" / "in"
        self.out = root / "job" / "out"
        for d in (self.project, self.inputs, self.out):
            d.mkdir(parents=True, exist_ok=True)
        self.module_file = self.project / module
        self.module_file.write_text(textwrap.dedent(source))

    def table_input(self, param: str, table: pa.Table) -> dict:
        path = self.inputs / f"{param}.arrow"
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        return {"param": param, "kind": "table", "path": str(path)}

    def run(self, function: str, kind: str = "model", inputs=(), memory_bytes=None):
        task = {
            "node": function,
            "kind": kind,
            "module_file": str(self.module_file),
            "function": function,
            "project_dir": str(self.project),
            "inputs": list(inputs),
            "result": str(self.out / f"{function}.result.json"),
        }
        if kind == "model":
            task["output"] = str(self.out / f"{function}.arrow")
        if memory_bytes is not None:
            task["memory_bytes"] = memory_bytes
        task_file = self.out.parent / f"{function}.task.json"
        task_file.write_text(json.dumps(task))
        env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR))
        proc = subprocess.run(
            [sys.executable, "-m", "lakeplan._worker", str(task_file)],
            env=env, capture_output=True, text=True, timeout=120, cwd=str(self.out.parent),
        )
        result_path = Path(task["result"])
        result = json.loads(result_path.read_text()) if result_path.exists() else None
        return proc, result

    def output(self, function: str) -> pa.Table:
        path = self.out / f"{function}.arrow"
        with pa.memory_map(str(path)) as source:
            return pa.ipc.open_file(source).read_all()


def assert_ok(proc):
    assert proc.returncode == 0, f"worker failed: {proc.stderr}"


# --------------------------------------------------------------------------- models


def test_model_filters_a_table(tmp_path):
    job = Job(tmp_path, """
        import bauplan
        import pyarrow.compute as pc

        @bauplan.model(materialization_strategy="REPLACE")
        @bauplan.python("3.11")
        def clean_trips(trips=bauplan.Model("taxi_trips", columns=["id", "fare"], filter="fare > 10")):
            print("rows in:", trips.num_rows)
            return trips.filter(pc.greater(trips["fare"], 10.0)).select(["id", "fare"])
    """)
    proc, result = job.run("clean_trips", inputs=[job.table_input("trips", TRIPS)])
    assert_ok(proc)
    assert result == {"ok": True, "rows": 2}
    assert "rows in: 4" in proc.stdout
    out = job.output("clean_trips")
    assert out.to_pydict() == {"id": [2, 3], "fare": [12.5, 30.0]}
    # Uncompressed IPC file format.
    with pa.memory_map(str(job.out / "clean_trips.arrow")) as source:
        reader = pa.ipc.open_file(source)
        assert reader.num_record_batches >= 1
    assert not list(job.out.glob("*.tmp*"))


def test_an_input_in_several_files_is_concatenated_without_copy(tmp_path):
    """A parallel scan writes one file per partition (`paths`): the function sees one table
    whose chunks are the mapped files' buffers."""
    job = Job(tmp_path, """
        import lakeplan

        @lakeplan.model()
        def passthrough(t=lakeplan.Model("t")):
            print("chunks", t["id"].num_chunks)
            return t
    """)
    a, b = TRIPS.slice(0, 2), TRIPS.slice(2)
    first = job.table_input("a", a)
    second = job.table_input("b", b)
    inputs = [{"param": "t", "kind": "table", "paths": [first["path"], second["path"]]}]
    proc, result = job.run("passthrough", inputs=inputs)
    assert_ok(proc)
    assert result == {"ok": True, "rows": TRIPS.num_rows}
    assert "chunks 2" in proc.stdout
    assert job.output("passthrough").to_pydict() == TRIPS.to_pydict()


def test_wait_mode_starts_before_its_task_exists(tmp_path):
    """`--wait`: the runtime starts the worker while it still scans the inputs; the worker
    waits for the task file (written atomically) and then runs it."""
    job = Job(tmp_path, """
        import lakeplan

        @lakeplan.model()
        def doubled(t=lakeplan.Model("t")):
            import pyarrow.compute as pc
            return t.set_column(1, "fare", pc.multiply(t["fare"], 2))
    """)
    task = {
        "node": "doubled", "kind": "model", "module_file": str(job.module_file),
        "function": "doubled", "project_dir": str(job.project),
        "inputs": [job.table_input("t", TRIPS)],
        "output": str(job.out / "doubled.arrow"),
        "result": str(job.out / "doubled.result.json"),
    }
    task_file = job.out.parent / "doubled.task.json"
    env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR))
    proc = subprocess.Popen(
        [sys.executable, "-m", "lakeplan._worker", "--wait", str(task_file)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(0.5)
    assert proc.poll() is None, "the worker must wait for its task"
    tmp = task_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(task))
    tmp.rename(task_file)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert json.loads(Path(task["result"]).read_text()) == {"ok": True, "rows": TRIPS.num_rows}
    assert job.output("doubled")["fare"].to_pylist() == [10.0, 25.0, 60.0, None]


def test_model_with_annotated_inputs_and_record_batch_return(tmp_path):
    job = Job(tmp_path, """
        from typing import Annotated
        import pyarrow as pa
        from lakeplan import model, Model, Parameter, TableSchema, Int64, Float64

        class Cols(TableSchema):
            id: Int64
            fare: Float64 | None

        @model()
        def scaled(
            trips: Annotated[pa.Table, Model("taxi_trips", projection_schema=Cols)],
            rate: Annotated[float, Parameter("rate")],
        ) -> pa.RecordBatch:
            fares = [None if f is None else f * rate for f in trips["fare"].to_pylist()]
            return pa.RecordBatch.from_pydict({"id": trips["id"].combine_chunks(), "fare": pa.array(fares, pa.float64())})
    """)
    proc, result = job.run("scaled", inputs=[
        job.table_input("trips", TRIPS.select(["id", "fare"])),
        {"param": "rate", "kind": "parameter", "value": 2.0},
    ])
    assert_ok(proc)
    assert result == {"ok": True, "rows": 4}
    assert job.output("scaled").column("fare").to_pylist() == [10.0, 25.0, 60.0, None]


def test_parameter_value_is_passed_as_is(tmp_path):
    job = Job(tmp_path, """
        from bauplan import model, Model, Parameter

        @model
        def pick(trips=Model("trips"), vendor=Parameter("vendor"), limit=Parameter("limit"), opts=Parameter("opts")):
            assert isinstance(limit, int) and isinstance(opts, dict), (limit, opts)
            rows = [r for r in trips.to_pylist() if r["vendor"] == vendor][:limit]
            return [dict(r, tag=opts["tag"]) for r in rows]
    """)
    proc, result = job.run("pick", inputs=[
        job.table_input("trips", TRIPS),
        {"param": "vendor", "kind": "parameter", "value": "a"},
        {"param": "limit", "kind": "parameter", "value": 1},
        {"param": "opts", "kind": "parameter", "value": {"tag": "x"}},
    ])
    assert_ok(proc)
    assert result == {"ok": True, "rows": 1}
    assert job.output("pick").to_pylist() == [{"id": 1, "fare": 5.0, "vendor": "a", "tag": "x"}]


def test_secret_is_read_from_its_file_which_is_then_removed(tmp_path):
    job = Job(tmp_path, """
        import os
        from bauplan import model, Model, Parameter

        @model
        def keyed(trips=Model("trips"), api_key=Parameter("api_key")):
            return [{"n": len(api_key), "ok": api_key == "s3cr3t value\\n"}]
    """)
    secret = tmp_path / "private" / "api_key.secret"
    secret.parent.mkdir()
    secret.write_text("s3cr3t value\n")
    proc, result = job.run("keyed", inputs=[
        job.table_input("trips", TRIPS),
        {"param": "api_key", "kind": "secret", "path": str(secret)},
    ])
    assert_ok(proc)
    assert job.output("keyed").to_pylist() == [{"n": 13, "ok": True}]
    assert not secret.exists(), "the worker removes the secret's file once read"
    # A secret input without a path is a bad task, not a crash.
    proc, _ = job.run("keyed", inputs=[
        job.table_input("trips", TRIPS),
        {"param": "api_key", "kind": "secret"},
    ])
    assert proc.returncode == 1 and "has no path" in proc.stderr, proc.stderr


def test_list_of_dicts(tmp_path):
    job = Job(tmp_path, """
        import bauplan

        @bauplan.model()
        def made_up():
            return [{"k": "a", "v": 1}, {"k": "b", "v": None}]
    """)
    proc, result = job.run("made_up")
    assert_ok(proc)
    assert result == {"ok": True, "rows": 2}
    assert job.output("made_up").to_pydict() == {"k": ["a", "b"], "v": [1, None]}


def test_pandas_dataframe(tmp_path):
    pytest.importorskip("pandas")
    job = Job(tmp_path, """
        import bauplan

        @bauplan.model()
        def by_vendor(trips=bauplan.Model("trips")):
            df = trips.to_pandas()
            plain = df[df["fare"] > 10]          # default index: dropped
            grouped = df.groupby("vendor")[["fare"]].sum()   # named index: kept as a column
            assert len(plain) == 2
            return grouped
    """)
    proc, result = job.run("by_vendor", inputs=[job.table_input("trips", TRIPS)])
    assert_ok(proc)
    assert result == {"ok": True, "rows": 3}
    out = job.output("by_vendor")
    assert out.schema.metadata is None
    assert sorted(out.column_names) == ["fare", "vendor"]
    assert dict(zip(out["vendor"].to_pylist(), out["fare"].to_pylist())) == {"a": 35.0, "b": 12.5, "c": 0.0}


def test_polars_dataframe(tmp_path):
    pytest.importorskip("polars")
    job = Job(tmp_path, """
        import bauplan
        import polars as pl

        @bauplan.model()
        def cheap(trips=bauplan.Model("trips")):
            return pl.from_arrow(trips).filter(pl.col("fare") < 20)
    """)
    proc, result = job.run("cheap", inputs=[job.table_input("trips", TRIPS)])
    assert_ok(proc)
    assert result == {"ok": True, "rows": 2}


def test_helper_module_from_the_project_dir(tmp_path):
    job = Job(tmp_path, """
        import bauplan
        from helpers import double
        from utils.names import upper

        @bauplan.model()
        def derived(trips=bauplan.Model("trips")):
            return [{"id": double(i), "vendor": upper(v)} for i, v in zip(trips["id"].to_pylist(), trips["vendor"].to_pylist())]
    """, module="pipeline_models.py")
    (job.project / "helpers.py").write_text("def double(x):\n    return 2 * x\n")
    (job.project / "utils").mkdir()
    (job.project / "utils" / "__init__.py").write_text("")
    (job.project / "utils" / "names.py").write_text("def upper(s):\n    return s.upper()\n")
    proc, result = job.run("derived", inputs=[job.table_input("trips", TRIPS)])
    assert_ok(proc)
    assert result == {"ok": True, "rows": 4}
    assert job.output("derived").to_pydict() == {"id": [2, 4, 6, 8], "vendor": ["A", "B", "A", "C"]}


@pytest.mark.parametrize(
    "body,returned",
    [("return 42", "int"), ("return {'a': [1]}", "dict"), ("return None", "NoneType"), ("return trips.column('id')", "pyarrow.lib.ChunkedArray")],
)
def test_non_table_return_is_bad_return(tmp_path, body, returned):
    job = Job(tmp_path, f"""
        import bauplan

        @bauplan.model()
        def broken(trips=bauplan.Model("trips")):
            {body}
    """)
    proc, result = job.run("broken", inputs=[job.table_input("trips", TRIPS)])
    assert proc.returncode == 1
    assert result["ok"] is False
    assert result["error_kind"] == "bad_return"
    assert result["error"] == f"function 'broken' returned {returned}, expected a table"
    assert "function 'broken' returned" in proc.stderr
    assert not (job.out / "broken.arrow").exists()


def test_list_of_non_dicts_and_empty_list_are_bad_returns(tmp_path):
    job = Job(tmp_path, """
        import bauplan

        @bauplan.model()
        def numbers():
            return [1, 2]

        @bauplan.model()
        def nothing():
            return []
    """)
    proc, result = job.run("numbers")
    assert proc.returncode == 1 and result["error_kind"] == "bad_return"
    assert "returned a list of int" in result["error"]
    proc, result = job.run("nothing")
    assert proc.returncode == 1 and result["error_kind"] == "bad_return"
    assert "returned an empty list" in result["error"]


def test_exception_gives_traceback_and_exit_1(tmp_path):
    job = Job(tmp_path, """
        import sys
        import bauplan

        def helper(x):
            raise ValueError(f"bad value {x}")

        @bauplan.model()
        def explodes(trips=bauplan.Model("trips")):
            print("about to fail")
            print("to stderr", file=sys.stderr)
            return helper(trips.num_rows)
    """)
    proc, result = job.run("explodes", inputs=[job.table_input("trips", TRIPS)])
    assert proc.returncode == 1
    assert result["ok"] is False
    assert result["error"] == "ValueError: bad value 4"
    assert result["error_kind"] == "exception"
    assert 'in helper' in result["traceback"] and "models.py" in result["traceback"]
    assert "Traceback (most recent call last)" in proc.stderr
    assert "ValueError: bad value 4" in proc.stderr
    assert "to stderr" in proc.stderr
    assert "about to fail" in proc.stdout


def test_import_error_in_user_module(tmp_path):
    job = Job(tmp_path, """
        import bauplan
        import no_such_module_here

        @bauplan.model()
        def never():
            return []
    """)
    proc, result = job.run("never")
    assert proc.returncode == 1
    assert result["error_kind"] == "exception"
    assert result["error"].startswith("ModuleNotFoundError: No module named 'no_such_module_here'")


def test_missing_function(tmp_path):
    job = Job(tmp_path, "x = 1\n")
    proc, result = job.run("ghost")
    assert proc.returncode == 1
    assert result["error_kind"] == "exception"
    assert "has no function 'ghost'" in result["error"]


def test_memory_limit(tmp_path):
    job = Job(tmp_path, """
        import bauplan

        @bauplan.model()
        def hog():
            chunks = []
            for _ in range(1000):
                chunks.append(bytearray(64 * 1024 * 1024))   # 64 GiB in total
            return [{"n": len(chunks)}]
    """)
    proc, result = job.run("hog", memory_bytes=768 * 1024 * 1024)
    assert proc.returncode == 1, proc.stderr
    assert result["ok"] is False
    assert result["error_kind"] == "memory"
    assert result["error"].startswith("MemoryError")
    assert "MemoryError" in proc.stderr


def test_memory_limit_leaves_room_for_normal_work(tmp_path):
    job = Job(tmp_path, """
        import bauplan

        @bauplan.model()
        def modest(trips=bauplan.Model("trips")):
            buf = bytearray(64 * 1024 * 1024)
            return trips.append_column("big", [[len(buf)] * trips.num_rows])
    """)
    proc, result = job.run("modest", inputs=[job.table_input("trips", TRIPS)], memory_bytes=1536 * 1024 * 1024)
    assert_ok(proc)
    assert result == {"ok": True, "rows": 4}


# --------------------------------------------------------------------------- expectations

EXPECTATIONS = """
    import numpy_free_marker  # a helper module written by the test
    import bauplan
    from bauplan.standard_expectations import expect_column_no_nulls, expect_column_all_unique
    import pyarrow.compute as pc

    @bauplan.expectation()
    def ids_unique(data=bauplan.Model("trips")):
        return expect_column_all_unique(data, "id")

    @bauplan.expectation()
    @bauplan.python("3.11")
    def fares_present(data=bauplan.Model("trips")):
        return expect_column_no_nulls(data, "fare")

    @bauplan.expectation
    def fares_asserted(data=bauplan.Model("trips")):
        assert expect_column_no_nulls(data, "fare"), "fare has nulls"
        return True

    @bauplan.expectation()
    def bare_assert(data=bauplan.Model("trips")):
        assert data.num_rows > 100
        return True

    @bauplan.expectation()
    def arrow_scalar(data=bauplan.Model("trips")):
        return pc.all(pc.greater(data["id"], 0))

    @bauplan.expectation()
    def not_a_bool(data=bauplan.Model("trips")):
        return 1

    @bauplan.expectation()
    def raises(data=bauplan.Model("trips")):
        return data["no_such_column"]
"""


BARE_ASSERT_LINE = textwrap.dedent(EXPECTATIONS).splitlines().index("    assert data.num_rows > 100") + 1


@pytest.fixture
def expectation_job(tmp_path):
    job = Job(tmp_path, EXPECTATIONS, module="expectations.py")
    (job.project / "numpy_free_marker.py").write_text("")
    job.trips = job.table_input("data", TRIPS)
    return job


@pytest.mark.parametrize(
    "function,value,message",
    [
        ("ids_unique", True, None),
        ("fares_present", False, None),
        ("fares_asserted", False, "fare has nulls"),
        ("bare_assert", False, f"assertion failed at expectations.py:{BARE_ASSERT_LINE}: assert data.num_rows > 100"),
        ("arrow_scalar", True, None),
    ],
)
def test_expectation_results(expectation_job, function, value, message):
    proc, result = expectation_job.run(function, kind="expectation", inputs=[expectation_job.trips])
    assert_ok(proc)
    assert result == {"ok": True, "value": value, "message": message}
    assert not list(expectation_job.out.glob("*.arrow"))


def test_expectation_numpy_bool(tmp_path):
    pytest.importorskip("numpy")
    job = Job(tmp_path, """
        import numpy as np
        import bauplan

        @bauplan.expectation()
        def np_true(data=bauplan.Model("trips")):
            return np.bool_(data.num_rows == 4)
    """)
    proc, result = job.run("np_true", kind="expectation", inputs=[job.table_input("data", TRIPS)])
    assert_ok(proc)
    assert result == {"ok": True, "value": True, "message": None}


def test_expectation_non_bool_is_bad_return(expectation_job):
    proc, result = expectation_job.run("not_a_bool", kind="expectation", inputs=[expectation_job.trips])
    assert proc.returncode == 1
    assert result["error_kind"] == "bad_return"
    assert result["error"] == "function 'not_a_bool' returned int, expected a bool"


def test_expectation_exception(expectation_job):
    proc, result = expectation_job.run("raises", kind="expectation", inputs=[expectation_job.trips])
    assert proc.returncode == 1
    assert result["error_kind"] == "exception"
    assert result["error"].startswith("KeyError")
    assert "Traceback" in proc.stderr


# --------------------------------------------------------------------------- bad tasks


def test_unusable_task_file_exits_2(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR))
    missing = subprocess.run([sys.executable, "-m", "lakeplan._worker", str(tmp_path / "nope.json")],
                             env=env, capture_output=True, text=True)
    assert missing.returncode == 2
    assert "cannot read task file" in missing.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"node": "x", "kind": "model", "module_file": "/m.py", "function": "x", "result": "/r.json"}))
    incomplete = subprocess.run([sys.executable, "-m", "lakeplan._worker", str(bad)], env=env, capture_output=True, text=True)
    assert incomplete.returncode == 2
    assert "a model task needs 'output'" in incomplete.stderr


def test_zero_copy_read(tmp_path):
    """Inputs are memory-mapped: the table's buffers live in the mapped file, not the heap."""
    from lakeplan._worker import read_table

    path = tmp_path / "t.arrow"
    big = pa.table({"x": pa.array(range(1_000_000), pa.int64())})
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, big.schema) as writer:
        writer.write_table(big)
    before = pa.total_allocated_bytes()
    table = read_table(str(path))
    assert table.equals(big)
    assert pa.total_allocated_bytes() - before < 1_000_000
