import { spawn } from 'node:child_process';
import { afterAll, beforeAll } from 'vitest';
import path from 'node:path';
import { runCli, type CliIo } from '../cli/cli.ts';
import { migrate, openRuntime } from '../main.ts';
import { startTestApp, useTestDatabase, type TestApp } from './harness.ts';
import { TEST_PEPPER } from './leak-scan.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');

export type CliResult = { code: number | null; stdout: string; stderr: string };

/** The environment a CLI run gets: the test database, the test pepper, quiet logs. */
export function cliEnv(url: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    DATABASE_URL: url,
    KEYTRAIL_KEY_PEPPER: TEST_PEPPER,
    KEYTRAIL_LOG_LEVEL: 'warn',
    ...extra,
  };
}

export type CliTestContext = { app: TestApp; env: Record<string, string> };

/** A keytrail on the file's own test database, and the CLI environment for that database. */
export function useCliTestApp(): CliTestContext {
  const dbUrl = useTestDatabase();
  const context = {} as CliTestContext;
  beforeAll(async () => {
    context.app = await startTestApp(dbUrl());
    context.env = cliEnv(dbUrl());
  });
  afterAll(async () => context.app.close());
  return context;
}

/** Runs the real binary (`node bin/keytrail.ts ...`) with exactly `env` (plus PATH). */
export function runBinary(args: string[], env: Record<string, string>): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['bin/keytrail.ts', ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * runCli in this process, wired like bin/keytrail.ts (the real openRuntime and migrate of
 * src/main.ts); serve and worker are recorded, not started. `overrides` replaces pieces of io.
 */
export async function runInProcess(
  args: string[],
  env: Record<string, string | undefined>,
  overrides: Partial<CliIo> = {},
): Promise<CliResult & { served: { worker: boolean }[]; worked: number }> {
  let stdout = '';
  let stderr = '';
  const served: { worker: boolean }[] = [];
  let worked = 0;
  const io: CliIo = {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
    env,
    openRuntime: async (e) => {
      const runtime = await openRuntime(e);
      return {
        config: runtime.config,
        migrate: () => migrate(runtime),
        stop: () => runtime.stop(),
      };
    },
    serve: (options) => {
      served.push(options);
      return Promise.resolve();
    },
    work: () => {
      worked += 1;
      return Promise.resolve();
    },
    ...overrides,
  };
  const code = await runCli(args, io);
  return { code, stdout, stderr, served, worked };
}
