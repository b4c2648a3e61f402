import { isUuid } from '../platform/ids.ts';
import type { Keytrail } from '../keytrail.ts';
import { operatorPlan, type SparedKey } from '../policies/dormant.service.ts';
import { SPARE_REASONS } from '../policies/dormant.types.ts';
import { intFlag, parseFlags, printable, quote, UsageError } from './cli.args.ts';
import { HELP_LINE, type Command, type Group } from './cli.command.ts';
import { clip, isoOrNull, isoSeconds, table } from './cli.format.ts';
import { withKeytrail } from './cli.runtime.ts';
import { createCommand } from './keys-create.command.ts';

const NAME = 'keys dormant';

type ListedKey = {
  id: string;
  name: string;
  prefix: string;
  last_used_at: Date | null;
  created_at: Date;
};

/** The lines naming the keys a revocation spared, and why. */
function sparedText(spared: readonly SparedKey[]): string {
  return spared.map((k) => `spared ${k.id} (${k.prefix}): ${SPARE_REASONS[k.reason]}\n`).join('');
}

/** The text of `keys dormant`; `verb`: what was done to the keys (`--revoke`). */
export function dormantText(orgId: string, days: number, keys: ListedKey[], verb = ''): string {
  const rule = `active, not used in the last ${days} day${days === 1 ? '' : 's'}`;
  if (keys.length === 0) {
    const done =
      verb === '' ? '' : verb === 'revoked' ? ': nothing revoked' : ': nothing to revoke';
    return `no dormant keys in org ${orgId} (${rule})${done}\n`;
  }
  const rows = keys.map((k) => [
    k.id,
    clip(printable(k.name)),
    k.prefix,
    isoSeconds(k.last_used_at),
    isoSeconds(k.created_at),
  ]);
  const head = `${verb && `${verb} `}${keys.length} dormant key${keys.length === 1 ? '' : 's'}`;
  return `${head} in org ${orgId} (${rule}):\n${table(
    ['ID', 'NAME', 'PREFIX', 'LAST USED', 'CREATED'],
    rows,
  )}`;
}

const dormant: Command = {
  name: NAME,
  help: `usage: keytrail keys dormant --org ID [--days N] [--json] [--revoke [--dry-run]]

Lists every dormant key of the org, least recently used first, never-used keys last. Dormant is
the rule of the org usage page (GET /api/orgs/:orgId/api-keys/usage, its "dormant" flag): the
key is active (not revoked, not expired) and was last used more than N days ago, or was never
used and was created more than N days ago. Revoked and expired keys are never dormant.

With --revoke, revokes them by hand, as a dormant-key policy would (audited, actor operator):
--days defaults to the org's policy's after_days, the policy's exclusions apply, and it first
waits until every usage event before it is ingested (a key used a moment ago is spared). The
org's last active org:admin key is never revoked: it is spared (listed as such) and notified.

options:
  --org ID              the org's id (a UUID)
  --days N              dormant after N days, 1 to 3650 (default KEYTRAIL_DORMANT_DAYS, 30)
  --json                print {"org_id", "dormant_days", "keys": [{"id", "name", "prefix",
                        "last_used_at", "created_at"}]} (times ISO-8601 UTC, null: never used);
                        with --revoke also "revoked" (how many), "dry_run" and "spared":
                        [{"id", "name", "prefix", "reason"}]
  --revoke              revoke the dormant keys
  --dry-run             with --revoke: list what would be revoked, change nothing
${HELP_LINE}
`,
  async run(args, io) {
    const values = parseFlags(NAME, args, {
      org: { type: 'string' },
      days: { type: 'string' },
      json: { type: 'boolean', default: false },
      revoke: { type: 'boolean', default: false },
      'dry-run': { type: 'boolean', default: false },
    });
    const orgId = values.org;
    if (orgId === undefined) throw new UsageError(`${NAME} needs --org ID`, NAME);
    if (!isUuid(orgId)) {
      throw new UsageError(`${NAME}: --org must be an org id (a UUID), got ${quote(orgId)}`, NAME);
    }
    const daysFlag = intFlag(NAME, 'days', values.days, { min: 1, max: 3650 });
    if (values['dry-run'] && !values.revoke) {
      throw new UsageError(`${NAME}: --dry-run goes with --revoke`, NAME);
    }
    const mode = values.revoke ? (values['dry-run'] ? 'dry-run' : 'revoke') : 'list';
    const result = await withKeytrail(io, (kt) => dormantRun(kt, orgId, daysFlag, mode));
    const { org, days, keys, spared, skipped } = result;
    if (skipped) {
      io.stderr.write(`${NAME}: nothing revoked: ${skipped}; try again\n`);
      return 1;
    }
    const json = {
      org_id: org.id,
      dormant_days: days,
      ...(mode !== 'list' && {
        dry_run: mode === 'dry-run',
        revoked: mode === 'revoke' ? keys.length : 0,
      }),
      ...(mode !== 'list' && {
        spared: spared.map((k) => ({ id: k.id, name: k.name, prefix: k.prefix, reason: k.reason })),
      }),
      keys: keys.map((k) => ({
        id: k.id,
        name: k.name,
        prefix: k.prefix,
        last_used_at: isoOrNull(k.last_used_at),
        created_at: k.created_at.toISOString(),
      })),
    };
    const verb = mode === 'revoke' ? 'revoked' : mode === 'dry-run' ? 'would revoke' : '';
    io.stdout.write(
      values.json
        ? `${JSON.stringify(json)}\n`
        : dormantText(org.id, days, keys, verb) + sparedText(spared),
    );
    return 0;
  },
};

/** Lists the dormant keys, or revokes them (`revoke`) or says which it would (`dry-run`). */
async function dormantRun(
  kt: Keytrail,
  orgId: string,
  daysFlag: number | undefined,
  mode: 'list' | 'revoke' | 'dry-run',
): Promise<{
  org: { id: string };
  days: number;
  keys: ListedKey[];
  spared: SparedKey[];
  skipped: string | null;
}> {
  const org = await kt.orgs.get(orgId);
  if (mode === 'list') {
    const days = daysFlag ?? kt.config.dormantDays;
    const rows = await kt.analytics.dormantKeys(org.id, days);
    const keys = rows.map((k) => ({ ...k, id: k.key_id }));
    return { org, days, keys, spared: [], skipped: null };
  }
  const policy = await kt.dormantPolicies.get(org.id);
  const days = daysFlag ?? (policy.updated_at ? policy.after_days : kt.config.dormantDays);
  // By hand the operator acts: every key is within reach, the policy's exclusions still hold.
  const plan = operatorPlan({ ...policy, after_days: days });
  if (mode === 'dry-run') {
    return { org, days, ...(await kt.dormantPolicies.select(org.id, plan)), skipped: null };
  }
  const done = await kt.dormantPolicies.act(org.id, plan, { type: 'operator' });
  return { org, days, keys: done.acted, spared: done.spared, skipped: done.skipped };
}

export const keysCommands: Group = {
  name: 'keys',
  help: `usage: keytrail keys <command>

commands:
  create --org ID --scopes S[,S] [--name N] [--expires-at T] [--json]
                                         create a key (e.g. a new org:admin key), shown once
  dormant --org ID [--days N] [--json] [--revoke [--dry-run]]
                                         list (or revoke) the org's dormant keys
`,
  commands: [createCommand, dormant],
};
