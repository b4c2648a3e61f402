import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../platform/logger.ts';

/** A real pino logger whose JSON lines land in `lines`, for asserting what was logged. */
export function capturingLogger(): {
  logger: Logger;
  lines: string[];
  logged: (msg: string) => boolean;
} {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString('utf8'));
      done();
    },
  });
  return {
    logger: createLogger({ level: 'info' }, sink),
    lines,
    logged: (msg) => lines.some((l) => l.includes(`"msg":"${msg}"`)),
  };
}
