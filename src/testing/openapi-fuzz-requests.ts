/**
 * The hostile requests of each fuzzing category, one fast-check arbitrary per operation: body,
 * query (openapi-fuzz-query.ts), path, content framing and credentials.
 */
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { OPERATOR_TOKEN } from './harness.ts';
import { fillPath, wireEncode, type Operation } from './openapi-fuzz.ts';
import { fixtureId, jsonHeaders, pathOf, type Fx } from './openapi-fuzz-fixtures.ts';
import { queryCase } from './openapi-fuzz-query.ts';
import {
  BAD_ENCODINGS,
  bodyText,
  hostileJson,
  hostileText,
  INVALID_JSON,
  mutate,
  UNKNOWN_NAMES,
  valueOf,
} from './openapi-fuzz-values.ts';
import type { WireRequest } from './openapi-fuzz-wire.ts';

/** Wrong types, hostile strings, unknown and missing fields, invalid JSON, in the body. */
function bodyCase(op: Operation, fx: Fx): fc.Arbitrary<WireRequest> {
  const valid = op.body ? valueOf(op.body, 'body', fx) : fc.jsonValue({ maxDepth: 2 });
  const unknownField = fc
    .tuple(valid, fc.oneof(fc.constantFrom(...UNKNOWN_NAMES), hostileText(false)), hostileJson())
    .map(([b, k, v]) =>
      JSON.stringify(typeof b === 'object' && b !== null ? { ...b, [k]: v } : { [k]: v }),
    );
  const body = fc.oneof(
    {
      arbitrary: valid.chain((b) => mutate(b)).map((b) => JSON.stringify(b) ?? 'null'),
      weight: 4,
    },
    { arbitrary: unknownField, weight: 2 },
    { arbitrary: hostileJson().map((b) => JSON.stringify(b) ?? 'null'), weight: 1 },
    { arbitrary: fc.constantFrom(...INVALID_JSON), weight: 2 },
  );
  return body.map((b) => ({
    method: op.method,
    target: pathOf(op, fx),
    headers: jsonHeaders(fx, b),
    body: b,
  }));
}

/** Bad ids, bad percent-encoding and mangled paths; now and then a method the path lacks. */
function pathCase(op: Operation, fx: Fx): fc.Arbitrary<WireRequest> {
  const segment = (valid: string) =>
    fc.oneof(
      { arbitrary: fc.constant(valid), weight: 2 },
      {
        arbitrary: fc.constantFrom(
          ...BAD_ENCODINGS,
          'not-a-uuid',
          valid.toUpperCase(),
          `{${valid}}`,
          valid.replaceAll('-', ''),
          `${valid}x`,
          '00000000-0000-0000-0000-000000000000',
          'ffffffff-ffff-ffff-ffff-ffffffffffff',
          'a/b',
          '..',
          '.',
          ';',
        ),
        weight: 3,
      },
      { arbitrary: fc.uuid(), weight: 1 },
      { arbitrary: hostileText(false).map((s) => wireEncode(s.slice(0, 1000))), weight: 2 },
    );
  const values = fc.record(
    Object.fromEntries(op.pathParams.map((p) => [p, segment(fixtureId(p, fx))])),
  );
  const mangle = fc.constantFrom<(p: string) => string>(
    (p) => p,
    (p) => `${p}/`,
    (p) => p.replaceAll('/', '//'),
    (p) => p.toUpperCase(),
    (p) => `${p}/..`,
    (p) => `${p}%2F`,
    (p) => `${p};x=1`,
    (p) => `${p}.json`,
  );
  const method = fc.oneof(
    { arbitrary: fc.constant(op.method), weight: 6 },
    fc.constantFrom('PUT', 'OPTIONS', 'HEAD', 'TRACE', 'PROPFIND', 'PURGE'),
  );
  return fc.tuple(values, mangle, method, bodyText(op, fx)).map(([v, m, verb, body]) => ({
    method: verb,
    target: m(fillPath(op.path, v)),
    headers: jsonHeaders(fx, body),
    body,
  }));
}

const CONTENT_TYPES = [
  undefined,
  'application/json',
  'text/plain',
  'application/json; charset=latin1',
  'application/json; charset=utf-16',
  'application/json; charset=utf-99',
  'application/merge-patch+json',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=XyZ',
  'application/xml',
  '*/*',
  ';',
  'APPLICATION/JSON',
];
const CONTENT_ENCODINGS = [
  undefined,
  'gzip',
  'deflate',
  'br',
  'identity',
  'x-unknown',
  'gzip, br',
  'GZIP',
];
const ACCEPTS = [
  undefined,
  'text/csv',
  'application/x-ndjson',
  'application/xml',
  '*/*;q=0',
  'garbage;;q=x',
];

