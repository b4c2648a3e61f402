import { describe, expect, it } from 'vitest';
import { intFlag, parseFlags, printable, quote, UsageError, wantsHelp } from './cli.args.ts';
import { bytes, clip, count, dayOrTime, isoOrNull, isoSeconds, table } from './cli.format.ts';
import { dormantText } from './keys.command.ts';
import { partitionsText } from './partitions.command.ts';

describe('CLI formatting', () => {
  it('aligns table columns to their widest cell without trailing blanks', () => {
    expect(
      table(
        ['A', 'BB', 'C'],
        [
          ['xxx', 'y', ''],
          ['z', 'wwww', 'v'],
        ],
      ),
    ).toBe('A    BB    C\nxxx  y\nz    wwww  v\n');
    expect(table(['ONLY'], [])).toBe('ONLY\n');
    // Ragged rows (fewer or more cells than headers) still print.
    expect(table(['A', 'B'], [['1'], ['2', '3', '4']])).toBe('A  B\n1\n2  3  4\n');
  });

  it('formats sizes in 1024 steps and counts with separators', () => {
    expect([0, 1023, 1024, 1536, 5 * 1024 ** 3, 3 * 1024 ** 5].map(bytes)).toEqual([
      '0 B',
      '1023 B',
      '1.0 KiB',
      '1.5 KiB',
      '5.0 GiB',
      '3072.0 TiB',
    ]);
    expect([0, 999, 1000, 1234567, 12.6].map(count)).toEqual([
      '0',
      '999',
      '1,000',
      '1,234,567',
      '13',
    ]);
  });

  it('prints times to the second, month bounds as days, and never-used as never', () => {
    expect(isoSeconds(new Date('2026-03-04T05:06:07.890Z'))).toBe('2026-03-04T05:06:07Z');
    expect(isoSeconds(null)).toBe('never');
    expect(dayOrTime(new Date('2026-03-01T00:00:00Z'))).toBe('2026-03-01');
    expect(dayOrTime(new Date('2026-03-01T12:00:00Z'))).toBe('2026-03-01T12:00:00Z');
    expect(dayOrTime(null)).toBe('?');
    expect(isoOrNull(null)).toBeNull();
    expect(isoOrNull(new Date(0))).toBe('1970-01-01T00:00:00.000Z');
    expect(clip('a'.repeat(41))).toBe(`${'a'.repeat(39)}…`);
    expect(clip('a'.repeat(40))).toBe('a'.repeat(40));
  });

  it('replaces control characters (terminal escapes, line breaks) in echoed input', () => {
    expect(printable('a\u001b[31mb\nc\u009bd\u007f')).toBe('a?[31mb?c?d?');
    expect(quote('x\ty')).toBe('"x?y"');
  });
});

describe('CLI arguments', () => {
  it('sees --help and -h anywhere before --', () => {
    expect(wantsHelp(['--org', 'x', '-h'])).toBe(true);
    expect(wantsHelp(['--help'])).toBe(true);
    expect(wantsHelp(['--', '--help'])).toBe(false);
    expect(wantsHelp(['--helpful'])).toBe(false);
  });

  it('accepts whole numbers in range only', () => {
    const range = { min: 0, max: 24 };
    expect(intFlag('c', 'n', undefined, range)).toBeUndefined();
    expect(intFlag('c', 'n', '0', range)).toBe(0);
    expect(intFlag('c', 'n', '024', range)).toBe(24);
    for (const raw of ['', '-1', '25', '+1', '1e1', '0x1', '1.0', ' 1', 'NaN', '99999999999']) {
      expect(() => intFlag('c', 'n', raw, range)).toThrow(UsageError);
    }
    expect(() => intFlag('c', 'n', 'x\ny', range)).toThrow(
      'c: --n must be a whole number from 0 to 24, got "x?y"',
    );
  });

  it('turns parseArgs errors into usage errors naming the command', () => {
    expect(parseFlags('c', ['--json'], { json: { type: 'boolean' } })).toEqual({ json: true });
    const error = (() => {
      try {
        parseFlags('c', ['--nope'], {});
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(UsageError);
    expect(error).toMatchObject({
      command: 'c',
      message: expect.stringMatching(/^c: Unknown option '--nope'/),
    });
  });
});

describe('command output', () => {
  const stats = {
    name: 'api_key_usage_events_2026_01',
    from: new Date('2026-01-01T00:00:00Z'),
    to: new Date('2026-02-01T00:00:00Z'),
    detachPending: false,
    approxRows: 1234567,
    bytes: 3 * 1024 ** 2,
    storage: 'row',
    closed: false,
  };

  it('lists partitions with approximate rows, a pending detach and an unknown count', () => {
    const text = partitionsText([
      stats,
      { ...stats, name: 'api_key_usage_events_2026_02', detachPending: true, approxRows: null },
      { ...stats, name: 'odd', from: null, to: null },
      { ...stats, name: 'api_key_usage_events_2026_03', closed: true },
    ]);
    const lines = text.split('\n').map((l) => l.split(/\s{2,}/));
    expect(lines[0]).toEqual([
      'NAME',
      'RANGE (UTC, END EXCLUDED)',
      'ROWS (APPROXIMATE)',
      'SIZE',
      'STORAGE',
    ]);
    expect(lines[1]).toEqual([
      stats.name,
      '2026-01-01 .. 2026-02-01',
      '1,234,567',
      '3.0 MiB',
      'row',
    ]);
    expect(lines[2]?.slice(0, 3)).toEqual([
      'api_key_usage_events_2026_02 (detach pending)',
      '2026-01-01 .. 2026-02-01',
      '?',
    ]);
    expect(lines[3]?.[1]).toBe('? .. ?');
    expect(lines[4]?.[0]).toBe('api_key_usage_events_2026_03 (closed to new rows)');
    expect(partitionsText([])).toBe('no partitions\n');
  });

  it('says how many keys are dormant, singular or plural', () => {
    const key = {
      id: '018f0000-0000-7000-8000-000000000001',
      name: 'n'.repeat(50),
      prefix: 'sk_live_abcdefgh',
      created_at: new Date('2026-01-01T00:00:00Z'),
      last_used_at: null,
    };
    const one = dormantText('org-1', 1, [key]).split('\n');
    expect(one[0]).toBe('1 dormant key in org org-1 (active, not used in the last 1 day):');
    expect(one[2]?.split(/\s{2,}/)).toEqual([
      key.id,
      `${'n'.repeat(39)}…`,
      key.prefix,
      'never',
      '2026-01-01T00:00:00Z',
    ]);
    expect(dormantText('org-1', 30, [key, key]).split('\n')[0]).toBe(
      '2 dormant keys in org org-1 (active, not used in the last 30 days):',
    );
    expect(dormantText('org-1', 30, [key], 'revoked').split('\n')[0]).toBe(
      'revoked 1 dormant key in org org-1 (active, not used in the last 30 days):',
    );
    expect(dormantText('org-1', 7, [], 'would revoke')).toBe(
      'no dormant keys in org org-1 (active, not used in the last 7 days): nothing to revoke\n',
    );
  });
});
