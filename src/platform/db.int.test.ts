import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { describe, expect, inject, it } from 'vitest';
import { migrations } from '../../db/migrations/index.ts';
import { useTestDatabase } from '../testing/harness.ts';
import { withDatabase } from '../testing/databases.ts';
import { copyOut, createDb, migrateToLatest, migrationsApplied, rawTransaction } from './db.ts';
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
});
