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

type PoolUse = { inUse: number; waiters: (() => void)[] };

type Scope = {
  signal: AbortSignal;
  held: Set<pg.PoolClient>;
  /** Checkouts asked for and not yet given or refused. */
  pending: number;
  /** Per pool with a per-request cap: connections held and checkouts waiting their turn. */
  pools: Map<pg.Pool, PoolUse>;
  /** Resolved when the scope holds no connection and asks for none. */
  idleWaiters: (() => void)[];
};

const storage = new AsyncLocalStorage<Scope>();

/** CancelRequests sent for abandoned requests, and those that could not be delivered. */
export const cancelStats = { sent: 0, failed: 0 };

/** Thrown when a request that has been abandoned asks for a connection. */
class RequestAbandonedError extends Error {
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
export function cancelBackend(client: pg.PoolClient): Promise<boolean> {
  const target = client as unknown as CancelTarget;
  if (target.processID === null || target.secretKey === null) return Promise.resolve(false);
  const message = Buffer.alloc(16);
  message.writeInt32BE(16, 0);
  message.writeInt32BE(CANCEL_REQUEST_CODE, 4);
  message.writeInt32BE(target.processID, 8);
  message.writeInt32BE(target.secretKey, 12);
  return new Promise((resolve) => {
    let delivered = false;
    const socket = target.host.startsWith('/')
      ? net.connect(`${target.host}/.s.PGSQL.${target.port}`)
      : net.connect(target.port, target.host);
    socket.unref(); // never holds a shutdown
    socket.setTimeout(5_000, () => socket.destroy());
    socket.once('connect', () => socket.end(message, () => (delivered = true)));
    socket.once('error', () => undefined);
    socket.once('close', () => {
      if (delivered) cancelStats.sent += 1;
      else cancelStats.failed += 1;
      resolve(delivered);
    });
  });
}

function abandon(scope: Scope): void {
  for (const client of scope.held) {
    // Runs inside an 'abort' listener: a throw here would be an uncaught exception.
    try {
      void cancelBackend(client);
    } catch {
      cancelStats.failed += 1;
    }
  }
}

function settleIdle(scope: Scope): void {
  if (scope.held.size > 0 || scope.pending > 0) return;
  for (const resolve of scope.idleWaiters.splice(0)) resolve();
}

/** Runs `fn` (and everything it starts) in a scope that `signal` abandons. */
export function runInDbScope<T>(signal: AbortSignal, fn: () => T): T {
  const scope: Scope = {
    signal,
    held: new Set(),
    pending: 0,
    pools: new Map(),
    idleWaiters: [],
  };
  signal.addEventListener('abort', () => abandon(scope), { once: true });
  return storage.run(scope, fn);
}

/**
 * Captures the current request's scope; the function returned resolves once that request holds
 * no pooled connection and waits for none: after an abandon, when its cancelled statements have
 * really ended. (Captured here: event listeners do not run in the request's context.)
 */
export function scopeIdle(): () => Promise<void> {
  const scope = storage.getStore();
  return () => {
    if (!scope || (scope.held.size === 0 && scope.pending === 0)) return Promise.resolve();
    return new Promise((resolve) => scope.idleWaiters.push(resolve));
  };
}

/** `fn`, bound to the current request's scope: for callbacks run from an emitter's event. */
export function inCurrentScope<A extends unknown[]>(
  fn: (...args: A) => void,
): (...args: A) => void {
  const scope = storage.getStore();
  return scope ? (...args: A) => storage.run(scope, () => fn(...args)) : fn;
}

/**
 * Runs `fn` outside any request's scope: work that several requests share (one key lookup
 * awaited by every request presenting that key) must not be cancelled because one of them left.
 */
export function detachedFromRequest<T>(fn: () => T): T {
  return storage.exit(fn);
}

/** Waits until the scope holds fewer than `max` connections of `pool`, then counts one more. */
async function takeTurn(scope: Scope, pool: pg.Pool, max: number): Promise<PoolUse> {
  const use = scope.pools.get(pool) ?? { inUse: 0, waiters: [] };
  scope.pools.set(pool, use);
  if (use.inUse >= max) await new Promise<void>((resolve) => use.waiters.push(resolve));
  use.inUse += 1;
  return use;
}

/**
 * Checks a connection out of `pool`, tracked by the current request's scope (if any). With
 * `perRequest`, a request holds at most that many connections of the pool at once (its other
 * statements wait their turn inside the request, not in the pool's queue).
 */
export async function connectTracked(pool: pg.Pool, perRequest?: number): Promise<pg.PoolClient> {
  const scope = storage.getStore();
  if (!scope) return pool.connect();
  if (scope.signal.aborted) throw new RequestAbandonedError();
  scope.pending += 1;
  let use: PoolUse | undefined;
  let client: pg.PoolClient;
  try {
    if (perRequest) use = await takeTurn(scope, pool, perRequest);
    client = await pool.connect();
  } catch (error) {
    giveTurn(use);
    throw error;
  } finally {
    scope.pending -= 1;
  }
  if (scope.signal.aborted) {
    client.release();
    giveTurn(use);
    settleIdle(scope);
    throw new RequestAbandonedError();
  }
  scope.held.add(client);
  // pg-pool gives each checkout its own release function (it ignores `this`); ours wraps it.
  const release = client.release.bind(client);
  client.release = (error?: Error | boolean) => {
    scope.held.delete(client);
    // Held when the request was abandoned, so its statement was cancelled (a checkout after the
    // abandon never gets here). Kysely releases with `false` when all went well: the connection
    // is destroyed whatever the caller says, so a late CancelRequest never reaches another request.
    release(scope.signal.aborted ? new Error('statement cancelled') : error);
    giveTurn(use);
    settleIdle(scope);
  };
  return client;
}

function giveTurn(use: PoolUse | undefined): void {
  if (!use) return;
  use.inUse -= 1;
  use.waiters.shift()?.();
}

/** The pool as Kysely's PostgresDialect sees it, its checkouts tracked per request. */
export function trackedPool(pool: pg.Pool, perRequest?: number) {
  return {
    connect: () => connectTracked(pool, perRequest),
    end: () => pool.end(),
    options: pool.options as object,
  };
}
