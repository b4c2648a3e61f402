import pg from 'pg';
import type { Logger } from './logger.ts';

export type Listener = {
  close(): Promise<void>;
  ready: Promise<void>;
  /** Connected, LISTENing, and the last heartbeat answered in time. */
  healthy(): boolean;
};

/** A heartbeat every 15 s; one that takes over 5 s means the connection is gone. */
export const HEARTBEAT_MS = 15_000;
export const HEARTBEAT_TIMEOUT_MS = 5_000;

/**
 * LISTENs on one channel over a dedicated connection, reconnecting with backoff. Notifications
 * sent while disconnected are lost, so `onReconnect` runs after every reconnection to let the
 * caller resynchronise (the key cache clears itself).
 *
 * A connection that dies without a FIN or RST (a failover, a NAT or firewall dropping an idle
 * flow) never emits `end`: revocations would silently stop arriving. So the socket has TCP
 * keepalive, and a heartbeat (`select 1`) runs on it every `heartbeatMs`; one unanswered within
 * `heartbeatTimeoutMs` destroys the socket and reconnects, and `healthy()` (part of /readyz) is
 * false until the new connection LISTENs again.
 */
export function listen(options: {
  url: string;
  channel: string;
  logger: Logger;
  onMessage: (payload: string) => void;
  onReconnect: () => void;
  heartbeatMs?: number;
  heartbeatTimeoutMs?: number;
}): Listener {
  const { url, channel, logger } = options;
  const heartbeatMs = options.heartbeatMs ?? HEARTBEAT_MS;
  const heartbeatTimeoutMs = options.heartbeatTimeoutMs ?? HEARTBEAT_TIMEOUT_MS;
  let client: pg.Client | undefined;
  let listening = false;
  let closed = false;
  let attempt = 0;
  let timer: NodeJS.Timeout | undefined;
  let markReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => (markReady = resolve));

  /** Drops a connection for good: its socket destroyed, so nothing of it can linger. */
  const drop = (c: pg.Client, why: string) => {
    if (client !== c) return;
    listening = false;
    logger.warn({ channel, why }, 'listen connection dropped; reconnecting');
    (
      c as unknown as { connection?: { stream?: { destroy(): void } } }
    ).connection?.stream?.destroy();
    c.end().catch(() => undefined);
    scheduleReconnect();
  };

  const connect = async (): Promise<void> => {
    const c = new pg.Client({
      connectionString: url,
      application_name: 'keytrail-listen',
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      // A reconnect into a path that is still dead (mid-failover, a proxy that accepts and passes
      // nothing) must fail and be retried, not hang: the heartbeat only watches a LISTENing one.
      connectionTimeoutMillis: heartbeatTimeoutMs,
      query_timeout: heartbeatTimeoutMs,
    });
    c.on('error', (error) =>
      logger.warn({ err: error.message, channel }, 'listen connection lost'),
    );
    c.on('end', () => {
      if (client !== c) return;
      listening = false;
      scheduleReconnect();
    });
    c.on('notification', (msg) => {
      if (msg.channel === channel && msg.payload) options.onMessage(msg.payload);
    });
    client = c;
    try {
      await c.connect();
      await c.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
    } catch (error) {
      (
        c as unknown as { connection?: { stream?: { destroy(): void } } }
      ).connection?.stream?.destroy();
      throw error;
    }
    if (attempt > 0) options.onReconnect();
    attempt = 0;
    listening = true;
    markReady();
  };

  const beat = setInterval(() => {
    const c = client;
    if (closed || !c || !listening) return;
    let answered = false;
    const deadline = setTimeout(() => {
      if (!answered) drop(c, `heartbeat unanswered after ${heartbeatTimeoutMs} ms`);
    }, heartbeatTimeoutMs);
    deadline.unref();
    c.query('select 1').then(
      () => {
        answered = true;
        clearTimeout(deadline);
      },
      (error: unknown) => {
        answered = true;
        clearTimeout(deadline);
        drop(c, `heartbeat failed: ${String(error)}`);
      },
    );
  }, heartbeatMs);
  beat.unref();

  const scheduleReconnect = () => {
    if (closed || timer) return;
    attempt += 1;
    const delayMs = Math.min(100 * 2 ** attempt, 5_000);
    timer = setTimeout(() => {
      timer = undefined;
      connect().catch((error: unknown) => {
        if (closed) return;
        logger.warn({ err: String(error), channel, attempt }, 'listen reconnect failed');
        scheduleReconnect();
      });
    }, delayMs);
    timer.unref();
  };

  connect().catch((error: unknown) => {
    // Closed while connecting (a short-lived process): nothing failed that matters.
    if (closed) return;
    logger.warn({ err: String(error), channel }, 'listen connect failed');
    scheduleReconnect();
  });

  return {
    ready,
    healthy: () => listening && !closed,
    async close() {
      closed = true;
      clearInterval(beat);
      if (timer) clearTimeout(timer);
      await client?.end().catch(() => undefined);
    },
  };
}
