/**
 * What the webhooks API and audit trail say about failures and URLs (issue 18): a closed set
 * of error categories, never Node's messages (they name internal addresses); URLs without path
 * or query; allowed private networks only on the ports they name; SPEC §5's page limits.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorker, type Worker } from '../../workers/main.ts';
import { createKey, createOrg, type TestOrg } from '../testing/factories.ts';
import { startTestApp, useTestDatabase, waitFor, type TestApp } from '../testing/harness.ts';
import { expectProblem } from '../testing/problem.ts';
import { subscribe, webhookTestConfig } from '../testing/webhooks.ts';

const dbUrl = useTestDatabase();
let app: TestApp;
let worker: Worker;
beforeAll(async () => {
  const webhooks = {
    ...webhookTestConfig.webhooks,
    addresses: { allowLoopback: true, allowedNetworks: ['10.20.0.0/16:443+9443'] },
  };
  app = await startTestApp(dbUrl(), { config: { webhooks } });
  worker = await startWorker(app.kt);
});
afterAll(async () => {
  await worker.stop();
  await app.close();
});

const hooks = (org: TestOrg) => `/api/orgs/${org.orgId}/webhooks`;

/** A loopback port nothing listens on (a server bound it, then closed). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function auditOf(org: TestOrg, action: string) {
  const res = await app.client.get(`/api/orgs/${org.orgId}/audit-events?action=${action}`, {
    key: org.adminKey,
  });
  expect(res.status, res.text).toBe(200);
  return res.body.data as { details: Record<string, unknown> }[];
}

describe('webhook errors, URLs and limits', { timeout: 60_000 }, () => {
  it('reports a refused connection as a category, never the address, in the API and audit', async () => {
    const org = await createOrg(app.client, 'Refused');
    const port = await closedPort();
    const url = `http://127.0.0.1:${port}/services/T0AAA/B0BBB/sEcReTtOkEn`;
    const { id } = await subscribe(app.client, org, url, ['key.created']);
    // Failing for 3 days already: the first failure disables it (and audits why).
    await sql`update webhook_endpoints set failing_since = now() - interval '3 days 1 minute',
      last_failure_at = now() where id = ${id}`.execute(app.kt.database.db);
    await createKey(app.client, org);
    const path = `${hooks(org)}/${id}/deliveries`;
    const page = await waitFor(async () => {
      const res = await app.client.get(path, { key: org.adminKey });
      return res.body.data?.[0]?.attempts?.length > 0 ? res : null;
    });
    expect(page.body.data[0].attempts[0]).toMatchObject({
      status_code: null,
      error: 'connection_refused',
    });
    expect(page.text).not.toMatch(/ECONNREFUSED|127\.0\.0\.1/);
    const [disabled] = await waitFor(async () => {
      const rows = await auditOf(org, 'webhook.disabled');
      return rows.length > 0 ? rows : null;
    });
    expect(disabled?.details).toMatchObject({
      url: `http://127.0.0.1:${port}/…`,
      last_error: 'connection_refused',
    });
    const [created] = await auditOf(org, 'webhook.created');
    expect(created?.details.url).toBe(`http://127.0.0.1:${port}/…`);
    const logs = app.logs.join('');
    expect(logs).toContain('connection_refused');
    expect(logs).not.toContain('sEcReTtOkEn');
    // A row stored raw by an earlier version reads as a category too.
    await sql`insert into webhook_attempts (org_id, delivery_id, attempted_at, latency_ms, error)
      values (${org.orgId}, ${page.body.data[0].id as string}, now(), 3,
        'connect ECONNREFUSED 10.20.0.7:8443')`.execute(app.kt.database.db);
    const again = await app.client.get(path, { key: org.adminKey });
    expect(again.body.data[0].attempts.at(-1).error).toBe('other');
    expect(again.text).not.toContain('10.20.0.7');
  });

  it('keeps paths and queries of webhook URLs out of the audit trail', async () => {
    const org = await createOrg(app.client, 'Redacted');
    const slack = 'https://hooks.slack.com/services/T0AAA/B0BBB/sEcReTtOkEn';
    const { id } = await subscribe(app.client, org, slack, ['key.created']);
    const changed = await app.client.patch(`${hooks(org)}/${id}`, {
      key: org.adminKey,
      body: { url: 'https://hooks.example.com:8443/in/abc?token=s3cret' },
    });
    expect(changed.status, changed.text).toBe(200);
    expect((await auditOf(org, 'webhook.created'))[0]?.details.url).toBe(
      'https://hooks.slack.com/…',
    );
    expect((await auditOf(org, 'webhook.updated'))[0]?.details).toEqual({
      changes: {
        url: {
          from: 'https://hooks.slack.com/…',
          to: 'https://hooks.example.com:8443/…?…',
          from_fingerprint: expect.stringMatching(/^[0-9a-f]{8}$/),
          to_fingerprint: expect.stringMatching(/^[0-9a-f]{8}$/),
        },
      },
    });
    await app.client.delete(`${hooks(org)}/${id}`, { key: org.adminKey });
    expect((await auditOf(org, 'webhook.deleted'))[0]?.details.url).toBe(
      'https://hooks.example.com:8443/…?…',
    );
    const all = await app.client.get(`/api/orgs/${org.orgId}/audit-events`, {
      key: org.adminKey,
    });
    expect(all.text).not.toMatch(/sEcReTtOkEn|s3cret|services|\/in\//);
  });

  it('audits a change of the URL path alone, with fingerprints telling the two apart', async () => {
    const org = await createOrg(app.client, 'Path only');
    const slack = 'https://hooks.slack.com/services/A/B/tok';
    const { id } = await subscribe(app.client, org, slack, ['key.created']);
    const patch = (url: string) =>
      app.client.patch(`${hooks(org)}/${id}`, { key: org.adminKey, body: { url } });
    expect((await patch('https://hooks.slack.com/services/X/Y/attacker')).status).toBe(200);
    expect((await patch(slack)).status).toBe(200);
    const [back, away] = await auditOf(org, 'webhook.updated');
    const created = (await auditOf(org, 'webhook.created'))[0]?.details;
    const url = away?.details.changes as Record<string, Record<string, string>>;
    expect(url.url).toEqual({
      from: 'https://hooks.slack.com/…',
      to: 'https://hooks.slack.com/…',
      from_fingerprint: created?.url_fingerprint,
      to_fingerprint: expect.stringMatching(/^[0-9a-f]{8}$/),
    });
    expect(url.url?.to_fingerprint).not.toBe(url.url?.from_fingerprint);
    // Back to the first URL: the same fingerprint as it had at creation.
    const backUrl = (back?.details.changes as Record<string, Record<string, string>>).url;
    expect(backUrl).toMatchObject({
      from_fingerprint: url.url?.to_fingerprint,
      to_fingerprint: created?.url_fingerprint,
    });
    const all = await app.client.get(`/api/orgs/${org.orgId}/audit-events`, { key: org.adminKey });
    expect(all.text).not.toMatch(/attacker|services/);
  });

  it('allows a private network only on the ports its entry names', async () => {
    const org = await createOrg(app.client, 'Ports');
    const post = (url: string) =>
      app.client.post(hooks(org), {
        key: org.adminKey,
        body: { url, event_types: ['key.created'] },
      });
    for (const ok of ['https://10.20.0.7/hook', 'https://10.20.0.7:9443/hook']) {
      expect((await post(ok)).status, ok).toBe(201);
    }
    const refused = await post('https://10.20.0.7:8443/hook');
    expectProblem(refused, 400, 'validation_failed');
    expect(refused.body.errors).toEqual([
      { path: 'url', message: 'private address not allowed on port 8443' },
    ]);
  });

  it('pages deliveries 1 to 500 at a time, 50 by default, like the other lists', async () => {
    const org = await createOrg(app.client, 'Limits');
    const { id } = await subscribe(app.client, org, 'https://hooks.example.com/x', ['key.created']);
    // 501 settled deliveries, written directly (nothing to deliver), at the millisecond
    // precision of the app clock that cursors carry.
    await sql`with m as (
        insert into webhook_messages (id, org_id, type, occurred_at, payload)
        select gen_random_uuid(), ${org.orgId}, 'key.created', now(), '{}'::jsonb
        from generate_series(1, 501) returning id)
      insert into webhook_deliveries (org_id, id, message_id, endpoint_id, status, created_at)
      select ${org.orgId}, gen_random_uuid(), m.id, ${id}, 'succeeded', date_trunc('milliseconds', now())
      from m`.execute(app.kt.database.db);
    const list = (query: string) =>
      app.client.get(`${hooks(org)}/${id}/deliveries${query}`, { key: org.adminKey });
    for (const bad of ['0', '501']) {
      const res = await list(`?limit=${bad}`);
      expectProblem(res, 400, 'validation_failed');
      expect(res.body.errors?.[0]?.path).toBe('query.limit');
    }
    const byDefault = await list('');
    expect(byDefault.body.data).toHaveLength(50);
    expect(byDefault.body.next_cursor).not.toBeNull();
    const most = await list('?limit=500');
    expect(most.status).toBe(200);
    expect(most.body.data).toHaveLength(500);
    const rest = await list(`?limit=500&cursor=${most.body.next_cursor as string}`);
    expect(rest.body.data).toHaveLength(1);
    expect(rest.body.next_cursor).toBeNull();
  });
});
