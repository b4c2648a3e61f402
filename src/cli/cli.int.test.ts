/**
 * runCli in-process against the test database: the edge cases of keys dormant, org create, the
 * dispatcher and the error mapping (the real binary's paths are in cli.bin.int.test.ts).
 */
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { AppError } from '../platform/errors.ts';
import { createKey, createOrg, type TestOrg } from '../testing/factories.ts';
import { OPERATOR_TOKEN } from '../testing/harness.ts';
import { runInProcess, useCliTestApp } from '../testing/cli.ts';
import { leakScanner } from '../testing/leak-scan.ts';
import { USAGE } from './cli.ts';

const t = useCliTestApp();

const DAY_MS = 86_400_000;
const daysAgo = (n: number) => new Date(Date.now() - n * DAY_MS);
const cli = (...args: string[]) => runInProcess(args, t.env);

async function backdate(keyIds: string[], days: number) {
  await sql`update api_keys set created_at = ${daysAgo(days)} where id = any(${keyIds}::uuid[])`.execute(
    t.app.kt.database.db,
  );
}

/** A totals row as the usage worker writes it: the key was last used `days` ago. */
async function lastUsed(org: TestOrg, keyId: string, days: number) {
  await sql`insert into api_key_usage_totals (key_id, org_id, request_count, last_used_at)
    values (${keyId}, ${org.orgId}, 1, ${daysAgo(days)})`.execute(t.app.kt.database.db);
}

async function dormantIds(org: TestOrg, ...flags: string[]): Promise<string[]> {
  const res = await cli('keys', 'dormant', '--org', org.orgId, '--json', ...flags);
  expect(res).toMatchObject({ code: 0, stderr: '' });
  return JSON.parse(res.stdout).keys.map((k: { id: string }) => k.id);
}

