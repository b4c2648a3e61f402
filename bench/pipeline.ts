/**
 * `node bench/pipeline.ts [--quick]`: the JavaScript cost of each layer of a request through
 * `keytrail serve`, without sockets: requests are handed to the Express app in-process (a null
 * socket), one after another, so the figures hold no kernel, network or scheduling noise. Each
 * variant runs in interleaved rounds in one process; CPU from process.cpuUsage() (the usage
 * flusher's work is included: the tracked variants' buffers flush to pg-boss as in production).
 */
import { IncomingMessage, ServerResponse, type RequestListener } from 'node:http';
import { Duplex } from 'node:stream';
import express, { Router } from 'express';
import { createKeytrail, type Keytrail } from '../src/keytrail.ts';
import { BODY_LIMIT, buildApp } from '../src/app.ts';
import { messageClasses } from '../src/http/server.ts';
import { accessLog } from '../src/http/middleware/access-log.ts';
import { requestContext } from '../src/http/middleware/request-context.ts';
import { jsonBody } from '../src/http/middleware/json-body.ts';
import { benchConfig, child, fmt, freshDatabase, median, PEPPER, quick } from './lib.ts';

class NullSocket extends Duplex {
  remoteAddress = '::ffff:127.0.0.1';
  remotePort = 40000;
  encrypted = false;
  override _read(): void {}
  override _write(_chunk: unknown, _enc: BufferEncoding, done: () => void): void {
    done();
  }
}

type Req = { method: string; url: string; headers: Record<string, string>; body?: string };

type Classes = { IncomingMessage?: typeof IncomingMessage; ServerResponse?: typeof ServerResponse };
const born = new WeakMap<RequestListener, Classes>();

/** One request through an app; resolves once its response finished and closed. */
function inject(app: RequestListener, r: Req): Promise<number> {
  const classes = born.get(app) ?? {};
  const Request = classes.IncomingMessage ?? IncomingMessage;
  const Response = classes.ServerResponse ?? ServerResponse;
  return new Promise((resolve) => {
    const socket = new NullSocket();
    const req = new Request(socket as never);
    req.method = r.method;
    req.url = r.url;
    req.headers = r.body
      ? { ...r.headers, 'content-length': String(Buffer.byteLength(r.body)) }
      : r.headers;
    if (r.body) req.push(r.body);
    req.push(null);
    // As the HTTP parser marks it: a request read to its end is not an aborted one.
    req.complete = true;
    const res = new Response(req);
    res.assignSocket(socket as never);
    // The HTTP server emits 'close' after 'finish' (usage is recorded on 'close').
    res.once('finish', () =>
      process.nextTick(() => {
        res.emit('close');
        resolve(res.statusCode);
      }),
    );
    app(req, res);
  });
}

function layered(kt: Keytrail, layer: number): RequestListener {
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
  /** The app as `keytrail serve` runs it: requests born with its prototypes (src/http/server.ts). */
  const served = (app: RequestListener) => {
    born.set(app, messageClasses(app));
    return app;
  };
  const variants: [string, RequestListener, Req][] = [
    ['bare', layered(untracked, 0), demo],
    ['+request id', layered(untracked, 1), demo],
    ['+access log', layered(untracked, 2), demo],
    ['+json body parser', layered(untracked, 3), demo],
    ['+requireKey, untracked', layered(untracked, 4), demo],
    ['+requireKey, tracked', layered(tracked, 5), demo],
    ['+requireKey, limited key, untracked', layered(untracked, 4), limited],
    ['serve app: demo route', served(buildApp(tracked)), demo],
    ['serve app: verify', served(buildApp(tracked)), verify],
    [
      'serve app: verify, limited key',
      served(buildApp(tracked)),
      { ...verify, body: JSON.stringify({ key: limitedKey.plaintext }) },
    ],
    ['serve app, prototypes set late: demo', buildApp(tracked), demo],
  ];
  // BENCH_ONLY=<regex>: only the variants whose name matches (to profile one).
  const only = process.env.BENCH_ONLY ? new RegExp(process.env.BENCH_ONLY) : undefined;
  if (only) variants.splice(0, variants.length, ...variants.filter(([name]) => only.test(name)));
  const runs = variants.map(() => [] as number[]);
  // Started last, stopped in finally: nothing before can leave it running.
  const worker = await child('bin/keytrail.ts', ['worker'], {
    DATABASE_URL: db.url,
    KEYTRAIL_KEY_PEPPER: PEPPER,
    KEYTRAIL_LOG_LEVEL: 'warn',
    KEYTRAIL_WORKER_METRICS_PORT: '0',
  });
  try {
    for (const [name, app, r] of variants) {
      const status = await inject(app, r);
      if (status !== 200) throw new Error(`${name}: ${status}`);
    }
    for (let round = 0; round <= rounds; round++) {
      for (let i = 0; i < variants.length; i++) {
        const [, app, r] = variants[i] as [string, RequestListener, Req];
        const start = process.cpuUsage();
        for (let k = 0; k < n; k++) await inject(app, r);
        const used = process.cpuUsage(start);
        if (round > 0) runs[i]?.push((used.user + used.system) / n); // round 0 warms up
      }
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
      `${n} requests × ${rounds} interleaved rounds per variant, in-process (medians of µs per request)`,
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
