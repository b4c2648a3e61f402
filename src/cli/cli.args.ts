import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';

/** Wrong invocation: exit 2 with one line pointing at the command's --help. */
export class UsageError extends Error {
  override name = 'UsageError';
  /** The command whose --help the message points to (the top level when undefined). */
  readonly command: string | undefined;
  constructor(message: string, command?: string) {
    super(message);
    this.command = command;
  }
}

// Names and values typed by a user (or stored by one) go into a terminal: no escape sequences.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;
export const printable = (text: string): string => text.replace(CONTROL, '?');

/** A user-supplied value quoted for a one-line message. */
export const quote = (text: string): string => `"${printable(text)}"`;

/** `--help` or `-h` anywhere before a `--` asks for the command's help, whatever else is given. */
export function wantsHelp(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  return (end === -1 ? args : args.slice(0, end)).some((a) => a === '--help' || a === '-h');
}

/** node:util parseArgs, strict, no positionals; its errors (unknown option, ...) are usage errors. */
export function parseFlags<T extends ParseArgsOptionsConfig>(
  command: string,
  args: string[],
  options: T,
) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new UsageError(`${command}: ${(error as Error).message}`, command);
  }
}

/** A whole number flag within [min, max]; digits only (no sign, exponent, hex or blanks). */
export function intFlag(
  command: string,
  flag: string,
  raw: string | undefined,
  range: { min: number; max: number },
): number | undefined {
  if (raw === undefined) return undefined;
  const n = /^\d{1,10}$/.test(raw) ? Number(raw) : NaN;
  if (!(n >= range.min && n <= range.max)) {
    throw new UsageError(
      `${command}: --${flag} must be a whole number from ${range.min} to ${range.max}, got ${quote(raw)}`,
      command,
    );
  }
  return n;
}
