import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { Kysely, PostgresDialect, sql, type RawBuilder } from 'kysely';
import { Migrator, type MigrationResultSet } from 'kysely/migration';
import type { DB } from '../../db/schema.ts';
import { migrations } from '../../db/migrations/index.ts';
import type { Logger } from './logger.ts';
import { cancelBackend, connectTracked, trackedPool } from './db-scope.ts';

export type Database = Kysely<DB>;

/** Counts statements sent through Kysely; tests use it to prove a path touches no database. */
export type QueryStats = { count: number };

// int8 (counts) as JS numbers: exact below 2^53, which request counters never reach.
const parseInt8 = (value: string): number => Number(value);
const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary'): (value: string) => unknown {
    if (oid === 20) return parseInt8;
    return pg.types.getTypeParser(oid, format ?? 'text') as (value: string) => unknown;
  },
};

export type DbHandle = { db: Database; pool: pg.Pool; stats: QueryStats; close(): Promise<void> };

/**
 * How long a query waits for a pooled connection (all busy, or Postgres not answering) before
 * it fails: the request then ends in 503 instead of hanging (SPEC §9). pg's default waits forever.
 */
export const POOL_WAIT_MS = 5_000;

/** pg-pool's error when no connection came within `connectionTimeoutMillis`: nothing was sent. */
const CHECKOUT_TIMEOUT = 'timeout exceeded when trying to connect';

/**
 * A single statement (autocommit) that surely changed nothing: Postgres answered it with an
 * error of the statement (its transaction rolled back: a statement timeout, a deadlock), or it
 * never left the pool. Not a connection lost or ended by the server (FATAL, class 08 or 57P):
 * the statement may have committed just before.
 */
export function surelyNotApplied(error: unknown): boolean {
  if (error instanceof pg.DatabaseError) {
    const code = error.code ?? '';
    const fatal = error.severity === 'FATAL' || error.severity === 'PANIC';
    return !fatal && !code.startsWith('08') && !code.startsWith('57P');
  }
  return error instanceof Error && error.message === CHECKOUT_TIMEOUT;
}

export function createDb(options: {
  url: string;
  poolSize: number;
  logger: Logger;
  applicationName?: string;
  /** Every statement on this pool is cancelled by Postgres past this (unset: no deadline). */
  statementTimeoutMs?: number;
  /** Connections of this pool one request holds at once (unset: as many as it asks for). */
  connectionsPerRequest?: number;
}): DbHandle {
  // Day boundaries (::date, date_trunc) are UTC whatever the server's default time zone.
  // On Citus, a transaction that writes coordinator tables (quotas, pg-boss) after a multi-shard
  // statement must run its multi-shard statements over one connection per node, or Citus refuses
  // the write. Plain PostgreSQL keeps the setting as an unused placeholder.
  const settings = ['-c TimeZone=UTC', '-c citus.multi_shard_modify_mode=sequential'];
  if (options.statementTimeoutMs)
    settings.push(`-c statement_timeout=${options.statementTimeoutMs}`);
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolSize,
    connectionTimeoutMillis: POOL_WAIT_MS,
    application_name: options.applicationName ?? 'keytrail',
    options: settings.join(' '),
    types,
  });
  // An idle client losing its connection (Postgres restart) must not crash the process.
  pool.on('error', (error) => options.logger.warn({ err: error.message }, 'idle db client error'));
  // The pool watches a client only while it is idle. A backend that goes away while a query
  // holds its client (Postgres restarting, pg_terminate_backend) emits 'error' on the client; with
  // no listener that is an uncaught exception and the process dies. The query already fails with
  // the error (→ 503) and the pool drops the dead client on release, so nothing is left to do.
  pool.on('connect', (client) => client.on('error', () => undefined));
  const stats: QueryStats = { count: 0 };
  const db = new Kysely<DB>({
    // Checkouts are tracked per request: a request whose client left has its statements cancelled.
    dialect: new PostgresDialect({ pool: trackedPool(pool, options.connectionsPerRequest) }),
    log: (event) => {
      if (event.level === 'query') stats.count += 1;
    },
  });
  let closed = false;
  return {
    db,
    pool,
    stats,
    async close() {
      if (closed) return;
      closed = true;
      await db.destroy();
    },
  };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- see migrateToLatest
export function createMigrator(db: Kysely<any>): Migrator {
  return new Migrator({
    db,
    provider: { getMigrations: () => Promise.resolve(migrations) },
    migrationTableName: 'keytrail_migrations',
    migrationLockTableName: 'keytrail_migrations_lock',
  });
}

