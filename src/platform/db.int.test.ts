import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { describe, expect, inject, it } from 'vitest';
import { migrations } from '../../db/migrations/index.ts';
import { useTestDatabase } from '../testing/harness.ts';
import { withDatabase } from '../testing/databases.ts';
import pg from 'pg';
import {
  copyOut,
  createDb,
  migrateToLatest,
  migrationsApplied,
  rawTransaction,
  surelyNotApplied,
} from './db.ts';
import { createLogger } from './logger.ts';

const dbUrl = useTestDatabase();
const logger = createLogger({ level: 'silent' });
const scratch = () => `keytrail_db_${randomBytes(4).toString('hex')}`;

async function withHandle<T>(url: string, fn: (h: ReturnType<typeof createDb>) => Promise<T>) {
  const handle = createDb({ url, poolSize: 1, logger });
  try {
    return await fn(handle);
  } finally {
    await handle.close();
  }
}

describe('migrations', () => {
  it('migrate an empty database once, reporting each migration applied, and nothing on a rerun', async () => {
    await withDatabase(inject('serverUrl'), scratch(), (url) =>
      withHandle(url, async ({ db }) => {
        expect(await migrationsApplied(db)).toBe(false);
        expect(await migrateToLatest(db)).toEqual(Object.keys(migrations));
        expect(await migrationsApplied(db)).toBe(true);
        expect(await migrateToLatest(db)).toEqual([]);
      }),
    );
  });

  it('name the failing migration and leave the database unmigrated', async () => {
    await withDatabase(inject('serverUrl'), scratch(), (url) =>
      withHandle(url, async ({ db }) => {
        await sql`create table orgs (unrelated int)`.execute(db);
        await expect(migrateToLatest(db)).rejects.toThrow('migration 0001_keys failed');
        expect(await migrationsApplied(db)).toBe(false);
      }),
    );
  });
});

describe('connections', () => {
  it('never pools a connection that died inside a transaction', async () => {
    await withHandle(dbUrl(), async (handle) => {
      const dying = rawTransaction(handle, (tx) =>
        tx.run(sql`select pg_terminate_backend(pg_backend_pid())`),
      );
      await expect(dying).rejects.toThrow();
      expect(handle.pool.totalCount).toBe(0);
      // The only pooled connection was replaced, not reused dead.
      const { rows } = await sql<{ one: number }>`select 1 as one`.execute(handle.db);
      expect(rows).toEqual([{ one: 1 }]);
    });
  });

  it('discards the connection of a COPY export the reader abandoned', async () => {
    await withHandle(dbUrl(), async (handle) => {
      const stream = await copyOut(
        handle.pool,
        'copy (select generate_series(1, 1000000)) to stdout',
      );
      await new Promise((resolve) => stream.once('data', resolve));
      stream.destroy();
      await new Promise((resolve) => stream.once('close', resolve));
      expect(handle.pool.totalCount).toBe(0);
      const { rows } = await sql<{ one: number }>`select 1 as one`.execute(handle.db);
      expect(rows).toEqual([{ one: 1 }]);
    });
  });

  it('tells a statement that surely changed nothing from one that may have committed', async () => {
    const failure = (work: Promise<unknown>) =>
      work.then(
        () => null,
        (error: unknown) => error,
      );
    // A lock another session holds: the statement waits for it past its deadline.
    const holder = new pg.Client({ connectionString: dbUrl() });
    await holder.connect();
    try {
      await holder.query('select pg_advisory_lock(724011)');
      await withHandle(dbUrl(), async ({ db }) => {
        // Refused by the server: rolled back.
        await sql`set statement_timeout = 20`.execute(db);
        const timedOut = await failure(sql`select pg_advisory_lock(724011)`.execute(db));
        expect(surelyNotApplied(timedOut)).toBe(true);
        // The server ended the session: it may have committed just before.
        const ended = await failure(sql`select pg_terminate_backend(pg_backend_pid())`.execute(db));
        expect(ended).toBeInstanceOf(Error);
        expect(surelyNotApplied(ended)).toBe(false);
      });
    } finally {
      await holder.end();
    }
    // Never sent: no connection came in time.
    const pool = new pg.Pool({ connectionString: dbUrl(), max: 1, connectionTimeoutMillis: 50 });
    const held = await pool.connect();
    try {
      expect(surelyNotApplied(await failure(pool.query('select 1')))).toBe(true);
    } finally {
      held.release();
      await pool.end();
    }
    expect(surelyNotApplied(new Error('Connection terminated unexpectedly'))).toBe(false);
  });
});
