import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/**
 * Paths that could carry key material. Handlers log key ids and prefixes only; these are a
 * second line of defence should a request or body ever reach a log call.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'headers.authorization',
  'headers["x-api-key"]',
  'key',
  '*.key',
  'key_hash',
  '*.key_hash',
  'keyHash',
  '*.keyHash',
  'operatorToken',
  'pepper',
];

export function createLogger(
  options: { level?: string; name?: string } = {},
  destination?: DestinationStream,
): Logger {
  return pino(
    {
      name: options.name ?? 'keytrail',
      level: options.level ?? 'info',
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}
