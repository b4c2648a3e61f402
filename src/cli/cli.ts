/**
 * The keytrail CLI, as a function: `runCli(argv, io)` returns the exit code. bin/keytrail.ts
 * injects the process (streams, env, runtime, serve/worker); tests inject their own.
 * Exit codes: 0 success, 1 failure (one line on stderr), 2 usage or configuration error.
 */
import { ConfigError } from '../platform/config.ts';
import { AppError, type ErrorCode } from '../platform/errors.ts';
import { parseFlags, printable, UsageError, wantsHelp } from './cli.args.ts';
import { HELP_LINE, type Command, type Group } from './cli.command.ts';
import type { CliIo } from './cli.runtime.ts';
import { ingestCommands } from './ingest.command.ts';
import { keysCommands } from './keys.command.ts';
import { orgCommands } from './org.command.ts';
import { partitionsCommands } from './partitions.command.ts';
import { pruneCommand, rollupsCommands } from './prune.command.ts';

export type { CliIo, CliRuntime, Writer } from './cli.runtime.ts';

export const USAGE = `usage: keytrail <command> [options]      (keytrail <command> --help: its options)

commands:
  serve [--no-worker]                       run the API and the usage worker (or the API alone)
  worker                                    run the usage worker alone
  migrate [--json]                          apply pending database migrations
  org create --name N [--json]              create an org and print its org:admin key (shown once)
  keys create --org ID --scopes S[,S] [--name N] [--expires-at T] [--json]
                                            create a key as the operator (any scope, e.g.
                                            org:admin) and print it (shown once)
  keys dormant --org ID [--days N] [--json] [--revoke [--dry-run]]
                                            list (or revoke) the org's dormant keys
  partitions list [--json]                  list the usage-event partitions (rows, size, storage)
  partitions ensure [--months-ahead N] [--json]
                                            create this month's partition and the N next ones
  partitions compress [--dry-run] [--json]  on Citus: closed months to columnar storage
  prune [--retention-days N] [--dry-run] [--json]
                                            drop event partitions and rollups past retention,
                                            audit expired keys
  rollups rebuild --from D --to D [--json]  recompute the rollups of days D..D from raw events
  ingest replay-dead [--dry-run] [--json]   move dead-lettered usage ingest jobs back to the
                                            ingest queue and print how many

The database is DATABASE_URL (with KEYTRAIL_KEY_PEPPER), else the embedded Postgres under ./.data.
Exit status: 0 success, 1 failure, 2 usage or configuration error.
`;

const serveCommand: Command = {
  name: 'serve',
  help: `usage: keytrail serve [--no-worker]

Migrates, then runs the HTTP API and the usage worker until SIGINT/SIGTERM.

options:
  --no-worker           the API alone (run \`keytrail worker\` processes for ingest)
${HELP_LINE}
`,
  async run(args, io) {
    const values = parseFlags('serve', args, { 'no-worker': { type: 'boolean', default: false } });
    await io.serve({ worker: !values['no-worker'] });
    return 0;
  },
};

const workerCommand: Command = {
  name: 'worker',
  help: `usage: keytrail worker

Migrates, then runs the usage worker alone until SIGINT/SIGTERM (/metrics and /healthz on
KEYTRAIL_WORKER_METRICS_PORT).

options:
${HELP_LINE}
`,
  async run(args, io) {
    parseFlags('worker', args, {});
    await io.work();
    return 0;
  },
};

const migrateCommand: Command = {
  name: 'migrate',
  help: `usage: keytrail migrate [--json]

Applies pending database migrations; prints "applied: <names>" or "up to date".

options:
  --json                print {"applied": [names]}
${HELP_LINE}
`,
  async run(args, io) {
    const values = parseFlags('migrate', args, { json: { type: 'boolean', default: false } });
    const runtime = await io.openRuntime(io.env);
    let applied: string[];
    try {
      applied = await runtime.migrate();
    } finally {
      await runtime.stop();
    }
    io.stdout.write(
      values.json
        ? `${JSON.stringify({ applied })}\n`
        : applied.length > 0
          ? `applied: ${applied.join(', ')}\n`
          : 'up to date\n',
    );
    return 0;
  },
};

/** Every command and group, by name (the help test reads their flags from here). */
export const ENTRIES = new Map<string, Command | Group>(
  [
    serveCommand,
    workerCommand,
    migrateCommand,
    orgCommands,
    keysCommands,
    partitionsCommands,
    pruneCommand,
    rollupsCommands,
    ingestCommands,
  ].map((entry) => [entry.name, entry]),
);

function run(command: Command, args: string[], io: CliIo): Promise<number> {
  if (!wantsHelp(args)) return command.run(args, io);
  io.stdout.write(command.help);
  return Promise.resolve(0);
}

function dispatch(argv: string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    io.stdout.write(USAGE);
    return Promise.resolve(0);
  }
  const entry = ENTRIES.get(name);
  if (!entry) throw new UsageError(`unknown command: ${printable(name)}`);
  if (!('commands' in entry)) return run(entry, rest, io);
  const [sub, ...args] = rest;
  const command = entry.commands.find((c) => c.name === `${name} ${sub}`);
  if (command) return run(command, args, io);
  if (sub === 'help' || wantsHelp(rest)) {
    io.stdout.write(entry.help);
    return Promise.resolve(0);
  }
  const names = entry.commands.map((c) => c.name.slice(name.length + 1));
  if (sub === undefined) throw new UsageError(`${name} needs a command: ${names.join(', ')}`, name);
  throw new UsageError(`unknown ${name} command: ${printable(sub)}`, name);
}

/** Refusals of what was asked (bad dates, a range before the raw events): usage errors. */
const REFUSALS: ReadonlySet<ErrorCode> = new Set(['validation_failed', 'unprocessable']);

/** Everything on one line, without control characters. */
const oneLine = (text: string): string =>
  printable(
    text
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter(Boolean)
      .join(' '),
  );

function messageOf(error: unknown): string {
  // Connecting to a host with several addresses (localhost: ::1 and 127.0.0.1) fails with an
  // AggregateError whose own message is empty.
  if (error instanceof AggregateError && !error.message) {
    return [...new Set(error.errors.map(messageOf))].join(', ');
  }
  return error instanceof Error ? error.message : String(error);
}

/** The message and its causes ("migration (unknown) failed: connect ECONNREFUSED ..."). */
function describe(error: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = error, depth = 0; e !== undefined && depth < 5; depth++) {
    const message = messageOf(e);
    if (message && !parts.includes(message)) parts.push(message);
    e = e instanceof Error ? e.cause : undefined;
  }
  return oneLine(parts.join(': ') || 'unknown error');
}

function failure(error: unknown): { code: number; line: string } {
  if (error instanceof UsageError) {
    const help = error.command ? `keytrail ${error.command} --help` : 'keytrail --help';
    return { code: 2, line: `${oneLine(error.message)} (see ${help})` };
  }
  if (error instanceof ConfigError) return { code: 2, line: oneLine(error.message) };
  if (error instanceof AppError) {
    return { code: REFUSALS.has(error.code) ? 2 : 1, line: oneLine(error.message) };
  }
  return { code: 1, line: describe(error) };
}

/** Runs one CLI invocation; never throws: every failure is one line on stderr and an exit code. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  try {
    return await dispatch(argv, io);
  } catch (error) {
    const { code, line } = failure(error);
    io.stderr.write(`keytrail: ${line}\n`);
    return code;
  }
}
