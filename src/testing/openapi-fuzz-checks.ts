/**
 * The checks every answer to a fuzzed request must pass (no 5xx, problem+json, no key
 * material), the failure messages that describe a bad exchange, and the loops that collect them.
 */
import type fc from 'fast-check';
import { expect } from 'vitest';
import { ERROR_CODES } from '../platform/errors.ts';
import { leakScanner, TEST_PEPPER } from './leak-scan.ts';
import { send, type WireRequest, type WireResponse } from './openapi-fuzz-wire.ts';

/** Where the one-time plaintext legitimately appears: 201 answers of create/rotate. */
function issuedKeys(method: string, res: WireResponse): string[] {
  if (method === 'GET' || res.status !== 201) return [];
  try {
    const b = JSON.parse(res.body) as { key?: unknown; admin_key?: { key?: unknown } };
    return [b.key, b.admin_key?.key].filter((k): k is string => typeof k === 'string');
  } catch {
    return [];
  }
}

/** Key material anywhere in the answer (head or body), the one-time plaintext aside. */
export function leaks(method: string, res: WireResponse): string[] {
  const issued = issuedKeys(method, res);
  for (const k of issued) leakScanner.remember(k);
  const found = leakScanner.scan(`${res.head}\r\n\r\n${res.body}`, issued);
  if (res.head.includes(TEST_PEPPER) || res.body.includes(TEST_PEPPER)) found.push('the pepper');
  return found;
}

/** A problem+json answer as SPEC §5 describes it: stable code, status and request id agree. */
export function problemViolations(res: WireResponse): string[] {
  const out: string[] = [];
  const type = res.headers['content-type'] ?? '';
  if (!type.startsWith('application/problem+json')) out.push(`content-type "${type}"`);
  let body: any;
  try {
    body = JSON.parse(res.body);
  } catch {
    return [...out, 'body is not JSON'];
  }
  const code: unknown = body?.code;
  if (typeof code !== 'string') return [...out, 'no string code'];
  const known = (ERROR_CODES as Record<string, { status: number } | undefined>)[code];
  if (!known) out.push(`unknown code "${code}"`);
  else if (known.status !== res.status) out.push(`code ${code} is not a ${res.status}`);
  if (body.status !== res.status) out.push(`body.status ${String(body.status)}`);
  if (body.request_id !== res.headers['x-request-id']) out.push('request_id ≠ X-Request-Id');
  return out;
}

/** Everything wrong with an answer: a 5xx, an error that is not problem+json, key material. */
export function answerViolations(method: string, res: WireResponse): string[] {
  const out = leaks(method, res).map((l) => `key material: ${l}`);
  if (res.status >= 500) out.push(`status ${res.status}`);
  // A HEAD answer has no body: only its content type can say problem+json.
  const type = res.headers['content-type'] ?? '';
  if (res.status >= 400 && method === 'HEAD') {
    if (!type.startsWith('application/problem+json')) out.push(`content-type "${type}"`);
  } else if (res.status >= 400) out.push(...problemViolations(res));
  return out;
}

const clip = (s: string, n = 160) =>
  s.length > n ? `${JSON.stringify(s.slice(0, n))}… (${s.length} chars)` : JSON.stringify(s);

/**
 * A short, pasteable description of a request and its answer for failure messages; `names`
 * replaces fixture values (keys, ids) with labels such as `<adminKey>`.
 */
export function describeExchange(
  req: WireRequest,
  res?: WireResponse,
  names: Record<string, string> = {},
): string {
  const label = (s: string) =>
    Object.entries(names).reduce((acc, [value, name]) => acc.replaceAll(value, name), s);
  const body = req.body === undefined ? '(none)' : Buffer.from(req.body).toString('utf8');
  const lines = [
    `  ${req.method} ${clip(label(req.target), 300)}${req.chunked ? ' (chunked)' : ''}`,
    ...req.headers.map(([n, v]) => `  ${n}: ${clip(label(v), 80)}`),
    `  body: ${req.body === undefined ? body : clip(label(body))}`,
  ];
  if (res) {
    lines.push(`  → ${res.status} ${res.headers['content-type'] ?? '(no content-type)'}`);
    lines.push(`  → ${clip(label(res.body), 400)}`);
  }
  return lines.join('\n');
}

/** Sends a request; a description of what went wrong with its answer, if anything did. */
export async function exchange(
  baseUrl: string,
  req: WireRequest,
  names: Record<string, string>,
): Promise<string | undefined> {
  const res = await send(baseUrl, req).catch((e: Error) => e);
  if (res instanceof Error) return `${res.message}\n${describeExchange(req, undefined, names)}`;
  const violations = answerViolations(req.method, res);
  return violations.length > 0
    ? `${violations.join('; ')}\n${describeExchange(req, res, names)}`
    : undefined;
}

/** Judges the named requests one after another; the failures, each prefixed with its name. */
async function failuresOf(
  cases: [string, WireRequest][],
  judge: (req: WireRequest) => Promise<string | undefined>,
  separator: string,
): Promise<string[]> {
  const failures: string[] = [];
  for (const [where, req] of cases) {
    const failure = await judge(req);
    if (failure) failures.push(`${where}${separator}${failure}`);
  }
  return failures;
}

/** The requests whose exchange went wrong (see `exchange`). */
export const exchangeFailures = (
  baseUrl: string,
  cases: [string, WireRequest][],
  names: Record<string, string>,
) => failuresOf(cases, (req) => exchange(baseUrl, req, names), ': ');

/** The requests whose answers carry key material. */
export const echoFailures = (
  baseUrl: string,
  cases: [string, WireRequest][],
  names: Record<string, string>,
) =>
  failuresOf(
    cases,
    async (req) => {
      const res = await send(baseUrl, req);
      return leaks(req.method, res).length > 0 ? describeExchange(req, res, names) : undefined;
    },
    ':\n',
  );

/** Fails listing every collected failure (first line of each), the first few in full. */
export function reportFailures(what: string, failures: string[]): void {
  if (failures.length === 0) return;
  const index = failures.map((f) => `  - ${f.split('\n')[0]?.slice(0, 200)}`).join('\n');
  expect.fail(`${failures.length} ${what}:\n${index}\n\n${failures.slice(0, 4).join('\n\n')}`);
}

/** How a failed property failed, with the seeds that replay it. */
export function failureReport<Ts>(details: fc.RunDetails<Ts>, baseSeed: number): string {
  const cause =
    details.errorInstance instanceof Error
      ? details.errorInstance.message
      : String(details.errorInstance);
  return (
    `failed after ${details.numRuns} runs, ${details.numShrinks} shrinks ` +
    `(FUZZ_SEED=${baseSeed}; property seed ${details.seed}, path "${details.counterexamplePath}")\n${cause}`
  );
}

/** Flattens a JSON log line to the dotted paths whose values carry key material. */
export function leakingFields(value: unknown, prefix = ''): string[] {
  if (typeof value === 'string') return leakScanner.scan(value).length > 0 ? [prefix] : [];
  if (typeof value !== 'object' || value === null) return [];
  return Object.entries(value).flatMap(([k, v]) => leakingFields(v, prefix ? `${prefix}.${k}` : k));
}
