import { orgCreatedJson } from '../http/presenters.ts';
import { CreateOrgBody } from '../http/schemas.ts';
import { parseFlags, printable, UsageError } from './cli.args.ts';
import { HELP_LINE, type Command, type Group } from './cli.command.ts';
import { withKeytrail } from './cli.runtime.ts';

const NAME = 'org create';

const create: Command = {
  name: NAME,
  help: `usage: keytrail org create --name N [--json]

Creates an org and its first key, with the org:admin scope. The key's plaintext is printed
once: store it now.

options:
  --name N              the org's name, 1 to 200 characters (trimmed)
  --json                print the body of POST /api/orgs: {"org", "admin_key": {"key", "api_key"}}
${HELP_LINE}
`,
  async run(args, io) {
    const values = parseFlags(NAME, args, {
      name: { type: 'string' },
      json: { type: 'boolean', default: false },
    });
    // The HTTP API's own schema: the CLI accepts exactly the names POST /api/orgs accepts.
    const body = CreateOrgBody.safeParse({ name: values.name });
    if (!body.success) throw new UsageError(`${NAME} needs --name N (1 to 200 characters)`, NAME);
    const created = await withKeytrail(io, (kt) => kt.orgs.create(body.data.name));
    io.stdout.write(
      values.json
        ? `${JSON.stringify(orgCreatedJson(created))}\n`
        : `org ${created.org.id} (${printable(created.org.name)})\nadmin key (shown once): ${created.adminKey.plaintext}\n`,
    );
    return 0;
  },
};

export const orgCommands: Group = {
  name: 'org',
  help: `usage: keytrail org <command>

commands:
  create --name N [--json]   create an org and print its org:admin key (shown once)
`,
  commands: [create],
};
