import { randomBytes } from 'node:crypto';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';

/** The URL of another database on the same server. */
export function databaseUrl(serverUrl: string, database: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

export async function adminQuery(serverUrl: string, sqlText: string): Promise<void> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    await client.query(sqlText);
  } finally {
    await client.end();
  }
}

/** Creates a scratch database (optionally from a template), runs `fn`, then drops it. */
export async function withDatabase<T>(
  serverUrl: string,
  name: string,
  fn: (url: string) => Promise<T>,
): Promise<T> {
  const ident = pg.escapeIdentifier(name);
  await adminQuery(serverUrl, `drop database if exists ${ident} with (force)`);
  await adminQuery(serverUrl, `create database ${ident}`);
  try {
    return await fn(databaseUrl(serverUrl, name));
  } finally {
    await adminQuery(serverUrl, `drop database if exists ${ident} with (force)`);
  }
}

/**
 * A scratch database (`prefix` + random) with a Kysely of one connection on it, for migration
 * tests; both go when `fn` ends.
 */
export async function withScratchKysely(
  serverUrl: string,
  prefix: string,
  fn: (db: Kysely<unknown>) => Promise<void>,
): Promise<void> {
  await withDatabase(serverUrl, `${prefix}_${randomBytes(4).toString('hex')}`, async (url) => {
    const pool = new pg.Pool({ connectionString: url, max: 1 });
    // pool.end() lets a client finish ending after it resolves; the drop (with force) that
    // follows may terminate that backend first, and the client's 'error' must not go unheard.
    pool.on('error', () => undefined);
    pool.on('connect', (client) => client.on('error', () => undefined));
    const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) });
    try {
      await fn(db);
    } finally {
      await db.destroy();
    }
  });
}
