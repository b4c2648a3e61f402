/**
 * The fixtures a fuzzed operation's requests are built from: one fresh org per operation, its
 * keys, the credential the operation takes and the cursors its pages really hand out.
 */
import type { TestClient } from './client.ts';
import { createKey, createOrg, type TestOrg } from './factories.ts';
import { OPERATOR_TOKEN, type TestApp } from './harness.ts';
import { fillPath, wireEncode, type Operation } from './openapi-fuzz.ts';
import { send } from './openapi-fuzz-wire.ts';

/** Fixture values an operation's requests are built from (one fresh org per operation). */
export type Fx = {
  org: TestOrg;
  keyIds: string[];
  foreignKey: string;
  unknownKey: string;
  credential: [string, string];
  names: Record<string, string>;
  /** Real next_cursor values (decoded) and the query that produced each. */
  cursors: { query: string; members: unknown[] }[];
};

/** The fixture a path parameter names: the org for `orgId…`, else the target key. */
export const fixtureId = (param: string, fx: Fx): string =>
  /^org/i.test(param) ? fx.org.orgId : (fx.keyIds[0] ?? '');

export const pathValues = (op: Operation, fx: Fx): Record<string, string> =>
  Object.fromEntries(op.pathParams.map((p) => [p, fixtureId(p, fx)]));

export function pathOf(op: Operation, fx: Fx): string {
  return fillPath(op.path, pathValues(op, fx));
}

export const jsonHeaders = (fx: Fx, body: unknown): [string, string][] => [
  fx.credential,
  ...(body === undefined ? [] : ([['Content-Type', 'application/json']] as [string, string][])),
];

export async function fixturesFor(
  app: Pick<TestApp, 'client' | 'baseUrl'>,
  op: Operation,
  shared: { foreignKey: string; unknownKey: string },
): Promise<Fx> {
  const { client, baseUrl } = app;
  const { foreignKey, unknownKey } = shared;
  const org = await createOrg(client, `Fuzz ${op.id}`);
  const keyIds = [
    (await createKey(client, org, { name: 'target' })).id,
    (await createKey(client, org)).id,
  ];
  const names: Record<string, string> = {
    [org.adminKey]: '<adminKey>',
    [foreignKey]: '<foreignAdminKey>',
    [unknownKey]: '<unknownKey>',
    [org.orgId]: '<orgId>',
    [keyIds[0] ?? '']: '<keyId>',
  };
  // The credential the operation takes: the org admin key, or the operator token where the key
  // is refused (probed without a body and with an unknown key id, so nothing changes).
  const probeFx = { org, keyIds: [crypto.randomUUID()] } as Fx;
  const admin = await send(baseUrl, {
    method: op.method,
    target: pathOf(op, probeFx),
    headers: [['Authorization', `Bearer ${org.adminKey}`]],
  });
  const token = admin.status === 401 ? OPERATOR_TOKEN : org.adminKey;
  const credential: [string, string] = ['Authorization', `Bearer ${token}`];
  const fx: Fx = { org, keyIds, foreignKey, unknownKey, credential, names, cursors: [] };
  fx.cursors = await realCursors(baseUrl, op, fx);
  return fx;
}

/** Pages of one item, per value of each enum parameter: the cursors a client really gets. */
async function realCursors(baseUrl: string, op: Operation, fx: Fx): Promise<Fx['cursors']> {
  if (op.method !== 'GET' || !op.query.some((q) => q.name === 'cursor')) return [];
  const limit = op.query.some((q) => q.name === 'limit') ? 'limit=1' : '';
  const queries = [limit];
  for (const q of op.query) {
    for (const v of q.schema.enum ?? [])
      queries.push(`${limit}&${q.name}=${wireEncode(String(v))}`);
  }
  const found: Fx['cursors'] = [];
  for (const query of queries) {
    const res = await send(baseUrl, {
      method: 'GET',
      target: `${pathOf(op, fx)}?${query}`,
      headers: [fx.credential],
    });
    const json = res.status === 200 && res.headers['content-type']?.startsWith('application/json');
    const next: unknown = json ? JSON.parse(res.body).next_cursor : null;
    if (typeof next !== 'string') continue;
    const members: unknown = JSON.parse(Buffer.from(next, 'base64url').toString('utf8'));
    if (Array.isArray(members)) found.push({ query, members });
  }
  return found;
}

/** The fixtures with a fresh target key in front (an earlier property may have revoked one). */
export async function withTargetKey(client: TestClient, fx: Fx, name: string): Promise<Fx> {
  const target = (await createKey(client, fx.org, { name })).id;
  return { ...fx, keyIds: [target, ...fx.keyIds], names: { ...fx.names, [target]: '<keyId>' } };
}
