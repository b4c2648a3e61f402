/**
 * The protected route of the auth benchmark, served three ways by one process: no auth,
 * requireKey with tracking off, requireKey with tracking on. Prints its URL, runs until SIGTERM.
 */
import express from 'express';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createKeytrail } from '../src/keytrail.ts';
import { benchConfig } from './lib.ts';

const url = process.env.BENCH_DATABASE_URL ?? '';
const base = benchConfig(url);
const tracked = createKeytrail({ ...base, usage: { ...base.usage, tracking: true } });
const untracked = createKeytrail({ ...base, usage: { ...base.usage, tracking: false } });
await tracked.ready();
await untracked.ready();

const app = express();
app.disable('x-powered-by');
app.set('etag', false);
const handler = (req: express.Request, res: express.Response) => {
  res.json({ id: req.params.id, status: 'shipped', total_cents: 4200 });
};
app.get('/plain/orders/:id', handler);
app.get('/untracked/orders/:id', untracked.requireKey(), handler);
app.get('/tracked/orders/:id', tracked.requireKey(), handler);

const server = createServer(app);
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`http://127.0.0.1:${(server.address() as AddressInfo).port}\n`);
});
process.on('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  void Promise.all([tracked.close(), untracked.close()]).then(() => process.exit(0));
});
