import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { prettyLogs } from './logger.ts';

const LOGGER = path.join(import.meta.dirname, 'logger.ts');
// A process that logs one line with a key in it, as keytrail's entry points would.
const SCRIPT = `import { createLogger } from ${JSON.stringify(LOGGER)};
createLogger({ format: process.argv[1] }).info({ key: 'sk_live_SECRETSECRET', key_id: 'k1' }, 'hello');`;
const logOnce = (format: string) =>
  ['--input-type=module', '-e', SCRIPT, format].map((a) => `'${a.replaceAll("'", `'\\''`)}'`);

describe('log format', () => {
  it('is pretty in a terminal and JSON when piped, unless chosen explicitly', () => {
    expect(prettyLogs('auto', true)).toBe(true);
    expect(prettyLogs('auto', false)).toBe(false);
    expect(prettyLogs('auto', undefined)).toBe(false);
    expect(prettyLogs('json', true)).toBe(false);
    expect(prettyLogs('pretty', false)).toBe(true);
  });

  it('writes JSON lines when stdout is a pipe', () => {
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', SCRIPT, 'auto'], {
      encoding: 'utf8',
    });
    const line = JSON.parse(out) as Record<string, unknown>;
    expect(line).toMatchObject({ msg: 'hello', key: '[redacted]', key_id: 'k1', level: 30 });
  });

  it('writes human-readable lines in a terminal, still redacted', () => {
    // `script` gives the child a pseudo-terminal, as a developer's shell would.
    const command = [process.execPath, ...logOnce('auto')].join(' ');
    const out = execFileSync('script', ['-qec', command, '/dev/null'], { encoding: 'utf8' });
    // eslint-disable-next-line no-control-regex
    const plain = out.replace(/\u001b\[[0-9;]*m/g, '');
    expect(plain).toMatch(/INFO.*hello/);
    expect(plain).toContain('key_id: "k1"');
    expect(plain).toContain('[redacted]');
    expect(plain).not.toContain('SECRETSECRET');
    expect(plain.trimStart().startsWith('{')).toBe(false);
  });
});
