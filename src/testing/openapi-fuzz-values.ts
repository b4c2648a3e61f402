/**
 * fast-check arbitraries for the fuzz tests: values a schema accepts (built from the fixtures),
 * hostile text and JSON, and the mutations that put one hostile leaf inside a valid value.
 */
import fc, { type WeightedArbitrary } from 'fast-check';
import type { JsonSchema, Operation } from './openapi-fuzz.ts';
import type { Fx } from './openapi-fuzz-fixtures.ts';

export const HUGE = 100_000;

export const recentIso = fc
  .date({ min: new Date(Date.now() - 6 * 86_400_000), max: new Date(), noInvalidDate: true })
  .map((d) => d.toISOString());
export const anyIso = fc.oneof(
  recentIso,
  fc.constantFrom(
    '0000-01-01T00:00:00Z',
    '0001-01-01T00:00:00+23:59',
    '9999-12-31T23:59:59.999-23:59',
    '2024-02-29T12:00:00.123456789Z',
    '1970-01-01T00:00:00Z',
  ),
  fc
    .date({ min: new Date('0000-01-01'), max: new Date('9999-12-31'), noInvalidDate: true })
    .map((d) => d.toISOString()),
);

/** What PostgreSQL text and jsonb refuse: NUL, and lone surrogates (kept as \uD800 in JSON). */
export const NASTY_TEXT = ['\u0000', 'a\u0000b', '\ud800', 'x\udfffy'];

/**
 * Hostile text: control characters, lone surrogates, emoji, 100 KB strings. Key material is
 * left to the reflection matrix (openapi-fuzz-matrices.ts), so an echo of it cannot hide every
 * other failure.
 */
export function hostileText(huge = true): fc.Arbitrary<string> {
  const arbs: WeightedArbitrary<string>[] = [
    { arbitrary: fc.constantFrom(...NASTY_TEXT), weight: 2 },
    {
      arbitrary: fc.constantFrom(
        '',
        ' ',
        '\u0001\u001f\u007f\u0085',
        '\r\n',
        '\u2028\u2029',
        '\ufeff',
        '\u202e',
        '🔑',
        'e\u0301'.repeat(40),
        "' or 1=1 --",
        '%',
        '%zz',
        '%C0%AF',
        '../../',
        '{"$gt":""}',
        '1e309',
        'NaN',
        'null',
      ),
      weight: 3,
    },
    { arbitrary: fc.string({ unit: 'binary', maxLength: 40 }), weight: 1 },
  ];
  if (huge) {
    const units = fc.constantFrom('a', '🔑', '\ud800', '\u0000', 'é');
    arbs.push({ arbitrary: units.map((u) => u.repeat(HUGE / u.length)), weight: 1 });
  }
  return fc.oneof(...arbs);
}

export function hostileJson(): fc.Arbitrary<unknown> {
  return fc.oneof(
    fc.constantFrom(null, true, false, 0, -1, 1.5, 1e308, -1e308, 2 ** 53 + 1, [], {}),
    hostileText(),
    fc.array(hostileText(false), { maxLength: 3 }),
    fc.jsonValue({ maxDepth: 3 }),
  );
}

/** A value the schema accepts (as far as JSON Schema can say), built from the fixtures. */
export function valueOf(schema: JsonSchema, name: string, fx: Fx): fc.Arbitrary<unknown> {
  const alts = schema.anyOf ?? schema.oneOf;
  if (alts) return fc.oneof(...alts.map((s) => valueOf(s, name, fx)));
  const types: string[] = Array.isArray(schema.type)
    ? schema.type
    : schema.type
      ? [schema.type]
      : [];
  if (types.includes('null') && types.length > 1) {
    const t = types.filter((x) => x !== 'null');
    return fc.option(valueOf({ ...schema, type: t.length === 1 ? t[0] : t }, name, fx), {
      nil: null,
    });
  }
  if (schema.enum) return fc.constantFrom(...schema.enum);
  switch (types[0]) {
    case 'null':
      return fc.constant(null);
    case 'boolean':
      return fc.boolean();
    case 'integer':
      return fc.integer({ min: schema.minimum ?? -1000, max: schema.maximum ?? 1000 });
    case 'number':
      return fc.double({ min: schema.minimum ?? -1e6, max: schema.maximum ?? 1e6, noNaN: true });
    case 'array': {
      const max = Math.min(schema.maxItems ?? 3, 3);
      return fc.array(valueOf(schema.items ?? {}, name, fx), {
        minLength: schema.minItems ?? 0,
        maxLength: max,
      });
    }
    case 'object': {
      const props = Object.entries(schema.properties ?? {});
      const record = Object.fromEntries(props.map(([k, s]) => [k, valueOf(s, k, fx)]));
      return fc.record(record, { requiredKeys: schema.required ?? [] });
    }
    case 'string':
      return stringOf(schema, name, fx);
    default:
      return fc.jsonValue({ maxDepth: 2 });
  }
}

