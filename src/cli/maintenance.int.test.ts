/**
 * prune, partitions and rollups through runCli against the test database: expiry auditing
 * (once, concurrently, revoked keys, other orgs, dry run), partition listing and creation.
 */
import { sql } from 'kysely';
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { createKey, createOrg, usageEvent, type TestOrg } from '../testing/factories.ts';
import { runInProcess, useCliTestApp } from '../testing/cli.ts';
import { createIngester } from '../usage/usage.ingest.ts';
import { createMonthPartition, partitionName, PRUNE_LOCK } from '../usage/usage.queries.ts';
import { ensurePartitionsAhead } from '../usage/usage.partitions.ts';

const t = useCliTestApp();
beforeAll(async () => {
  await ensurePartitionsAhead(t.app.kt.database.db, new Date(), 2);
});

const cli = (...args: string[]) => runInProcess(args, t.env);
const pruneJson = async (...flags: string[]) => {
  const res = await cli('prune', '--json', ...flags);
  expect(res).toMatchObject({ code: 0, stderr: '' });
  return JSON.parse(res.stdout);
};

async function expireNow(keyIds: string[]) {
  await sql`update api_keys set expires_at = now() - interval '1 minute'
    where id = any(${keyIds}::uuid[])`.execute(t.app.kt.database.db);
}

async function expiredAudits(keyId: string) {
  const { rows } = await sql<{
    org_id: string;
    actor_type: string;
    actor_key_id: string | null;
    target_type: string;
    details: { expires_at: string; prefix: string };
  }>`select org_id, actor_type, actor_key_id, target_type, details from audit_events
    where target_id = ${keyId} and action = 'key.expired'`.execute(t.app.kt.database.db);
  return rows;
}

async function newExpiredKeys(org: TestOrg, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) ids.push((await createKey(t.app.client, org, { name: `e${i}` })).id);
  await expireNow(ids);
  return ids;
}

