/**
 * One key's page. This slice shows the key's own fields (GET …/api-keys/:keyId); its usage
 * charts, top endpoints and recent events come with the key page proper.
 */
import type { ComponentChildren } from 'preact';
import type { ApiKey } from '../api.ts';
import type { Session } from '../app.tsx';
import {
  DateOnly,
  Loading,
  PageHeading,
  ProblemMessage,
  RelativeTime,
  StatusBadge,
} from '../components.tsx';
import { formatNumber, NEVER } from '../format.ts';
import { useApi, useNow, useTitle } from '../hooks.ts';
import { keysHref } from '../route.ts';

export function KeyPage({ session, keyId }: { session: Session; keyId: string }) {
  const { client, self } = session;
  const key = useApi(
    (signal) => client.key(self.org_id, keyId, signal),
    [client, self.org_id, keyId],
  );
  useTitle(key.data?.name ?? 'API key');
  return (
    <>
      <p class="back">
        <a href={keysHref}>← Back to API keys</a>
      </p>
      {key.error && (
        <>
          <PageHeading>API key</PageHeading>
          <ProblemMessage error={key.error} />
        </>
      )}
      {!key.data && !key.error && <Loading label="Loading the key…" />}
      {key.data && <KeyFields apiKey={key.data} />}
    </>
  );
}

function KeyFields({ apiKey: k }: { apiKey: ApiKey }) {
  const now = useNow(15_000);
  const fields: [string, ComponentChildren][] = [
    ['Prefix', <code>{k.prefix}</code>],
    ['Environment', k.environment],
    ['Scopes', k.scopes.length > 0 ? k.scopes.join(', ') : 'none'],
    ['Status', <StatusBadge status={k.status} />],
    ['Created', <DateOnly iso={k.created_at} />],
    ['Expires', k.expires_at ? <DateOnly iso={k.expires_at} /> : 'never'],
    ['Last used', <RelativeTime iso={k.last_used_at} now={now} />],
    ['Requests', formatNumber(k.request_count)],
    ['Last IP', k.last_used_ip ?? NEVER],
  ];
  return (
    <>
      <PageHeading>{k.name}</PageHeading>
      <dl class="fields">
        {fields.map(([label, value]) => (
          <div key={label}>
            <dt>{label}</dt>
            <dd>{value}</dd>
          </div>
        ))}
      </dl>
      <p class="muted">
        Usage charts, top endpoints and recent events for this key are coming soon.
      </p>
    </>
  );
}
