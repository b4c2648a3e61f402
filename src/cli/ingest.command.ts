import { countDeadIngestJobs, replayDeadIngestJobs } from '../usage/usage.dead-letters.ts';
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
Jobs dead-lettered again while the command runs are left for the next run.

options:
  --dry-run             count the jobs that would be moved; move nothing
  --json                print {"replayed": N, "dry_run": false} (with --dry-run:
                        {"would_replay": N, "dry_run": true})
${HELP_LINE}
`,
  async run(args, io) {
    const values = parseFlags(REPLAY, args, {
      'dry-run': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    });
    const dryRun = values['dry-run'];
    const n = await withKeytrail(io, async (kt) => {
      const boss = await kt.queue();
      const before = new Date();
      return dryRun ? countDeadIngestJobs(boss, before) : replayDeadIngestJobs(boss, before);
    });
    const jobs = `dead-lettered ingest job${n === 1 ? '' : 's'}`;
    io.stdout.write(
      values.json
        ? `${JSON.stringify(dryRun ? { would_replay: n, dry_run: true } : { replayed: n, dry_run: false })}\n`
        : dryRun
          ? `would replay ${n} ${jobs} (dry run: nothing moved)\n`
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
