#!/usr/bin/env bash
# Installs what lakeplan's tests need that a fresh machine lacks: bubblewrap and the PostgreSQL
# server (apt), and a Python venv (.venv) with the pinned test packages (including uv).
# Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust (rustup) first" >&2; exit 1; }
command -v python3 >/dev/null || { echo "setup: python3 not found" >&2; exit 1; }

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
# apt-get install, with apt-get update only when the install fails (a fresh machine with empty
# package lists).
apt_install() {
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" \
    || { $sudo apt-get update && $sudo env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y --no-install-recommends "$@"; }
}

# bubblewrap: the sandbox of pipeline workers (crates/runtime).
command -v bwrap >/dev/null || apt_install bubblewrap

# The PostgreSQL server binaries (initdb, pg_ctl, postgres): the PostgreSQL metastore's tests
# start throw-away servers of their own with them (lakeplan_catalog::testing). Debian's package
# also creates a system cluster on port 5432, which may start; the tests never use it, so stop it.
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  apt_install postgresql
  if command -v pg_lsclusters >/dev/null; then
    pg_lsclusters -h 2>/dev/null | while read -r version cluster _port status _rest; do
      if [ "$status" = online ]; then
        $sudo pg_ctlcluster "$version" "$cluster" stop || true
      fi
    done
  fi
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
# The public Bauplan client for the /catalog/v0 tests, in a venv of its own.
if [ ! -x .venv-bauplan/bin/python ]; then
  python3 -m venv .venv-bauplan
fi
bstamp=.venv-bauplan/.requirements.sha
bwant=$(sha256sum requirements-bauplan.txt | cut -d' ' -f1)
if [ "$(cat "$bstamp" 2>/dev/null)" != "$bwant" ]; then
  .venv-bauplan/bin/pip install --quiet --disable-pip-version-check -r requirements-bauplan.txt
  echo "$bwant" > "$bstamp"
fi
# The pipeline-authoring package (`import lakeplan` / `import bauplan` in an editor or a script);
# the sandboxes get the same sources from the lakeplan binary itself.
pystamp=.venv/.python-package.sha
pywant=$(cat python/pyproject.toml python/lakeplan/*.py python/bauplan/*.py | sha256sum | cut -d' ' -f1)
if [ "$(cat "$pystamp" 2>/dev/null)" != "$pywant" ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps ./python
  echo "$pywant" > "$pystamp"
fi
