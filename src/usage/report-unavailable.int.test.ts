import { describe, expect, it } from 'vitest';
import { useTestApp } from '../testing/harness.ts';
import { createKey, createOrg } from '../testing/factories.ts';
import { expectProblem } from '../testing/problem.ts';

const app = useTestApp();

describe('reported events with the queue down', () => {
  it('answer 503, never 202: an accepted batch must be durable', async () => {
    const org = await createOrg(app().client, 'Queue down');
    const writer = await createKey(app().client, org, { scopes: ['events:write'] });
    const target = await createKey(app().client, org);
    await (await app().kt.queue()).stop({ graceful: false });
    const res = await app().client.post(`/api/orgs/${org.orgId}/usage-events`, {
      key: writer.key,
      body: {
        events: [
          {
            key_id: target.id,
            occurred_at: new Date().toISOString(),
            method: 'GET',
            route: '/x',
            status: 200,
            latency_ms: 1,
          },
        ],
      },
    });
    expectProblem(res, 503, 'service_unavailable');
    const line = app().logs.find(
      (l) => l.includes(res.body.request_id) && l.includes('request failed'),
    );
    expect(line).toBeDefined();
  });
});
