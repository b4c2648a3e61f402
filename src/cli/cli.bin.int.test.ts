/**
 * The real binary (`node bin/keytrail.ts`) against the test database: per command its happy
 * path, and across commands --help, a usage error and a failure. Edge cases run in-process
 * (cli.int.test.ts), where they cost no process start.
 */
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { createKey, createOrg } from '../testing/factories.ts';
import { cliEnv, runBinary, useCliTestApp } from '../testing/cli.ts';
import { leakScanner } from '../testing/leak-scan.ts';

const t = useCliTestApp();

const DAY_MS = 86_400_000;
const oneLine = (text: string) => expect(text.split('\n').filter(Boolean)).toHaveLength(1);

describe('keytrail (the binary)', () => {
  it('org create --json prints the POST /api/orgs body, with a key that authenticates', async () => {
    const res = await runBinary(['org', 'create', '--name', 'From CLI', '--json'], t.env);
    expect(res).toMatchObject({ code: 0, stderr: '' });
    const body = JSON.parse(res.stdout);
    leakScanner.remember(body.admin_key.key);
    expect(Object.keys(body)).toEqual(['org', 'admin_key']);
    expect(body.org).toMatchObject({ name: 'From CLI' });
    expect(body.admin_key.api_key).toMatchObject({
      org_id: body.org.id,
      scopes: ['org:admin'],
      status: 'active',
    });
    const org = await t.app.client.get(`/api/orgs/${body.org.id}`, { key: body.admin_key.key });
    expect(org.status).toBe(200);
    expect(org.body).toEqual(body.org);
  });

  it('keys dormant lists the dormant keys of the org as a table and as JSON', async () => {
    const org = await createOrg(t.app.client, 'Dormant bin');
    const old = await createKey(t.app.client, org, { name: 'old-svc' });
    await createKey(t.app.client, org, { name: 'fresh' });
    const db = t.app.kt.database.db;
    await sql`update api_keys set created_at = ${new Date(Date.now() - 40 * DAY_MS)}
      where id in (${old.id}, ${org.adminKeyId})`.execute(db);
    const text = await runBinary(['keys', 'dormant', '--org', org.orgId], t.env);
    expect(text).toMatchObject({ code: 0, stderr: '' });
    const lines = text.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe(
      `2 dormant keys in org ${org.orgId} (active, not used in the last 30 days):`,
    );
    expect(lines[1]).toMatch(/^ID\s+NAME\s+PREFIX\s+LAST USED\s+CREATED$/);
    expect(lines.slice(2).map((l) => l.split(/\s+/).slice(0, 2))).toEqual(
      expect.arrayContaining([
        [old.id, 'old-svc'],
        [org.adminKeyId, 'admin'],
      ]),
    );
    expect(lines).toHaveLength(4);
    const json = await runBinary(
      ['keys', 'dormant', '--org', org.orgId, '--days', '50', '--json'],
      t.env,
    );
    expect(JSON.parse(json.stdout)).toEqual({ org_id: org.orgId, dormant_days: 50, keys: [] });
  });

  it('partitions ensure creates months ahead, then partitions list shows them', async () => {
    const ensure = await runBinary(
      ['partitions', 'ensure', '--months-ahead', '3', '--json'],
      t.env,
    );
    expect(ensure.code).toBe(0);
    const report = JSON.parse(ensure.stdout);
    expect([...report.created, ...report.existing]).toHaveLength(4);
    const list = await runBinary(['partitions', 'list'], t.env);
    expect(list).toMatchObject({ code: 0, stderr: '' });
    expect(list.stdout).toMatch(
      /^NAME\s+RANGE \(UTC, END EXCLUDED\)\s+ROWS \(APPROXIMATE\)\s+SIZE\s+STORAGE\n/,
    );
    for (const name of report.created) expect(list.stdout).toContain(name);
  });

  it('prune marks expired keys once and says so, in text and in --json', async () => {
    const org = await createOrg(t.app.client, 'Expiry bin');
    const k = await createKey(t.app.client, org, { name: 'short-lived' });
    await sql`update api_keys set expires_at = now() - interval '1 hour' where id = ${k.id}`.execute(
      t.app.kt.database.db,
    );
    const dry = await runBinary(['prune', '--dry-run', '--json'], t.env);
    expect(JSON.parse(dry.stdout)).toMatchObject({ dryRun: true, expiredKeysMarked: 1 });
    const first = await runBinary(['prune'], t.env);
    expect(first).toMatchObject({ code: 0, stderr: '' });
    expect(first.stdout).toContain('  expired keys marked: 1\n');
    const second = await runBinary(['prune', '--json'], t.env);
    expect(JSON.parse(second.stdout)).toMatchObject({ skipped: false, expiredKeysMarked: 0 });
    const { rows } = await sql<{ actor_type: string }>`select actor_type from audit_events
      where target_id = ${k.id} and action = 'key.expired'`.execute(t.app.kt.database.db);
    expect(rows).toEqual([{ actor_type: 'system' }]);
  });

  it('migrate reports the database up to date', async () => {
    expect(await runBinary(['migrate'], t.env)).toEqual({
      code: 0,
      stdout: 'up to date\n',
      stderr: '',
    });
  });

  it('answers --help on every command and subcommand, on stdout with exit 0', async () => {
    const results = await Promise.all(
      [['--help'], ['keys', 'dormant', '--help'], ['partitions', '-h'], ['serve', '--help']].map(
        (args) => runBinary(args, {}),
      ),
    );
    for (const res of results) {
      expect(res.code).toBe(0);
      expect(res.stdout).toMatch(/^usage: keytrail/);
      expect(res.stderr).toBe('');
    }
  });

  it('a usage error is exit 2 with one line on stderr, before touching the database', async () => {
    const res = await runBinary(['keys', 'dormant', '--days', '7'], {});
    expect(res).toEqual({
      code: 2,
      stdout: '',
      stderr: 'keytrail: keys dormant needs --org ID (see keytrail keys dormant --help)\n',
    });
    const unknown = await runBinary(['prune', '--bogus'], t.env);
    expect(unknown.code).toBe(2);
    oneLine(unknown.stderr);
    expect(unknown.stderr).toMatch(/^keytrail: prune: Unknown option '--bogus'/);
  });

  it('a failure is exit 1 with one line on stderr and no stack trace', async () => {
    const missing = await runBinary(
      ['keys', 'dormant', '--org', '00000000-0000-4000-8000-000000000000'],
      t.env,
    );
    expect(missing).toEqual({ code: 1, stdout: '', stderr: 'keytrail: org not found\n' });
    const down = await runBinary(
      ['partitions', 'list'],
      cliEnv('postgres://keytrail:x@127.0.0.1:1/keytrail'),
    );
    expect(down.code).toBe(1);
    oneLine(down.stderr);
    expect(down.stderr).toMatch(/^keytrail: .*ECONNREFUSED/);
    expect(down.stderr).not.toMatch(/\bat \S+ \(/);
  });

  it('a configuration error is exit 2 with its message on one line', async () => {
    const res = await runBinary(['migrate'], { DATABASE_URL: t.env.DATABASE_URL ?? '' });
    expect(res.code).toBe(2);
    oneLine(res.stderr);
    expect(res.stderr).toMatch(/^keytrail: invalid configuration: .*KEYTRAIL_KEY_PEPPER/);
  });
});
