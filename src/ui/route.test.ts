import { describe, expect, it } from 'vitest';
import { auditHref, exportHref, keyHref, parseRoute, policiesHref, webhooksHref } from './route.ts';
import { maskKey } from './session.ts';

const ID = '0190f2a4-5b6c-7d8e-9f01-23456789abcd';

describe('parseRoute', () => {
  it.each(['', '#', '#/', '#/keys', '#/keys/'])('"%s" is the API Keys page', (hash) => {
    expect(parseRoute(hash)).toEqual({ page: 'keys' });
  });

  it('reads a key page from its link', () => {
    expect(parseRoute(keyHref(ID))).toEqual({ page: 'key', keyId: ID });
    expect(parseRoute(`#/keys/${ID.toUpperCase()}`)).toEqual({ page: 'key', keyId: ID });
  });

  it('reads the Audit, Export and Policies pages', () => {
    expect(parseRoute(auditHref)).toEqual({ page: 'audit' });
    expect(parseRoute(`${exportHref}/`)).toEqual({ page: 'export' });
    expect(parseRoute(policiesHref)).toEqual({ page: 'policies' });
    expect(parseRoute(webhooksHref)).toEqual({ page: 'webhooks' });
  });

  it.each(['#/keys/not-a-uuid', '#/audit/x', '#main', `#/keys/${ID}/x`])(
    '"%s" is not found',
    (hash) => {
      expect(parseRoute(hash)).toEqual({ page: 'not-found', hash });
    },
  );
});

describe('maskKey', () => {
  it('keeps only the display prefix', () => {
    expect(maskKey('sk_live_abcdefgh1234567890')).toBe('sk_live_abcdefgh…');
    expect(maskKey('sk_test_ab')).toBe('sk_test_ab…');
    expect(maskKey('not a key')).toBe('…');
  });
});
