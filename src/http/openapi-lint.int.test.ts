import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { useTestApp } from '../testing/harness.ts';

const app = useTestApp();
const run = promisify(execFile);
const redocly = createRequire(import.meta.url).resolve('@redocly/cli/bin/cli.js');

type Problem = { ruleId: string; severity: string; message: string; location: unknown[] };
type Operation = { operationId?: string; responses: Record<string, unknown> };

/**
 * `redocly lint` with its recommended rules, in a directory with no redocly.yaml (so nothing
 * relaxes them), telemetry and the update check off: it runs without network.
 */
async function lint(document: unknown): Promise<{ totals: object; problems: Problem[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'keytrail-openapi-'));
  try {
    await writeFile(join(dir, 'openapi.json'), JSON.stringify(document));
    // A lint with problems exits 1: its report is on stdout all the same.
    const out = await run(process.execPath, [redocly, 'lint', 'openapi.json', '--format=json'], {
      cwd: dir,
      env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' },
      maxBuffer: 16 * 1024 * 1024,
    }).catch((error: { stdout?: string }) => {
      if (!error.stdout) throw error as Error;
      return { stdout: error.stdout };
    });
    return JSON.parse(out.stdout) as { totals: object; problems: Problem[] };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('/openapi.json', () => {
  it('passes redocly lint (recommended rules) with no error and no warning', async () => {
    const res = await app().client.get('/openapi.json');
    expect(res.status).toBe(200);
    const report = await lint(res.body);
    const problems = report.problems.map((p) => `${p.severity} ${p.ruleId}: ${p.message}`);
    expect(problems).toEqual([]);
    expect(report.totals).toMatchObject({ errors: 0, warnings: 0 });
  }, 60_000);

  it('names every operation with a unique camelCase operationId', async () => {
    const res = await app().client.get('/openapi.json');
    const paths = res.body.paths as Record<string, Record<string, Operation>>;
    const ids = Object.values(paths).flatMap((ops) => Object.values(ops).map((o) => o.operationId));
    expect(ids.length).toBeGreaterThan(20);
    for (const id of ids) expect(id).toMatch(/^[a-z][a-zA-Z]+$/);
    expect(new Set(ids).size).toBe(ids.length);
    expect(paths['/api/keys/verify']?.post?.operationId).toBe('verifyKey');
  });

  it('answers the 431 it documents for the health routes: headers over 16 KB', async () => {
    const res = await app().client.get('/openapi.json');
    const paths = res.body.paths as Record<string, Record<string, Operation>>;
    for (const path of ['/healthz', '/readyz']) {
      expect(Object.keys(paths[path]?.get?.responses ?? {})).toContain('431');
      const answer = await fetch(`${app().baseUrl}${path}`, {
        headers: { 'x-pad': 'a'.repeat(20_000) },
      });
      expect(answer.status).toBe(431);
      expect(answer.headers.get('content-type')).toBe('application/problem+json');
      expect(await answer.json()).toMatchObject({ status: 431, code: 'headers_too_large' });
    }
  });
});
