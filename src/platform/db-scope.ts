/**
 * A request's database scope: every pooled connection a request checks out is tracked while it
 * is held, and when the request is abandoned (the client left before its answer) each one's
 * running statement is cancelled with the protocol's CancelRequest — so a backend scanning for a
 * page nobody will read, or a COPY whose socket is gone, stops at once instead of running to its
 * statement timeout (SPEC §9). A cancelled connection is destroyed on release, never pooled: a
 * cancel that arrives late must not hit the next request's statement.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import net from 'node:net';
import type pg from 'pg';

type Scope = {
  signal: AbortSignal;
  held: Set<pg.PoolClient>;
  cancelled: WeakSet<pg.PoolClient>;
};

const storage = new AsyncLocalStorage<Scope>();

/** Thrown when a request that has been abandoned asks for a connection. */
export class RequestAbandonedError extends Error {
  override name = 'RequestAbandonedError';
  constructor() {
    super('the client left; its statements were cancelled');
  }
}

/** The backend's identity for CancelRequest, kept by pg on every connected client. */
type CancelTarget = {
  processID: number | null;
  secretKey: number | null;
  host: string;
  port: number;
};

const CANCEL_REQUEST_CODE = 80877102;

/**
 * Sends CancelRequest on a fresh socket (no authentication, no pool slot: it works when every
 * connection is busy). Resolves when the server closes it; never rejects (a cancel that cannot
 * be sent leaves the statement to its timeout).
 */
export function cancelBackend(client: pg.PoolClient): Promise<void> {
  const target = client as unknown as CancelTarget;
  if (target.processID === null || target.secretKey === null) return Promise.resolve();
  const message = Buffer.alloc(16);
  message.writeInt32BE(16, 0);
  message.writeInt32BE(CANCEL_REQUEST_CODE, 4);
  message.writeInt32BE(target.processID, 8);
  message.writeInt32BE(target.secretKey, 12);
  return new Promise((resolve) => {
    const socket = target.host.startsWith('/')
      ? net.connect(`${target.host}/.s.PGSQL.${target.port}`)
      : net.connect(target.port, target.host);
    socket.setTimeout(5_000, () => socket.destroy());
    socket.once('connect', () => socket.end(message));
    socket.once('error', () => undefined);
    socket.once('close', () => resolve());
  });
}

function abandon(scope: Scope): void {
  for (const client of scope.held) {
    scope.cancelled.add(client);
    void cancelBackend(client);
  }
}

/** Runs `fn` (and everything it starts) in a scope that `signal` abandons. */
export function runInDbScope<T>(signal: AbortSignal, fn: () => T): T {
  const scope: Scope = { signal, held: new Set(), cancelled: new WeakSet() };
  signal.addEventListener('abort', () => abandon(scope), { once: true });
  return storage.run(scope, fn);
}

/**
 * Runs `fn` outside any request's scope: work that several requests share (one key lookup
 * awaited by every request presenting that key) must not be cancelled because one of them left.
 */
export function detachedFromRequest<T>(fn: () => T): T {
  return storage.exit(fn);
}

/** Checks a connection out of `pool`, tracked by the current request's scope (if any). */
export async function connectTracked(pool: pg.Pool): Promise<pg.PoolClient> {
  const scope = storage.getStore();
  if (scope?.signal.aborted) throw new RequestAbandonedError();
  const client = await pool.connect();
  if (!scope) return client;
  if (scope.signal.aborted) {
    client.release();
    throw new RequestAbandonedError();
  }
  scope.held.add(client);
  // pg-pool gives each checkout its own release function (it ignores `this`); ours wraps it.
  const release = client.release.bind(client);
  client.release = (error?: Error | boolean) => {
    scope.held.delete(client);
    const destroy = scope.cancelled.has(client) ? new Error('statement cancelled') : undefined;
    release(error ?? destroy);
  };
  return client;
}

/** The pool as Kysely's PostgresDialect sees it, its checkouts tracked per request. */
export function trackedPool(pool: pg.Pool) {
  return {
    connect: () => connectTracked(pool),
    end: () => pool.end(),
    options: pool.options as object,
  };
}
