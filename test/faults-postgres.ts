/**
 * A dedicated embedded PostgreSQL the test may stop and start again: its data directory persists
 * across the restart (under a private mkdtemp folder) and it keeps its port, so every pool and
 * listener of the code under test reconnects to the same URL. It runs in a child process like
 * every embedded cluster here (src/platform/embedded-postgres.ts).
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  freePort,
  startEmbeddedPostgres,
  type EmbeddedHandle,
} from '../src/platform/embedded-postgres.ts';

export type RestartablePostgres = {
  /** URL of the `postgres` database; the same before and after a restart. */
  url: string;
  port: number;
  running(): boolean;
  /** Fast shutdown (SIGINT: open connections are terminated), resolved once Postgres exited. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops it if running and deletes its files. */
  destroy(): Promise<void>;
};

export async function startRestartablePostgres(): Promise<RestartablePostgres> {
  // Traversable by the `postgres` user that runs the cluster when the suite runs as root.
  const scratch = await mkdtemp(path.join(tmpdir(), 'keytrail-restart-'));
  await chmod(scratch, 0o711);
  const dataDir = path.join(scratch, 'pg');
  const port = await freePort();
  // The child picks a free port of its own and passes it as `-p`; a later `-c port=` wins, so
  // the cluster comes back on the same port after a restart.
  const flags = ['-c', `port=${port}`, '-c', 'fsync=off', '-c', 'synchronous_commit=off'];
  const boot = () => startEmbeddedPostgres({ dataDir, persistent: true, postgresFlags: flags });
  let handle: EmbeddedHandle | undefined = await boot();
  const url = new URL(handle.url);
  url.port = String(port);
  return {
    url: url.toString(),
    port,
    running: () => handle !== undefined,
    async stop() {
      const h = handle;
      handle = undefined;
      await h?.stop();
    },
    async start() {
      if (handle) return;
      handle = await boot();
    },
    async destroy() {
      await handle?.stop();
      handle = undefined;
      await rm(scratch, { recursive: true, force: true });
    },
  };
}
