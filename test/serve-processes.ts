/**
 * `keytrail serve --no-worker` as real child processes on one database: the instances of a
 * horizontally scaled deployment, for the multi-instance claims (SPEC §11's limits).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { freePort } from '../src/platform/embedded-postgres.ts';
import { TEST_PEPPER } from '../src/testing/leak-scan.ts';

const ROOT = path.resolve(import.meta.dirname, '..');

export type ServeProcess = {
  baseUrl: string;
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  tail(): string;
};

export async function spawnServe(
  databaseUrl: string,
  extraEnv: Record<string, string> = {},
): Promise<ServeProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, ['bin/keytrail.ts', 'serve', '--no-worker'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      DATABASE_URL: databaseUrl,
      KEYTRAIL_KEY_PEPPER: TEST_PEPPER,
      KEYTRAIL_LOG_LEVEL: 'warn',
      KEYTRAIL_DEMO_ROUTES: 'true',
      KEYTRAIL_USAGE_TRACKING: 'false',
      HOST: '127.0.0.1',
      PORT: String(port),
      ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const keep = (chunk: Buffer) => (output = (output + chunk.toString('utf8')).slice(-20_000));
  child.stderr.on('data', keep);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      keep(chunk);
      if (output.includes('keytrail listening on')) resolve();
    });
    void exited.then(({ code, signal }) =>
      reject(new Error(`serve exited before listening (${code ?? signal}): ${output}`)),
    );
  });
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    child,
    exited,
    tail: () => output.split('\n').slice(-15).join('\n'),
  };
}

/** SIGTERM and wait (graceful stop: credit is given back); SIGKILL after `timeoutMs`. */
export async function stopServe(serve: ServeProcess, timeoutMs = 15_000): Promise<void> {
  if (serve.child.exitCode !== null || serve.child.signalCode !== null) return;
  serve.child.kill('SIGTERM');
  const timer = setTimeout(() => serve.child.kill('SIGKILL'), timeoutMs);
  await serve.exited;
  clearTimeout(timer);
}
