/**
 * A raw HTTP/1.1 client (node:net) for the fuzz tests: it sends what fetch refuses (bad
 * percent-encoding, lying headers, oversized request lines) and reads whatever comes back.
 */
import { connect } from 'node:net';

export type WireRequest = {
  method: string;
  target: string;
  headers: [string, string][];
  body?: Buffer | string | undefined;
  /** Send the body as one chunk of Transfer-Encoding: chunked instead of Content-Length. */
  chunked?: boolean;
};

export type WireResponse = {
  status: number;
  head: string;
  headers: Record<string, string>;
  body: string;
};

/** Serialises a request; Content-Length is added unless the headers frame the body already. */
export function serialise(req: WireRequest): Buffer {
  const body = req.body === undefined ? undefined : Buffer.from(req.body);
  const names = new Set(req.headers.map(([n]) => n.toLowerCase()));
  const lines = [`${req.method} ${req.target} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: close'];
  for (const [name, value] of req.headers) lines.push(`${name}: ${value}`);
  if (body && req.chunked) lines.push('Transfer-Encoding: chunked');
  else if (body && !names.has('content-length') && !names.has('transfer-encoding')) {
    lines.push(`Content-Length: ${body.length}`);
  }
  const head = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'utf8');
  if (!body) return head;
  if (!req.chunked) return Buffer.concat([head, body]);
  if (body.length === 0) return Buffer.concat([head, Buffer.from('0\r\n\r\n')]);
  const size = Buffer.from(`${body.length.toString(16)}\r\n`);
  return Buffer.concat([head, size, body, Buffer.from('\r\n0\r\n\r\n')]);
}

function decodeChunked(data: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = data.indexOf('\r\n', at);
    if (eol < 0) break;
    const size = parseInt(data.subarray(at, eol).toString('latin1'), 16);
    if (!(size > 0)) break;
    parts.push(data.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
  return Buffer.concat(parts);
}

function parseResponse(all: Buffer): WireResponse {
  let data = all;
  // Interim answers (100 Continue) precede the real one.
  while (/^HTTP\/1\.[01] 1\d\d /.test(data.subarray(0, 16).toString('latin1'))) {
    const interim = data.indexOf('\r\n\r\n');
    if (interim < 0) break;
    data = data.subarray(interim + 4);
  }
  const end = data.indexOf('\r\n\r\n');
  if (end < 0) throw new Error(`no complete response head: ${JSON.stringify(String(data))}`);
  const head = data.subarray(0, end).toString('latin1');
  const [statusLine = '', ...lines] = head.split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1]);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  let body = data.subarray(end + 4);
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) body = decodeChunked(body);
  else if (headers['content-length'] !== undefined) {
    body = body.subarray(0, Number(headers['content-length']));
  }
  return { status, head, headers, body: body.toString('utf8') };
}

/**
 * Sends raw bytes on a fresh connection and reads until the server closes it (the request says
 * `Connection: close`). Rejects when nothing arrives in time or the connection dies silently.
 */
export function sendBytes(
  baseUrl: string,
  bytes: Buffer,
  timeoutMs = 15_000,
): Promise<WireResponse> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect({ host: hostname, port: Number(port) });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms (${Buffer.concat(chunks).length} bytes)`));
    }, timeoutMs);
    const finish = (error?: Error) => {
      clearTimeout(timer);
      const data = Buffer.concat(chunks);
      if (data.length === 0) {
        reject(
          new Error(`connection closed without an answer${error ? ` (${error.message})` : ''}`),
        );
        return;
      }
      try {
        resolve(parseResponse(data));
      } catch (e) {
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    };
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (e) => finish(e));
    socket.on('close', () => finish());
    socket.write(bytes);
  });
}

export const send = (baseUrl: string, req: WireRequest, timeoutMs?: number) =>
  sendBytes(baseUrl, serialise(req), timeoutMs);