describe('keys dormant', () => {
  it('applies the rule of the org usage endpoint: same keys, least recently used first', async () => {
    const org = await createOrg(t.app.client, 'Rule');
    const other = await createOrg(t.app.client, 'Other');
    const k = async (name: string, o = org) => (await createKey(t.app.client, o, { name })).id;
    const neverOld = await k('never-old');
    await k('never-new'); // created just now: not dormant
    const used40 = await k('used-40');
    const used60 = await k('used-60');
    const used1 = await k('used-1');
    const revoked = await k('revoked');
    const expired = await k('expired');
    const foreign = await k('foreign', other);
    await backdate([neverOld, used40, used60, used1, revoked, expired, foreign], 100);
    await backdate([org.adminKeyId, other.adminKeyId], 1);
    await lastUsed(org, used40, 40);
    await lastUsed(org, used60, 60);
    await lastUsed(org, used1, 1);
    await t.app.client.delete(`/api/orgs/${org.orgId}/api-keys/${revoked}`, { key: org.adminKey });
    await sql`update api_keys set expires_at = now() - interval '1 day' where id = ${expired}`.execute(
      t.app.kt.database.db,
    );
    expect(await dormantIds(org)).toEqual([used60, used40, neverOld]);
    const page = await t.app.client.get(
      `/api/orgs/${org.orgId}/api-keys/usage?dormant=true&limit=500`,
      { key: org.adminKey },
    );
    expect(page.body.data.map((r: { key_id: string }) => r.key_id).sort()).toEqual(
      [used60, used40, neverOld].sort(),
    );
    expect(await dormantIds(org, '--days', '50')).toEqual([used60, neverOld]);
    expect(await dormantIds(org, '--days', '3650')).toEqual([]);
    expect(await dormantIds(other)).toEqual([foreign]);
  });

  it('lists every dormant key, not one page of them', async () => {
    const org = await createOrg(t.app.client, 'Many');
    // 1,005 never-used keys created 60 days ago: more than one page of the query (1,000).
    await sql`insert into api_keys (id, org_id, name, environment, prefix, key_hash, created_at)
      select gen_random_uuid(), ${org.orgId}, 'bulk-' || i, 'live', 'sk_live_bulk' || i,
        sha256(convert_to(${org.orgId} || i, 'UTF8')), ${daysAgo(60)}
      from generate_series(1, 1005) i`.execute(t.app.kt.database.db);
    const ids = await dormantIds(org);
    expect(ids).toHaveLength(1005);
    expect(new Set(ids).size).toBe(1005);
    const small = await t.app.kt.analytics.dormantKeys(org.orgId, 30, 7);
    expect(small.map((r) => r.key_id)).toEqual(ids);
  });

  it('pages on last use across keys used and never used', async () => {
    const org = await createOrg(t.app.client, 'Paging');
    const ids: string[] = [];
    for (let i = 0; i < 5; i++)
      ids.push((await createKey(t.app.client, org, { name: `k${i}` })).id);
    await backdate([...ids, org.adminKeyId], 90);
    for (const [i, id] of ids.slice(0, 3).entries()) await lastUsed(org, id, 80 - i);
    const all = await t.app.kt.analytics.dormantKeys(org.orgId, 30);
    for (const size of [1, 2, 3]) {
      expect(
        (await t.app.kt.analytics.dormantKeys(org.orgId, 30, size)).map((r) => r.key_id),
      ).toEqual(all.map((r) => r.key_id));
    }
    expect(all.slice(0, 3).map((r) => r.key_id)).toEqual(ids.slice(0, 3));
    expect(all).toHaveLength(6);
  });

  it('prints a table whose names cannot carry terminal escapes; --json keeps them whole', async () => {
    const org = await createOrg(t.app.client, 'Escapes');
    const name = 'evil\u001b[2J\nname';
    const key = await createKey(t.app.client, org, { name });
    await backdate([key.id, org.adminKeyId], 45);
    await lastUsed(org, key.id, 44);
    const text = await cli('keys', 'dormant', '--org', org.orgId.toUpperCase());
    expect(text.code).toBe(0);
    expect(text.stdout).not.toContain('\u001b');
    const row = text.stdout.split('\n').find((l) => l.startsWith(key.id));
    const iso = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;
    expect(row?.split(/\s{2,}/)).toEqual([
      key.id,
      'evil?[2J?name',
      key.body.prefix,
      expect.stringMatching(iso),
      expect.stringMatching(iso),
    ]);
    const json = JSON.parse((await cli('keys', 'dormant', '--org', org.orgId, '--json')).stdout);
    expect(json.keys.find((k: { id: string }) => k.id === key.id)).toEqual({
      id: key.id,
      name,
      prefix: key.body.prefix,
      last_used_at: expect.stringMatching(/Z$/),
      created_at: expect.stringMatching(/Z$/),
    });
    const none = await createOrg(t.app.client, 'None');
    expect((await cli('keys', 'dormant', '--org', none.orgId, '--days', '1')).stdout).toBe(
      `no dormant keys in org ${none.orgId} (active, not used in the last 1 day)\n`,
    );
  });

  it.each([
    [['--days', '0'], '--days must be a whole number from 1 to 3650, got "0"'],
    [['--days', 'abc'], '--days must be a whole number from 1 to 3650, got "abc"'],
    [['--days', '1.5'], 'got "1.5"'],
    [['--days', '3651'], 'got "3651"'],
    [['--days=-1'], 'got "-1"'],
    [['--days', ' 7'], 'got " 7"'],
    [['--days', '1e3'], 'got "1e3"'],
  ])('refuses %j with exit 2 and one line', async (flags, message) => {
    const org = await createOrg(t.app.client, 'Flags');
    const res = await cli('keys', 'dormant', '--org', org.orgId, ...flags);
    expect(res.code).toBe(2);
    expect(res.stdout).toBe('');
    expect(res.stderr).toContain(message);
    expect(res.stderr).toMatch(
      /^keytrail: keys dormant: .*\(see keytrail keys dormant --help\)\n$/,
    );
  });

  it('refuses an org id that is no UUID (exit 2) and reports an unknown org (exit 1)', async () => {
    expect(await cli('keys', 'dormant', '--org', 'not-a-uuid')).toMatchObject({
      code: 2,
      stderr:
        'keytrail: keys dormant: --org must be an org id (a UUID), got "not-a-uuid" (see keytrail keys dormant --help)\n',
    });
    expect((await cli('keys', 'dormant', '--org', "x'; drop table orgs;--")).code).toBe(2);
    expect((await cli('keys', 'dormant', '--org', '')).code).toBe(2);
    expect((await cli('keys', 'dormant', '--org')).code).toBe(2);
    expect((await cli('keys', 'dormant', '--org', 'a', 'extra')).code).toBe(2);
    expect(
      await cli('keys', 'dormant', '--org', '018f0000-0000-7000-8000-000000000000'),
    ).toMatchObject({ code: 1, stdout: '', stderr: 'keytrail: org not found\n' });
  });
});

