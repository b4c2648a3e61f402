import { createKeytrail, type Keytrail } from '../keytrail.ts';
import type { Config } from '../platform/config.ts';
import { createLogger } from '../platform/logger.ts';

export type Writer = { write(text: string): unknown };

/** What a command needs of src/main.ts's runtime; the entry point adapts it. */
export type CliRuntime = {
  config: Config;
  /** Applies pending migrations; returns their names. */
  migrate(): Promise<string[]>;
  stop(): Promise<void>;
};

/**
 * Everything process-level a command touches, injected by bin/keytrail.ts (and by tests):
 * output streams, the environment, the runtime, and the long-running entry points.
 */
export type CliIo = {
  stdout: Writer;
  stderr: Writer;
  env: Record<string, string | undefined>;
  /** Parses `env` (ConfigError when invalid) and connects: DATABASE_URL or the embedded cluster. */
  openRuntime(env: Record<string, string | undefined>): Promise<CliRuntime>;
  /** `keytrail serve`: resolves once listening; the process then runs until a signal. */
  serve(options: { worker: boolean }): Promise<void>;
  /** `keytrail worker`: resolves once running. */
  work(): Promise<void>;
};

/**
 * Runs `fn` with a migrated keytrail on the configured (or embedded) database, then closes
 * everything. Logs go to stderr, so stdout carries only the command's output (`--json` pipes).
 */
export async function withKeytrail<T>(io: CliIo, fn: (kt: Keytrail) => Promise<T>): Promise<T> {
  const runtime = await io.openRuntime(io.env);
  try {
    await runtime.migrate();
    const logger = createLogger({ level: runtime.config.logLevel }, io.stderr);
    const kt = createKeytrail(runtime.config, { logger, deadlines: false });
    try {
      return await fn(kt);
    } finally {
      await kt.close();
    }
  } finally {
    await runtime.stop();
  }
}
