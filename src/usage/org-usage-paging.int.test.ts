import { beforeAll, describe, expect, it } from 'vitest';
import { startWorker, type Worker } from '../../workers/main.ts';
import { useTestApp, waitFor } from '../testing/harness.ts';
import { createKey, createOrg, type TestKey, type TestOrg } from '../testing/factories.ts';
import { expectProblem } from '../testing/problem.ts';

const app = useTestApp();
let org: TestOrg;
let keys: TestKey[];
let worker: Worker;

beforeAll(async () => {
  org = await createOrg(app().client, 'Org usage paging');
  keys = [];
  for (const name of ['delta', 'alpha', 'echo', 'charlie', 'bravo']) {
    keys.push(await createKey(app().client, org, { name }));
  }
  // Some keys used (different last_used_at and counts), others never.
  for (const [i, k] of keys.slice(0, 3).entries()) {
    for (let n = 0; n <= i; n++) await app().client.get('/v1/demo/orders/1', { key: k.key });
  }
  worker = await startWorker(app().kt);
  await app().kt.usage.buffer.flush();
  await waitFor(
    async () => {
      const res = await get('limit=500');
      const used = res.body.data.find((d: { key_id: string }) => d.key_id === keys[2]?.id);
      return used?.request_count === 3;
    },
    { timeoutMs: 10_000 },
  );
  // The reads below are tracked too (the admin key's own use): with the worker still ingesting,
  // the admin key's last_used_at would move between two reads and reorder the pages under test.
  await worker.stop();
});

const get = (query: string) =>
  app().client.get(`/api/orgs/${org.orgId}/api-keys/usage?${query}`, { key: org.adminKey });

async function walk(query: string): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | null = null;
  do {
    const res = await get(`${query}&limit=2${cursor ? `&cursor=${cursor}` : ''}`);
    expect(res.status).toBe(200);
    ids.push(...res.body.data.map((d: { key_id: string }) => d.key_id));
    cursor = res.body.next_cursor;
  } while (cursor);
  return ids;
}

describe('org usage pages', () => {
  const sorts = ['name', 'request_count', 'created_at', 'last_used_at'];
  const cases = sorts.flatMap((sort) => ['asc', 'desc'].map((order) => [sort, order]));

  it.each(cases)(
    'walk every key once by %s %s, in the order of one big page',
    async (sort, order) => {
      const query = `sort=${sort}&order=${order}`;
      const whole = (await get(`${query}&limit=500`)).body.data.map(
        (d: { key_id: string }) => d.key_id,
      );
      expect(whole).toHaveLength(keys.length + 1); // and the admin key
      expect(await walk(query)).toEqual(whole);
    },
  );

  it('sorts names alphabetically', async () => {
    const res = await get('sort=name&order=asc&status=active');
    const names = res.body.data.map((d: { name: string }) => d.name);
    expect(names).toEqual([...names].sort());
    expect(names).toContain('alpha');
  });

  it('lists only revoked keys with status=revoked', async () => {
    const revoked = keys[4];
    if (!revoked) throw new Error('no key');
    await app().client.delete(`/api/orgs/${org.orgId}/api-keys/${revoked.id}`, {
      key: org.adminKey,
    });
    const res = await get('status=revoked');
    expect(res.body.data.map((d: { key_id: string }) => d.key_id)).toEqual([revoked.id]);
    expect(res.body.data[0].status).toBe('revoked');
  });
});

describe('key usage window', () => {
  const keyUsage = (keyId: string, query = '') =>
    app().client.get(`/api/orgs/${org.orgId}/api-keys/${keyId}/usage${query}`, {
      key: org.adminKey,
    });

  it('answers 404 for a key id that is not a UUID', async () => {
    expectProblem(await keyUsage('not-a-uuid'), 404, 'not_found');
  });

  it('defaults to the last 24 hours by hour', async () => {
    const res = await keyUsage(keys[0]?.id ?? '', '?granularity=hour');
    expect(res.status).toBe(200);
    const span = Date.parse(res.body.window.to) - Date.parse(res.body.window.from);
    // Aligned to whole hours: 24 h, or 25 when `to` is rounded up.
    expect(span / 3_600_000).toBeGreaterThanOrEqual(24);
    expect(span / 3_600_000).toBeLessThanOrEqual(25);
    expect(res.body.series.length).toBe(span / 3_600_000);
  });

  it('rejects an empty or reversed window and one longer than 400 days with 400', async () => {
    const id = keys[0]?.id ?? '';
    const now = Date.now();
    const iso = (ms: number) => new Date(ms).toISOString();
    const reversed = await keyUsage(id, `?from=${iso(now)}&to=${iso(now - 1000)}`);
    expectProblem(reversed, 400, 'validation_failed');
    expect(reversed.body.detail).toBe('from must be before to');
    const long = await keyUsage(id, `?from=${iso(now - 401 * 86_400_000)}&to=${iso(now)}`);
    expectProblem(long, 400, 'validation_failed');
    expect(long.body.detail).toBe('the window is limited to 400 days');
  });
});