describe('org create', () => {
  const shape = (v: unknown): unknown =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, shape(x)]))
      : Array.isArray(v)
        ? 'array'
        : v === null
          ? 'null'
          : typeof v;

  it('--json has exactly the shape of POST /api/orgs', async () => {
    const res = await cli('org', 'create', '--name', '  Shaped  ', '--json');
    expect(res).toMatchObject({ code: 0, stderr: '' });
    const fromCli = JSON.parse(res.stdout);
    leakScanner.remember(fromCli.admin_key.key);
    const fromHttp = await t.app.client.post('/api/orgs', {
      key: OPERATOR_TOKEN,
      body: { name: 'Shaped' },
    });
    leakScanner.remember(fromHttp.body.admin_key.key);
    expect(shape(fromCli)).toEqual(shape(fromHttp.body));
    expect(Object.keys(fromCli.admin_key.api_key)).toEqual(
      Object.keys(fromHttp.body.admin_key.api_key),
    );
    expect(fromCli.org.name).toBe('Shaped');
    const audit = await sql<{ actor_type: string }>`select actor_type from audit_events
      where org_id = ${fromCli.org.id}`.execute(t.app.kt.database.db);
    expect(audit.rows).toEqual([{ actor_type: 'operator' }]);
  });

  it('prints the org and its key once in text', async () => {
    const res = await cli('org', 'create', '--name', 'Texty\u0007');
    expect(res.code).toBe(0);
    const match =
      /^org ([0-9a-f-]{36}) \(Texty\?\)\nadmin key \(shown once\): (sk_live_\S+)\n$/.exec(
        res.stdout,
      );
    expect(match).not.toBeNull();
    leakScanner.remember(match?.[2] ?? '');
    const org = await t.app.client.get(`/api/orgs/${match?.[1]}`, { key: match?.[2] });
    expect(org.body.name).toBe('Texty\u0007');
  });

  it.each([
    [[]],
    [['--name', '']],
    [['--name', '   ']],
    [['--name', 'x'.repeat(201)]],
    [['--name']],
  ])('refuses %j with exit 2', async (flags) => {
    const res = await cli('org', 'create', ...flags);
    expect(res.code).toBe(2);
    expect(res.stderr.split('\n')).toHaveLength(2);
    expect(res.stderr).toMatch(/^keytrail: org create/);
  });
});

const GROUPS = ['org', 'keys', 'partitions', 'rollups'];

