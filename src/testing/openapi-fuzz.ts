/**
 * Test helpers driven by the served OpenAPI document: the operations it lists, a raw HTTP/1.1
 * client (node:net) that sends what fetch refuses (bad percent-encoding, lying headers, oversized
 * request lines), and the checks every answer must pass (no 5xx, problem+json, no key material).
 */
import { connect } from 'node:net';
import { ERROR_CODES } from '../platform/errors.ts';
import { leakScanner, TEST_PEPPER } from './leak-scan.ts';

export type JsonSchema = {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  enum?: unknown[];
  format?: string;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  $ref?: string;
};

export type QueryParam = { name: string; required: boolean; schema: JsonSchema };

export type Operation = {
  /** `GET /api/orgs/{orgId}`: the name tests and failures use. */
  id: string;
  method: string;
  path: string;
  pathParams: string[];
  query: QueryParam[];
  body: JsonSchema | undefined;
  /** The security schemes the operation accepts; empty for public operations. */
  schemes: string[];
  /** `x-required-scopes`, the machine-readable form; undefined when the document lacks it. */
  declaredScopes: string[] | undefined;
  /** The scope named by the description's "Requires scope `x`" sentence, if any. */
  describedScopes: string[] | undefined;
};

const METHODS = ['get', 'put', 'post', 'patch', 'delete', 'options', 'head', 'trace'];
type Doc = {
  paths: Record<string, Record<string, any>>;
  components?: { schemas?: Record<string, JsonSchema> };
  security?: Record<string, string[]>[];
};

/** Inlines `#/components/schemas/…` references (the document has no cycles; depth-guarded). */
function deref(doc: Doc, schema: JsonSchema | undefined, depth = 0): JsonSchema | undefined {
  if (!schema || depth > 20) return schema;
  if (schema.$ref) {
    const name = schema.$ref.replace('#/components/schemas/', '');
    return deref(doc, doc.components?.schemas?.[name], depth + 1);
  }
  const out: JsonSchema = { ...schema };
  if (schema.properties) {
    out.properties = Object.fromEntries(
      Object.entries(schema.properties).map(([k, v]) => [k, deref(doc, v, depth + 1) ?? {}]),
    );
  }
  if (schema.items) out.items = deref(doc, schema.items, depth + 1);
  for (const key of ['anyOf', 'oneOf'] as const) {
    if (schema[key]) out[key] = schema[key].map((s) => deref(doc, s, depth + 1) ?? {});
  }
  return out;
}

const SCOPE_SENTENCE = /Requires scope `([^`]+)`/g;

/** Every operation of the document: paths × methods, in document order. */
export function documentOperations(doc: Doc): Operation[] {
  const ops: Operation[] = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const params: any[] = [...(item.parameters ?? []), ...(op.parameters ?? [])];
      const security: Record<string, string[]>[] = op.security ?? doc.security ?? [];
      const described = [...String(op.description ?? '').matchAll(SCOPE_SENTENCE)].map(
        (m) => m[1] ?? '',
      );
      const declared: unknown = op['x-required-scopes'];
      ops.push({
        id: `${method.toUpperCase()} ${path}`,
        method: method.toUpperCase(),
        path,
        pathParams: [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1] ?? ''),
        query: params
          .filter((p) => p.in === 'query')
          .map((p) => ({
            name: p.name,
            required: !!p.required,
            schema: deref(doc, p.schema) ?? {},
          })),
        body: deref(doc, op.requestBody?.content?.['application/json']?.schema),
        schemes: [...new Set(security.flatMap((s) => Object.keys(s)))],
        declaredScopes: Array.isArray(declared) ? declared.map(String) : undefined,
        describedScopes: described.length > 0 ? described : undefined,
      });
    }
  }
  return ops;
}

/** Substitutes `{name}` with the given wire text (already percent-encoded as the test wants). */
export function fillPath(template: string, values: Record<string, string>): string {
  return template.replace(/\{([^}]+)\}/g, (_, name: string) => values[name] ?? '');
}

/** Percent-encodes every byte of the UTF-8 form outside unreserved (lone surrogates → U+FFFD). */
export function wireEncode(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9\-._~]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

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
