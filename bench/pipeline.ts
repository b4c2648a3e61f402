/**
 * `node bench/pipeline.ts [--quick]`: the JavaScript cost of each layer of a request through
 * `keytrail serve`, without the kernel: each variant is served by Node's HTTP server
 * (`createHttpServer`, as `keytrail serve` runs it) on one keep-alive connection held in memory.
 * The request's bytes are pushed into that connection and read by Node's HTTP parser; the answer
 * is written back into it. Requests go one after another, so the figures hold no kernel, network
 * or scheduling noise. Each variant runs in interleaved rounds in one process; CPU from
 * process.cpuUsage() (the usage flusher's work is included: the tracked variants' buffers flush
 * to pg-boss as in production).
 *
 * Until issue 19 the requests were handed to the app directly, each with a new null socket and
 * its body pushed by hand. That skipped the parser and the server's keep-alive path, and the
 * garbage of a socket per request (16 % of a verify's CPU in its profile) inflated every figure,
 * a body-reading request's most.
 */
import { createServer, type RequestListener, type Server } from 'node:http';
import { Duplex } from 'node:stream';
import express, { Router } from 'express';
import { createKeytrail, type Keytrail } from '../src/keytrail.ts';
import { BODY_LIMIT, buildApp } from '../src/app.ts';
import { createHttpServer } from '../src/http/server.ts';
import { accessLog } from '../src/http/middleware/access-log.ts';
import { requestContext } from '../src/http/middleware/request-context.ts';
import { jsonBody } from '../src/http/middleware/json-body.ts';
import { benchConfig, child, fmt, freshDatabase, median, PEPPER, quick } from './lib.ts';

/** One end of a connection held in memory: what the server writes is counted and dropped. */
class MemorySocket extends Duplex {
  remoteAddress = '::ffff:127.0.0.1';
  remotePort = 40000;
  remoteFamily = 'IPv6';
  encrypted = false;
  override _read(): void {}
  override _write(_chunk: unknown, _enc: BufferEncoding, done: () => void): void {
    done();
  }
  setTimeout(): this {
    return this;
  }
  setNoDelay(): this {
    return this;
  }
  setKeepAlive(): this {
    return this;
  }
}

type Req = { method: string; url: string; headers: Record<string, string>; body?: string };

