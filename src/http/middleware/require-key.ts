import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { AppError } from '../../platform/errors.ts';
import type { Logger } from '../../platform/logger.ts';
import type { KeyAuthenticator } from '../../keys/keys.auth.ts';
import type { MissLimiter } from '../../keys/miss-limiter.ts';
import {
  missingScopes,
  type AuthOutcome,
  type AuthRecord,
  type KeyIdentity,
} from '../../keys/keys.types.ts';
import { ADMITTED } from '../../limits/rate-limiter.ts';
import { refuse, setRateFields } from './limit-answers.ts';
import type { Limits } from '../../limits/limits-sync.ts';
import type { Clock } from '../../platform/clock.ts';
import type { Outcome } from '../../usage/usage.types.ts';
import { sendProblem, toProblem } from '../problem.ts';
import { requestId } from './request-context.ts';
import {
  recordWhenDone,
  requestStart,
  type RecordUsage,
  type RequestStart,
} from './usage-recorder.ts';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** Set by requireKey once the request's key is verified. */
      apiKey?: KeyIdentity;
    }
  }
}

export type RequireKeyOptions = {
  /** Every scope listed must be held (`org:admin` implies the management scopes). */
  scopes?: readonly string[];
  /**
   * Route parameter holding an org id the key must belong to. A key of another org gets 404,
   * checked before scopes so a foreign key learns nothing about what exists.
   */
  orgParam?: string;
};

export function credentialFrom(req: Request): string | undefined {
  const header = req.get('authorization');
  if (header) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    return match?.[1] ?? '';
  }
  return req.get('x-api-key')?.trim();
}

const invalidKey = () => new AppError('unauthenticated', { detail: 'the API key is not valid' });

function admit(req: Request, record: AuthRecord, next: NextFunction): void {
  req.apiKey = {
    id: record.id,
    orgId: record.orgId,
    environment: record.environment,
    scopes: record.scopes,
  };
  next();
}

/** The same for every refused address: it names neither the key's networks nor the address. */
export const ipNotAllowed = () =>
  new AppError('ip_not_allowed', { detail: 'this key may not be used from this address' });

/** Too many lookups of uncached keys from this address (a key-guessing stream). */
export const missesRefused = () =>
  new AppError('rate_limited', {
    detail: 'too many unknown or uncached keys from this address; slow down',
  });

function deny(req: Request, res: Response, error: AppError, challenge: string): void {
  res.setHeader('WWW-Authenticate', challenge);
  sendProblem(res, toProblem(error, requestId(req, res)));
}

/**
 * Express middleware: authenticates the request's key and sets `req.apiKey`. It answers 401/403
 * itself (problem+json) so it works in any Express app, whatever that app's error handler.
 * Missing, malformed, unknown, expired and revoked keys all get the same 401: no oracle.
 */
export function createRequireKey(deps: {
  auth: KeyAuthenticator;
  logger: Logger;
  clock: Clock;
  /** Absent when usage tracking is off: then nothing at all is attached to the response. */
  record: RecordUsage | undefined;
  /** Bounds the cache misses (Postgres lookups) of each client IP. */
  misses: MissLimiter;
  /** Keys' limits (SPEC §11). */
  limits: Limits;
}) {
  const { record: recordUsage } = deps;
  const usage = recordUsage && { record: recordUsage, clock: deps.clock };
  return function requireKey(options: RequireKeyOptions = {}): RequestHandler {
    const required = options.scopes ?? [];

    function decide(
      req: Request,
      res: Response,
      next: NextFunction,
      outcome: AuthOutcome,
      start: RequestStart | undefined,
    ): void {
      if (!('record' in outcome)) {
        deny(req, res, invalidKey(), 'Bearer error="invalid_token"');
        return;
      }
      const { record } = outcome;
      // A known key is tracked whatever happens next; a refused attempt is a denied event.
      let tracked: Outcome | null =
        outcome.code === 'VALID' ? 'success' : outcome.code === 'REVOKED' ? 'revoked' : 'expired';
      if (usage && start) {
        recordWhenDone(
          req,
          res,
          usage,
          { keyId: record.id, orgId: record.orgId, outcome: () => tracked },
          start,
        );
      }
      if (outcome.code !== 'VALID') {
        deny(req, res, invalidKey(), 'Bearer error="invalid_token"');
        return;
      }
      // Before the org check: an address the key may not be used from learns nothing more.
      const limits = record.limits;
      if (limits?.allowsIp && !limits.allowsIp(req.ip)) {
        tracked = 'ip_denied';
        deps.limits.decisions.ipDenied += 1;
        sendProblem(res, toProblem(ipNotAllowed(), requestId(req, res)));
        return;
      }
      if (options.orgParam && req.params[options.orgParam] !== record.orgId) {
        sendProblem(res, toProblem(new AppError('not_found'), requestId(req, res)));
        return;
      }
      const missing = missingScopes(record.scopes, required);
      if (missing.length > 0) {
        tracked = 'insufficient_scope';
        const detail = `this operation requires the scope(s): ${missing.join(', ')}`;
        const challenge = `Bearer error="insufficient_scope", scope="${required.join(' ')}"`;
        deny(req, res, new AppError('insufficient_scope', { detail }), challenge);
        return;
      }
      if (!limits || (!limits.rate && !limits.quota)) {
        admit(req, record, next);
        return;
      }
      deps.limits.limiter.decideThen(limits, 1, (verdict) => {
        setRateFields(res, deps.limits, limits);
        if (verdict === ADMITTED) {
          admit(req, record, next);
          return;
        }
        tracked = refuse(req, res, deps.limits, limits, verdict);
      });
    }

    // Not async: a cached key is decided without a promise; only a cache miss waits for Postgres.
    return (req: Request, res: Response, next: NextFunction): void => {
      const start = recordUsage ? requestStart(deps.clock) : undefined;
      const candidate = credentialFrom(req);
      if (!candidate) {
        deny(
          req,
          res,
          new AppError('unauthenticated', { detail: 'an API key is required' }),
          'Bearer',
        );
        return;
      }
      const cached = deps.auth.authenticateCached(candidate);
      if (cached) {
        decide(req, res, next, cached, start);
        return;
      }
      if (!deps.misses.allow(req.ip)) {
        res.setHeader('retry-after', String(deps.misses.retryAfterSeconds()));
        sendProblem(res, toProblem(missesRefused(), requestId(req, res)));
        return;
      }
      deps.auth.authenticate(candidate).then(
        (outcome) => {
          if (outcome.code === 'NOT_FOUND') deps.misses.charge(req.ip);
          decide(req, res, next, outcome, start);
        },
        (error: unknown) => {
          deps.logger.error({ err: error, request_id: requestId(req, res) }, 'key lookup failed');
          sendProblem(res, toProblem(new AppError('service_unavailable'), requestId(req, res)));
        },
      );
    };
  };
}

export type RequireKey = ReturnType<typeof createRequireKey>;
