/**
 * The deterministic matrices of the fuzz tests: each declared input at the values that break
 * storage and date arithmetic, and every place a request carries text an answer might echo.
 */
import {
  fillPath,
  wireEncode,
  type JsonSchema,
  type Operation,
  type QueryParam,
} from './openapi-fuzz.ts';
import { jsonHeaders, pathOf, pathValues, type Fx } from './openapi-fuzz-fixtures.ts';
import { b64url, leafPaths, NASTY_TEXT, sampleBody, setAt } from './openapi-fuzz-values.ts';
import type { WireRequest } from './openapi-fuzz-wire.ts';

/** Puts `text` in every free-text field (string without format, enum or pattern) of `value`. */
function withText(schema: JsonSchema | undefined, value: unknown, text: string): unknown {
  if (!schema || value === null || value === undefined) return value;
  if (Array.isArray(value)) return value.map((v) => withText(schema.items, v, text));
  if (typeof value === 'object') {
    const entries = Object.entries(value).map(([k, v]) => [
      k,
      withText(schema.properties?.[k], v, text),
    ]);
    return Object.fromEntries(entries);
  }
  const free = typeof value === 'string' && !schema.format && !schema.enum && !schema.pattern;
  return free ? text : value;
}

const NASTY_QUERY = ['%00', 'a%00b', '%C0%80'];
const NASTY_WINDOWS = [
  ['0000-01-01T00:00:00Z', '0000-01-02T00:00:00Z'],
  ['9999-12-30T00:00:00Z', '9999-12-31T00:00:01Z'],
];
const NASTY_MEMBERS = [
  '\u0000',
  '\ud800',
  '0000-01-01T00:00:00Z',
  '9999-12-31T23:59:59.999Z',
  2 ** 53,
  -1,
];
const NASTY_DATES = ['0000-01-01T00:00:00Z', '9999-12-31T23:59:59.999-23:59'];

function schemaAt(
  schema: JsonSchema | undefined,
  path: (string | number)[],
): JsonSchema | undefined {
  const [head, ...rest] = path;
  if (head === undefined || !schema) return schema;
  return schemaAt(typeof head === 'number' ? schema.items : schema.properties?.[head], rest);
}

const isFreeText = (s: JsonSchema | undefined) =>
  !!s && [s.type].flat().includes('string') && !s.enum && !s.pattern && !s.format;

const isFreeTextQuery = (q: QueryParam) =>
  q.schema.type === 'string' && !q.schema.enum && !q.schema.format;

/** Requests of the operation to `target` with `body` (its first sample body unless given). */
function requestOf(op: Operation, fx: Fx, sample: unknown) {
  return (target: string, extra: [string, string][] = [], body = sample): WireRequest => ({
    method: op.method,
    target,
    headers: [...jsonHeaders(fx, body), ...extra],
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

/** Free-text parameters at NUL and bad UTF-8, date windows in years 0 and 9999, in context. */
function queryEdges(op: Operation): string[] {
  const contexts = (skip: string[]) => [
    '',
    ...op.query
      .filter((q) => !skip.includes(q.name))
      .flatMap((q) => (q.schema.enum ?? []).map((v) => `&${q.name}=${wireEncode(String(v))}`)),
  ];
  const out: string[] = [];
  for (const q of op.query.filter(isFreeTextQuery)) {
    for (const v of NASTY_QUERY) for (const c of contexts([q.name])) out.push(`${q.name}=${v}${c}`);
  }
  const dates = op.query.filter((q) => q.schema.format === 'date-time').map((q) => q.name);
  for (const w of dates.length > 0 ? NASTY_WINDOWS : []) {
    const window = dates.map((n, i) => `${n}=${wireEncode(w[Math.min(i, 1)] ?? '')}`).join('&');
    for (const c of contexts(dates)) out.push(`${window}${c}`);
  }
  return out;
}

/** A real cursor with each member in turn replaced by each nasty value. */
function cursorEdges({ query, members }: Fx['cursors'][number]): string[] {
  return members.flatMap((_, i) =>
    NASTY_MEMBERS.map((v) => {
      const edited = members.map((m, j) => (j === i ? v : m));
      return `${query}&cursor=${wireEncode(b64url(edited))}`;
    }),
  );
}

/** Each free-text and date-time leaf of three sample bodies at each nasty value. */
function bodyEdges(op: Operation, fx: Fx): [string, unknown][] {
  const out: [string, unknown][] = [];
  for (const seed of op.body ? [1, 2, 3] : []) {
    const sample = sampleBody(op, fx, seed);
    for (const leaf of leafPaths(sample)) {
      const schema = schemaAt(op.body, leaf);
      const values = isFreeText(schema)
        ? NASTY_TEXT
        : schema?.format === 'date-time'
          ? NASTY_DATES
          : [];
      for (const v of values) {
        out.push([`body ${leaf.join('.')}=${JSON.stringify(v)}`, setAt(sample, leaf, v)]);
      }
    }
  }
  return out;
}

/**
 * Each declared input at the values that break storage and date arithmetic (NUL, lone
 * surrogates, years 0 and 10000), alone and beside each value of every enum parameter
 * (format=csv, sort=name, granularity=hour…): deterministic, so every such defect is listed.
 */
export function edgeCases(op: Operation, fx: Fx): [string, WireRequest][] {
  const path = pathOf(op, fx);
  const request = requestOf(op, fx, sampleBody(op, fx, 1));
  const withQuery = (q: string): [string, WireRequest] => [`?${q}`, request(`${path}?${q}`)];
  return [
    ...queryEdges(op).map(withQuery),
    ...fx.cursors.flatMap(cursorEdges).map(withQuery),
    ...bodyEdges(op, fx).map(([where, b]): [string, WireRequest] => [where, request(path, [], b)]),
  ];
}

/** Every place a request carries text that an answer (or a stored row shown later) might echo. */
export function reflections(op: Operation, fx: Fx, key: string): [string, WireRequest][] {
  const path = pathOf(op, fx);
  const body = sampleBody(op, fx, 1);
  const request = requestOf(op, fx, body);
  const firstQuery = op.query.find(isFreeTextQuery);
  const cases: [string, WireRequest][] = [
    ['X-Request-Id header', request(path, [['X-Request-Id', key]])],
    ['unknown body field name', request(path, [], { ...(body as object), [key]: 1 })],
    ['unknown query parameter name', request(`${path}?${key}=1`)],
    ['path suffix no route matches', request(`${path}/${key}/x`)],
  ];
  if (op.body) {
    cases.push(['free-text body values', request(path, [], withText(op.body, body, key))]);
  }
  if (firstQuery)
    cases.push([`query value ${firstQuery.name}`, request(`${path}?${firstQuery.name}=${key}`)]);
  for (const p of op.pathParams) {
    cases.push([
      `path parameter ${p}`,
      request(fillPath(op.path, { ...pathValues(op, fx), [p]: key })),
    ]);
  }
  return cases;
}
