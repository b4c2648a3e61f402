import {
  describePartitions,
  ensurePartitionsAhead,
  type PartitionStats,
} from '../usage/usage.partitions.ts';
import { intFlag, parseFlags } from './cli.args.ts';
import { HELP_LINE, type Command, type Group } from './cli.command.ts';
import { bytes, count, dayOrTime, isoOrNull, table } from './cli.format.ts';
import { withKeytrail } from './cli.runtime.ts';
import {
  ColumnarUnavailable,
  compressPartitions,
  type CompressReport,
} from '../usage/usage.compress.ts';

const MAX_MONTHS_AHEAD = 24;

/** The text of `partitions list`. */
export function partitionsText(partitions: PartitionStats[]): string {
  if (partitions.length === 0) return 'no partitions\n';
  const rows = partitions.map((p) => [
    p.detachPending
      ? `${p.name} (detach pending)`
      : p.closed
        ? `${p.name} (closed to new rows)`
        : p.name,
    `${dayOrTime(p.from)} .. ${dayOrTime(p.to)}`,
    p.approxRows === null ? '?' : count(p.approxRows),
    bytes(p.bytes),
    p.storage,
  ]);
  return `${table(['NAME', 'RANGE (UTC, END EXCLUDED)', 'ROWS (APPROXIMATE)', 'SIZE', 'STORAGE'], rows)}
rows: an estimate (pg_class.reltuples) from the last vacuum or analyze; ? before the first one
`;
}

const list: Command = {
  name: 'partitions list',
  help: `usage: keytrail partitions list [--json]

Lists the monthly partitions of the usage events, oldest first: name, range, approximate rows
(PostgreSQL's estimate from the last vacuum or analyze, not a count), size on disk (table,
indexes and TOAST) and storage (row, or columnar once compressed on Citus).

options:
  --json                print {"partitions": [{"name", "from", "to", "approximate_rows",
                        "size_bytes", "detach_pending", "storage", "closed"}]} (approximate_rows
                        null: not analyzed yet; closed: a compress stopped half-way left the month
                        closed to new rows, and the next compress opens it)
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
        storage: p.storage,
        closed: p.closed,
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

const compress: Command = {
  name: 'partitions compress',
  help: `usage: keytrail partitions compress [--dry-run] [--json]

On Citus: rebuilds each closed month's partition (one that ended more than 8 days ago: past the
7-day window of reported events, with a day to spare) in Citus's columnar storage, newest first,
and prints each with its size before and after. The worker does the same daily (at most 20
minutes a day). The copy is built while the month stays open; the month is then closed to new
rows for the rest of the copy and the swap (a replayed job of that month fails and is retried),
and each lock wait of the close and the swap ends after 5 s (3 tries). Reads of a month work
the same in either storage. On PostgreSQL without Citus it changes nothing and exits 1.

options:
  --dry-run             print what would be compressed, change nothing
  --json                print {"partitions": [{"name", "size_bytes_before", "size_bytes_after",
                        "seconds"}], "failed": [{"name", "error"}], "dry_run", "skipped"}
exit status: 0 done (or nothing to do), 1 no columnar storage here, or a partition failed
${HELP_LINE}
`,
  async run(args, io) {
    const values = parseFlags('partitions compress', args, {
      'dry-run': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    });
    const dryRun = values['dry-run'];
    let report: CompressReport;
    try {
      report = await withKeytrail(io, (kt) =>
        compressPartitions(kt.backgroundDatabase.db, { now: kt.clock.now(), dryRun }),
      );
    } catch (error) {
      if (!(error instanceof ColumnarUnavailable)) throw error;
      io.stderr.write(`keytrail: ${error.message}\n`);
      return 1;
    }
    const json = {
      partitions: report.partitions.map((p) => ({
        name: p.name,
        size_bytes_before: p.bytesBefore,
        size_bytes_after: p.bytesAfter,
        seconds: Number(p.seconds.toFixed(3)),
      })),
      failed: report.failed,
      dry_run: report.dryRun,
      skipped: report.skipped,
    };
    io.stdout.write(values.json ? `${JSON.stringify(json)}\n` : compressText(report));
    return report.failed.length > 0 ? 1 : 0;
  },
};

/** The text of `partitions compress`. */
export function compressText(report: CompressReport): string {
  if (report.skipped) return 'another prune or compress is running; nothing done\n';
  const verb = report.dryRun ? 'would compress' : 'compressed';
  const lines = report.partitions.map((p) =>
    p.bytesAfter === null
      ? `${verb}  ${p.name}  (${bytes(p.bytesBefore)})`
      : `${verb}  ${p.name}  ${bytes(p.bytesBefore)} -> ${bytes(p.bytesAfter)}  in ${p.seconds.toFixed(1)} s`,
  );
  for (const f of report.failed) lines.push(`left in row storage  ${f.name}: ${f.error}`);
  if (lines.length === 0) lines.push('no closed month in row storage; nothing to compress');
  return `${lines.join('\n')}\n`;
}

export const partitionsCommands: Group = {
  name: 'partitions',
  help: `usage: keytrail partitions <command>

commands:
  list [--json]                          list the usage-event partitions with rows and size
  ensure [--months-ahead N] [--json]     create this month's partition and the N next ones
  compress [--dry-run] [--json]          on Citus: closed months to columnar storage
`,
  commands: [list, ensure, compress],
};
