#!/usr/bin/env node
/** The keytrail CLI. Run with the project's Node 24: `npm run keytrail -- <command>`. */
import { parseArgs } from 'node:util';
import { ConfigError } from '../src/platform/config.ts';
import { migrate, openRuntime, serve, work } from '../src/main.ts';
import { startWorker } from '../workers/main.ts';
import { createKeytrail } from '../src/keytrail.ts';

const USAGE = `usage: keytrail <command>

commands:
  serve [--no-worker]             run the API and the usage worker (embedded Postgres when
                                  DATABASE_URL is unset); --no-worker: the API alone
  worker                          run the usage worker alone
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
  const runtime = await openRuntime();
  try {
    await migrate(runtime);
    const kt = createKeytrail(runtime.config, { logger: runtime.logger });
    try {
      const { org, adminKey } = await kt.orgs.create(name);
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
    } finally {
      await kt.close();
    }
  } finally {
    await runtime.stop();
  }
}

class UsageError extends Error {}

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
  if (error instanceof UsageError || error instanceof ConfigError) {
    process.stderr.write(`${error.message}\n\n${error instanceof UsageError ? USAGE : ''}`);
    process.exit(2);
  }
  process.stderr.write(
    `keytrail: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
