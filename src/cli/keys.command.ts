import { isUuid } from '../platform/ids.ts';
import type { KeyUsageRow } from '../usage/analytics.queries.ts';
import { intFlag, parseFlags, printable, quote, UsageError } from './cli.args.ts';
import { HELP_LINE, type Command, type Group } from './cli.command.ts';
import { clip, isoOrNull, isoSeconds, table } from './cli.format.ts';
import { withKeytrail } from './cli.runtime.ts';

const NAME = 'keys dormant';

/** The text of `keys dormant`. */
export function dormantText(orgId: string, days: number, keys: KeyUsageRow[]): string {
  const rule = `active, not used in the last ${days} day${days === 1 ? '' : 's'}`;
  if (keys.length === 0) return `no dormant keys in org ${orgId} (${rule})\n`;
  const rows = keys.map((k) => [
    k.key_id,
    clip(printable(k.name)),
    k.prefix,
    isoSeconds(k.last_used_at),
    isoSeconds(k.created_at),
  ]);
  return `${keys.length} dormant key${keys.length === 1 ? '' : 's'} in org ${orgId} (${rule}):\n${table(
    ['ID', 'NAME', 'PREFIX', 'LAST USED', 'CREATED'],
    rows,
  )}`;
}

const dormant: Command = {
  name: NAME,
  help: `usage: keytrail keys dormant --org ID [--days N] [--json]

Lists every dormant key of the org, least recently used first, never-used keys last. Dormant is
the rule of the org usage page (GET /api/orgs/:orgId/api-keys/usage, its "dormant" flag): the
key is active (not revoked, not expired) and was last used more than N days ago, or was never
used and was created more than N days ago. Revoked and expired keys are never dormant.

options:
  --org ID              the org's id (a UUID)
  --days N              dormant after N days, 1 to 3650 (default KEYTRAIL_DORMANT_DAYS, 30)
  --json                print {"org_id", "dormant_days", "keys": [{"id", "name", "prefix",
                        "last_used_at", "created_at"}]} (times ISO-8601 UTC, null: never used)
${HELP_LINE}
`,
  async run(args, io) {
    const values = parseFlags(NAME, args, {
      org: { type: 'string' },
      days: { type: 'string' },
      json: { type: 'boolean', default: false },
    });
    const orgId = values.org;
    if (orgId === undefined) throw new UsageError(`${NAME} needs --org ID`, NAME);
    if (!isUuid(orgId)) {
      throw new UsageError(`${NAME}: --org must be an org id (a UUID), got ${quote(orgId)}`, NAME);
    }
    const daysFlag = intFlag(NAME, 'days', values.days, { min: 1, max: 3650 });
    const result = await withKeytrail(io, async (kt) => {
      const org = await kt.orgs.get(orgId);
      const days = daysFlag ?? kt.config.dormantDays;
      return { org, days, keys: await kt.analytics.dormantKeys(org.id, days) };
    });
    const { org, days, keys } = result;
    const json = {
      org_id: org.id,
      dormant_days: days,
      keys: keys.map((k) => ({
        id: k.key_id,
        name: k.name,
        prefix: k.prefix,
        last_used_at: isoOrNull(k.last_used_at),
        created_at: k.created_at.toISOString(),
      })),
    };
    io.stdout.write(values.json ? `${JSON.stringify(json)}\n` : dormantText(org.id, days, keys));
    return 0;
  },
};

export const keysCommands: Group = {
  name: 'keys',
  help: `usage: keytrail keys <command>

commands:
  dormant --org ID [--days N] [--json]   list the org's dormant keys
`,
  commands: [dormant],
};
