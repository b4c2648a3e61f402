import express from 'express';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../platform/logger.ts';
import { useTestApp, waitFor } from '../testing/harness.ts';
import { expectProblem } from '../testing/problem.ts';
import { errorHandler, notFoundHandler } from './middleware/errors.ts';
import { requestContext } from './middleware/request-context.ts';
import { ADMIN_CSP, adminRoutes, uiDirectory } from './routes/admin.routes.ts';

const REPO = path.resolve(import.meta.dirname, '..', '..');
const app = useTestApp();
const get = (url: string) => fetch(`${app().baseUrl}${url}`);

/** A GET with the path sent byte for byte: fetch would resolve `..` and `%2e%2e` itself. */
function rawGet(baseUrl: string, rawPath: string): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const req = request({ hostname, port, path: rawPath, method: 'GET' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function expectSecurityHeaders(res: Response): void {
  expect(res.headers.get('content-security-policy')).toBe(ADMIN_CSP);
  expect(res.headers.get('referrer-policy')).toBe('no-referrer');
  expect(res.headers.get('x-content-type-options')).toBe('nosniff');
  expect(res.headers.get('x-frame-options')).toBe('DENY');
}

describe('ADMIN_CSP', () => {
  it('allows only our own script, style and API, no inline code, and no framing', () => {
    const directives = ADMIN_CSP.split(';').map((d) => d.trim());
    expect(directives).toContain("default-src 'none'");
    expect(directives).toContain("script-src 'self'");
    expect(directives).toContain("style-src 'self'");
    expect(directives).toContain("connect-src 'self'");
    expect(directives).toContain("frame-ancestors 'none'");
    expect(ADMIN_CSP).not.toContain('unsafe-inline');
    expect(ADMIN_CSP).not.toContain('unsafe-eval');
    expect(ADMIN_CSP).not.toMatch(/\*|https?:/);
  });
});

describe('/admin on the app (the built bundle)', () => {
  beforeAll(async () => {
    // test/package.int.test.ts runs `npm pack`, whose prepack deletes and rebuilds dist/ in this
    // checkout while other files run: start once the bundle is whole again.
    const files = ['index.html', 'app.js', 'app.css'].map((f) => path.join(uiDirectory(), f));
    await waitFor(() => files.every((f) => existsSync(f)), { timeoutMs: 120_000 });
  }, 130_000);

  it('serves the index at /admin, /admin/ and /admin/index.html, never cached', async () => {
    const index = await readFile(path.join(uiDirectory(), 'index.html'), 'utf8');
    for (const url of ['/admin', '/admin/', '/admin/index.html']) {
      const res = await get(url);
      expect(res.status, url).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/html/);
      expect(res.headers.get('cache-control')).toBe('no-store');
      expectSecurityHeaders(res);
      const body = await res.text();
      expect(body).toBe(index);
      expect(body).toContain('/admin/app.js');
    }
  });

  it('serves the script and the stylesheet with their types and the same headers', async () => {
    const js = await get('/admin/app.js');
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toMatch(/^(text|application)\/javascript/);
    expectSecurityHeaders(js);
    expect((await js.text()).length).toBeGreaterThan(0);
    const css = await get('/admin/app.css');
    expect(css.status).toBe(200);
    expect(css.headers.get('content-type')).toMatch(/^text\/css/);
    expectSecurityHeaders(css);
  });

  it('answers an unknown asset with the API’s 404 problem, not the index', async () => {
    const res = await get('/admin/nope.js');
    const body: unknown = await res.json();
    expectProblem({ status: res.status, headers: res.headers, body }, 404, 'not_found');
  });

  it('never serves a file outside the bundle through path traversal', async () => {
    const pkg = await readFile(path.join(REPO, 'package.json'), 'utf8');
    expect((await rawGet(app().baseUrl, '/admin/app.js')).status).toBe(200);
    const attempts = [
      '/admin/../package.json',
      '/admin/../../package.json',
      '/admin/%2e%2e/package.json',
      '/admin/%2e%2e/%2e%2e/package.json',
      '/admin/..%2fpackage.json',
      '/admin/..%2f..%2fpackage.json',
      '/admin/..%5cpackage.json',
      '/admin/%252e%252e/package.json',
    ];
    for (const attempt of attempts) {
      const res = await rawGet(app().baseUrl, attempt);
      expect(res.status, attempt).toBeGreaterThanOrEqual(400);
      expect(res.status, attempt).toBeLessThan(500);
      expect(res.body, attempt).not.toContain('"devDependencies"');
      expect(res.body, attempt).not.toBe(pkg);
    }
  });
});

describe('adminRoutes(dir) on a bundle directory of its own', () => {
  let scratch: string;
  let server: Server;
  let baseUrl: string;
  const fetchAt = (url: string) => fetch(`${baseUrl}${url}`);

  beforeAll(async () => {
    scratch = await mkdtemp(path.join(tmpdir(), 'keytrail-admin-'));
    const bundle = path.join(scratch, 'bundle');
    await mkdir(path.join(bundle, '.git'), { recursive: true });
    await mkdir(path.join(scratch, 'empty'));
    await writeFile(path.join(bundle, 'index.html'), '<!doctype html><title>fixture</title>');
    await writeFile(path.join(bundle, 'app.js'), 'export {};');
    await writeFile(path.join(bundle, '.env'), 'SECRET=dotfile-contents');
    await writeFile(path.join(bundle, '.git', 'config'), 'dotdir-contents');
    await writeFile(path.join(scratch, 'outside.txt'), 'outside-contents');
    const host = express();
    host.use(requestContext);
    host.use('/admin', adminRoutes(bundle));
    host.use('/empty', adminRoutes(path.join(scratch, 'empty')));
    host.use(notFoundHandler);
    host.use(errorHandler(createLogger({ level: 'silent' })));
    server = host.listen(0, '127.0.0.1');
    await new Promise<void>((resolve) => server.once('listening', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(scratch, { recursive: true, force: true });
  });

  it('serves that directory’s index and files', async () => {
    const res = await fetchAt('/admin');
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('<!doctype html><title>fixture</title>');
    expect(await (await fetchAt('/admin/app.js')).text()).toBe('export {};');
  });

  it('denies dotfiles and dot-directories', async () => {
    expect((await rawGet(baseUrl, '/admin/app.js')).body).toBe('export {};');
    for (const url of ['/admin/.env', '/admin/.git/config', '/admin/%2eenv']) {
      const res = await rawGet(baseUrl, url);
      expect(res.status, url).toBe(404);
      expect(res.body, url).not.toMatch(/dotfile-contents|dotdir-contents/);
    }
  });

  it('serves nothing from the directory above the bundle', async () => {
    for (const url of [
      '/admin/../outside.txt',
      '/admin/%2e%2e/outside.txt',
      '/admin/..%2foutside.txt',
    ]) {
      const res = await rawGet(baseUrl, url);
      expect(res.status, url).toBe(404);
      expect(res.body, url).not.toContain('outside-contents');
    }
  });

  it('answers 503 service_unavailable, saying how to build, when the bundle has no index', async () => {
    const res = await fetchAt('/empty');
    const body = (await res.json()) as { detail: string };
    expectProblem({ status: res.status, headers: res.headers, body }, 503, 'service_unavailable');
    expect(body.detail).toContain('not built');
    expect(body.detail).toContain('src/ui/build.ts');
    expectSecurityHeaders(res);
  });
});

describe('uiDirectory', () => {
  it('is dist/ui next to the nearest package.json above the given folder', async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'keytrail-uidir-'));
    try {
      const nested = path.join(root, 'dist', 'src', 'http', 'routes');
      await mkdir(nested, { recursive: true });
      await writeFile(path.join(root, 'package.json'), '{}');
      expect(uiDirectory(nested)).toBe(path.join(root, 'dist', 'ui'));
      expect(uiDirectory(root)).toBe(path.join(root, 'dist', 'ui'));
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('defaults to this checkout’s dist/ui', () => {
    expect(uiDirectory()).toBe(path.join(REPO, 'dist', 'ui'));
  });
});
