/**
 * Every flag a command's parser accepts is in the command list (`keytrail help`), in the group's
 * list of subcommands and in the command's own --help; and no listed flag is unknown to it. The
 * flags are read from the parser itself: each command is run once with an unknown flag, which
 * its parseFlags call refuses before anything else happens.
 */
import type { ParseArgsOptionsConfig } from 'node:util';
import { describe, expect, it, vi } from 'vitest';
import type { Command, Group } from './cli.command.ts';
import type { CliIo } from './cli.runtime.ts';
import type * as CliArgs from './cli.args.ts';

const parsed = vi.hoisted(() => new Map<string, ParseArgsOptionsConfig>());
vi.mock('./cli.args.ts', async (importOriginal) => {
  const actual = await importOriginal<typeof CliArgs>();
  return {
    ...actual,
    parseFlags: (command: string, args: string[], options: ParseArgsOptionsConfig) => {
      parsed.set(command, options);
      return actual.parseFlags(command, args, options);
    },
  };
});

const { ENTRIES, USAGE } = await import('./cli.ts');

const io: CliIo = {
  stdout: { write: () => true },
  stderr: { write: () => true },
  env: {},
  openRuntime: () => Promise.reject(new Error('no database in this test')),
  serve: () => Promise.reject(new Error('not here')),
  work: () => Promise.reject(new Error('not here')),
};

/** The synopsis of each entry of a "commands:" list: `name --flag ...`, description cut off. */
function synopses(text: string): string[] {
  const list = text.slice(text.indexOf('commands:\n') + 'commands:\n'.length);
  const lines = list.slice(0, list.search(/\n\n|$/)).split('\n');
  return lines.filter((l) => /^ {2}\S/.test(l)).map((l) => l.trim().split(/\s{2,}/)[0] ?? '');
}

const flagsIn = (text: string): string[] =>
  [...new Set([...text.matchAll(/--([a-z][a-z-]*)/g)].map((m) => m[1] ?? ''))].sort();

const entryFor = (list: string[], name: string): string | undefined =>
  list.find((s) => s === name || s.startsWith(`${name} `));

type Listed = { command: Command; group: Group | undefined };
const all: Listed[] = [...ENTRIES.values()].flatMap<Listed>((entry) =>
  'commands' in entry
    ? entry.commands.map((command) => ({ command, group: entry }))
    : [{ command: entry, group: undefined }],
);

describe('help texts', () => {
  it.each(all.map((c) => [c.command.name, c] as const))(
    '%s: every flag its parser knows is listed, and nothing else',
    async (name, { command, group }) => {
      parsed.delete(name);
      await expect(command.run(['--zz-unknown-probe'], io)).rejects.toThrow(/zz-unknown-probe/);
      const options = parsed.get(name);
      expect(options, `${name} parses its flags with parseFlags`).toBeDefined();
      const flags = Object.keys(options ?? {}).sort();

      const top = entryFor(synopses(USAGE), name);
      expect(top, `keytrail help lists ${name}`).toBeDefined();
      expect(flagsIn(top ?? ''), `keytrail help: ${top}`).toEqual(flags);

      const own = command.help.split('\n')[0] ?? '';
      expect(own.startsWith(`usage: keytrail ${name}`)).toBe(true);
      expect(flagsIn(own), `${name} --help: ${own}`).toEqual(flags);
      const described = command.help.slice(command.help.indexOf('\noptions:\n'));
      expect(flagsIn(described).filter((f) => f !== 'help')).toEqual(flags);

      if (group) {
        const sub = entryFor(synopses(group.help), name.slice(group.name.length + 1));
        expect(sub, `keytrail ${group.name} --help lists ${name}`).toBeDefined();
        expect(flagsIn(sub ?? ''), `keytrail ${group.name} --help: ${sub}`).toEqual(flags);
      }
    },
  );
});
