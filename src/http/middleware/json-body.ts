/**
 * Request bodies: JSON only, parsed with as little machinery as the request needs (issue 12).
 * A request without a body (every GET) passes straight through; a plain UTF-8 JSON body of a
 * known length is read from its 'data' events and parsed; anything else (chunked, compressed,
 * another charset, too large) goes to express.json, whose errors the error handler maps.
 */
import express, {
  type NextFunction,
  type Request,
  type RequestHandler,
  type Response,
} from 'express';
import { inCurrentScope } from '../../platform/db-scope.ts';
import { AppError } from '../../platform/errors.ts';

const JSON_TYPES = ['application/json', 'application/*+json'];
/** Content types the fast path reads itself: JSON with no parameter or `charset=utf-8`. */
const PLAIN_JSON =
  /^application\/(?:[\w.+-]+\+)?json\s*(?:;\s*charset\s*=\s*(?:utf-8|"utf-8")\s*)?$/i;

/** Fails like body-parser does, so the error handler answers the same problem. */
const bodyError = (type: string, message: string) =>
  Object.assign(new Error(message), { type, status: 400, expose: true });

/** body-parser's strict mode: an object or an array, after optional whitespace. */
function parseStrict(text: string): unknown {
  if (text.length === 0) return {};
  const first = /\S/.exec(text)?.[0];
  if (first !== '{' && first !== '[') throw bodyError('entity.parse.failed', 'not a JSON object');
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw bodyError('entity.parse.failed', String(error));
  }
}

/** Reads exactly `length` bytes of a plain JSON body into req.body. */
function readPlain(req: Request, length: number, next: NextFunction): void {
  const chunks: Buffer[] = [];
  let received = 0;
  let settled = false;
  const done = (error?: unknown) => {
    if (settled) return;
    settled = true;
    req.off('data', onData);
    next(error);
  };
  const onData = (chunk: Buffer) => {
    received += chunk.length;
    if (received <= length) chunks.push(chunk);
  };
  req.on('data', onData);
  req.once('error', done);
  req.once('aborted', () => done(bodyError('request.aborted', 'the request was aborted')));
  req.once('end', () => {
    if (received !== length) {
      done(bodyError('request.size.invalid', 'the body does not match its Content-Length'));
      return;
    }
    try {
      const bytes = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
      req.body = parseStrict(bytes.toString('utf8'));
      done();
    } catch (error) {
      done(error);
    }
  });
}

/** The app's body middleware: 415 for a body that is not JSON, `limit` in bytes. */
export function jsonBody(limit: number): RequestHandler {
  const general = express.json({ limit, type: JSON_TYPES });
  return (req: Request, res: Response, next: NextFunction): void => {
    const { headers } = req;
    const chunked = headers['transfer-encoding'] !== undefined;
    const length = Number(headers['content-length'] ?? 0);
    if (!chunked && !(length > 0)) {
      next();
      return;
    }
    // A plain JSON type needs no full media-type parse (type-is was ~1 % of a verify call).
    const plainType = PLAIN_JSON.test(headers['content-type'] ?? '');
    if (!plainType && !req.is(JSON_TYPES)) {
      throw new AppError('unsupported_media_type', { detail: 'send the body as application/json' });
    }
    const encoding = headers['content-encoding'];
    const plain =
      plainType &&
      !chunked &&
      length <= limit &&
      (encoding === undefined || encoding === 'identity');
    // The body's 'end' event runs outside the request's async context: the rest of the chain
    // must get it back (its database scope: statements cancelled when the client leaves).
    const resume = inCurrentScope(next) as NextFunction;
    if (plain) readPlain(req, length, resume);
    else general(req, res, resume);
  };
}
