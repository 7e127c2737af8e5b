#!/usr/bin/env bash
# Runs every test: formatting, lints, Rust unit + integration tests (including the
# sqllogictest files, the crash and concurrency tests), and the Python interop tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
[ "${CI:-}" = "true" ] && export CARGO_INCREMENTAL=0

scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
# The Rust tests built target/debug/lakeplan (the CLI tests run it); the Python tests drive
# that same binary. (A separate `cargo build -p lakeplan-cli` would unify features
# differently and rebuild much of the dependency tree.)
echo "== Python tests (against target/debug/lakeplan)"
.venv/bin/python -m pytest -q tests/python
