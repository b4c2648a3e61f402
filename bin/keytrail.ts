#!/usr/bin/env node
/** The keytrail CLI. Run with the project's Node 24: `npm run keytrail -- <command>`. */
import { parseArgs } from 'node:util';
import { ConfigError } from '../src/platform/config.ts';
import { migrate, openRuntime, serve, work } from '../src/main.ts';
import { startWorker } from '../workers/main.ts';
import { createKeytrail, type Keytrail } from '../src/keytrail.ts';
import { rebuildRollups } from '../src/usage/usage.rebuild.ts';
import { prune } from '../src/usage/usage.prune.ts';
import { AppError } from '../src/platform/errors.ts';

const USAGE = `usage: keytrail <command>

commands:
  serve [--no-worker]             run the API and the usage worker (embedded Postgres when
                                  DATABASE_URL is unset); --no-worker: the API alone
  worker                          run the usage worker alone
  prune [--retention-days N] [--dry-run] [--json]
                                  drop monthly event partitions past retention and old rollups
  rollups rebuild --from D --to D recompute hourly/daily/route rollups of days D..D (UTC) from
                                  raw events and report rows that differed [--json]
  migrate                         apply pending database migrations
  org create --name N [--json]    create an org and print its org:admin key (shown once)
`;

async function orgCreate(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { name: { type: 'string' }, json: { type: 'boolean', default: false } },
  });
  const name = values.name?.trim();
  if (!name || name.length > 200)
    throw new UsageError('org create needs --name (1–200 characters)');
  const { org, adminKey } = await withKeytrail((kt) => kt.orgs.create(name));
  if (values.json) {
    const out = {
      org_id: org.id,
      name: org.name,
      admin_key: adminKey.plaintext,
      key_id: adminKey.apiKey.id,
    };
    process.stdout.write(`${JSON.stringify(out)}\n`);
  } else {
    process.stdout.write(
      `org ${org.id} (${org.name})\nadmin key (shown once): ${adminKey.plaintext}\n`,
    );
  }
}

class UsageError extends Error {}

function positive(raw: string): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1)
    throw new UsageError(`expected a positive whole number, got ${raw}`);
  return n;
}

/** Runs `fn` with a migrated keytrail on the configured (or embedded) database. */
async function withKeytrail<T>(fn: (kt: Keytrail) => Promise<T>): Promise<T> {
  const runtime = await openRuntime();
  try {
    await migrate(runtime);
    const kt = createKeytrail(runtime.config, { logger: runtime.logger });
    try {
      return await fn(kt);
    } finally {
      await kt.close();
    }
  } finally {
    await runtime.stop();
  }
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve': {
      const { values } = parseArgs({ args: rest, options: { 'no-worker': { type: 'boolean' } } });
      await serve(values['no-worker'] ? {} : { startWorker });
      return;
    }
    case 'worker':
      await work(startWorker);
      return;
    case 'migrate': {
      const runtime = await openRuntime();
      try {
        const applied = await migrate(runtime);
        process.stdout.write(applied.length ? `applied: ${applied.join(', ')}\n` : 'up to date\n');
      } finally {
        await runtime.stop();
      }
      return;
    }
    case 'rollups': {
      if (rest[0] !== 'rebuild')
        throw new UsageError(`unknown rollups command: ${rest[0] ?? '(none)'}`);
      const { values } = parseArgs({
        args: rest.slice(1),
        options: { from: { type: 'string' }, to: { type: 'string' }, json: { type: 'boolean' } },
      });
      if (!values.from || !values.to)
        throw new UsageError('rollups rebuild needs --from and --to (YYYY-MM-DD)');
      const report = await withKeytrail((kt) =>
        rebuildRollups(
          kt.database.db,
          values.from ?? '',
          values.to ?? '',
          kt.config.hourlyRetentionDays,
        ),
      );
      const lines = Object.entries(report.differences).map(
        ([t, n]) => `  ${t}: ${n} row(s) differed`,
      );
      process.stdout.write(
        values.json
          ? `${JSON.stringify(report)}\n`
          : `rebuilt ${report.from}..${report.to}\n${lines.join('\n')}\n`,
      );
      return;
    }
    case 'prune': {
      const { values } = parseArgs({
        args: rest,
        options: {
          'retention-days': { type: 'string' },
          'dry-run': { type: 'boolean', default: false },
          json: { type: 'boolean', default: false },
        },
      });
      const report = await withKeytrail((kt) =>
        prune(kt.database.db, {
          now: new Date(),
          retentionDays: values['retention-days']
            ? positive(values['retention-days'])
            : kt.config.retentionDays,
          hourlyRetentionDays: kt.config.hourlyRetentionDays,
          rollupRetentionDays: kt.config.rollupRetentionDays,
          dryRun: values['dry-run'] ?? false,
        }),
      );
      const lines = report.partitions.map(
        (p) =>
          `  ${report.dryRun ? 'would drop' : 'dropped'} ${p.name}${report.dryRun ? '' : ` (${p.seconds.toFixed(2)} s: detach ${p.detachSeconds.toFixed(2)} s, drop ${p.dropSeconds.toFixed(2)} s)`}`,
      );
      const text = report.skipped
        ? '  skipped: another prune is running\n'
        : `${lines.join('\n') || '  no partition past retention'}\n  hourly rollup rows deleted: ${report.hourlyRowsDeleted}\n  daily rollup rows deleted: ${report.dailyRowsDeleted}\n`;
      process.stdout.write(values.json ? `${JSON.stringify(report)}\n` : text);
      return;
    }
    case 'org':
      if (rest[0] === 'create') return orgCreate(rest.slice(1));
      throw new UsageError(`unknown org command: ${rest[0] ?? '(none)'}`);
    case undefined:
    case 'help':
    case '--help':
      process.stdout.write(USAGE);
      return;
    default:
      throw new UsageError(`unknown command: ${command}`);
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof AppError) {
    process.stderr.write(`${error.message}\n`);
    process.exit(2);
  }
  if (error instanceof UsageError || error instanceof ConfigError) {
    process.stderr.write(`${error.message}\n\n${error instanceof UsageError ? USAGE : ''}`);
    process.exit(2);
  }
  process.stderr.write(
    `keytrail: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
