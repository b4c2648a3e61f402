import {
  describePartitions,
  ensurePartitionsAhead,
  type PartitionStats,
} from '../usage/usage.partitions.ts';
import { intFlag, parseFlags } from './cli.args.ts';
import { HELP_LINE, type Command, type Group } from './cli.command.ts';
import { bytes, count, dayOrTime, isoOrNull, table } from './cli.format.ts';
import { withKeytrail } from './cli.runtime.ts';

const MAX_MONTHS_AHEAD = 24;

/** The text of `partitions list`. */
export function partitionsText(partitions: PartitionStats[]): string {
  if (partitions.length === 0) return 'no partitions\n';
  const rows = partitions.map((p) => [
    p.detachPending ? `${p.name} (detach pending)` : p.name,
    `${dayOrTime(p.from)} .. ${dayOrTime(p.to)}`,
    p.approxRows === null ? '?' : count(p.approxRows),
    bytes(p.bytes),
  ]);
  return `${table(['NAME', 'RANGE (UTC, END EXCLUDED)', 'ROWS (APPROXIMATE)', 'SIZE'], rows)}
rows: an estimate (pg_class.reltuples) from the last vacuum or analyze; ? before the first one
`;
}

const list: Command = {
  name: 'partitions list',
  help: `usage: keytrail partitions list [--json]

Lists the monthly partitions of the usage events, oldest first: name, range, approximate rows
(PostgreSQL's estimate from the last vacuum or analyze, not a count) and size on disk (table,
indexes and TOAST).

options:
  --json                print {"partitions": [{"name", "from", "to", "approximate_rows",
                        "size_bytes", "detach_pending"}]} (approximate_rows null: not analyzed yet)
${HELP_LINE}
`,
  async run(args, io) {
    const values = parseFlags('partitions list', args, {
      json: { type: 'boolean', default: false },
    });
    const partitions = await withKeytrail(io, (kt) => describePartitions(kt.database.db));
    const json = {
      partitions: partitions.map((p) => ({
        name: p.name,
        from: isoOrNull(p.from),
        to: isoOrNull(p.to),
        approximate_rows: p.approxRows,
        size_bytes: p.bytes,
        detach_pending: p.detachPending,
      })),
    };
    io.stdout.write(values.json ? `${JSON.stringify(json)}\n` : partitionsText(partitions));
    return 0;
  },
};

const ensure: Command = {
  name: 'partitions ensure',
  help: `usage: keytrail partitions ensure [--months-ahead N] [--json]

Creates the partition of the current month (UTC) and of the N next months where missing, and
prints which it created and which already existed. The worker does the same (N = 2) at start
and daily; ingest also creates a missing month on demand.

options:
  --months-ahead N      months after the current one, 0 to ${MAX_MONTHS_AHEAD} (default 2)
  --json                print {"created": [names], "existing": [names]}
${HELP_LINE}
`,
  async run(args, io) {
    const values = parseFlags('partitions ensure', args, {
      'months-ahead': { type: 'string' },
      json: { type: 'boolean', default: false },
    });
    const monthsAhead =
      intFlag('partitions ensure', 'months-ahead', values['months-ahead'], {
        min: 0,
        max: MAX_MONTHS_AHEAD,
      }) ?? 2;
    const report = await withKeytrail(io, (kt) =>
      ensurePartitionsAhead(kt.database.db, kt.clock.now(), monthsAhead),
    );
    const lines = [
      ...report.created.map((name) => `created          ${name}`),
      ...report.existing.map((name) => `already existed  ${name}`),
    ].sort((a, b) => (a.slice(17) < b.slice(17) ? -1 : 1));
    io.stdout.write(values.json ? `${JSON.stringify(report)}\n` : `${lines.join('\n')}\n`);
    return 0;
  },
};

export const partitionsCommands: Group = {
  name: 'partitions',
  help: `usage: keytrail partitions <command>

commands:
  list [--json]                          list the usage-event partitions with rows and size
  ensure [--months-ahead N] [--json]     create this month's partition and the N next ones
`,
  commands: [list, ensure],
};