/** The bytes a client sends for `r` on a keep-alive connection. */
function wireBytes(r: Req): Buffer {
  const headers: Record<string, string> = { host: 'bench', ...r.headers };
  if (r.body) headers['content-length'] = String(Buffer.byteLength(r.body));
  const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`);
  return Buffer.from(`${r.method} ${r.url} HTTP/1.1\r\n${lines.join('')}\r\n${r.body ?? ''}`);
}

type Connection = { send(): Promise<number>; readonly opened: number };

/**
 * `server` on one in-memory connection sending `r` again and again; send() resolves with the
 * status once the answer is finished and closed. A connection the server ends is replaced and
 * counted: every variant must keep its connection alive, as a load generator's would be.
 */
function connect(server: Server, r: Req): Connection {
  const bytes = wireBytes(r);
  let socket: MemorySocket | undefined;
  let opened = 0;
  let answered: ((status: number) => void) | undefined;
  server.on('request', (_req, res) => res.once('close', () => answered?.(res.statusCode)));
  return {
    send() {
      if (!socket || socket.destroyed || socket.writableEnded) {
        socket = new MemorySocket();
        opened += 1;
        server.emit('connection', socket);
      }
      const open = socket;
      return new Promise((resolve) => {
        answered = resolve;
        open.push(bytes);
      });
    },
    get opened() {
      return opened;
    },
  };
}

function layered(kt: Keytrail, layer: number): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  if (layer >= 1) app.use(requestContext);
  if (layer >= 2) app.use(accessLog(kt.logger, kt.metrics.requestDuration));
  if (layer >= 3) app.use(jsonBody(BODY_LIMIT));
  const router = Router();
  const handlers: express.RequestHandler[] = layer >= 4 ? [kt.requireKey()] : [];
  router.get('/v1/demo/orders/:id', ...handlers, (req, res) => {
    res.json({ id: req.params.id, status: 'shipped', total_cents: 4200, key_id: req.apiKey?.id });
  });
  app.use(router);
  return app;
}

const n = quick ? 20_000 : 50_000;
const rounds = quick ? 3 : 5;
const db = await freshDatabase(`keytrail_pipeline_${process.pid}`);
try {
  const base = benchConfig(db.url, { demoRoutes: true });
  const untracked = createKeytrail({ ...base, usage: { ...base.usage, tracking: false } });
  const tracked = createKeytrail({ ...base, usage: { ...base.usage, tracking: true } });
  await untracked.ready();
  await tracked.ready();
  const { adminKey } = await untracked.orgs.create('bench-pipeline');
  const auth = { authorization: `Bearer ${adminKey.plaintext}` };
  const demo: Req = { method: 'GET', url: '/v1/demo/orders/1', headers: auth };
  // A key with a rate limit it never reaches (10⁹ a month): the limits' cost on every request.
  const { apiKey: admin } = adminKey;
  const limitedKey = await untracked.keys.create(
    { id: admin.id, orgId: admin.orgId, environment: admin.environment, scopes: admin.scopes },
    admin.orgId,
    {
      name: 'limited',
      scopes: ['orders:read'],
      rateLimits: [{ name: 'huge', limit: 1e9, windowSeconds: 2_678_400 }],
    },
  );
  const limited: Req = { ...demo, headers: { authorization: `Bearer ${limitedKey.plaintext}` } };
  const verify: Req = {
    method: 'POST',
    url: '/api/keys/verify',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({ key: adminKey.plaintext }),
  };
  // Every variant is served as `keytrail serve` serves: requests born with the app's prototypes
  // (src/http/server.ts). The last two show what a plain Node server costs (Express then sets
  // the prototypes on each request).
  const served = (app: express.Express) => createHttpServer(app);
  const plain = (app: RequestListener) => createServer(app);
  const variants: [string, Server, Req][] = [
    ['bare', served(layered(untracked, 0)), demo],
    ['+request id', served(layered(untracked, 1)), demo],
    ['+access log', served(layered(untracked, 2)), demo],
    ['+json body parser', served(layered(untracked, 3)), demo],
    ['+requireKey, untracked', served(layered(untracked, 4)), demo],
    ['+requireKey, tracked', served(layered(tracked, 5)), demo],
    ['+requireKey, limited key, untracked', served(layered(untracked, 4)), limited],
    ['serve app: demo route', served(buildApp(tracked)), demo],
    ['serve app: verify', served(buildApp(tracked)), verify],
    [
      'serve app: verify, limited key',
      served(buildApp(tracked)),
      { ...verify, body: JSON.stringify({ key: limitedKey.plaintext }) },
    ],
    ['plain http.createServer: bare', plain(layered(untracked, 0)), demo],
    ['plain http.createServer: serve app, demo route', plain(buildApp(tracked)), demo],
  ];
  // BENCH_ONLY=<regex>: only the variants whose name matches (to profile one).
  const only = process.env.BENCH_ONLY ? new RegExp(process.env.BENCH_ONLY) : undefined;
  if (only) variants.splice(0, variants.length, ...variants.filter(([name]) => only.test(name)));
  const runs = variants.map(() => [] as number[]);
  const connections = variants.map(([, server, r]) => connect(server, r));
  // Started last, stopped in finally: nothing before can leave it running.
  const worker = await child('bin/keytrail.ts', ['worker'], {
    DATABASE_URL: db.url,
    KEYTRAIL_KEY_PEPPER: PEPPER,
    KEYTRAIL_LOG_LEVEL: 'warn',
    KEYTRAIL_WORKER_METRICS_PORT: '0',
  });
  try {
    for (const [i, [name]] of variants.entries()) {
      const status = await connections[i]?.send();
      if (status !== 200) throw new Error(`${name}: ${status}`);
    }
    for (let round = 0; round <= rounds; round++) {
      for (let i = 0; i < variants.length; i++) {
        const connection = connections[i] as Connection;
        const start = process.cpuUsage();
        for (let k = 0; k < n; k++) await connection.send();
        const used = process.cpuUsage(start);
        if (round > 0) runs[i]?.push((used.user + used.system) / n); // round 0 warms up
      }
    }
    const reopened = variants.filter((_, i) => connections[i]?.opened !== 1).map(([name]) => name);
    if (reopened.length > 0) {
      throw new Error(`the server closed the connection: ${reopened.join(', ')}`);
    }
  } finally {
    await worker.stop();
    await tracked.close();
    await untracked.close();
  }
  const cpu = runs.map((xs) => median(xs));
  const bare = cpu[0] ?? 1;
  process.stdout.write(
    [
      `${n} requests × ${rounds} interleaved rounds per variant, in-process over one keep-alive connection held in memory (medians of µs per request)`,
      '| variant | CPU per request | added by the layer | vs bare |',
      '|---|---|---|---|',
      ...variants.map(
        ([name], i) =>
          `| ${name} | ${fmt(cpu[i] ?? 0, 2)} µs | ${i === 0 || i > 5 ? '' : `${((cpu[i] ?? 0) - (cpu[i - 1] ?? 0)).toFixed(2)} µs`} | ${((cpu[i] ?? 0) / bare).toFixed(2)}× |`,
      ),
      '',
    ].join('\n'),
  );
} finally {
  await db.stop();
}
process.exit(0);
