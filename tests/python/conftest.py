"""Fixtures for tests that drive the real `lakeplan` binary from Python."""
import json
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT / "data"


def lakeplan_bin() -> str:
    path = os.environ.get("LAKEPLAN_BIN", str(ROOT / "target" / "debug" / "lakeplan"))
    if not os.path.exists(path):
        raise RuntimeError(f"lakeplan binary not found at {path}: build it first (cargo build)")
    return path


class Lake:
    def __init__(self, path: pathlib.Path):
        self.path = path

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = dict(os.environ, LAKEPLAN_LAKE=str(self.path), LAKEPLAN_USER="pytest")
        p = subprocess.run([lakeplan_bin(), *args], env=env, capture_output=True, text=True)
        if check and p.returncode != 0:
            raise AssertionError(f"lakeplan {args} failed: {p.stderr}")
        return p

    def json(self, *args: str):
        return json.loads(self.run("-O", "json", *args).stdout)

    def rows(self, sql: str, *args: str):
        return self.json("query", sql, "--all-rows", *args)


@pytest.fixture
def lake(tmp_path) -> Lake:
    return Lake(tmp_path / "lake")