/**
 * The payload as sent: as is whatever the declared encoding (`plain`), compressed as declared
 * (`real`), or replaced by 3 MB of JSON compressed as declared (`bomb`).
 */
function encodeBody(payload: string, encoding: string | undefined, how: string): Buffer {
  let body: Buffer = Buffer.from(payload, 'latin1');
  if (how === 'bomb') body = Buffer.from(`{"name":"${' '.repeat(3 * 1024 * 1024)}"}`);
  const e = encoding?.toLowerCase();
  if (how !== 'plain' && e === 'gzip') body = gzipSync(body);
  if (how !== 'plain' && e === 'deflate') body = deflateSync(body);
  if (how !== 'plain' && e === 'br') body = brotliCompressSync(body);
  return body;
}

/** Lying or odd Content-Type, Content-Encoding and Accept; chunked framing. */
function contentCase(op: Operation, fx: Fx): fc.Arbitrary<WireRequest> {
  const type = fc.constantFrom(...CONTENT_TYPES);
  const payload = fc.oneof(
    bodyText(op, fx).map((b) => b ?? '{}'),
    fc.constantFrom(
      '<xml/>',
      'name=x&scopes=a',
      '--XyZ\r\nContent-Disposition: form-data; name="name"\r\n\r\nx\r\n--XyZ--\r\n',
      '',
    ),
    fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString('latin1')),
  );
  const encoding = fc.constantFrom(...CONTENT_ENCODINGS);
  const encode = fc.constantFrom('plain', 'real', 'bomb');
  const accept = fc.constantFrom(...ACCEPTS);
  return fc
    .tuple(type, payload, encoding, encode, accept, fc.boolean())
    .map(([t, p, enc, how, acc, chunked]) => {
      const body = encodeBody(p, enc, how);
      const headers: [string, string][] = [fx.credential];
      if (t) headers.push(['Content-Type', t]);
      if (enc) headers.push(['Content-Encoding', enc]);
      if (acc) headers.push(['Accept', acc]);
      return { method: op.method, target: pathOf(op, fx), headers, body, chunked };
    });
}

/** Missing, garbage, foreign and odd credentials; X-Request-Id values a client chose. */
function authCase(op: Operation, fx: Fx): fc.Arbitrary<WireRequest> {
  const key = fx.org.adminKey;
  const auth = fc.constantFrom<[string, string][]>(
    [fx.credential],
    [],
    [['Authorization', 'Bearer']],
    [['Authorization', 'Bearer garbage']],
    [['Authorization', `Basic ${Buffer.from(`u:${key}`).toString('base64')}`]],
    [['Authorization', `bearer ${key}`]],
    [['Authorization', `Bearer ${key} trailing`]],
    [['Authorization', `Bearer ${fx.foreignKey}`]],
    [['Authorization', `Bearer ${fx.unknownKey}`]],
    [['Authorization', `Bearer sk_live_${'A'.repeat(38)}`]],
    [['Authorization', `Bearer ${OPERATOR_TOKEN}`]],
    [['Authorization', `Bearer ${'x'.repeat(8000)}`]],
    [['Authorization', `Bearer ${key}é`]],
    [['X-API-Key', key]],
    [['X-API-Key', ` ${key} `]],
    [
      ['Authorization', 'Bearer garbage'],
      ['X-API-Key', key],
    ],
    [
      ['Authorization', `Bearer ${key}`],
      ['Authorization', `Bearer ${fx.foreignKey}`],
    ],
  );
  const requestId = fc.constantFrom(undefined, 'abc-123', 'a'.repeat(129), '../x', 'é', ' ');
  return fc.tuple(auth, requestId, bodyText(op, fx)).map(([a, rid, body]) => {
    const headers: [string, string][] = [...a];
    if (body !== undefined) headers.push(['Content-Type', 'application/json']);
    if (rid !== undefined) headers.push(['X-Request-Id', rid]);
    return { method: op.method, target: pathOf(op, fx), headers, body };
  });
}

export const CATEGORIES = {
  body: bodyCase,
  query: queryCase,
  path: pathCase,
  content: contentCase,
  auth: authCase,
};
