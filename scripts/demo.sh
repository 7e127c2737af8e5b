#!/usr/bin/env bash
# Builds lakeplan and runs its main job on a local lake: import sample data, branch, change a
# table on the branch, query both refs, diff, merge, then run a pipeline (Python functions in
# sandboxes + a SQL model) on a branch, query its outputs, run it again (cache hits), and see
# the history. scripts/setup.sh installs what pipelines need (bubblewrap, uv).
# The demo lake is ./demo-lake (removed first); set LAKEPLAN_LAKE to use another folder.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build -p lakeplan-cli --locked
export PATH="$PWD/target/debug:$PATH"
export LAKEPLAN_LAKE="${LAKEPLAN_LAKE:-$PWD/demo-lake}"
rm -rf "$LAKEPLAN_LAKE"

run() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

run lakeplan lake info
run lakeplan table create trips --search-uri data/trips_2024_01.csv --partitioned-by "vendor"
run lakeplan table import trips --search-uri data/trips_2024_01.csv
run lakeplan table create zones --search-uri data/zones.jsonl
run lakeplan table import zones --search-uri data/zones.jsonl
run lakeplan checkout -b feb
run lakeplan table import trips --search-uri data/trips_2024_02.csv
run lakeplan query "SELECT z.borough, count(*) AS trips, round(avg(t.tip), 2) AS avg_tip FROM trips t JOIN zones z ON t.pickup_zone = z.zone_id GROUP BY z.borough ORDER BY trips DESC"
run lakeplan query 'SELECT (SELECT count(*) FROM "main".default.trips) AS on_main, (SELECT count(*) FROM trips) AS on_feb'
run lakeplan branch diff main feb
run lakeplan checkout main
run lakeplan branch merge feb
run lakeplan query "SELECT date_trunc('month', pickup_at) AS month, count(*) AS trips FROM trips GROUP BY 1 ORDER BY 1"

# A pipeline: two Python models and an expectation (each in its own sandbox, with exactly the
# packages it declares), a SQL model, parameters; planned without running user code.
PROJECT="$LAKEPLAN_LAKE/project"
run lakeplan init "$PROJECT" --name taxi_demo
run lakeplan checkout -b pipelines
run lakeplan run -p "$PROJECT" --param min_fare=10
run lakeplan query "SELECT * FROM trips_by_borough"
run lakeplan table ls -r main      # main does not have the pipeline's tables yet
run lakeplan run -p "$PROJECT" --param min_fare=10    # unchanged: every node is a cache hit, nothing to publish
run lakeplan job ls -n 3
run lakeplan checkout main
run lakeplan branch merge pipelines
run lakeplan commit -n 3
run lakeplan audit -n 5
