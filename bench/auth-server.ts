/**
 * The protected route of the auth benchmark, served three ways by one process: no auth,
 * requireKey with tracking off, requireKey with tracking on. Prints its URL, runs until SIGTERM.
 */
import express from 'express';
import { createKeytrail } from '../src/keytrail.ts';
import { benchConfig, serveUntilSigterm } from './lib.ts';

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

serveUntilSigterm(app, () => Promise.all([tracked.close(), untracked.close()]));
