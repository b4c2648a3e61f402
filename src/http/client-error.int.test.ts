import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { useTestApp } from '../testing/harness.ts';

const app = useTestApp();

type Raw = { statusLine: string; headers: Record<string, string>; body: string; closed: boolean };

/**
 * Writes bytes on a fresh connection and reads until the server closes it (every case here
 * expects the close; a server that never closes fails by the test's own timeout). Each further
 * part is written once an answer to the previous one has arrived.
 */
function exchange(bytes: Buffer | string, ...more: string[]): Promise<Raw[]> {
  const { hostname, port } = new URL(app().baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      const next = more.shift();
      if (next !== undefined) socket.write(next);
    });
    // The server may reset the connection while the rest of a large request is still being sent.
    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'ECONNRESET' && error.code !== 'EPIPE') reject(error);
    });
    socket.on('close', () => {
      resolve(parse(Buffer.concat(chunks).toString('utf8'), true));
    });
    socket.write(bytes);
  });
}

/** Splits what came back into responses (each with a Content-Length). */
function parse(text: string, closed: boolean): Raw[] {
  const out: Raw[] = [];
  let rest = text;
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) break;
    const [statusLine = '', ...lines] = rest.slice(0, end).split('\r\n');
    const headers = Object.fromEntries(
      lines.map((l) => [
        l.slice(0, l.indexOf(':')).toLowerCase(),
        l.slice(l.indexOf(':') + 1).trim(),
      ]),
    );
    const length = Number(headers['content-length'] ?? 0);
    out.push({ statusLine, headers, body: rest.slice(end + 4, end + 4 + length), closed });
    rest = rest.slice(end + 4 + length);
  }
  return out;
}

function expectProblemAndClose(responses: Raw[], status: number, code: string): void {
  const last = responses.at(-1);
  expect(last?.statusLine).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
  expect(last?.headers['content-type']).toBe('application/problem+json');
  expect(last?.headers.connection).toBe('close');
  const body = JSON.parse(last?.body ?? '') as Record<string, unknown>;
  expect(body).toMatchObject({ type: `urn:keytrail:problem:${code}`, status, code });
  expect(typeof body.title).toBe('string');
  expect(body.request_id).toBe(last?.headers['x-request-id']);
  expect(last?.closed).toBe(true);
}

describe('requests the HTTP parser refuses', () => {
  it('answers a 40 KB request line with a 431 problem and closes', async () => {
    const res = await exchange(`GET /${'a'.repeat(40_000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
    expectProblemAndClose(res, 431, 'headers_too_large');
  });

  it('answers oversized headers with a 431 problem and closes', async () => {
    const big = Array.from({ length: 40 }, (_, i) => `X-Pad-${i}: ${'b'.repeat(1_000)}\r\n`);
    const res = await exchange(`GET /healthz HTTP/1.1\r\nHost: x\r\n${big.join('')}\r\n`);
    expectProblemAndClose(res, 431, 'headers_too_large');
  });

  it('answers garbage bytes with a 400 problem and closes', async () => {
    const garbage = Buffer.from([0x00, 0xff, 0x13, 0x37, 0x80, 0x0d, 0x0a, 0x0d, 0x0a]);
    expectProblemAndClose(await exchange(garbage), 400, 'malformed_request');
  });

  it('answers an invalid header character with a 400 problem and closes', async () => {
    const res = await exchange('GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: a\u0001b\r\n\r\n');
    expectProblemAndClose(res, 400, 'malformed_request');
  });

  it('answers a malformed request after a finished one on the same connection', async () => {
    const res = await exchange('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n', 'NOT HTTP\r\n\r\n');
    expect(res[0]?.statusLine).toMatch(/^HTTP\/1\.1 200 /);
    expect(res).toHaveLength(2);
    expectProblemAndClose(res, 400, 'malformed_request');
  });
});
