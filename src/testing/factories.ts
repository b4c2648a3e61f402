import type { TestClient } from './client.ts';
import { OPERATOR_TOKEN } from './harness.ts';

export type TestOrg = { orgId: string; adminKey: string; adminKeyId: string };

export async function createOrg(client: TestClient, name = 'Acme'): Promise<TestOrg> {
  const res = await client.post('/api/orgs', { key: OPERATOR_TOKEN, body: { name } });
  if (res.status !== 201) throw new Error(`createOrg: ${res.status} ${res.text}`);
  return {
    orgId: res.body.org.id,
    adminKey: res.body.admin_key.key,
    adminKeyId: res.body.admin_key.api_key.id,
  };
}

export type TestKey = { key: string; id: string; body: any };

export async function createKey(
  client: TestClient,
  org: TestOrg,
  body: { name?: string; scopes?: string[]; environment?: string; expires_at?: string | null } = {},
  asKey = org.adminKey,
): Promise<TestKey> {
  const res = await client.post(`/api/orgs/${org.orgId}/api-keys`, {
    key: asKey,
    body: { name: 'test key', ...body },
  });
  if (res.status !== 201) throw new Error(`createKey: ${res.status} ${res.text}`);
  return { key: res.body.key, id: res.body.api_key.id, body: res.body.api_key };
}
