import { databaseNow } from '../platform/db.ts';
import {
  countDeadIngestJobs,
  DEAD_LETTER_COUNT_LIMIT,
  replayDeadIngestJobs,
} from '../usage/usage.dead-letters.ts';
import { parseFlags } from './cli.args.ts';
import { HELP_LINE, type Command, type Group } from './cli.command.ts';
import { withKeytrail } from './cli.runtime.ts';

const REPLAY = 'ingest replay-dead';

const replayDead: Command = {
  name: REPLAY,
  help: `usage: keytrail ingest replay-dead [--dry-run] [--json]

Moves the usage ingest jobs in the dead-letter queue (usage.ingest.dead) back to usage.ingest,
oldest first, and prints how many. A worker then ingests them like any job; events already
stored are skipped (ingest is idempotent by event id), so replaying twice stores nothing twice.
Jobs dead-lettered again while the command runs are left for the next run. Events of a month
already past the raw-event retention are dropped on replay (keytrail_usage_events_expired_total).
Like every command, it first applies pending migrations and the queue settings, --dry-run too.

options:
  --dry-run             count the jobs that would be moved, move nothing; counts to 10,000
                        (more prints "would replay 10000+")
  --json                print {"replayed": N, "dry_run": false} (with --dry-run:
                        {"would_replay": N, "capped": false, "dry_run": true}; "capped": true
                        when more than N = 10000 wait)
${HELP_LINE}
`,
  async run(args, io) {
    const values = parseFlags(REPLAY, args, {
      'dry-run': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    });
    const dryRun = values['dry-run'];
    const found = await withKeytrail(io, async (kt) => {
      const boss = await kt.queue();
      // pg-boss stamps created_on with the database's clock: the cutoff comes from it too.
      const before = await databaseNow(kt.database.db);
      return dryRun ? countDeadIngestJobs(boss, before) : replayDeadIngestJobs(boss, before);
    });
    const capped = dryRun && found > DEAD_LETTER_COUNT_LIMIT;
    const n = capped ? DEAD_LETTER_COUNT_LIMIT : found;
    const jobs = `dead-lettered ingest job${n === 1 ? '' : 's'}`;
    io.stdout.write(
      values.json
        ? `${JSON.stringify(dryRun ? { would_replay: n, capped, dry_run: true } : { replayed: n, dry_run: false })}\n`
        : dryRun
          ? `would replay ${n}${capped ? '+' : ''} ${jobs} (dry run: nothing moved)\n`
          : `replayed ${n} ${jobs} to usage.ingest\n`,
    );
    return 0;
  },
};

export const ingestCommands: Group = {
  name: 'ingest',
  help: `usage: keytrail ingest <command>

commands:
  replay-dead [--dry-run] [--json]   move dead-lettered usage ingest jobs back to the ingest queue
`,
  commands: [replayDead],
};
