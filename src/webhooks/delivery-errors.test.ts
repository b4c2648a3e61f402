import { describe, expect, it } from 'vitest';
import { AttemptFailure, categorize, storedCategory } from './delivery-errors.ts';
import { redactedUrl } from './secrets.ts';

const nodeError = (code: string, message: string) => Object.assign(new Error(message), { code });

describe('webhook error categories', () => {
  it('maps Node errors to a closed set, whatever their message names', () => {
    const cases: [unknown, string][] = [
      [nodeError('ECONNREFUSED', 'connect ECONNREFUSED 10.20.0.7:8443'), 'connection_refused'],
      [nodeError('ECONNRESET', 'read ECONNRESET'), 'connection_reset'],
      [new Error('socket hang up'), 'connection_reset'],
      [nodeError('EHOSTUNREACH', 'connect EHOSTUNREACH 10.0.0.9:443'), 'network_unreachable'],
      [
        nodeError('ERR_TLS_CERT_ALTNAME_INVALID', "Host: x. is not in the cert's altnames"),
        'tls_error',
      ],
      [nodeError('DEPTH_ZERO_SELF_SIGNED_CERT', 'self-signed certificate'), 'tls_error'],
      [nodeError('ERR_SSL_WRONG_VERSION_NUMBER', 'wrong version number'), 'tls_error'],
      [new AttemptFailure('timeout', 'timed out after 10000 ms'), 'timeout'],
      [nodeError('EWHATEVER', 'internal-host.corp:8443 said no'), 'other'],
      ['a string', 'other'],
    ];
    for (const [error, category] of cases) expect(categorize(error)).toBe(category);
  });

  it('maps every certificate-verification and handshake code to tls_error', () => {
    for (const code of [
      'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
      'UNABLE_TO_GET_ISSUER_CERT',
      'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
      'SELF_SIGNED_CERT_IN_CHAIN',
      'DEPTH_ZERO_SELF_SIGNED_CERT',
      'CERT_HAS_EXPIRED',
      'INVALID_CA',
      'INVALID_PURPOSE',
      'PATH_LENGTH_EXCEEDED',
      'EPROTO',
      'ERR_TLS_CERT_ALTNAME_INVALID',
    ]) {
      expect(categorize(nodeError(code, 'unable to verify 10.20.0.7')), code).toBe('tls_error');
    }
  });

  it('reads a stored raw message (from before the categories) as other', () => {
    expect(storedCategory('connection_refused')).toBe('connection_refused');
    expect(storedCategory('connect ECONNREFUSED 10.20.0.7:8443')).toBe('other');
    expect(storedCategory(null)).toBeNull();
  });
});

describe('webhook URLs in audit details and logs', () => {
  it('keep scheme, host and port; never a path, query or credentials', () => {
    expect(redactedUrl('https://hooks.slack.com/services/T0AAA/B0BBB/sEcReT')).toBe(
      'https://hooks.slack.com/…',
    );
    expect(redactedUrl('https://user:pa55@hooks.example.com:8443/in/tok?token=s3cret#x')).toBe(
      'https://hooks.example.com:8443/…?…',
    );
    expect(redactedUrl('https://hooks.example.com/?token=s3cret')).toBe(
      'https://hooks.example.com/?…',
    );
    expect(redactedUrl('http://[::1]:9000/')).toBe('http://[::1]:9000/');
  });
});
