import type { PruneReport } from '../usage/usage.prune.ts';
import { prune } from '../usage/usage.prune.ts';
import { rebuildRollups } from '../usage/usage.rebuild.ts';
import { intFlag, parseFlags, UsageError } from './cli.args.ts';
import { HELP_LINE, type Command, type Group } from './cli.command.ts';
import { withKeytrail } from './cli.runtime.ts';

function pruneText(report: PruneReport): string {
  if (report.skipped) return '  skipped: another prune is running\n';
  const partitions = report.partitions.map((p) =>
    report.dryRun
      ? `  would drop ${p.name}`
      : `  dropped ${p.name} (${p.seconds.toFixed(2)} s: detach ${p.detachSeconds.toFixed(2)} s, drop ${p.dropSeconds.toFixed(2)} s)`,
  );
  return [
    ...(partitions.length > 0 ? partitions : ['  no partition past retention']),
    `  hourly rollup rows deleted: ${report.hourlyRowsDeleted}`,
    `  daily rollup rows deleted: ${report.dailyRowsDeleted}`,
    report.dryRun
      ? `  expired keys to mark: ${report.expiredKeysMarked}`
      : `  expired keys marked: ${report.expiredKeysMarked}`,
  ]
    .map((line) => `${line}\n`)
    .join('');
}

export const pruneCommand: Command = {
  name: 'prune',
  help: `usage: keytrail prune [--retention-days N] [--dry-run] [--json]

Applies retention now, as the worker's daily maintenance does: drops monthly event partitions
past retention, deletes hourly and daily rollups past theirs, and writes one key.expired audit
entry (actor system) for each key whose expires_at has passed since the last run. One prune
runs at a time: another one running makes this one skip.

options:
  --retention-days N    raw-event retention, 7 to 3650 (default KEYTRAIL_RETENTION_DAYS, 90)
  --dry-run             report what would be dropped and marked; change nothing (rollup rows
                        are not counted: 0)
  --json                print {"partitions", "hourlyRowsDeleted", "dailyRowsDeleted",
                        "expiredKeysMarked", "dryRun", "skipped"}
${HELP_LINE}
`,
  async run(args, io) {
    const values = parseFlags('prune', args, {
      'retention-days': { type: 'string' },
      'dry-run': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    });
    // At least the 7 days reported events may reach back (as KEYTRAIL_RETENTION_DAYS).
    const retention = intFlag('prune', 'retention-days', values['retention-days'], {
      min: 7,
      max: 3650,
    });
    const report = await withKeytrail(io, (kt) =>
      prune(kt.database.db, {
        now: kt.clock.now(),
        retentionDays: retention ?? kt.config.retentionDays,
        hourlyRetentionDays: kt.config.hourlyRetentionDays,
        rollupRetentionDays: kt.config.rollupRetentionDays,
        dryRun: values['dry-run'],
      }),
    );
    io.stdout.write(values.json ? `${JSON.stringify(report)}\n` : pruneText(report));
    return 0;
  },
};

const REBUILD = 'rollups rebuild';

const rebuild: Command = {
  name: REBUILD,
  help: `usage: keytrail rollups rebuild --from D --to D [--json]

Recomputes the hourly, daily and route rollups of the UTC days D..D (both included) from raw
events, reports per table how many rows differed, and replaces them. Refused (exit 2) for
dates that are not days, --from after --to, or a range before the oldest raw partition.

options:
  --from D, --to D      days, YYYY-MM-DD
  --json                print {"from", "to", "differences": {table: rows}}
${HELP_LINE}
`,
  async run(args, io) {
    const values = parseFlags(REBUILD, args, {
      from: { type: 'string' },
      to: { type: 'string' },
      json: { type: 'boolean', default: false },
    });
    const { from, to } = values;
    if (from === undefined || to === undefined) {
      throw new UsageError(`${REBUILD} needs --from D and --to D (YYYY-MM-DD)`, REBUILD);
    }
    const report = await withKeytrail(io, (kt) =>
      rebuildRollups(
        kt.database.db,
        from,
        to,
        kt.config.hourlyRetentionDays,
        kt.config.worker.routesPerKeyDay,
      ),
    );
    const lines = Object.entries(report.differences).map(
      ([table, n]) => `  ${table}: ${n} row(s) differed\n`,
    );
    io.stdout.write(
      values.json
        ? `${JSON.stringify(report)}\n`
        : `rebuilt ${report.from}..${report.to}\n${lines.join('')}`,
    );
    return 0;
  },
};

export const rollupsCommands: Group = {
  name: 'rollups',
  help: `usage: keytrail rollups <command>

commands:
  rebuild --from D --to D [--json]   recompute the rollups of days D..D from raw events
`,
  commands: [rebuild],
};
