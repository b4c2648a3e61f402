/**
 * Hash routes (one HTML entry, nothing the server must know): `#/keys` (the default),
 * `#/keys/<id>`, `#/audit`, `#/export`, `#/policies` and `#/webhooks`. Pure, so every shape of hash is unit-tested.
 */

export type Route =
  | { page: 'keys' }
  | { page: 'key'; keyId: string }
  | { page: 'audit' }
  | { page: 'export' }
  | { page: 'policies' }
  | { page: 'webhooks' }
  | { page: 'not-found'; hash: string };

const KEY_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function parseRoute(hash: string): Route {
  const path = hash.replace(/^#/, '').replace(/\/+$/, '');
  if (path === '' || path === '/keys') return { page: 'keys' };
  if (path === '/audit') return { page: 'audit' };
  if (path === '/export') return { page: 'export' };
  if (path === '/policies') return { page: 'policies' };
  if (path === '/webhooks') return { page: 'webhooks' };
  const key = /^\/keys\/([^/]+)$/.exec(path);
  if (key?.[1] && KEY_ID.test(key[1])) return { page: 'key', keyId: key[1].toLowerCase() };
  return { page: 'not-found', hash };
}

export const keysHref = '#/keys';
export const keyHref = (keyId: string): string => `#/keys/${keyId}`;
export const auditHref = '#/audit';
export const exportHref = '#/export';
export const policiesHref = '#/policies';
export const webhooksHref = '#/webhooks';
