import { pino, type DestinationStream, type Logger } from 'pino';
import { PinoPretty } from 'pino-pretty';

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

export type LogFormat = 'auto' | 'json' | 'pretty';

/** `auto` is human-readable in a terminal and JSON lines when piped (to a file or a shipper). */
export function prettyLogs(format: LogFormat, isTTY: boolean | undefined): boolean {
  return format === 'pretty' || (format === 'auto' && isTTY === true);
}

/**
 * A pino logger. Pretty output is formatted in-process and written synchronously (no transport
 * worker thread), after redaction: the same fields are hidden either way.
 */
export function createLogger(
  options: { level?: string; name?: string; format?: LogFormat } = {},
  destination?: DestinationStream,
): Logger {
  const pretty = prettyLogs(options.format ?? 'json', process.stdout.isTTY);
  const target =
    pretty && !destination
      ? PinoPretty({ sync: true, colorize: process.stdout.isTTY === true, ignore: 'name' })
      : destination;
  return pino(
    {
      name: options.name ?? 'keytrail',
      level: options.level ?? 'info',
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    target,
  );
}
