"""`bauplan.store` / `lakeplan.store` (save_obj, load_obj) in the worker, and the analyzer's table
of the libraries' modules checked against the packages. The runs that commit objects to a branch
are in crates/cli/tests/it/store.rs."""

import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PYTHON_DIR = Path(__file__).resolve().parents[2] / "python"
sys.path.insert(0, str(PYTHON_DIR))

import bauplan  # noqa: E402
import lakeplan  # noqa: E402
from lakeplan import _analyze  # noqa: E402


def run_worker(tmp_path: Path, source: str, function: str, store: dict) -> dict:
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    (project / "models.py").write_text(textwrap.dedent(source))
    task = {
        "node": function,
        "kind": "model",
        "module_file": str(project / "models.py"),
        "function": function,
        "project_dir": str(project),
        "inputs": [],
        "output": str(tmp_path / f"{function}.arrow"),
        "result": str(tmp_path / f"{function}.result.json"),
        "store": store,
    }
    task_file = tmp_path / f"{function}.task.json"
    task_file.write_text(json.dumps(task))
    env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR))
    proc = subprocess.run(
        [sys.executable, "-m", "lakeplan._worker", str(task_file)],
        env=env, capture_output=True, text=True, timeout=120,
    )
    result = json.loads(Path(task["result"]).read_text())
    result["stderr"] = proc.stderr
    return result


def test_saved_objects_are_reported_and_load_back(tmp_path):
    saves = tmp_path / "saves"
    result = run_worker(
        tmp_path,
        """
        import bauplan
        from bauplan.store import save_obj, load_obj

        def train():
            save_obj("weights", {"a": 2, "b": [1, 2]})
            bauplan.store.save_obj("bias", 0.5)
            assert load_obj("weights") == {"a": 2, "b": [1, 2]}
            return [{"ok": 1}]
        """,
        "train",
        {"objects": {}, "save_dir": str(saves)},
    )
    assert result["ok"], result
    saved = result["saved_objects"]
    assert sorted(saved) == ["bias", "weights"]
    for entry in saved.values():
        assert Path(entry["file"]).parent == saves and Path(entry["file"]).stat().st_size == entry["size"]

    # A later function is handed the file as an object it may load.
    result = run_worker(
        tmp_path,
        """
        from lakeplan.store import load_obj

        def use():
            w = load_obj("weights")
            return [{"a": w["a"]}]
        """,
        "use",
        {"objects": {"weights": saved["weights"]["file"]}, "save_dir": str(tmp_path / "other")},
    )
    assert result["ok"], result
    assert "saved_objects" not in result


def test_missing_key_and_unpicklable_object_are_clear_errors(tmp_path):
    result = run_worker(
        tmp_path,
        """
        from bauplan.store import load_obj

        def use():
            return load_obj("regression")
        """,
        "use",
        {"objects": {"other": "/nonexistent"}, "save_dir": str(tmp_path / "s")},
    )
    assert not result["ok"]
    assert result["error"].startswith("UserObjectKeyNotExistsError: no object is saved under 'regression'")
    assert "saved objects: other" in result["error"]

    result = run_worker(
        tmp_path,
        """
        from bauplan.store import save_obj

        def save():
            save_obj("gen", (i for i in range(3)))
            return [{"x": 1}]
        """,
        "save",
        {"objects": {}, "save_dir": str(tmp_path / "s")},
    )
    assert not result["ok"]
    assert result["error"].startswith("ObjectCannotBeSerializedError: object 'gen' (builtins.generator) cannot be pickled")


def test_outside_a_run_the_store_says_so():
    lakeplan.store._configure(None)
    with pytest.raises(lakeplan.store.StoreNotAvailableError, match="inside a pipeline function"):
        bauplan.store.save_obj("k", 1)
    assert bauplan.store.load_obj is lakeplan.store.load_obj


def test_analyzer_knows_every_module_and_name_of_the_libraries():
    # The analyzer runs without the libraries (standard library only): its table must match them.
    for module, names in _analyze.LIBRARY_MODULES.items():
        mod = importlib.import_module(module)
        if names is None:
            continue
        public = set(getattr(mod, "__all__", ()))
        assert public <= set(names), (module, public - set(names))
        for name in names:
            assert hasattr(mod, name), (module, name)
