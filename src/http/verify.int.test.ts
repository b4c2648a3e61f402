import { beforeAll, describe, expect, it } from 'vitest';
import { useTestApp } from '../testing/harness.ts';
import { TestClock } from '../testing/clock.ts';
import { createKey, createOrg, type TestKey, type TestOrg } from '../testing/factories.ts';
import { generateKey } from '../keys/key-format.ts';

const clock = new TestClock();
const app = useTestApp({ clock });

describe('POST /api/keys/verify', () => {
  let org: TestOrg;
  let verifier: TestKey;
  const verify = (body: unknown, key = verifier.key) =>
    app().client.post('/api/keys/verify', { key, body });

  beforeAll(async () => {
    org = await createOrg(app().client, 'Verify');
    verifier = await createKey(app().client, org, { scopes: ['keys:verify'] });
  });

  it('answers VALID with the key’s identity for an active key of the caller’s org', async () => {
    const k = await createKey(app().client, org, { scopes: ['orders:read'], environment: 'test' });
    const res = await verify({ key: k.key, scopes: ['orders:read'] });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      valid: true,
      code: 'VALID',
      key_id: k.id,
      org_id: org.orgId,
      environment: 'test',
      scopes: ['orders:read'],
      expires_at: null,
    });
  });

  it('answers INSUFFICIENT_SCOPE when the key lacks a requested scope', async () => {
    const k = await createKey(app().client, org, { scopes: ['orders:read'] });
    const res = await verify({ key: k.key, scopes: ['orders:write'] });
    expect(res.body).toMatchObject({ valid: false, code: 'INSUFFICIENT_SCOPE', key_id: k.id });
  });

  it('answers REVOKED and EXPIRED', async () => {
    const revoked = await createKey(app().client, org);
    await app().client.delete(`/api/orgs/${org.orgId}/api-keys/${revoked.id}`, {
      key: org.adminKey,
    });
    expect((await verify({ key: revoked.key })).body).toMatchObject({
      valid: false,
      code: 'REVOKED',
    });
    const expiring = await createKey(app().client, org, {
      expires_at: new Date(clock.now().getTime() + 5_000).toISOString(),
    });
    clock.advance(6_000);
    expect((await verify({ key: expiring.key })).body).toMatchObject({
      valid: false,
      code: 'EXPIRED',
    });
  });

  it('answers NOT_FOUND for an unknown key and for another org’s key', async () => {
    expect((await verify({ key: generateKey('live').plaintext })).body).toEqual({
      valid: false,
      code: 'NOT_FOUND',
    });
    const other = await createOrg(app().client, 'Other');
    expect((await verify({ key: other.adminKey })).body).toEqual({
      valid: false,
      code: 'NOT_FOUND',
    });
  });

  it('answers MALFORMED for a string that is not a well-formed key', async () => {
    for (const key of ['', 'sk_live_abc', `sk_prod_${'a'.repeat(38)}`]) {
      expect((await verify({ key })).body).toEqual({ valid: false, code: 'MALFORMED' });
    }
  });

  it('requires keys:verify and rejects unknown fields', async () => {
    const plain = await createKey(app().client, org, { scopes: [] });
    expect((await verify({ key: plain.key }, plain.key)).status).toBe(403);
    const extra = await verify({ key: plain.key, org_id: org.orgId });
    expect(extra.status).toBe(400);
    expect(extra.body.code).toBe('validation_failed');
  });
});
