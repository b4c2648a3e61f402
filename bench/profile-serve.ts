/**
 * `node bench/profile-serve.ts [demo|verify|bare|tracked|untracked] [seconds]`: runs one target of the serve
 * scenario under load with the server started with --cpu-prof, and prints where its CPU went
 * (self and inclusive time of the top functions). A maintainer's tool for issue 12.
 */
import { readdirSync, readFileSync } from 'node:fs';
import autocannon from 'autocannon';
import { createKeytrail } from '../src/keytrail.ts';
import { benchConfig, child, freshDatabase, keytrailEnv } from './lib.ts';
import { summarize, type Profile } from './profile-summary.ts';

const which = process.argv[2] ?? 'demo';
const seconds = Number(process.argv[3] ?? 10);
const dir = `/tmp/keytrail-prof-${process.pid}`;
const db = await freshDatabase(`keytrail_prof_${process.pid}`);
try {
  const kt = createKeytrail(benchConfig(db.url));
  const { adminKey } = await kt.orgs.create('bench-profile');
  await kt.close();
  const env = keytrailEnv(db.url);
  const prof = { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${dir}` };
  const worker = await child('bin/keytrail.ts', ['worker'], env);
  const library = ['bare', 'tracked', 'untracked'].includes(which);
  const server = library
    ? await child('bench/auth-server.ts', [], { BENCH_DATABASE_URL: db.url, ...prof })
    : await child('bin/keytrail.ts', ['serve', '--no-worker'], { ...env, ...prof });
  const base = library
    ? server.line
    : (/listening on (\S+)/.exec(server.line)?.[1]?.replace('localhost', '127.0.0.1') ?? '');
  const url = library
    ? `${base}/${which === 'bare' ? 'plain' : which}/orders/1`
    : which === 'verify'
      ? `${base}/api/keys/verify`
      : `${base}/v1/demo/orders/1`;
  const result = await autocannon({
    url,
    connections: 32,
    duration: seconds,
    method: which === 'verify' ? 'POST' : 'GET',
    headers: { authorization: `Bearer ${adminKey.plaintext}`, 'content-type': 'application/json' },
    ...(which === 'verify' && { body: JSON.stringify({ key: adminKey.plaintext }) }),
  });
  process.stdout.write(
    `${which}: ${Math.round(result.requests.average)} req/s, non2xx ${result.non2xx}\n`,
  );
  await server.stop();
  await worker.stop();
  for (const f of readdirSync(dir)) {
    const profile = JSON.parse(readFileSync(`${dir}/${f}`, 'utf8')) as Profile;
    if (profile.samples.length < 1000) continue; // the worker's or a short-lived process
    process.stdout.write(`${summarize(profile).join('\n')}\n`);
  }
} finally {
  await db.stop();
}
