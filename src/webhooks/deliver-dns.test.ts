/**
 * Webhook hosts are resolved over DNS on the event loop (c-ares), not by getaddrinfo on libuv's
 * thread pool: a nameserver that never answers costs a delivery its deadline, and nothing else.
 * Time bounds are loose (two shared cores under coverage): what is proven by an outcome (the
 * error code, the order things settle in) is not also proven by a stopwatch.
 */
import { pbkdf2, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { deflate } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OTHER_FAMILY_GRACE_MS, resolveName } from '../platform/dns.ts';
import {
  startAnsweringNameserver,
  startSilentNameserver,
  type Nameserver,
} from '../testing/nameserver.ts';
import { waitFor } from '../testing/harness.ts';
import { startReceiver } from '../testing/receiver.ts';
import { attempt } from './deliver.ts';
import { generateSecret } from './secrets.ts';

const outgoing = (url: string) => ({
  url,
  messageId: '0190b5b4-0000-7000-8000-000000000002',
  body: '{"type":"key.created"}',
  secrets: [generateSecret()],
  at: new Date(),
});
const loopback = { allowLoopback: true, allowedNetworks: [] };

/** Slack for a loaded machine, added to any deadline a test bounds elapsed time by. */
const SLACK_MS = 2_000;

/** Work that needs libuv's thread pool: key derivation, compression and a file read, 4 each. */
function threadPoolWork(): Promise<unknown> {
  const jobs = Array.from({ length: 4 }, () => [
    promisify(pbkdf2)('secret', 'salt', 1_000, 32, 'sha256'),
    promisify(deflate)(randomBytes(64 * 1024)),
    readFile(new URL(import.meta.url)),
  ]);
  return Promise.all(jobs.flat());
}

describe('webhook DNS', () => {
  let silent: Nameserver;
  beforeAll(async () => {
    silent = await startSilentNameserver();
  });
  afterAll(async () => {
    await silent.close();
  });

  it('fails a delivery whose nameserver never answers as dns_failed, within the deadline', async () => {
    const before = silent.queries();
    const started = performance.now();
    const result = await attempt(outgoing('https://hook.example.com/x'), {
      addresses: loopback,
      timeoutMs: 600,
      dnsServers: [silent.server],
    });
    const took = performance.now() - started;
    expect(result).toMatchObject({ statusCode: null, error: 'dns_failed' });
    expect(silent.queries()).toBeGreaterThan(before);
    expect(took).toBeLessThan(600 + SLACK_MS);
  });

  it('cancels the queries when the deadline fires', async () => {
    const started = performance.now();
    const lookup = resolveName('hook.example.com', {
      servers: [silent.server],
      signal: AbortSignal.timeout(200),
      timeoutMs: 20_000, // c-ares itself would wait far longer
    });
    // Cancelled, not given up on by c-ares (ETIMEOUT, after ~15 s at this timeout).
    await expect(lookup).rejects.toMatchObject({ name: 'DnsError', code: 'ECANCELLED' });
    expect(performance.now() - started).toBeLessThan(200 + SLACK_MS);
  });

  it('keeps the thread pool free while more lookups hang than it has threads', async () => {
    const before = silent.queries();
    let settled = 0;
    const hanging = Array.from({ length: 8 }, (_, i) =>
      attempt(outgoing(`https://hook-${i}.example.com/x`), {
        addresses: loopback,
        // Long enough that no lookup gives up while the thread-pool work runs, however slow.
        timeoutMs: 10_000,
        dnsServers: [silent.server],
      }).finally(() => settled++),
    );
    // Every lookup has asked the nameserver (A and AAAA each) and waits for its answer.
    await waitFor(() => silent.queries() - before >= 16, { intervalMs: 5 });
    await threadPoolWork();
    // The thread pool's work finished while every lookup still hung: they held no thread.
    expect(settled).toBe(0);
    const results = await Promise.all(hanging);
    expect(results.map((r) => r.error)).toEqual(Array(8).fill('dns_failed'));
  });

  it('goes on with the A answer when the nameserver drops AAAA queries', async () => {
    const ns = await startAnsweringNameserver('127.0.0.1', { dropAaaa: true });
    try {
      const deadlineMs = 10_000;
      const started = performance.now();
      const addresses = await resolveName('hook.test', {
        servers: [ns.server],
        signal: AbortSignal.timeout(deadlineMs),
        timeoutMs: deadlineMs,
      });
      expect(addresses).toEqual(['127.0.0.1']);
      // Waiting for the AAAA query to time out would take most of the deadline (~7.5 s).
      expect(performance.now() - started).toBeLessThan(OTHER_FAMILY_GRACE_MS + SLACK_MS);
    } finally {
      await ns.close();
    }
  });

  it('delivers to a name its nameserver resolves (A only; no AAAA record)', async () => {
    const ns = await startAnsweringNameserver('127.0.0.1');
    const r = await startReceiver();
    try {
      const port = new URL(r.url).port;
      const result = await attempt(outgoing(`http://hook.test:${port}/hook`), {
        addresses: loopback,
        timeoutMs: 2_000,
        dnsServers: [ns.server],
      });
      expect(result).toMatchObject({ statusCode: 200, error: null });
      expect(r.received).toHaveLength(1);
      const refused = await attempt(outgoing(`http://hook.test:${port}/hook`), {
        addresses: { allowLoopback: false, allowedNetworks: [] },
        timeoutMs: 2_000,
        dnsServers: [ns.server],
      });
      expect(refused).toMatchObject({ statusCode: null, error: 'address_not_allowed' });
      expect(r.received).toHaveLength(1);
    } finally {
      await r.close();
      await ns.close();
    }
  });
});
