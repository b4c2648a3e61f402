#!/usr/bin/env bash
# make test-citus: the suites that touch SQL (every *.int.test.ts but those below) against a
# local Citus cluster (coordinator and 2 workers, started if none runs: scripts/citus.sh). Each
# test file gets its own database on every node (src/testing/citus.ts).
set -Eeuo pipefail
cd "$(dirname "$0")/.."

# Not run on the cluster, each for its reason (all of them run in `make test`):
excluded=(
  # The database server itself: the embedded one, one restarted under the app, npm packaging.
  src/platform/embedded-postgres.int.test.ts
  test/postgres-restart.int.test.ts
  test/package.int.test.ts
  # They find a blocked statement by its lock wait in the coordinator's pg_stat_activity; on
  # Citus the statement waits on a worker.
  src/http/errors-middleware.int.test.ts
  src/policies/dormant-safety.int.test.ts
  # They inject a failure with a trigger, which Citus refuses on a distributed table.
  src/policies/dormant-freshness.int.test.ts
  src/cli/ingest.int.test.ts
  # It asserts one PostgreSQL's plan shape (no Sort node under the export's COPY).
  src/usage/export-csv.int.test.ts
  # An interrupted DETACH … CONCURRENTLY: Citus 12.1 has none (prune detaches plainly there).
  src/usage/prune-detach.int.test.ts
)
args=()
for file in "${excluded[@]}"; do args+=(--exclude "$file"); done

bash scripts/citus.sh start >/dev/null # its DATABASE_URL line holds the cluster's password
DATABASE_URL=$(bash scripts/citus.sh url)
export DATABASE_URL
exec node_modules/.bin/node node_modules/vitest/vitest.mjs run int.test "${args[@]}" "$@"
