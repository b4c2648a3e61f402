/**
 * What teams write by hand (issue 12's comparison): an Express route that looks the key up in
 * Postgres and updates `last_used_at` and a request count on every request, the update awaited
 * (`/awaited/…`) or fired and forgotten (`/unawaited/…`). Prints its URL, runs until SIGTERM.
 */
import { createHash } from 'node:crypto';
import express from 'express';
import pg from 'pg';
import { serveUntilSigterm } from './lib.ts';

const pool = new pg.Pool({ connectionString: process.env.BENCH_DATABASE_URL, max: 10 });
await pool.query(`create table if not exists peer_api_keys (
  key_hash bytea primary key, org_id uuid not null, last_used_at timestamptz,
  request_count bigint not null default 0)`);
const keyHash = (key: string) => createHash('sha256').update(key).digest();
await pool.query(
  `insert into peer_api_keys (key_hash, org_id) values ($1, gen_random_uuid()) on conflict do nothing`,
  [keyHash(process.env.BENCH_PEER_KEY ?? '')],
);

const app = express();
app.disable('x-powered-by');
app.set('etag', false);
const touch = (hash: Buffer) =>
  pool.query(
    'update peer_api_keys set last_used_at = now(), request_count = request_count + 1 where key_hash = $1',
    [hash],
  );
for (const awaited of [true, false]) {
  app.get(`/${awaited ? 'awaited' : 'unawaited'}/orders/:id`, async (req, res) => {
    const key = /^Bearer (\S+)$/.exec(req.get('authorization') ?? '')?.[1] ?? '';
    const hash = keyHash(key);
    const { rows } = await pool.query('select org_id from peer_api_keys where key_hash = $1', [
      hash,
    ]);
    if (rows.length === 0) {
      res.status(401).json({ error: 'invalid key' });
      return;
    }
    if (awaited) await touch(hash);
    else void touch(hash).catch(() => undefined);
    res.json({ id: req.params.id, status: 'shipped', total_cents: 4200 });
  });
}

serveUntilSigterm(app, () => pool.end());
