# keytrail — the front door. `make help` lists the targets.
# The project runs its own Node 24 (the `node` devDependency), whatever the system Node is:
# node_modules/.bin comes first on PATH, so scripts with `#!/usr/bin/env node` get it too.
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
NODE := $(CURDIR)/node_modules/.bin/node

.DEFAULT_GOAL := help
.PHONY: help install start test test-citus coverage check typecheck lint format db-types bench bench-quick screenshots citus citus-stop

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

node_modules/.install-stamp: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install: node_modules/.install-stamp ## install dependencies, Node 24 included

start: install ## run keytrail (embedded Postgres under ./.data unless DATABASE_URL is set)
	$(NODE) src/ui/build.ts
	$(NODE) bin/keytrail.ts serve

test: install ## run the whole test suite against real Postgres
	$(NODE) node_modules/vitest/vitest.mjs run $(TEST_FLAGS)

test-citus: install ## the suites that touch SQL against a local Citus cluster (make citus; started if none runs)
	bash scripts/test-citus.sh

coverage: install ## the test suite with coverage; fails under 95 % lines/statements, 85 % branches
	$(MAKE) test TEST_FLAGS=--coverage

check: typecheck lint ## types, lint, format and database-types drift
	prettier --check .
	$(NODE) db/codegen.ts --verify

typecheck: install
	tsc --noEmit
	tsc --noEmit -p src/ui

lint: install
	eslint --max-warnings 0 .

format: install ## rewrite files with prettier
	prettier --write .

db-types: install ## regenerate db/schema.ts from the migrations
	$(NODE) db/codegen.ts

citus: ## a local Citus cluster (coordinator, 2 workers; Citus built from ../shared/vendor if missing); prints DATABASE_URL=…
	bash scripts/citus.sh start

citus-stop: ## stop the local Citus cluster and delete its data
	bash scripts/citus.sh stop

screenshots: install ## docs/screenshots/*.png of the admin page, from a freshly seeded Demo org (needs Chromium)
	$(NODE) scripts/screenshots.ts

bench: install ## all benchmarks at full size (~20 min); writes docs/benchmarks.md
	BENCH_REPORT=docs/benchmarks.md $(NODE) bench/run.ts

bench-quick: install ## all benchmarks, small sizes (< 3 min); writes docs/benchmarks-quick.md
	BENCH_REPORT=docs/benchmarks-quick.md $(NODE) bench/run.ts --quick

bench-pipeline: install ## the JavaScript cost of each layer of a request, in-process (no sockets)
	$(NODE) bench/pipeline.ts

bench-%: install ## one scenario at full size: bench-auth, bench-ingest, bench-freshness, bench-reads, bench-prune, bench-ui, bench-migration, bench-migration-0014, bench-serve, bench-scaling, bench-isolation, bench-limits, bench-citus (starts the local cluster)
	$(NODE) bench/run.ts $* --no-write