describe('dispatch', () => {
  it('prints the usage for no command, help, --help and -h', async () => {
    for (const args of [[], ['help'], ['--help'], ['-h']]) {
      expect(await runInProcess(args, {})).toMatchObject({ code: 0, stdout: USAGE, stderr: '' });
    }
  });

  it.each([
    ['serve'],
    ['worker'],
    ['migrate'],
    ['org'],
    ['org create'],
    ['keys'],
    ['keys create'],
    ['keys dormant'],
    ['partitions'],
    ['partitions list'],
    ['partitions ensure'],
    ['prune'],
    ['rollups'],
    ['rollups rebuild'],
  ])('%s answers --help, -h (and groups help) on stdout', async (command) => {
    const words = command.split(' ');
    const variants = [
      [...words, '--help'],
      [...words, '-h'],
    ];
    if (GROUPS.includes(command)) variants.push([...words, 'help']);
    for (const args of variants) {
      const res = await runInProcess(args, {});
      expect(res.code).toBe(0);
      expect(res.stdout.startsWith(`usage: keytrail ${command}`)).toBe(true);
      expect(res.stderr).toBe('');
    }
    const flagged = await runInProcess([...words, '--bogus', '--help'], {});
    expect(flagged.stdout.startsWith(`usage: keytrail ${command}`)).toBe(true);
  });

  it.each([
    [['bogus'], 'keytrail: unknown command: bogus (see keytrail --help)'],
    [['bo\u001bgus'], 'keytrail: unknown command: bo?gus (see keytrail --help)'],
    [['keys'], 'keytrail: keys needs a command: create, dormant (see keytrail keys --help)'],
    [
      ['partitions'],
      'keytrail: partitions needs a command: list, ensure, compress (see keytrail partitions --help)',
    ],
    [['keys', 'revoke'], 'keytrail: unknown keys command: revoke (see keytrail keys --help)'],
    [['worker', 'now'], "keytrail: worker: Unexpected argument 'now'"],
    [['prune', 'help'], "keytrail: prune: Unexpected argument 'help'"],
    [['serve', '--port', '1'], "keytrail: serve: Unknown option '--port'"],
    [['keys', 'dormant', '--', '--help'], 'keytrail: keys dormant: Unexpected argument'],
  ])('%j is a usage error: exit 2, one line', async (args, line) => {
    const res = await runInProcess(args, {});
    expect(res.code).toBe(2);
    expect(res.stdout).toBe('');
    expect(res.stderr.startsWith(line)).toBe(true);
    expect(res.stderr.split('\n')).toHaveLength(2);
  });

  it('hands serve and worker to the entry point, with --no-worker respected', async () => {
    expect(await runInProcess(['serve'], {})).toMatchObject({
      code: 0,
      served: [{ worker: true }],
    });
    expect(await runInProcess(['serve', '--no-worker'], {})).toMatchObject({
      code: 0,
      served: [{ worker: false }],
    });
    expect(await runInProcess(['worker'], {})).toMatchObject({ code: 0, worked: 1 });
    const failing = await runInProcess(
      ['serve'],
      {},
      {
        serve: () => Promise.reject(new Error('listen EADDRINUSE: address already in use :::8080')),
      },
    );
    expect(failing).toMatchObject({
      code: 1,
      stderr: 'keytrail: listen EADDRINUSE: address already in use :::8080\n',
    });
  });

  it('migrate prints what it applied (nothing here), also as JSON', async () => {
    expect((await cli('migrate')).stdout).toBe('up to date\n');
    expect(JSON.parse((await cli('migrate', '--json')).stdout)).toEqual({ applied: [] });
    const applied = await runInProcess(['migrate'], t.env, {
      openRuntime: () =>
        Promise.resolve({
          config: t.app.kt.config,
          migrate: () => Promise.resolve(['0005_key_expiry_audit']),
          stop: () => Promise.resolve(),
        }),
    });
    expect(applied.stdout).toBe('applied: 0005_key_expiry_audit\n');
  });
});

describe('failures', () => {
  const failingWith = (error: unknown) =>
    runInProcess(['partitions', 'list'], t.env, {
      // Whatever a dependency rejects with, Error or not.
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
      openRuntime: () => Promise.reject(error),
    });

  it('prints a cause chain on one line, without a stack', async () => {
    const error = new Error('migration (unknown) failed', {
      cause: new AggregateError([
        new Error('connect ECONNREFUSED ::1:5432'),
        new Error('connect ECONNREFUSED 127.0.0.1:5432'),
      ]),
    });
    expect((await failingWith(error)).stderr).toBe(
      'keytrail: migration (unknown) failed: connect ECONNREFUSED ::1:5432, connect ECONNREFUSED 127.0.0.1:5432\n',
    );
    expect(await failingWith(new Error('first line\n  second line'))).toMatchObject({
      code: 1,
      stderr: 'keytrail: first line second line\n',
    });
    expect((await failingWith('a string')).stderr).toBe('keytrail: a string\n');
    expect((await failingWith(new Error(''))).stderr).toBe('keytrail: unknown error\n');
  });

  it('maps refusals to exit 2 and other domain errors to exit 1', async () => {
    const refused = await failingWith(new AppError('unprocessable', { detail: 'no raw events' }));
    expect(refused).toMatchObject({ code: 2, stderr: 'keytrail: no raw events\n' });
    expect((await failingWith(new AppError('internal'))).code).toBe(1);
  });

  it('reports a configuration error as exit 2 on one line', async () => {
    const res = await runInProcess(['partitions', 'list'], {
      DATABASE_URL: 'mysql://nope',
      KEYTRAIL_KEY_PEPPER: 'short',
    });
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(
      /^keytrail: invalid configuration: .*DATABASE_URL.*KEYTRAIL_KEY_PEPPER/,
    );
    expect(res.stderr.split('\n')).toHaveLength(2);
  });
});
