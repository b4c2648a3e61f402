import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { describe, expect, inject, it } from 'vitest';
import { createKeytrail } from '../keytrail.ts';
import { testConfig, useTestApp } from '../testing/harness.ts';
import { adminQuery, databaseUrl } from '../testing/databases.ts';
import { capturingLogger } from '../testing/logs.ts';
import { ensureQueues, sendJob } from './queue.ts';

const app = useTestApp();

describe('queue', () => {
  it('refuses to lose a job sent to a queue that does not exist', async () => {
    const boss = await app().kt.queue();
    await expect(sendJob(boss, 'no.such.queue', { n: 1 })).rejects.toThrow(/no\.such\.queue/);
  });

  it('creates queues with ten retries and backoff unless told otherwise', async () => {
    const boss = await app().kt.queue();
    await ensureQueues(boss, [{ name: 'test.defaults' }]);
    expect(await boss.getQueue('test.defaults')).toMatchObject({
      retryLimit: 10,
      retryBackoff: true,
    });
    expect(await sendJob(boss, 'test.defaults', { n: 1 })).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('starts on a later use when the database was not there at the first one', async () => {
    const name = `keytrail_q_${randomBytes(4).toString('hex')}`;
    const server = inject('serverUrl');
    const { logger } = capturingLogger();
    const kt = createKeytrail(testConfig(databaseUrl(server, name)), { logger });
    try {
      await expect(kt.queue()).rejects.toThrow(/does not exist/);
      await adminQuery(server, `create database ${pg.escapeIdentifier(name)}`);
      const boss = await kt.queue();
      expect(await boss.isInstalled()).toBe(true);
    } finally {
      await kt.close();
      await adminQuery(server, `drop database if exists ${pg.escapeIdentifier(name)} with (force)`);
    }
  });
});
