/**
 * Regenerates db/schema.ts from the migrations (`make db-types`) or, with --verify, fails when
 * the committed file has drifted from them (`make check`). It migrates a throwaway database:
 * the embedded Postgres, or a scratch database on DATABASE_URL's server when that is set.
 */
import { spawnSync } from 'node:child_process';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { startEmbeddedPostgres } from '../src/platform/embedded-postgres.ts';
import { migrateToLatest } from '../src/platform/db.ts';
import { withDatabase } from '../src/testing/databases.ts';

const verify = process.argv.includes('--verify');
const SCHEMA = new URL('./schema.ts', import.meta.url).pathname;

async function generate(url: string): Promise<number> {
  const db = new Kysely<unknown>({
    dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 1 }) }),
  });
  await migrateToLatest(db);
  await db.destroy();
  const args = [
    '--dialect=postgres',
    `--url=${url}`,
    '--exclude-pattern=keytrail_migration*',
    '--type-mapping={"int8":"number"}',
    `--out-file=${SCHEMA}`,
    ...(verify ? ['--verify'] : []),
  ];
  const bin = new URL('../node_modules/.bin/kysely-codegen', import.meta.url).pathname;
  return spawnSync(bin, args, { stdio: 'inherit' }).status ?? 1;
}

const external = process.env.DATABASE_URL;
const server = external
  ? undefined
  : await startEmbeddedPostgres({
      dataDir: `/tmp/keytrail-codegen-${process.pid}/pg`,
      persistent: false,
    });
let status: number;
try {
  status = await withDatabase(external ?? server!.url, `keytrail_codegen_${process.pid}`, generate);
} finally {
  await server?.stop();
}
if (status !== 0 && verify) console.error('db/schema.ts is out of date: run `make db-types`');
process.exit(status);
