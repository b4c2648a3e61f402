import type { CliIo } from './cli.runtime.ts';

/** One command (`prune`) or subcommand (`keys dormant`): its help text and what it runs. */
export type Command = {
  /** As typed: `keys dormant`. */
  name: string;
  /** Printed by `--help`: synopsis, what it does, options. */
  help: string;
  /** Parses `args` (the words after the command's name) and runs; returns the exit code. */
  run(args: string[], io: CliIo): Promise<number>;
};

/** A command with subcommands (`keys`, `partitions`, `org`, `rollups`). */
export type Group = { name: string; help: string; commands: Command[] };

export const HELP_LINE = '  -h, --help            show this help';
