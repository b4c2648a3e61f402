/**
 * What fetch refuses to send, as raw bytes: oversized or malformed request lines, headers and
 * framing, and how their answers are judged (Node answers some of them itself, before Express).
 */
import type { Operation } from './openapi-fuzz.ts';
import { answerViolations, leaks } from './openapi-fuzz-checks.ts';
import { pathOf, type Fx } from './openapi-fuzz-fixtures.ts';
import { HUGE } from './openapi-fuzz-values.ts';
import { sendBytes } from './openapi-fuzz-wire.ts';

type Framer = {
  m: string;
  path: string;
  auth: string;
  raw: (lines: string[], body?: string) => Buffer;
  std: (extra?: string[], body?: string, line?: string) => Buffer;
};

function framer(op: Operation, fx: Fx): Framer {
  const path = pathOf(op, fx);
  const auth = `${fx.credential[0]}: ${fx.credential[1]}`;
  const m = op.method;
  const raw = (lines: string[], body = '') =>
    Buffer.from(`${lines.join('\r\n')}\r\n\r\n${body}`, 'latin1');
  const std = (extra: string[] = [], body = '', line = `${m} ${path} HTTP/1.1`) =>
    raw([line, 'Host: 127.0.0.1', 'Connection: close', auth, ...extra], body);
  return { m, path, auth, raw, std };
}

/** Oversized and malformed request lines and headers. */
function lineAndHeaderCases({ m, path, raw, std }: Framer): [string, Buffer][] {
  return [
    ['100 KB request target', std([], '', `${m} ${path}?pad=${'a'.repeat(HUGE)} HTTP/1.1`)],
    ['100 KB header', std([`X-Pad: ${'a'.repeat(HUGE)}`])],
    [
      '20 KB credential',
      raw([
        `${m} ${path} HTTP/1.1`,
        'Host: x',
        'Connection: close',
        `Authorization: Bearer ${'k'.repeat(20_000)}`,
      ]),
    ],
    ['1900 small headers (12 KB)', std(Array.from({ length: 1900 }, (_, i) => `x${i}: 1`))],
    ['2100 tiny headers', std(Array.from({ length: 2100 }, () => 'x: 1'))],
    ['control character in target', std([], '', `${m} ${path}\u0001 HTTP/1.1`)],
    ['DEL in target', std([], '', `${m} ${path}\u007f HTTP/1.1`)],
    ['raw space in target', std([], '', `${m} ${path} x HTTP/1.1`)],
    ['raw UTF-8 in target', std([], '', `${m} ${path}\u00c3\u00a9 HTTP/1.1`)],
    ['NUL in header value', std(['X-A: a\u0000b'])],
    ['bare CR in header value', std(['X-A: a\rb'])],
    ['header line without colon', std(['Broken'])],
    ['obs-fold continuation line', std(['X-A: a', ' folded'])],
    ['space before colon', std(['X-A : b'])],
  ];
}

/** Lying body framing and odd protocol versions, methods, targets and expectations. */
function bodyAndProtocolCases({ m, path, auth, raw, std }: Framer): [string, Buffer][] {
  return [
    [
      'conflicting Content-Length',
      std(['Content-Type: application/json', 'Content-Length: 2', 'Content-Length: 3'], '{} '),
    ],
    [
      'Content-Length and Transfer-Encoding',
      std(['Content-Length: 5', 'Transfer-Encoding: chunked'], '0\r\n\r\n'),
    ],
    ['non-numeric Content-Length', std(['Content-Length: abc'], '{}')],
    ['negative Content-Length', std(['Content-Length: -1'])],
    [
      'malformed chunk size',
      std(
        ['Content-Type: application/json', 'Transfer-Encoding: chunked'],
        'zz\r\n{}\r\n0\r\n\r\n',
      ),
    ],
    ['unknown Transfer-Encoding', std(['Transfer-Encoding: x-custom'], '{}')],
    ['HTTP/1.0 without Host', raw([`${m} ${path} HTTP/1.0`, auth])],
    ['unknown HTTP version', std([], '', `${m} ${path} HTTP/9.9`)],
    ['lowercase method', std([], '', `${m.toLowerCase()} ${path} HTTP/1.1`)],
    ['absolute-form target', std([], '', `${m} http://evil.example${path} HTTP/1.1`)],
    [
      'Expect: 100-continue',
      std(['Expect: 100-continue', 'Content-Type: application/json', 'Content-Length: 2'], '{}'),
    ],
    ['unknown Expect', std(['Expect: x-teapot'])],
    ['duplicate Host', std(['Host: evil.example'])],
  ];
}

/** What fetch refuses to send: oversized or malformed request lines, headers and framing. */
export function framingCases(op: Operation, fx: Fx): [string, Buffer][] {
  const f = framer(op, fx);
  return [...lineAndHeaderCases(f), ...bodyAndProtocolCases(f)];
}

/**
 * Sends each case in turn: those answered with a 5xx, key material, no answer, or (when Express
 * answers) an error that is not problem+json. Records what each case got in `seen`.
 */
export async function framingFailures(
  baseUrl: string,
  method: string,
  cases: [string, Buffer][],
  seen: Map<string, Set<string>>,
): Promise<string[]> {
  const failures: string[] = [];
  for (const [name, bytes] of cases) {
    const res = await sendBytes(baseUrl, bytes).catch((e: Error) => e);
    if (res instanceof Error) {
      failures.push(`${name}: ${res.message}`);
      continue;
    }
    const express = res.headers['x-request-id'] !== undefined;
    const answers = seen.get(name) ?? new Set();
    answers.add(
      `${res.status} ${res.headers['content-type']?.split(';')[0] ?? '-'} ${express ? 'express' : 'node'}`,
    );
    seen.set(name, answers);
    // Node answers some of these itself, before Express: those are recorded, not shaped.
    const violations = express ? answerViolations(method, res) : leaks(method, res);
    if (res.status >= 500) violations.push(`status ${res.status}`);
    if (violations.length > 0)
      failures.push(`${name}: ${violations.join('; ')} → ${res.status} ${res.body.slice(0, 200)}`);
  }
  return failures;
}

/** What each framing case got, across operations: one row a case. */
export function framingReport(seen: Map<string, Set<string>>): string {
  const rows = [...seen].map(([c, answers]) => `  ${c.padEnd(38)} ${[...answers].join(' | ')}`);
  return `framing cases (status, content type, answered by Express?):\n${rows.join('\n')}`;
}
