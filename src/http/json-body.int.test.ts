import { request } from 'node:http';
import { connect } from 'node:net';
import { gzipSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import { useTestApp, waitFor } from '../testing/harness.ts';
import { createOrg, type TestOrg } from '../testing/factories.ts';

const app = useTestApp();
let org: TestOrg;
beforeAll(async () => {
  org = await createOrg(app().client, 'Bodies');
});

type Sent = { headers?: Record<string, string>; chunks: (string | Buffer)[] };

/** POSTs a body in the chunks given (each written apart), with exactly the headers given. */
function post(
  path: string,
  sent: Sent,
): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${app().baseUrl}${path}`,
      {
        method: 'POST',
        headers: { authorization: `Bearer ${org.adminKey}`, ...sent.headers },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
      },
    );
    req.once('error', reject);
    void (async () => {
      // Each chunk is handed to the socket before the next is written (its own write).
      for (const chunk of sent.chunks) await new Promise((r) => req.write(chunk, r));
      req.end();
    })();
  });
}

const keys = () => `/api/orgs/${org.orgId}/api-keys`;
const sized = (body: Buffer | string, type = 'application/json') => ({
  'content-type': type,
  'content-length': String(Buffer.byteLength(body)),
});

describe('JSON request bodies', () => {
  it('reads a body sent in several chunks, a multi-byte character split between two', async () => {
    const body = Buffer.from(JSON.stringify({ name: 'clé € 🔑 service' }));
    const cut = body.indexOf(Buffer.from('€')) + 1; // inside the euro sign's three bytes
    const res = await post(keys(), {
      headers: sized(body),
      chunks: [body.subarray(0, cut), body.subarray(cut)],
    });
    expect(res.status).toBe(201);
    expect((res.body.api_key as { name: string }).name).toBe('clé € 🔑 service');
  });

  it('reads charset=utf-8 in any case and +json types; refuses another charset with 415', async () => {
    const body = JSON.stringify({ name: 'typed' });
    const read = ['application/json; charset=UTF-8', 'application/json;charset="utf-8"'];
    for (const type of [...read, 'application/vnd.keytrail+json']) {
      expect((await post(keys(), { headers: sized(body, type), chunks: [body] })).status).toBe(201);
    }
    const refused = ['application/json; charset=iso-8859-1', 'application/jsonx', 'text/json'];
    for (const type of [...refused, 'application/json/x', 'multipart/form-data']) {
      const res = await post(keys(), { headers: sized(body, type), chunks: [body] });
      expect(res.status, type).toBe(415);
    }
  });

  it('reads chunked and gzip-encoded bodies', async () => {
    const body = JSON.stringify({ name: 'chunked' });
    const chunked = await post(keys(), {
      headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
      chunks: [body.slice(0, 5), body.slice(5)],
    });
    expect(chunked.status).toBe(201);
    const zipped = gzipSync(JSON.stringify({ name: 'zipped' }));
    const gzip = await post(keys(), {
      headers: { ...sized(zipped), 'content-encoding': 'gzip' },
      chunks: [zipped],
    });
    expect(gzip.status).toBe(201);
    expect((gzip.body.api_key as { name: string }).name).toBe('zipped');
  });

  it('refuses a scalar, whitespace-led garbage and truncated JSON with 400, creating nothing', async () => {
    const before = await app().client.get(keys(), { key: org.adminKey });
    for (const body of ['"name"', '  42', ' {"name": "x"', '{"name": "x"}}', '\uFEFF{}']) {
      const res = await post(keys(), { headers: sized(body), chunks: [body] });
      expect(res.status, body).toBe(400);
      expect(res.body.code).toBe('validation_failed');
    }
    const after = await app().client.get(keys(), { key: org.adminKey });
    expect(after.body.data).toHaveLength(before.body.data.length);
  });

  it('refuses a body over 1 MiB with 413, whether its length is declared or not', async () => {
    const big = JSON.stringify({ name: 'x', pad: 'y'.repeat(1024 * 1024) });
    const declared = await post(keys(), { headers: sized(big), chunks: [big] });
    expect(declared.status).toBe(413);
    const chunked = await post(keys(), {
      headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
      chunks: [big],
    });
    expect(chunked.status).toBe(413);
  });

  it('takes a client that leaves mid-body for a client gone, not a server error', async () => {
    const before = app().logs.length;
    const { port } = new URL(app().baseUrl);
    const socket = connect(Number(port), '127.0.0.1');
    socket.on('error', () => undefined);
    // 100 bytes announced, 10 sent, then the client's side of the connection ends.
    socket.end(
      [
        `POST ${keys()} HTTP/1.1`,
        'host: 127.0.0.1',
        `authorization: Bearer ${org.adminKey}`,
        'content-type: application/json',
        'content-length: 100',
        '',
        '{"name": "',
      ].join('\r\n'),
    );
    await waitFor(() =>
      app()
        .logs.slice(before)
        .some((l) => l.includes('client left before sending its whole body')),
    );
    expect(app().logs.slice(before).join('')).not.toContain('request failed');
    socket.destroy();
  });

  it('treats an empty body of a GET or a POST as no body', async () => {
    const res = await post('/api/keys/verify', { headers: sized(''), chunks: [] });
    expect(res.status).toBe(400); // "key" is required: the empty body was read as {}
    expect(res.body.code).toBe('validation_failed');
  });
});
