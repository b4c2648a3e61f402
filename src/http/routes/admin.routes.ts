/**
 * The admin web app (SPEC §7), served from its bundle (dist/ui, built by src/ui/build.ts) by the
 * same process, under a strict Content-Security-Policy: only our own script, style and API; no
 * inline script or style; never framed. Hash routing: /admin is the one HTML entry.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import express, { Router, type RequestHandler } from 'express';
import { AppError } from '../../platform/errors.ts';
import { requestId } from '../middleware/request-context.ts';
import { sendProblem, toProblem } from '../problem.ts';

export const ADMIN_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const NOT_BUILT = 'the admin UI is not built: run `node src/ui/build.ts` (make start does)';

const securityHeaders: RequestHandler = (_req, res, next) => {
  res.set({
    'Content-Security-Policy': ADMIN_CSP,
    'Referrer-Policy': 'no-referrer',
    'X-Content-Type-Options': 'nosniff',
    'X-Frame-Options': 'DENY',
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Cross-Origin-Resource-Policy': 'same-origin',
  });
  next();
};

/** dist/ui of the checkout or of the installed package: both have package.json at the root. */
export function uiDirectory(from = import.meta.dirname): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return path.join(dir, 'dist', 'ui');
    if (path.dirname(dir) === dir) return path.join(from, 'dist', 'ui');
  }
}

export function adminRoutes(dir = uiDirectory()): Router {
  const router = Router();
  const index = path.join(dir, 'index.html');
  router.use(securityHeaders);
  router.get(['/', '/index.html'], (req, res) => {
    if (!existsSync(index)) {
      // Sent here, not thrown: the error handler makes every 5xx detail generic, and this fixed
      // sentence (nothing internal in it) is what the person at the browser needs.
      const problem = toProblem(new AppError('service_unavailable'), requestId(req, res));
      sendProblem(res, { ...problem, detail: NOT_BUILT });
      return;
    }
    // The page holds no data; never cached, so a new bundle is picked up at once.
    res.set('Cache-Control', 'no-store').sendFile(index);
  });
  // Bundle names are not hashed: revalidate (ETag) on every load.
  router.use(express.static(dir, { index: false, redirect: false, maxAge: 0, dotfiles: 'deny' }));
  return router;
}
