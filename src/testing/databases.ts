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