describe('prune: expired keys', () => {
  it('audits an expired key once (actor system, its org), however often prune runs', async () => {
    await pruneJson(); // earlier backlog of this database, if any
    const org = await createOrg(t.app.client, 'Expiring');
    const [id] = await newExpiredKeys(org, 1);
    const key = await t.app.kt.keys.get(org.orgId, id ?? '');
    expect((await pruneJson()).expiredKeysMarked).toBe(1);
    expect((await pruneJson()).expiredKeysMarked).toBe(0);
    const text = await cli('prune');
    expect(text.stdout).toContain('  expired keys marked: 0\n');
    expect(await expiredAudits(id ?? '')).toEqual([
      {
        org_id: org.orgId,
        actor_type: 'system',
        actor_key_id: null,
        target_type: 'api_key',
        details: { expires_at: key.expiresAt?.toISOString(), prefix: key.prefix },
      },
    ]);
    // The audit trail of the org shows it, as the auditors' endpoint reads it.
    const trail = await t.app.client.get(`/api/orgs/${org.orgId}/audit-events?action=key.expired`, {
      key: org.adminKey,
    });
    expect(trail.status).toBe(200);
  });

  it('two prunes at once write exactly one entry per key', async () => {
    await pruneJson();
    const org = await createOrg(t.app.client, 'Racing');
    const ids = await newExpiredKeys(org, 5);
    const runs = await Promise.all([cli('prune', '--json'), cli('prune', '--json')]);
    const reports = runs.map((r) => JSON.parse(r.stdout));
    expect(reports.reduce((n, r) => n + r.expiredKeysMarked, 0)).toBe(5);
    for (const id of ids) expect(await expiredAudits(id)).toHaveLength(1);
  });

  it('a revoked key past expires_at is revoked, not expired: no key.expired entry', async () => {
    const org = await createOrg(t.app.client, 'Revoked');
    const k = await createKey(t.app.client, org, { name: 'gone' });
    await t.app.client.delete(`/api/orgs/${org.orgId}/api-keys/${k.id}`, { key: org.adminKey });
    await expireNow([k.id]);
    await pruneJson();
    expect(await expiredAudits(k.id)).toEqual([]);
    expect((await t.app.kt.keys.get(org.orgId, k.id)).status).toBe('revoked');
  });

  it('--dry-run counts what it would mark and marks nothing', async () => {
    await pruneJson();
    const org = await createOrg(t.app.client, 'Dry');
    const ids = await newExpiredKeys(org, 2);
    const dry = await pruneJson('--dry-run');
    expect(dry).toMatchObject({ dryRun: true, expiredKeysMarked: 2 });
    const text = await cli('prune', '--dry-run');
    expect(text.stdout).toContain('  expired keys to mark: 2\n');
    for (const id of ids) expect(await expiredAudits(id)).toEqual([]);
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from api_keys
      where id = any(${ids}::uuid[]) and expiry_audited_at is not null`.execute(
      t.app.kt.database.db,
    );
    expect(rows[0]?.n).toBe(0);
    expect((await pruneJson()).expiredKeysMarked).toBe(2);
  });

  it('leaves active keys and other orgs alone, and audits each org in its own trail', async () => {
    await pruneJson();
    const a = await createOrg(t.app.client, 'A');
    const b = await createOrg(t.app.client, 'B');
    const [expiredA] = await newExpiredKeys(a, 1);
    const [expiredB] = await newExpiredKeys(b, 1);
    const activeB = await createKey(t.app.client, b, {
      name: 'later',
      expires_at: new Date(Date.now() + 86_400_000).toISOString(),
    });
    expect((await pruneJson()).expiredKeysMarked).toBe(2);
    expect((await expiredAudits(expiredA ?? '')).map((r) => r.org_id)).toEqual([a.orgId]);
    expect((await expiredAudits(expiredB ?? '')).map((r) => r.org_id)).toEqual([b.orgId]);
    expect(await expiredAudits(activeB.id)).toEqual([]);
    expect(await expiredAudits(b.adminKeyId)).toEqual([]);
  });

  it('a key extended after it expired is audited again when it expires again', async () => {
    await pruneJson();
    const org = await createOrg(t.app.client, 'Extended');
    const [id = ''] = await newExpiredKeys(org, 1);
    await pruneJson();
    const patched = await t.app.client.patch(`/api/orgs/${org.orgId}/api-keys/${id}`, {
      key: org.adminKey,
      body: { expires_at: new Date(Date.now() + 3_600_000).toISOString() },
    });
    expect(patched.body.status).toBe('active');
    expect((await pruneJson()).expiredKeysMarked).toBe(0);
    await expireNow([id]); // its new expiry passes
    expect((await pruneJson()).expiredKeysMarked).toBe(1);
    expect(await expiredAudits(id)).toHaveLength(2);
  });

  it('a prune that finds another running marks nothing and says it skipped', async () => {
    const org = await createOrg(t.app.client, 'Skipped');
    const [id = ''] = await newExpiredKeys(org, 1);
    const holder = new pg.Client({ connectionString: t.env.DATABASE_URL });
    await holder.connect();
    try {
      await holder.query('select pg_advisory_lock($1::int8)', [PRUNE_LOCK.toString()]);
      expect((await cli('prune')).stdout).toBe('  skipped: another prune is running\n');
      expect(await pruneJson()).toMatchObject({ skipped: true, expiredKeysMarked: 0 });
    } finally {
      await holder.end();
    }
    expect(await expiredAudits(id)).toEqual([]);
  });
});

describe('prune: partitions and flags', () => {
  it('reports partitions it would drop, then drops them, with their timings', async () => {
    await createMonthPartition(t.app.kt.database.db, 2023, 1);
    const name = partitionName(2023, 1);
    const dry = await cli('prune', '--dry-run', '--retention-days', '400');
    expect(dry.stdout).toMatch(new RegExp(`^  would drop ${name}\\n`));
    const real = await cli('prune', '--retention-days', '400');
    expect(real.stdout).toMatch(
      new RegExp(
        `^  dropped ${name} \\(\\d+\\.\\d\\d s: detach \\d+\\.\\d\\d s, drop \\d+\\.\\d\\d s\\)\\n`,
      ),
    );
    expect((await cli('prune')).stdout).toMatch(/^ {2}no partition past retention\n/);
  });

  it.each(['0', '6', '-5', 'x', '3651', ''])(
    'refuses --retention-days=%s with exit 2',
    async (raw) => {
      const res = await cli('prune', `--retention-days=${raw}`);
      expect(res.code).toBe(2);
      expect(res.stderr).toMatch(
        /^keytrail: prune: --retention-days must be a whole number from 7 to 3650/,
      );
    },
  );
});

describe('partitions', () => {
  const monthsFromNow = (i: number) => {
    const now = new Date();
    const d = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + i, 1));
    return partitionName(d.getUTCFullYear(), d.getUTCMonth() + 1);
  };

  it('ensure creates what is missing and reports what existed, by month', async () => {
    const first = await cli('partitions', 'ensure', '--months-ahead', '4');
    expect(first.code).toBe(0);
    expect(first.stdout).toBe(
      [
        `already existed  ${monthsFromNow(0)}`,
        `already existed  ${monthsFromNow(1)}`,
        `already existed  ${monthsFromNow(2)}`,
        `created          ${monthsFromNow(3)}`,
        `created          ${monthsFromNow(4)}`,
        '',
      ].join('\n'),
    );
    const again = JSON.parse(
      (await cli('partitions', 'ensure', '--months-ahead', '4', '--json')).stdout,
    );
    expect(again).toEqual({ created: [], existing: [0, 1, 2, 3, 4].map(monthsFromNow) });
    const current = JSON.parse(
      (await cli('partitions', 'ensure', '--months-ahead', '0', '--json')).stdout,
    );
    expect(current).toEqual({ created: [], existing: [monthsFromNow(0)] });
    expect(JSON.parse((await cli('partitions', 'ensure', '--json')).stdout).existing).toHaveLength(
      3,
    );
  });

  it.each(['-1', '25', 'two', '1.0', ''])(
    'ensure refuses --months-ahead=%s (exit 2)',
    async (raw) => {
      const res = await cli('partitions', 'ensure', `--months-ahead=${raw}`);
      expect(res).toMatchObject({ code: 2, stdout: '' });
      expect(res.stderr).toMatch(
        /^keytrail: partitions ensure: --months-ahead must be a whole number from 0 to 24, got ".*" \(see keytrail partitions ensure --help\)\n$/,
      );
    },
  );

  it('list shows each partition with its range, approximate rows and size', async () => {
    const org = await createOrg(t.app.client, 'Rows');
    const k = await createKey(t.app.client, org);
    const now = new Date();
    const month = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1);
    await createIngester(t.app.kt.database).ingest(
      Array.from({ length: 30 }, (_, i) =>
        usageEvent({ orgId: org.orgId, keyId: k.id, occurredAt: month + 1000 + i }, i),
      ),
    );
    const current = monthsFromNow(0);
    await sql`analyze ${sql.table(current)}`.execute(t.app.kt.database.db);
    const json = JSON.parse((await cli('partitions', 'list', '--json')).stdout);
    const row = json.partitions.find((p: { name: string }) => p.name === current);
    expect(row).toEqual({
      name: current,
      from: new Date(month).toISOString(),
      to: new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)).toISOString(),
      approximate_rows: 30,
      size_bytes: expect.any(Number),
      detach_pending: false,
      storage: 'row',
      closed: false,
    });
    expect(row.size_bytes).toBeGreaterThan(8192);
    const names = json.partitions.map((p: { name: string }) => p.name);
    expect(names).toEqual([...names].sort());
    const never = json.partitions.find((p: { name: string }) => p.name === monthsFromNow(4));
    expect(never.approximate_rows).toBeNull();
    const text = (await cli('partitions', 'list')).stdout;
    const line = text.split('\n').find((l) => l.startsWith(current));
    expect(line?.split(/\s{2,}/)).toEqual([
      current,
      `${new Date(month).toISOString().slice(0, 10)} .. ${row.to.slice(0, 10)}`,
      '30',
      expect.stringMatching(/^\d+\.\d KiB$/),
      'row',
    ]);
    expect(text.split('\n').find((l) => l.startsWith(monthsFromNow(4)))).toMatch(/\s\?\s/);
    expect(text).toContain('ROWS (APPROXIMATE)');
    expect(text).toContain('pg_class.reltuples');
  });
});

describe('rollups rebuild', () => {
  it('rebuilds a day and reports differences; refuses bad ranges with exit 2', async () => {
    const today = new Date().toISOString().slice(0, 10);
    const text = await cli('rollups', 'rebuild', '--from', today, '--to', today);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(
      new RegExp(
        `^rebuilt ${today}\\.\\.${today}\\n  api_key_usage_hourly: \\d+ row\\(s\\) differed\\n`,
      ),
    );
    const json = JSON.parse(
      (await cli('rollups', 'rebuild', '--from', today, '--to', today, '--json')).stdout,
    );
    expect(json).toMatchObject({ from: today, to: today, differences: { api_key_usage_daily: 0 } });
    expect(await cli('rollups', 'rebuild', '--from', today)).toMatchObject({
      code: 2,
      stderr:
        'keytrail: rollups rebuild needs --from D and --to D (YYYY-MM-DD) (see keytrail rollups rebuild --help)\n',
    });
    const bad = await cli('rollups', 'rebuild', '--from', 'yesterday', '--to', today);
    expect(bad).toMatchObject({
      code: 2,
      stderr: 'keytrail: --from and --to must be days (YYYY-MM-DD), from ≤ to\n',
    });
  });
});