/** Applies every pending migration; throws with the failing migration's name. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations work on any schema
export async function migrateToLatest(db: Kysely<any>): Promise<string[]> {
  const { error, results } = await createMigrator(db).migrateToLatest();
  return reportMigrations(error, results);
}

function reportMigrations(error: unknown, results: MigrationResultSet['results']): string[] {
  const failed = results?.find((r) => r.status === 'Error');
  if (error) {
    throw new Error(`migration ${failed?.migrationName ?? '(unknown)'} failed`, { cause: error });
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

/** True when every known migration has been applied (readiness). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- see migrateToLatest
export async function migrationsApplied(db: Kysely<any>): Promise<boolean> {
  const all = await createMigrator(db).getMigrations();
  return all.every((m) => m.executedAt !== undefined);
}

/**
 * The database's clock: pg-boss stamps job times with it, so a cutoff compared with them must
 * come from it too, not from the clock of the machine asking.
 */
export async function databaseNow(db: Kysely<DB>): Promise<Date> {
  const { rows } = await sql<{ now: Date }>`select clock_timestamp() as now`.execute(db);
  const now = rows[0]?.now;
  if (!now) throw new Error('select clock_timestamp() returned no row');
  return now;
}

/** Readiness probe: one round trip. */
const citusOf = new WeakMap<object, Promise<boolean>>();

/**
 * The database is a Citus coordinator (migration 0014 distributed keytrail's tables there),
 * asked once per Kysely instance (a transaction asks for its own instance's answer).
 */
export function onCitus(db: Kysely<DB>): Promise<boolean> {
  let known = citusOf.get(db);
  if (!known) {
    known = sql<{ citus: boolean }>`
      select exists (select 1 from pg_extension where extname = 'citus') as citus`
      .execute(db)
      .then((r) => r.rows[0]?.citus ?? false);
    // A failed ask (Postgres unreachable) is asked again next time.
    known.catch(() => citusOf.delete(db));
    citusOf.set(db, known);
  }
  return known;
}

export async function ping(db: Kysely<DB>): Promise<boolean> {
  await sql`select 1`.execute(db);
  return true;
}

/**
 * Streams `COPY (...) TO STDOUT` from a pooled connection. Postgres produces rows as the socket
 * takes them: a slow reader holds the query (wait event ClientWrite), so memory stays flat on
 * both sides. The connection goes back to the pool when the stream ends; if the stream is cut
 * short its statement is cancelled (a backend whose socket is gone would scan on until it next
 * has a row to write) and the connection destroyed, since it is mid-COPY.
 */
export async function copyOut(pool: pg.Pool, copySql: string): Promise<Readable> {
  const client = await connectTracked(pool);
  const stream = client.query(copyTo(copySql));
  let released = false;
  const release = (error?: Error) => {
    if (released) return;
    released = true;
    if (error) void cancelBackend(client);
    client.release(error);
  };
  stream.once('end', () => release());
  stream.once('error', (error) => release(error));
  stream.once('close', () =>
    release(stream.readableEnded ? undefined : new Error('copy stream closed early')),
  );
  return stream;
}

/** A transaction on one pooled connection that can also send COPY FROM, which Kysely cannot. */
export type RawTransaction = {
  /** Compiles a Kysely sql`` statement and runs it on the transaction's connection. */
  run<R>(query: RawBuilder<R>): Promise<R[]>;
  /** A statement without parameters or result (SAVEPOINT, ROLLBACK TO SAVEPOINT). */
  exec(text: string): Promise<void>;
  /** `COPY … FROM STDIN` fed with `data` (text format, already escaped), chunk by chunk. */
  copyIn(copySql: string, data: readonly (Buffer | string)[]): Promise<void>;
};

/**
 * Runs `fn` in BEGIN … COMMIT on one connection, rolling back if it throws. A connection whose
 * ROLLBACK fails is destroyed rather than returned to the pool.
 */
export async function rawTransaction<T>(
  handle: Pick<DbHandle, 'db' | 'pool' | 'stats'>,
  fn: (tx: RawTransaction) => Promise<T>,
): Promise<T> {
  const client = await connectTracked(handle.pool);
  // The pool listens for errors on idle clients only: while this one is held, a backend that
  // goes away must not become an unhandled 'error' event (the next statement fails instead).
  let lost: Error | undefined;
  const onError = (error: Error) => (lost = error);
  client.on('error', onError);
  const tx: RawTransaction = {
    async run<R>(query: RawBuilder<R>) {
      const compiled = query.compile(handle.db);
      handle.stats.count += 1;
      const result = await client.query(compiled.sql, compiled.parameters as unknown[]);
      return result.rows as R[];
    },
    async exec(text) {
      handle.stats.count += 1;
      await client.query(text);
    },
    async copyIn(copySql, data) {
      handle.stats.count += 1;
      await pipeline(Readable.from(data), client.query(copyFrom(copySql)));
    },
  };
  let broken: Error | undefined;
  try {
    await client.query('begin');
    const result = await fn(tx);
    await client.query('commit');
    return result;
  } catch (error) {
    await client.query('rollback').catch((rollbackError: unknown) => {
      broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
    });
    throw error;
  } finally {
    client.off('error', onError);
    client.release(broken ?? lost);
  }
}
