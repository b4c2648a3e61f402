import {
  createServer,
  IncomingMessage,
  ServerResponse,
  type RequestListener,
  type Server,
} from 'node:http';
import type { Socket } from 'node:net';

/**
 * Idle keep-alive connections stay open 65 s, longer than the 60 s idle timeout common in load
 * balancers: the proxy, not Node, closes an idle connection, so a request is never sent on a
 * socket Node is closing at that moment (Node's default, 5 s, races clients that reuse sockets
 * and shows up as 502s behind a proxy). Headers must arrive within 66 s (above keep-alive).
 */
export const KEEP_ALIVE_TIMEOUT_MS = 65_000;

/** What an Express app gives its requests and responses as prototypes. */
type ExpressLike = RequestListener & { request?: object; response?: object };

/**
 * Request and response classes whose instances are born with the Express app's prototypes.
 * Express sets them on every request (`Object.setPrototypeOf(req, app.request)`); changing an
 * object's prototype after its birth makes V8 drop its fast property access, which every later
 * middleware paid for (issue 12). With these, that call finds the prototype already in place.
 */
export function messageClasses(app: ExpressLike) {
  const { request, response } = app;
  if (!request || !response) return {};
  function Request(this: unknown, socket: Socket) {
    return Reflect.construct(IncomingMessage, [socket], Request) as IncomingMessage;
  }
  Request.prototype = request;
  function Response(this: unknown, req: IncomingMessage, options?: object) {
    return Reflect.construct(ServerResponse, [req, options], Response) as ServerResponse;
  }
  Response.prototype = response;
  return {
    IncomingMessage: Request as unknown as typeof IncomingMessage,
    ServerResponse: Response as unknown as typeof ServerResponse,
  };
}

export function createHttpServer(app: ExpressLike): Server {
  const server = createServer(messageClasses(app), app);
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  server.headersTimeout = KEEP_ALIVE_TIMEOUT_MS + 1_000;
  return server;
}
