import { randomUUID } from 'node:crypto';
import {
  createServer,
  IncomingMessage,
  ServerResponse,
  STATUS_CODES,
  type RequestListener,
  type Server,
} from 'node:http';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { AppError, type ErrorCode } from '../platform/errors.ts';
import { PROBLEM_CONTENT_TYPE, toProblem } from './problem.ts';

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

/** The code of a request Node's parser refused, as Node's own default answer picks its status. */
function parserErrorCode(error: NodeJS.ErrnoException): ErrorCode {
  switch (error.code) {
    // llhttp has no separate limit for the request line: a 40 KB URL overflows the headers too.
    case 'HPE_HEADER_OVERFLOW':
      return 'headers_too_large';
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return 'payload_too_large';
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return 'request_timeout';
    default:
      return 'malformed_request';
  }
}

type InFlight = {
  req?: { complete?: boolean };
  headersSent?: boolean;
  shouldKeepAlive?: boolean;
  writableFinished?: boolean;
  once(event: 'close', listener: () => void): unknown;
};

const closing = new WeakSet<Duplex>();

/**
 * A request the parser refused gets a problem document, as every other error does, instead of
 * Node's bare status line; then the connection closes (the parser cannot resume mid-stream).
 * Nothing is written when the client is gone. When the error is in a later request pipelined
 * behind one still being answered (its request complete, its response not finished), a 400
 * written now would reach the client as that earlier request's answer: nothing is written, the
 * answer in flight is sent with `Connection: close` (when its head is not out yet) and the
 * connection is closed once it is done. Node's own default writes its 400 whenever the answer
 * in flight has not started, and destroys the connection under it.
 */
export function answerClientError(error: NodeJS.ErrnoException, socket: Duplex): void {
  const current = (socket as { _httpMessage?: InFlight | null })._httpMessage;
  if (error.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  if (current && !current.writableFinished && current.req?.complete !== false) {
    closeAfter(current, socket);
    return;
  }
  if (current?.headersSent) {
    socket.destroy();
    return;
  }
  const problem = toProblem(new AppError(parserErrorCode(error)), randomUUID());
  const body = JSON.stringify(problem);
  const head = [
    `HTTP/1.1 ${problem.status} ${STATUS_CODES[problem.status] ?? 'Error'}`,
    `Content-Type: ${PROBLEM_CONTENT_TYPE}`,
    `Content-Length: ${Buffer.byteLength(body)}`,
    `X-Request-Id: ${problem.request_id}`,
    'Connection: close',
  ].join('\r\n');
  socket.end(`${head}\r\n\r\n${body}`, () => socket.destroy());
}

/** Lets the answer in flight finish, then closes; the parser may report the error again. */
function closeAfter(current: InFlight, socket: Duplex): void {
  if (closing.has(socket)) return;
  closing.add(socket);
  socket.pause();
  if (!current.headersSent) current.shouldKeepAlive = false;
  // 'close' follows 'finish' (the last byte written) or an aborted answer.
  current.once('close', () => socket.destroy());
}

export function createHttpServer(app: ExpressLike): Server {
  const server = createServer(messageClasses(app), app);
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  server.headersTimeout = KEEP_ALIVE_TIMEOUT_MS + 1_000;
  server.on('clientError', answerClientError);
  return server;
}