function stringOf(schema: JsonSchema, name: string, fx: Fx): fc.Arbitrary<string> {
  if (schema.format === 'uuid') {
    if (/^org/i.test(name)) return fc.constant(fx.org.orgId);
    if (/^key_?id$/i.test(name)) return fc.constantFrom(...fx.keyIds);
    return fc.uuid();
  }
  if (schema.format === 'date-time') return fc.oneof({ arbitrary: recentIso, weight: 3 }, anyIso);
  if (schema.format === 'ip') return fc.oneof(fc.ipV4(), fc.ipV6());
  if (schema.format === 'ipv4') return fc.ipV4();
  if (schema.format === 'ipv6') return fc.ipV6();
  if (name === 'key') return fc.constantFrom(fx.org.adminKey, fx.unknownKey, 'sk_live_short');
  if (schema.pattern) return fc.stringMatching(new RegExp(schema.pattern));
  const maxLength = Math.min(schema.maxLength ?? 40, 40);
  return fc.oneof(
    fc.constantFrom('true', 'false', '1', 'x'),
    fc.string({ minLength: Math.min(schema.minLength ?? 0, maxLength), maxLength }),
  );
}

/** Every path to a leaf of a JSON value (array indices included). */
export function leafPaths(value: unknown, at: (string | number)[] = []): (string | number)[][] {
  if (typeof value !== 'object' || value === null) return at.length > 0 ? [at] : [];
  const entries: [string | number, unknown][] = Array.isArray(value)
    ? value.map((v, i) => [i, v])
    : Object.entries(value);
  if (entries.length === 0) return at.length > 0 ? [at] : [];
  return entries.flatMap(([k, v]) => leafPaths(v, [...at, k]));
}

export function setAt(value: unknown, path: (string | number)[], leaf: unknown): unknown {
  const [head, ...rest] = path;
  if (head === undefined) return leaf;
  const copy: any = Array.isArray(value) ? [...value] : { ...(value as object) };
  copy[head] = setAt(copy[head], rest, leaf);
  return copy;
}

/** Replaces one leaf anywhere inside `value` (`events.0.route`) by hostile text or JSON. */
export function mutate(value: unknown): fc.Arbitrary<unknown> {
  const paths = leafPaths(value);
  const leaf = fc.oneof({ arbitrary: hostileText(), weight: 2 }, hostileJson());
  if (paths.length === 0) return hostileJson();
  return fc.tuple(fc.constantFrom(...paths), leaf).map(([p, v]) => setAt(value, p, v));
}

export const INVALID_JSON = [
  '{',
  '{"name":',
  '{"a":1,}',
  "{'name':'x'}",
  'NaN',
  '\u0000',
  '{"name":"x"}garbage',
  '{"name":"x"}{"name":"y"}',
  '\ufeff{"name":"x"}',
  '{"name":"\\ud800"}',
  '{"name":"a\\u0000b"}',
  '{"name":"x","name":1}',
  '{"__proto__":{"isAdmin":true},"name":"x"}',
  '{"constructor":{"prototype":{"x":1}}}',
  '{"overlap_seconds":1e999}',
  ' ',
  '"just a string"',
  '1',
  `${'['.repeat(HUGE / 2)}${']'.repeat(HUGE / 2)}`,
  `{"name":${'1'.repeat(HUGE)}}`,
];
export const UNKNOWN_NAMES = [
  'colour',
  '__proto__',
  'constructor',
  'toString',
  '',
  'a.b',
  '🔑',
  'x'.repeat(1000),
];

export const BAD_ENCODINGS = [
  '%',
  '%zz',
  '%C0%AF',
  '%ED%A0%80',
  '%FF',
  '%00',
  '%2F',
  '%u0041',
  '%%',
  '+',
];

export const b64url = (v: unknown) => Buffer.from(JSON.stringify(v) ?? '').toString('base64url');

export function badCursor(): fc.Arbitrary<string> {
  const member = fc.oneof(anyIso, fc.uuid(), fc.integer(), hostileText(false), fc.constant(null));
  const sort = fc.constantFrom('request_count', 'name', 'created_at', 'last_used_at');
  return fc.oneof(
    fc.constantFrom('x', '!!!', '====', 'eyJ', 'W10', 'bnVsbA', 'A'.repeat(501)),
    fc.jsonValue({ maxDepth: 2 }).map(b64url),
    fc.tuple(anyIso, fc.oneof(fc.uuid(), member)).map(b64url),
    fc.tuple(sort, fc.constantFrom('asc', 'desc'), member, fc.oneof(fc.uuid(), member)).map(b64url),
    fc.uint8Array({ maxLength: 48 }).map((b) => Buffer.from(b).toString('base64')),
  );
}

export const bodyText = (op: Operation, fx: Fx): fc.Arbitrary<string | undefined> =>
  op.body ? valueOf(op.body, 'body', fx).map((b) => JSON.stringify(b)) : fc.constant(undefined);

/** A deterministic valid-looking body for the matrices (the first sample of its schema). */
export function sampleBody(op: Operation, fx: Fx, seed: number): unknown {
  return op.body ? fc.sample(valueOf(op.body, 'body', fx), { seed, numRuns: 1 })[0] : undefined;
}
