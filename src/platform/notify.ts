import pg from 'pg';
import type { Logger } from './logger.ts';

export type Listener = { close(): Promise<void>; ready: Promise<void> };

/**
 * LISTENs on one channel over a dedicated connection, reconnecting with backoff. Notifications
 * sent while disconnected are lost, so `onReconnect` runs after every reconnection to let the
 * caller resynchronise (the key cache clears itself).
 */
export function listen(options: {
  url: string;
  channel: string;
  logger: Logger;
  onMessage: (payload: string) => void;
  onReconnect: () => void;
}): Listener {
  const { url, channel, logger } = options;
  let client: pg.Client | undefined;
  let closed = false;
  let attempt = 0;
  let timer: NodeJS.Timeout | undefined;
  let markReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => (markReady = resolve));

  const connect = async (): Promise<void> => {
    const c = new pg.Client({ connectionString: url, application_name: 'keytrail-listen' });
    c.on('error', (error) =>
      logger.warn({ err: error.message, channel }, 'listen connection lost'),
    );
    c.on('end', () => scheduleReconnect());
    c.on('notification', (msg) => {
      if (msg.channel === channel && msg.payload) options.onMessage(msg.payload);
    });
    client = c;
    await c.connect();
    await c.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
    if (attempt > 0) options.onReconnect();
    attempt = 0;
    markReady();
  };

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
    async close() {
      closed = true;
      if (timer) clearTimeout(timer);
      await client?.end().catch(() => undefined);
    },
  };
}
