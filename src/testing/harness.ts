import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, inject } from 'vitest';
import { buildApp } from '../app.ts';
import { createHttpServer } from '../http/server.ts';
import { createKeytrail, type Keytrail } from '../keytrail.ts';
import { parseEnv, toConfig, type Config } from '../platform/config.ts';
import type { Clock } from '../platform/clock.ts';
import { createLogger } from '../platform/logger.ts';
import { databaseUrl } from './databases.ts';
import { copyOnNodes, dropOnNodes } from './citus.ts';
import { TestClient } from './client.ts';
import { leakScanner, TEST_PEPPER } from './leak-scan.ts';

export const OPERATOR_TOKEN = 'test-operator-token-0123456789';

/**
 * Gives the calling test file its own database, cloned from the migrated template, and drops
 * it afterwards. Returns a getter for its URL (valid once beforeAll has run).
 */
export function useTestDatabase(): () => string {
  let url = '';
  let name = '';
  beforeAll(async () => {
    name = `keytrail_t_${randomBytes(6).toString('hex')}`;
    await copyOnNodes(inject('databaseNodes'), inject('templateDatabase'), name);
    url = databaseUrl(inject('serverUrl'), name);
  });
  afterAll(async () => {
    await dropOnNodes(inject('databaseNodes'), name);
  });
  return () => url;
}

export function testConfig(url: string, overrides: Partial<Config> = {}): Config {
  const env = parseEnv({ KEYTRAIL_OPERATOR_TOKEN: OPERATOR_TOKEN, KEYTRAIL_DEMO_ROUTES: 'true' });
  return {
    ...toConfig(env, { databaseUrl: url, keyPepper: TEST_PEPPER, embedded: false }),
    ...overrides,
  };
}

export type TestApp = {
  kt: Keytrail;
  client: TestClient;
  baseUrl: string;
  logs: string[];
  close(): Promise<void>;
};

/** Collects log lines and scans each for key material as it is written. */
function logSink(lines: string[], leaks: string[]): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      const line = chunk.toString('utf8');
      lines.push(line);
      leaks.push(...leakScanner.scan(line));
      done();
    },
  });
}

/** A real keytrail on a real port against the given database. */
export async function startTestApp(
  url: string,
  options: {
    config?: Partial<Config>;
    clock?: Clock;
    /** '::' takes IPv6 too: `client` (127.0.0.1) then arrives as ::ffff:127.0.0.1. */
    listenHost?: string;
  } = {},
): Promise<TestApp> {
  const logs: string[] = [];
  const leaks: string[] = [];
  const logger = createLogger({ level: 'info' }, logSink(logs, leaks));
  const kt = createKeytrail(testConfig(url, options.config), {
    logger,
    ...(options.clock && { clock: options.clock }),
  });
  await kt.ready();
  const server: Server = createHttpServer(buildApp(kt));
  await new Promise<void>((resolve) =>
    server.listen(0, options.listenHost ?? '127.0.0.1', resolve),
  );
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    kt,
    client: new TestClient(baseUrl),
    baseUrl,
    logs,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await kt.close();
      if (leaks.length > 0) throw new Error(`key material in logs: ${leaks.join(', ')}`);
    },
  };
}

/** One app per test file, started after the database exists and closed at the end. */
export function useTestApp(
  options: { config?: Partial<Config>; clock?: Clock } = {},
): () => TestApp {
  const dbUrl = useTestDatabase();
  let app: TestApp | undefined;
  beforeAll(async () => {
    app = await startTestApp(dbUrl(), options);
  });
  afterAll(async () => {
    await app?.close();
  });
  return () => {
    if (!app) throw new Error('test app not started');
    return app;
  };
}

/** Polls until `condition` holds (no fixed sleeps); fails with the last value after `timeoutMs`. */
export async function waitFor<T>(
  condition: () => Promise<T> | T,
  options: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + (options.timeoutMs ?? 5_000);
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > deadline)
      throw new Error(`waitFor: condition not met within ${options.timeoutMs ?? 5_000} ms`);
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 10));
  }
}

/**
 * Waits a fixed time. Only for asserting that something does NOT happen (no progress while a
 * client is paused); everything else waits with waitFor.
 */
export function observeFor(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
