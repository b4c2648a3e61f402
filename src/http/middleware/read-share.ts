import type { RequestHandler, Response } from 'express';
import type { Keytrail } from '../../keytrail.ts';
import { AppError } from '../../platform/errors.ts';
import { scopeIdle } from '../../platform/db-scope.ts';
import { GateRefusedError } from '../../platform/keyed-gate.ts';
import { requestSignal } from './request-context.ts';

/**
 * Holds one of the org's read slots until the response closes (SPEC §9: one org's raw-event
 * pages, analytics and audit reads cannot take the connections other orgs need). A read waits
 * its turn without a connection; a full queue or a long wait is a 429 the client can retry.
 */
export async function holdReadSlot(kt: Keytrail, orgId: string, res: Response): Promise<void> {
  try {
    const release = await kt.readGate.acquire(orgId, requestSignal(res));
    // The slot comes back when the response has closed and the request's statements have
    // really ended (a cancelled one included), never while its connection is still busy.
    const idle = scopeIdle();
    const done = () => void idle().then(release);
    if (res.closed) done();
    else res.once('close', done);
  } catch (error) {
    if (!(error instanceof GateRefusedError)) throw error;
    throw new AppError('rate_limited', {
      detail: `this org already runs ${kt.readGate.limits.perKey} expensive reads at once (raw events, analytics, audit) and others wait; retry shortly`,
      retryAfterSeconds: 1,
    });
  }
}

/** `holdReadSlot` for routes whose every request is an expensive read of `:orgId`. */
export function readShare(kt: Keytrail): RequestHandler {
  return async (req, res, next) => {
    await holdReadSlot(kt, req.params.orgId as string, res);
    next();
  };
}
