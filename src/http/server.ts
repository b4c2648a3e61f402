import { createServer, type RequestListener, type Server } from 'node:http';

/**
 * Idle keep-alive connections stay open 65 s, longer than the 60 s idle timeout common in load
 * balancers: the proxy, not Node, closes an idle connection, so a request is never sent on a
 * socket Node is closing at that moment (Node's default, 5 s, races clients that reuse sockets
 * and shows up as 502s behind a proxy). Headers must arrive within 66 s (above keep-alive).
 */
export const KEEP_ALIVE_TIMEOUT_MS = 65_000;

export function createHttpServer(app: RequestListener): Server {
  const server = createServer(app);
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  server.headersTimeout = KEEP_ALIVE_TIMEOUT_MS + 1_000;
  return server;
}
