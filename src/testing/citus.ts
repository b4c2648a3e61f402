/**
 * Test databases on a Citus cluster (`make test-citus`). Citus 12.1 does not propagate CREATE
 * DATABASE: a database is made on every node, with the extension, the nodes' credentials and
 * the worker list in each. The migrated template is made once that way, then frozen (no
 * connections, which Citus's maintenance daemon would otherwise hold); each test file's database
 * is a copy of it on every node, so the coordinator's metadata and the workers' shards agree.
 */
import pg from 'pg';
import { adminQuery, databaseUrl } from './databases.ts';

/** Every node's server URL, the coordinator first; null when the server is not a Citus coordinator. */
export async function citusNodes(serverUrl: string): Promise<string[] | null> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    const ext = await client.query(`select 1 from pg_extension where extname = 'citus'`);
    if (ext.rowCount === 0) return null;
    const { rows } = await client.query<{ nodename: string; nodeport: number }>(
      `select nodename, nodeport from pg_dist_node
       where noderole = 'primary' and isactive order by groupid`,
    );
    return rows.map((r) => {
      const url = new URL(serverUrl);
      url.hostname = r.nodename;
      url.port = String(r.nodeport);
      return url.toString();
    });
  } finally {
    await client.end();
  }
}

/** A new database `name` on every node, made one Citus cluster (coordinator first in `nodes`). */
export async function createClusterDatabase(nodes: string[], name: string): Promise<void> {
  const [coordinator, ...workers] = nodes;
  if (!coordinator) throw new Error('no Citus coordinator');
  const source = new pg.Client({ connectionString: coordinator });
  await source.connect();
  const auth = await source
    .query<{ nodeid: number; rolename: string; authinfo: string }>(
      'select nodeid, rolename, authinfo from pg_dist_authinfo',
    )
    .finally(() => source.end());
  const ident = pg.escapeIdentifier(name);
  // The workers' databases first: the coordinator's adds them.
  for (const node of [...workers, coordinator]) {
    await adminQuery(node, `create database ${ident}`);
    const client = new pg.Client({ connectionString: databaseUrl(node, name) });
    await client.connect();
    try {
      await client.query('create extension citus');
      for (const a of auth.rows) {
        await client.query(
          'insert into pg_dist_authinfo (nodeid, rolename, authinfo) values ($1, $2, $3)',
          [a.nodeid, a.rolename, a.authinfo],
        );
      }
      if (node !== coordinator) continue;
      const self = new URL(coordinator);
      await client.query('select citus_set_coordinator_host($1, $2)', [
        self.hostname,
        Number(self.port),
      ]);
      for (const worker of workers) {
        const w = new URL(worker);
        await client.query('select citus_add_node($1, $2)', [w.hostname, Number(w.port)]);
      }
      // Few shards: the migration creates each distributed table's shards on the workers.
      await client.query(`alter database ${ident} set citus.shard_count = 4`);
    } finally {
      await client.end();
    }
  }
}

/** No one may connect to the template (so it can be copied); its sessions are ended. */
export async function freezeTemplate(nodes: string[], name: string): Promise<void> {
  for (const node of nodes) {
    await adminQuery(node, `alter database ${pg.escapeIdentifier(name)} allow_connections false`);
    await adminQuery(
      node,
      `select pg_terminate_backend(pid) from pg_stat_activity
       where datname = ${pg.escapeLiteral(name)} and pid <> pg_backend_pid()`,
    );
  }
}

export async function copyOnNodes(nodes: string[], template: string, name: string): Promise<void> {
  for (const node of nodes) {
    await adminQuery(
      node,
      `create database ${pg.escapeIdentifier(name)} template ${pg.escapeIdentifier(template)}`,
    );
  }
}

export async function dropOnNodes(nodes: string[], name: string): Promise<void> {
  for (const node of nodes) {
    const ident = pg.escapeIdentifier(name);
    // A frozen template must take connections again to be dropped with force.
    await adminQuery(node, `alter database ${ident} allow_connections true`).catch(() => undefined);
    // Citus's maintenance daemon may connect again between the force's terminate and the drop;
    // the drop then says the database is in use, and is asked again.
    for (let attempt = 1; ; attempt++) {
      await rollbackPrepared(node, name);
      try {
        await adminQuery(node, `drop database if exists ${ident} with (force)`);
        break;
      } catch (error) {
        if (attempt === 5 || (error as { code?: string }).code !== OBJECT_IN_USE) throw error;
        await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
      }
    }
  }
}

/** SQLSTATE of "database … is being accessed by other users". */
const OBJECT_IN_USE = '55006';

/**
 * Prepared transactions left in the database (a test that kills a connection in the middle of
 * a two-phase commit): DROP DATABASE refuses a database that has any, even with force, and only
 * a session in that database may roll them back.
 */
async function rollbackPrepared(node: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl(node, name) });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch {
    return; // no such database (or it takes no connections): nothing prepared to undo
  }
  try {
    const { rows } = await client.query<{ gid: string }>(
      'select gid from pg_prepared_xacts where database = current_database()',
    );
    for (const { gid } of rows) {
      // 42704: resolved meanwhile (Citus's recovery commits or aborts it by itself).
      await client.query(`rollback prepared ${pg.escapeLiteral(gid)}`).catch((error: unknown) => {
        if ((error as { code?: string }).code !== '42704') throw error;
      });
    }
  } finally {
    await client.end();
  }
}
