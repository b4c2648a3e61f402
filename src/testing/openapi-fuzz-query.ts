/**
 * Hostile queries for the fuzz tests: bad values, duplicates, unknown names, bad cursors and
 * bad percent-encoding, beside real cursors edited by hand and date windows far or near.
 */
import fc from 'fast-check';
import { wireEncode, type JsonSchema, type Operation } from './openapi-fuzz.ts';
import { jsonHeaders, pathOf, type Fx } from './openapi-fuzz-fixtures.ts';
import {
  anyIso,
  b64url,
  BAD_ENCODINGS,
  badCursor,
  bodyText,
  hostileText,
  UNKNOWN_NAMES,
  valueOf,
} from './openapi-fuzz-values.ts';
import type { WireRequest } from './openapi-fuzz-wire.ts';

function queryValue(schema: JsonSchema, name: string, fx: Fx): fc.Arbitrary<string> {
  return valueOf(schema, name, fx).map((v) => wireEncode(String(v)));
}

/**
 * Real cursors with one member replaced: what a client gets by editing a next_cursor. Each comes
 * with the query that produced it, since cursors are checked against their sort and order.
 */
function editedCursor(fx: Fx): fc.Arbitrary<string> | undefined {
  if (fx.cursors.length === 0) return undefined;
  const member = fc.oneof(
    hostileText(false),
    anyIso,
    fc.integer(),
    fc.double(),
    fc.constant(null),
    fc.uuid(),
  );
  return fc.constantFrom(...fx.cursors).chain(({ query, members }) =>
    fc.tuple(fc.nat(members.length - 1), member).map(([i, v]) => {
      const edited = [...members];
      edited[i] = v;
      return `${query}&cursor=${wireEncode(b64url(edited))}`;
    }),
  );
}

/** The operation's date-time parameters as one window [anchor, anchor + span], far or near. */
function dateWindow(op: Operation): fc.Arbitrary<string> | undefined {
  const names = op.query.filter((q) => q.schema.format === 'date-time').map((q) => q.name);
  if (names.length === 0) return undefined;
  const anchor = fc.oneof(
    fc.constantFrom(
      Date.parse('1970-01-01T00:00:00Z'),
      Date.parse('0000-01-01T00:00:00Z'),
      Date.parse('9999-12-01T00:00:00Z'),
    ),
    fc.integer({
      min: Date.parse('0000-01-01T00:00:00Z'),
      max: Date.parse('9999-12-31T00:00:00Z'),
    }),
    fc.integer({ min: Date.now() - 30 * 86_400_000, max: Date.now() }),
  );
  const span = fc.integer({ min: -3_600_000, max: 40 * 86_400_000 });
  return fc
    .tuple(anchor, span)
    .map(([at, d]) =>
      names.map((n, i) => `${n}=${wireEncode(new Date(at + i * d).toISOString())}`).join('&'),
    );
}

/** Bad values, duplicates, unknown names, bad cursors and bad percent-encoding in the query. */
export function queryCase(op: Operation, fx: Fx): fc.Arbitrary<WireRequest> {
  const hostileValue = fc.oneof(
    fc.constantFrom(...BAD_ENCODINGS, '0', '-1', '501', '1e3', '0x10', '1.5', '', '9'.repeat(400)),
    hostileText(false).map((s) => wireEncode(s.slice(0, 1000))),
    anyIso.map(wireEncode),
    badCursor().map(wireEncode),
  );
  // Each declared parameter: absent, valid or hostile, so a hostile one often travels alone.
  const params = fc.tuple(
    ...op.query.map((p) =>
      fc.oneof(
        { arbitrary: fc.constant(undefined), weight: 3 },
        { arbitrary: queryValue(p.schema, p.name, fx).map((v) => `${p.name}=${v}`), weight: 2 },
        { arbitrary: hostileValue.map((v) => `${p.name}=${v}`), weight: 1 },
      ),
    ),
  );
  const extra = fc.oneof(
    fc
      .tuple(fc.constantFrom(...UNKNOWN_NAMES.slice(0, 7), 'limit[]', 'limit[a]'), hostileValue)
      .map(([n, v]) => `${wireEncode(n)}=${v}`),
    badCursor().map((c) => `cursor=${wireEncode(c)}`),
    ...op.query.map((p) =>
      fc
        .tuple(queryValue(p.schema, p.name, fx), queryValue(p.schema, p.name, fx))
        .map(([a, b]) => `${p.name}=${a}&${p.name}=${b}`),
    ),
    fc.constantFrom('&', '=', '==x', 'limit', 'limit=', '%zz=1', '%=%', 'a=%C0%AF', '=%ED%A0%80'),
  );
  // Real cursors and date windows travel with random other parameters (format=csv, sort=…).
  const shaped = fc.oneof(
    { arbitrary: fc.constant(''), weight: 2 },
    ...[editedCursor(fx), dateWindow(op)].filter((x) => x !== undefined),
  );
  const query = fc.tuple(shaped, params, fc.array(extra, { maxLength: 2 })).map(([sh, p, e]) => {
    const taken = new Set(sh.split('&').map((pair) => pair.split('=')[0]));
    const rest = p.filter((x) => x !== undefined && !taken.has(x.split('=')[0]));
    return [sh, ...rest, ...e].filter((x) => x !== '').join('&');
  });
  return fc.tuple(query, bodyText(op, fx)).map(([q, body]) => ({
    method: op.method,
    target: `${pathOf(op, fx)}?${q}`,
    headers: jsonHeaders(fx, body),
    body,
  }));
}
