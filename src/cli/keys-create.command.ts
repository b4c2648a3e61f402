import { apiKeyJson } from '../http/presenters.ts';
import { CreateKeyBody } from '../http/schemas.ts';
import { isUuid } from '../platform/ids.ts';
import { parseFlags, printable, quote, UsageError } from './cli.args.ts';
import { HELP_LINE, type Command } from './cli.command.ts';
import { withKeytrail } from './cli.runtime.ts';

const NAME = 'keys create';

/** Flags in, the body of POST /api/orgs/:orgId/api-keys out: the API's own schema checks it. */
function bodyOf(values: { scopes?: string; name?: string; 'expires-at'?: string }) {
  if (values.scopes === undefined) throw new UsageError(`${NAME} needs --scopes S[,S]`, NAME);
  const scopes = values.scopes.split(',').map((s) => s.trim());
  const body = CreateKeyBody.safeParse({
    name: values.name ?? 'operator',
    scopes,
    ...(values['expires-at'] !== undefined && { expires_at: values['expires-at'] }),
  });
  if (body.success) return body.data;
  const issue = body.error.issues[0];
  const [field, index] = [String(issue?.path[0] ?? ''), issue?.path[1]];
  const flag = field === 'expires_at' ? 'expires-at' : field;
  const value =
    field === 'scopes' && typeof index === 'number'
      ? ` (${quote(scopes[index] ?? '')})`
      : field === 'expires_at'
        ? ` (${quote(values['expires-at'] ?? '')})`
        : '';
  throw new UsageError(`${NAME}: --${flag}${value}: ${issue?.message ?? 'invalid'}`, NAME);
}

export const createCommand: Command = {
  name: NAME,
  help: `usage: keytrail keys create --org ID --scopes S[,S] [--name N] [--expires-at T] [--json]

Creates a key in an existing org as the operator: any scope may be granted, including org:admin
(the way back into an org whose admin keys are all gone). Scopes, name and expiry are checked
as POST /api/orgs/:orgId/api-keys checks them, the org's key limit applies (except to an
org:admin key: break-glass works at the limit), and the creation is audited with actor operator. The key's plaintext is printed once: store it now.

options:
  --org ID              the org's id (a UUID)
  --scopes S[,S]        the key's scopes, comma-separated (e.g. org:admin)
  --name N              the key's name, 1 to 200 characters (default "operator")
  --expires-at T        expiry, ISO-8601 with Z or an offset, in the future (default: none)
  --json                print the body of POST /api/orgs/:orgId/api-keys: {"key", "api_key"}
${HELP_LINE}
`,
  async run(args, io) {
    const values = parseFlags(NAME, args, {
      org: { type: 'string' },
      scopes: { type: 'string' },
      name: { type: 'string' },
      'expires-at': { type: 'string' },
      json: { type: 'boolean', default: false },
    });
    const orgId = values.org;
    if (orgId === undefined) throw new UsageError(`${NAME} needs --org ID`, NAME);
    if (!isUuid(orgId)) {
      throw new UsageError(`${NAME}: --org must be an org id (a UUID), got ${quote(orgId)}`, NAME);
    }
    const body = bodyOf(values);
    const issued = await withKeytrail(io, (kt) =>
      kt.keys.createByOperator(orgId.toLowerCase(), {
        name: body.name,
        scopes: body.scopes,
        expiresAt: body.expires_at,
      }),
    );
    const key = issued.apiKey;
    io.stdout.write(
      values.json
        ? `${JSON.stringify({ key: issued.plaintext, api_key: apiKeyJson(key) })}\n`
        : `key ${key.id} (${printable(key.name)}) in org ${key.orgId}, scopes ${key.scopes.join(',') || '(none)'}\nkey (shown once): ${issued.plaintext}\n`,
    );
    return 0;
  },
};
