#!/usr/bin/env bash
# Installs what lakeplan's tests need that a fresh machine lacks: bubblewrap (apt) and a Python
# venv (.venv) with the pinned test packages (including uv). Idempotent: a second run installs
# nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust (rustup) first" >&2; exit 1; }
command -v python3 >/dev/null || { echo "setup: python3 not found" >&2; exit 1; }

# bubblewrap: the sandbox of pipeline workers (crates/runtime). apt-get update only when the
# install fails (a fresh machine with empty package lists).
if ! command -v bwrap >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get install -y bubblewrap || { $sudo apt-get update && $sudo apt-get install -y bubblewrap; }
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.requirements.sha
want=$(sha256sum requirements-dev.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  echo "$want" > "$stamp"
fi
# The pipeline-authoring package (`import lakeplan` / `import bauplan` in an editor or a script);
# the sandboxes get the same sources from the lakeplan binary itself.
pystamp=.venv/.python-package.sha
pywant=$(cat python/pyproject.toml python/lakeplan/*.py python/bauplan/*.py | sha256sum | cut -d' ' -f1)
if [ "$(cat "$pystamp" 2>/dev/null)" != "$pywant" ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps ./python
  echo "$pywant" > "$pystamp"
fi
