import { sql, type Kysely, type RawBuilder } from 'kysely';

// Frozen in time: never edit a migration that has shipped; add a new one.
// Webhook hardening (issue 18).
// - Every secret rotated away in the last overlap (24 h) keeps signing until its own expiry: one
//   row per previous secret, instead of a single previous_secret column that a second rotation
//   overwrote. Previous secrets still signing are copied over; expired ones are not.
//   Expand/contract: previous_secret and previous_secret_expires_at stay (unread and unwritten
//   by this version) so that processes of the version before, still running during a rolling
//   upgrade, keep working; a later migration drops them (docs/adr/0010-webhooks-outbox.md).
// - Attempt errors and the `webhook.disabled` audit's last_error become a closed set of
//   categories: the raw Node messages stored before named internal addresses and certificate
//   names. Irreversible (the raw text is gone on purpose).
// - Webhook URLs in audit details keep scheme, host and port only (`https://host/…?…`): paths
//   and queries carry receivers' tokens (Slack-style `/services/T…/B…/token`).
// Lock order: the rewrites of webhook_attempts and audit_events (row locks only: inserts go on)
// come first; the foreign key to webhook_endpoints is taken last, so its SHARE ROW EXCLUSIVE
// lock (endpoint writes wait; reads and the outbox's `for key share`, i.e. key changes, do not)
// is held only for the brief create-and-copy before the commit. Nothing here takes ACCESS
// EXCLUSIVE on webhook_endpoints (a dropped column would, and stall every key change).
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`set local lock_timeout = '2s'`.execute(db);
  await sql`update webhook_attempts set error = ${category(sql.ref('error'))}
    where error is not null`.execute(db);
  await rewriteAudit(db);
  await sql`
    create table webhook_previous_secrets (
      id bigint generated always as identity primary key,
      endpoint_id uuid not null references webhook_endpoints (id) on delete cascade,
      secret bytea not null,
      expires_at timestamptz not null
    )`.execute(db);
  await sql`create index webhook_previous_secrets_endpoint_id_expires_at_idx
    on webhook_previous_secrets (endpoint_id, expires_at)`.execute(db);
  await sql`insert into webhook_previous_secrets (endpoint_id, secret, expires_at)
    select id, previous_secret, previous_secret_expires_at from webhook_endpoints
    where previous_secret is not null and previous_secret_expires_at > now()`.execute(db);
}

/**
 * The audit rewrite in one pass over audit_events: each jsonb_set_lax leaves the details as they
 * are when its value is null (the field absent or not a string), so one row's several fields
 * (a disabled endpoint's url and last_error) are rewritten by one statement.
 */
async function rewriteAudit(db: Kysely<unknown>): Promise<void> {
  const string = (path: string) => sql`jsonb_typeof(details #> ${path}::text[]) = 'string'`;
  const set = (
    target: RawBuilder<unknown>,
    path: string,
    when: RawBuilder<unknown>,
    value: RawBuilder<unknown>,
  ) =>
    sql`jsonb_set_lax(${target}, ${path}::text[],
      case when ${when} then to_jsonb(${value}) end, false, 'return_target')`;
  const text = (path: string) => sql`details #>> ${path}::text[]`;
  let details: RawBuilder<unknown> = sql.ref('details');
  details = set(details, '{url}', string('{url}'), redacted(text('{url}')));
  for (const end of ['from', 'to']) {
    const path = `{changes,url,${end}}`;
    details = set(
      details,
      path,
      sql`action = 'webhook.updated' and ${string(path)}`,
      redacted(text(path)),
    );
  }
  details = set(
    details,
    '{last_error}',
    sql`action = 'webhook.disabled' and ${string('{last_error}')}`,
    category(text('{last_error}')),
  );
  await sql`update audit_events set details = ${details}
    where action like 'webhook.%' and (${string('{url}')} or ${string('{last_error}')}
      or jsonb_typeof(details #> '{changes,url}') = 'object')`.execute(db);
}

const CATEGORIES = [
  'dns_failed',
  'address_not_allowed',
  'connection_refused',
  'connection_reset',
  'network_unreachable',
  'timeout',
  'tls_error',
  'redirect',
  'http_error',
  'other',
];

/** The category of an error text the delivery code of 0009's time stored. */
function category(e: RawBuilder<unknown>): RawBuilder<string> {
  return sql<string>`case
    when ${e} in (${sql.join(CATEGORIES)}) then ${e}
    when ${e} like 'HTTP %' then 'http_error'
    when ${e} like 'redirect not followed%' then 'redirect'
    when ${e} like 'timed out after%' or ${e} like '%ETIMEDOUT%' then 'timeout'
    when ${e} like 'DNS:%' or ${e} like '% did not resolve' then 'dns_failed'
    when ${e} like '%address not allowed%' or ${e} like 'not an IP address%'
      then 'address_not_allowed'
    when ${e} like '%ECONNREFUSED%' then 'connection_refused'
    when ${e} like '%ECONNRESET%' or ${e} like '%EPIPE%' or ${e} = 'socket hang up'
      then 'connection_reset'
    when ${e} like '%EHOSTUNREACH%' or ${e} like '%ENETUNREACH%' then 'network_unreachable'
    when ${e} ~* 'certificate|altname|ssl|tls|self[- ]signed' then 'tls_error'
    else 'other' end`;
}

/** `scheme://host[:port]`, then `/…` for any path but `/`, and `?…` for a query. */
function redacted(url: RawBuilder<unknown>): RawBuilder<string> {
  return sql<string>`coalesce((select r.m[1]
      || case when coalesce(r.m[2], '/') = '/' then '/' else '/…' end
      || case when r.m[3] is null then '' else '?…' end
    from regexp_match(${url}, '^([^:/?#]+://[^/?#]*)(/[^?]*)?(\\?.*)?$') as r(m)), '…')`;
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`update webhook_endpoints e set previous_secret = p.secret,
      previous_secret_expires_at = p.expires_at
    from (select distinct on (endpoint_id) endpoint_id, secret, expires_at
      from webhook_previous_secrets order by endpoint_id, expires_at desc) p
    where p.endpoint_id = e.id`.execute(db);
  await sql`drop table webhook_previous_secrets`.execute(db);
}
