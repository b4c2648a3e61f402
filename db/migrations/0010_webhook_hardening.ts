import { sql, type Kysely, type RawBuilder } from 'kysely';

// Frozen in time: never edit a migration that has shipped; add a new one.
// Webhook hardening (issue 18).
// - Every secret rotated away in the last overlap (24 h) keeps signing until its own expiry: one
//   row per previous secret, instead of a single previous_secret column that a second rotation
//   overwrote. Previous secrets still signing move over; expired ones are dropped.
// - Attempt errors and the `webhook.disabled` audit's last_error become a closed set of
//   categories: the raw Node messages stored before named internal addresses and certificate
//   names. Irreversible (the raw text is gone on purpose).
// - Webhook URLs in audit details keep scheme, host and port only (`https://host/…?…`): paths
//   and queries carry receivers' tokens (Slack-style `/services/T…/B…/token`).
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`set local lock_timeout = '2s'`.execute(db);
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
  await sql`alter table webhook_endpoints
    drop column previous_secret, drop column previous_secret_expires_at`.execute(db);
  await sql`update webhook_attempts set error = ${category(sql.ref('error'))}
    where error is not null`.execute(db);
  await sql`update audit_events
    set details = jsonb_set(details, '{last_error}', to_jsonb(${category(sql`details->>'last_error'`)}))
    where action = 'webhook.disabled' and details->>'last_error' is not null`.execute(db);
  await sql`update audit_events set details = jsonb_set(details, '{url}', to_jsonb(${redacted(sql`details->>'url'`)}))
    where action like 'webhook.%' and jsonb_typeof(details->'url') = 'string'`.execute(db);
  for (const end of ['from', 'to']) {
    const path = `{changes,url,${end}}`;
    await sql`update audit_events
      set details = jsonb_set(details, ${path}::text[], to_jsonb(${redacted(sql`details#>>${path}::text[]`)}))
      where action = 'webhook.updated' and jsonb_typeof(details#>${path}::text[]) = 'string'`.execute(
      db,
    );
  }
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
  await sql`alter table webhook_endpoints
    add column previous_secret bytea, add column previous_secret_expires_at timestamptz`.execute(
    db,
  );
  await sql`update webhook_endpoints e set previous_secret = p.secret,
      previous_secret_expires_at = p.expires_at
    from (select distinct on (endpoint_id) endpoint_id, secret, expires_at
      from webhook_previous_secrets order by endpoint_id, expires_at desc) p
    where p.endpoint_id = e.id`.execute(db);
  await sql`drop table webhook_previous_secrets`.execute(db);
}
